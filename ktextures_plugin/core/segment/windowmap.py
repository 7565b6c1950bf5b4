"""How the segment engine's windows are classified: the job every window needs, one window's classes, and the
map of this process (the default; ``segment --dask`` supplies another, ``cli/distributed.py``).

The processing window is cut into *windows* of ``window_tiles`` x ``window_tiles`` tiles aligned on the tile grid
of :mod:`..io.tiling` (:func:`window_grid`), so every window holds exactly the tiles (core, halo read, centre crop)
of the whole run. A *window map* turns the list of windows into :class:`WindowClasses`, in any order; the engine
(:func:`.segment.segment_raster`) writes them, reduces their per-tile statistics in tile order (so the result does
not depend on the map) and does everything else once: palette, class names, sieve, statistics, partial files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from ..feedback import Feedback
from ..io import raster, tiling
from ..io.tiling import Window
from . import inference
from .classstats import ClassCounter
from .inference import TileModel, classify_tile, finish_tile, infer_tile, open_session
from .tileio import prefetch


@dataclass(frozen=True)
class SegmentJob:
    """What classifying any window needs (small and picklable, for Dask tasks too).

    Attributes:
        input_path, model_path: the input raster and the ONNX model (paths every worker sees).
        bands: 1-based input bands in the model's channel order; smin, smax: raw values mapped to 0 and 1.
        extra_nodata: a raw value treated as nodata; window: the processing window ``(xoff, yoff, xsize, ysize)``.
        tile_size: core tile side in pixels; model: what classifying a tile needs (:class:`.inference.TileModel`).
        threads: onnxruntime intra-op threads; gt, wkt: the class raster's grid (for areas).
        textures: float32 ``(k, C, p, p)`` for the simulated image, or ``None``.
    """

    input_path: str
    model_path: str
    bands: Tuple[int, ...]
    smin: Tuple[float, ...]
    smax: Tuple[float, ...]
    extra_nodata: Optional[float]
    window: Window
    tile_size: int
    model: TileModel
    threads: Optional[int] = None
    gt: Tuple[float, ...] = ()
    wkt: str = ""
    textures: Optional[np.ndarray] = None

    @property
    def k(self) -> int:
        return self.model.info.num_classes


@dataclass(frozen=True)
class TileStats:
    """One tile's share of the run's statistics: valid pixels, pixels and m² per class 1..k (int64, float64
    ``(k,)``), and the sampled true-colour sums (:class:`.inference.TileClasses`: ``color_n`` ``(k,)``,
    ``color_sum`` ``(k, 3)``)."""

    n_valid: int
    counts: np.ndarray
    areas: np.ndarray
    color_n: np.ndarray
    color_sum: np.ndarray


@dataclass
class WindowClasses:
    """The classes of one window: ``labels`` uint8/uint16 ``(ysize, xsize)`` of ``window`` (raster pixels; 0 =
    nodata, 1..k), ``stats`` per tile keyed by the tile's ``(yoff, xoff)``, and ``simulation`` float32
    ``(C, ysize, xsize)`` in raw units when the job has textures."""

    window: Window
    labels: np.ndarray
    stats: Dict[Tuple[int, int], TileStats]
    simulation: Optional[np.ndarray] = None


def window_grid(window: Window, tile_size: int, window_tiles: int = 1) -> List[Window]:
    """``window`` cut into squares of ``window_tiles * tile_size`` px from its origin (the last row/column
    smaller), row by row, so that each holds whole tiles of the tile grid (``window_tiles`` 1: the tile cores)."""
    step = tile_size * max(1, int(window_tiles))
    x0, y0, xs, ys = window
    return [Window(x, y, min(step, x0 + xs - x), min(step, y0 + ys - y))
            for y in range(y0, y0 + ys, step) for x in range(x0, x0 + xs, step)]


def window_tiles(job: SegmentJob, ds, windows: Iterable[Window]) -> Iterator[tiling.Tile]:
    """The tiles of ``windows`` (each aligned on the job's tile grid), window after window."""
    size = (ds.RasterXSize, ds.RasterYSize)
    for w in windows:
        yield from tiling.iter_tiles(w, size, job.tile_size, job.model.read_halo)


def classify_tiles(job: SegmentJob, ds, session, tiles: Iterable[tiling.Tile],
                   is_canceled=None) -> Iterator[WindowClasses]:
    """Classify ``tiles`` of ``ds`` with ``session``, one :class:`WindowClasses` per tile core; the next tiles are
    read and scaled in a reader thread (:func:`.tileio.prefetch`) while one is classified.

    Raises:
        ModelError: the model broke its contract on a tile; Canceled: ``is_canceled()`` turned true.
    """
    reader = prefetch(ds, list(job.bands), tiles, job.extra_nodata, is_canceled,
                      prepare=lambda d: raster.scale_in_place(d, job.smin, job.smax, job.model.info.scale_clip))
    try:
        if job.model.smoothing > 0:
            yield from _smoothed_tiles(job, session, reader)
            return
        for tile, data, valid in reader:
            yield _window_classes(job, tile, classify_tile(session, job.model, tile, data, valid))
    finally:
        reader.close()  # stops and joins the reader thread


def _smoothed_tiles(job: SegmentJob, session, reader) -> Iterator[WindowClasses]:
    """With smoothing on, the smoothing step of each tile (numpy, which releases the GIL) runs in a helper thread
    while onnxruntime infers the next tile; the tiles still come out in order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="ktextures-smoothing") as pool:
        pending = None
        for tile, data, valid in reader:
            raw = infer_tile(session, job.model, tile, data, valid)
            fut = pool.submit(finish_tile, job.model, tile, data, valid, raw)
            if pending is not None:
                yield _window_classes(job, pending[0], pending[1].result())
            pending = (tile, fut)
        if pending is not None:
            yield _window_classes(job, pending[0], pending[1].result())


def _window_classes(job: SegmentJob, tile: tiling.Tile, tc) -> WindowClasses:
    sim = simulate(job, tile, tc) if job.textures is not None else None
    return WindowClasses(tile.core, tc.labels, {(tile.core.yoff, tile.core.xoff): _stats(job, tile, tc)}, sim)


def classify_window(job: SegmentJob, ds, session, window: Window) -> WindowClasses:
    """Every tile of ``window`` (aligned on the tile grid) in one :class:`WindowClasses` (a Dask task's work)."""
    x0, y0, xs, ys = window
    labels = np.zeros((ys, xs), job.model.label_dtype)
    sim = None if job.textures is None else np.full((job.model.info.num_channels, ys, xs), np.nan, np.float32)
    stats: Dict[Tuple[int, int], TileStats] = {}
    for wc in classify_tiles(job, ds, session, window_tiles(job, ds, [window])):
        rows, cols = Window(wc.window.xoff - x0, wc.window.yoff - y0, wc.window.xsize, wc.window.ysize).slices()
        labels[rows, cols] = wc.labels
        if sim is not None:
            sim[:, rows, cols] = wc.simulation
        stats.update(wc.stats)
    return WindowClasses(Window(*window), labels, stats, sim)


def _stats(job: SegmentJob, tile: tiling.Tile, tc) -> TileStats:
    counter = ClassCounter(job.k, job.gt, job.wkt)
    counter.add(tc.labels, tile.core.yoff - job.window.yoff)  # the class raster's row (tile.out is per window)
    counts, areas = counter.result()
    return TileStats(tc.n_valid, counts, areas, tc.color_n, tc.color_sum)


def simulate(job: SegmentJob, tile: tiling.Tile, tc) -> np.ndarray:
    """The simulated image of one tile's core: float32 ``(C, th, tw)``, each pixel its class's texture at its
    position, in raw units; NaN where nodata."""
    lo = np.asarray(job.smin, np.float32).reshape(-1, 1, 1)
    span = (np.asarray(job.smax, np.float32) - lo.ravel()).reshape(-1, 1, 1)
    x0, y0, tw, th = tile.core
    if tc.cls is None:
        return np.full((len(job.smin), th, tw), np.nan, np.float32)
    s = inference.simulate(job.textures, tc.cls, x0, y0) * span + lo  # (C,th,tw) raw
    s[:, ~tc.valid] = np.nan
    return s.astype(np.float32)


class LocalWindows:
    """The window map of this process: one window per tile, read, scaled and classified in tile order with a
    reader thread beside onnxruntime (which uses ``job.threads`` threads, default one per core).

    Args:
        session: an open onnxruntime session on the model (reused across runs in batch mode), or ``None``.
    """

    window_tiles = 1

    def __init__(self, session=None) -> None:
        self.session = session

    def open_session(self, model_path: str, threads: Optional[int]):
        """The session the run reads the model's metadata with, and classifies with."""
        if self.session is None:
            self.session = open_session(model_path, threads=threads)
        return self.session

    def start(self, job: SegmentJob, feedback: Feedback) -> str:
        """Ready to classify; returns the execution provider (for the log and the result)."""
        provider = self.session.get_providers()[0]
        feedback.info(f"onnxruntime execution provider: {provider}")
        return provider

    def classify(self, job: SegmentJob, windows: List[Window], feedback: Feedback) -> Iterator[WindowClasses]:
        """The :class:`WindowClasses` of ``windows``, in order; polls ``feedback`` before every tile."""
        ds = raster.open_raster(job.input_path)
        try:
            yield from classify_tiles(job, ds, self.session, window_tiles(job, ds, windows), feedback.is_canceled)
        finally:
            ds = None
