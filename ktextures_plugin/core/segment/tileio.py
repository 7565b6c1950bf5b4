"""Tile I/O threads: a reader that reads (and prepares) the next tiles while the model runs, and a writer that
writes (and encodes) the class blocks beside inference. GDAL releases the GIL while it reads, decodes, writes and
encodes, so both overlap onnxruntime's run.
"""
from __future__ import annotations

import queue
import threading
from typing import Optional

import numpy as np

from ..errors import Canceled
from ..io import raster


class BandWriter:
    """Writes ``(array, xoff, yoff)`` blocks into a GDAL band from a background thread.

    GDAL releases the GIL while it writes and encodes, so compressing the class raster overlaps the next tile's
    inference. :meth:`write` re-raises an earlier write error; :meth:`close` waits for every pending block and
    re-raises the first error; :meth:`abort` drops pending blocks, waits for the thread and raises nothing.
    The band reference is dropped when the thread ends, so that the dataset can be closed afterwards.
    """

    def __init__(self, band, depth: int = 4) -> None:
        self._band = band
        self._q: "queue.Queue" = queue.Queue(maxsize=depth)
        self._error: Optional[BaseException] = None
        self._dropping = False
        self._th = threading.Thread(target=self._run, name="ktextures-writer", daemon=True)
        self._th.start()

    def _run(self) -> None:
        try:
            while True:
                item = self._q.get()
                if item is None:
                    return
                if self._error is None and not self._dropping:
                    try:
                        self._band.WriteArray(*item)
                    except BaseException as exc:  # noqa: BLE001 - handed to the producer
                        self._error = exc
        finally:
            self._band = None

    def write(self, array: np.ndarray, xoff: int, yoff: int) -> None:
        """Queue ``array`` for the band at pixel ``(xoff, yoff)``; raises an earlier write's error."""
        if self._error is not None:
            raise self._error
        self._q.put((array, int(xoff), int(yoff)))

    def _join(self) -> None:
        if self._th.is_alive():
            self._q.put(None)
            self._th.join()

    def close(self) -> None:
        """Wait for every queued block; raises the first write error."""
        self._join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Drop the queued blocks and wait for the thread; raises nothing."""
        self._dropping = True
        self._join()


def any_valid(ds, bands, window, extra_nodata, rows: int = 256) -> bool:
    """Full-resolution scan for at least one valid pixel (only when the decimated probe found none)."""
    x0, y0, xs, ys = window
    for y in range(y0, y0 + ys, rows):
        _, valid = raster.read_window(ds, bands, (x0, y, xs, min(rows, y0 + ys - y)), extra_nodata)
        if valid.any():
            return True
    return False


def prefetch(ds, bands, tiles, extra_nodata, is_canceled, depth: int = 2, prepare=None):
    """Yield ``(tile, data, valid)`` with the next tiles read by a background thread (GDAL releases the
    GIL while reading, so reading overlaps inference). Polls ``is_canceled`` before every tile.

    ``prepare(data)``, when given, runs in the reader thread on each tile's float32 ``(C,H,W)`` data (which it
    may overwrite) and its result is yielded instead."""
    q: "queue.Queue" = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def reader():
        try:
            for t in tiles:
                if stop.is_set():
                    return
                data, valid = raster.read_window(ds, bands, t.read, extra_nodata)
                item = (t, prepare(data) if prepare else data, valid)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    th = threading.Thread(target=reader, name="ktextures-reader", daemon=True)
    th.start()
    try:
        while True:
            if is_canceled and is_canceled():
                raise Canceled()
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while th.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                th.join(0.05)
