"""``segment --dask [ADDRESS]``: the segment job on a Dask cluster (dask.distributed), same result as one process.

This module supplies only *how the windows are classified* (:class:`DaskWindows`, a window map of
:mod:`ktextures_plugin.core.segment.windowmap`); the engine :func:`ktextures_plugin.core.segment.segment_raster` does
the rest once for every front end (plan, partial files, palette, class names, sieve, statistics, result). The
processing window is cut into windows of ``window_tiles`` x ``window_tiles`` tiles aligned on the tile grid, so
every window holds exactly the tiles (core, halo read, centre crop) that the single process runs. One Dask task
per window reads its tiles with GDAL, scales and classifies them (:func:`~ktextures_plugin.core.segment.windowmap.
classify_window`) with one onnxruntime session per worker process (opened on the first task, then reused). The
class windows go back to the client, which is the only writer of the partial GeoTIFF; the engine reduces the
per-tile statistics in tile order, so the palette and the per-class report are bit-identical to ``segment``'s
(tests/cli/test_distributed.py).

Dask is an optional dependency of the command line only (requirements-dev.txt); it is imported lazily and the
QGIS plugin never imports this module.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from typing import Dict, Iterator, List, Optional, Tuple

from osgeo import gdal

from ..core.errors import Canceled, CoreError, RasterError
from ..core.feedback import Feedback
from ..core.io import classraster, geo, raster
from ..core.io.tiling import Window
from ..core.segment import SegmentOptions, SegmentResult, segment_raster
from ..core.segment.inference import open_session
from ..core.segment.windowmap import SegmentJob, WindowClasses, classify_window

gdal.UseExceptions()

#: Default window side in internal tiles (2048 px at the default 512 px tile: 4 MB of Byte classes per task).
WINDOW_TILES = 4
#: Seconds to wait for a scheduler given by address before failing.
CONNECT_TIMEOUT_S = 10

# Per worker process: onnxruntime sessions by (model, threads, mtime) and GDAL datasets by (path, thread id,
# mtime); a GDAL dataset must not be shared between threads, an onnxruntime session may.
_SESSIONS: Dict[tuple, object] = {}
_DATASETS: Dict[tuple, gdal.Dataset] = {}
_LOCK = threading.Lock()


class DistributedError(CoreError, RuntimeError):
    """The Dask scheduler cannot be reached, or a worker cannot run the job; names the fix."""


def worker_session(model_path: str, threads: Optional[int]):
    """The onnxruntime session of this worker process on ``model_path``, opened once and then reused."""
    key = (model_path, threads, _mtime(model_path))
    with _LOCK:
        if key not in _SESSIONS:
            _SESSIONS[key] = open_session(model_path, threads=threads)
        return _SESSIONS[key]


def _mtime(path: str) -> float:
    """Modification time of a local file (0 for /vsi paths): a file rewritten at the same path is reopened
    by a long-lived worker, not served from the caches."""
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def _worker_dataset(path: str) -> gdal.Dataset:
    key = (path, threading.get_ident(), _mtime(path))
    if key not in _DATASETS:
        _DATASETS[key] = raster.open_raster(path)
    return _DATASETS[key]


def check_worker(model_path: str, input_path: str, threads: Optional[int] = 1) -> Optional[str]:
    """Run on every worker before the job: ``None`` when it can import onnxruntime, load the model and open the
    input, else the reason (a string, so that the client can name the worker)."""
    try:
        worker_session(model_path, threads)   # the session the tasks will use
        raster.open_raster(input_path)
    except (ImportError, ValueError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def segment_window(job: SegmentJob, win: Tuple[int, int, int, int]) -> WindowClasses:
    """The Dask task: the classes of the window ``win`` of the input (aligned on the tile grid), with this worker
    process's dataset and onnxruntime session (:func:`~ktextures_plugin.core.segment.windowmap.classify_window`)."""
    ds = _worker_dataset(job.input_path)
    session = worker_session(job.model_path, job.threads)
    with raster.gdal_cache_limit(raster.GDAL_CACHE_BYTES):
        return classify_window(job, ds, session, Window(*win))


def is_list(path: str) -> bool:
    """Whether ``path`` is a text file listing rasters (``.txt``/``.lst``) rather than a raster."""
    return os.path.splitext(str(path))[1].lower() in (".txt", ".lst")


def listed_rasters(path: str) -> List[str]:
    """The raster paths of a list file (one a line; blank lines and ``#`` comments skipped), as written; the
    output check reads them too (``core.io.outputs.files_read``)."""
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def resolve_input(path: str, scratch_vrt: str) -> Tuple[str, Optional[str]]:
    """``(raster path, temporary VRT or None)``: a text file listing rasters (one per line, ``.txt``/``.lst``)
    becomes a VRT mosaic (``gdal.BuildVRT``) written to ``scratch_vrt``, which the workers must see too (a
    hidden partial name of the output, ``atomic.partial_path(output, ".vrt")``: a killed run's VRT is then
    removed with its other partial files).

    Raises:
        RasterError: a listed raster is missing or not on the grid (CRS, pixel size, origin) of the first.
    """
    if not is_list(path):
        return path, None
    files = listed_rasters(path)
    if not files:
        raise RasterError(f"The list '{path}' names no raster; write one raster path per line.")
    ref = None
    for p in files:
        ds = raster.open_raster(p)
        gt, wkt = ds.GetGeoTransform(), ds.GetProjection()
        if ref is None:
            ref = (gt, wkt, p)
            continue
        off = ((gt[0] - ref[0][0]) / ref[0][1], (gt[3] - ref[0][3]) / ref[0][5])
        if (abs(gt[1] - ref[0][1]) > 1e-9 * abs(ref[0][1]) or abs(gt[5] - ref[0][5]) > 1e-9 * abs(ref[0][5])
                or any(abs(o - round(o)) > 1e-6 for o in off) or not geo.same_crs(wkt, ref[1])):
            raise RasterError(f"'{p}' is not on the grid of '{ref[2]}' (CRS, pixel size and pixel-aligned origin "
                              "must match); warp it with gdalwarp -tap first.")
    vrt = scratch_vrt
    out = gdal.BuildVRT(vrt, [os.path.abspath(p) for p in files])
    first = raster.open_raster(files[0])
    for b in range(1, min(out.RasterCount, first.RasterCount) + 1):  # band names drive the band matching
        out.GetRasterBand(b).SetDescription(first.GetRasterBand(b).GetDescription())
        out.GetRasterBand(b).SetColorInterpretation(first.GetRasterBand(b).GetColorInterpretation())
    out = None
    return vrt, vrt


def connect(address: Optional[str], timeout_s: float = CONNECT_TIMEOUT_S, n_workers: Optional[int] = None):
    """``(client, cluster)``: a client of the scheduler at ``address`` (``tcp://host:8786``; cluster None), or,
    without an address, of a new ``LocalCluster`` of ``n_workers`` one-thread worker processes (default: one
    per CPU core). The caller closes both.

    Raises:
        DistributedError: dask.distributed is not installed, or the scheduler is not reachable in ``timeout_s``.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DistributedError("--dask needs dask.distributed: pip install 'dask[distributed]'") from None
    if address:
        try:
            return Client(address, timeout=timeout_s), None
        except (OSError, TimeoutError) as exc:
            raise DistributedError(
                f"Cannot reach the Dask scheduler at '{address}' within {timeout_s:g} s ({exc.__class__.__name__}). "
                "Start it with 'dask scheduler' and workers with 'dask worker ADDRESS', or give --dask without an "
                "address for a local cluster.") from None
    n = n_workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster), cluster


def check_workers(client, model_path: str, input_path: str, threads: Optional[int] = 1) -> int:
    """Ask every worker whether it can run the job (:func:`check_worker`); returns the number of workers.

    Raises:
        DistributedError: no worker, or a worker lacks onnxruntime, the model file or the input (named).
    """
    answers = client.run(check_worker, model_path, input_path, threads)
    if not answers:
        raise DistributedError("The Dask cluster has no worker: start one with 'dask worker ADDRESS'.")
    bad = {w: e for w, e in answers.items() if e}
    if bad:
        w, e = next(iter(bad.items()))
        raise DistributedError(f"{len(bad)} of {len(answers)} Dask worker(s) cannot run the job; {w}: {e}. "
                               "Install onnxruntime on every worker and put the model and the input on a path "
                               "every worker sees (shared folder, /vsis3/, /vsicurl/).")
    return len(answers)


class DaskWindows:
    """The window map of a Dask cluster: one task per window of ``window_tiles`` x ``window_tiles`` tiles, results
    in the order they complete. Connects in :meth:`start` (to ``client``, the scheduler at ``address``, or a new
    ``LocalCluster`` of ``n_workers``); :meth:`close` closes what it opened."""

    def __init__(self, address: Optional[str] = None, client=None, n_workers: Optional[int] = None,
                 window_tiles: int = WINDOW_TILES) -> None:
        self.address, self.client, self.n_workers = address, client, n_workers
        self.window_tiles = max(1, int(window_tiles))
        self._own = None

    def open_session(self, model_path: str, threads: Optional[int]):
        """A metadata session on the client (the workers open their own)."""
        return open_session(model_path, threads=1, for_inference=False)

    def start(self, job: SegmentJob, feedback: Feedback) -> str:
        """Connect and check every worker (:func:`check_workers`); returns the execution provider text."""
        if self.client is None:
            self.client, cluster = connect(self.address, n_workers=self.n_workers)
            self._own = (self.client, cluster)
        n = check_workers(self.client, job.model_path, job.input_path, job.threads)
        feedback.info(f"Dask: {n} worker(s) at {self.client.scheduler.address}")
        return f"CPUExecutionProvider on {n} Dask worker(s)"

    def classify(self, job: SegmentJob, windows: List[Window], feedback: Feedback) -> Iterator[WindowClasses]:
        """Submit one task per window and yield each window's classes as it arrives. Any exception, and closing
        this generator early (Ctrl-C, cancel, an error of the engine), cancels the remaining tasks."""
        from distributed import as_completed

        futures = [self.client.submit(segment_window, job, tuple(w), key=f"ktextures-window-{uuid.uuid4().hex}",
                                      retries=2) for w in windows]
        try:
            for fut in as_completed(futures):
                wc = fut.result()
                fut.release()
                yield wc
        except GeneratorExit:
            self.client.cancel(futures)
            raise
        except BaseException as exc:
            self.client.cancel(futures)
            if isinstance(exc, (KeyboardInterrupt, Canceled, ValueError, OSError, ImportError)):
                raise  # Ctrl-C, RasterError/ModelError/OutputError from a task: already clear
            raise DistributedError(f"A Dask task failed ({type(exc).__name__}: {str(exc)[:300]}); no output was "
                                   "written. A KilledWorker means workers died repeatedly on one window: give them "
                                   "more memory or fewer threads (dask worker --memory-limit, --nthreads).") from exc

    def close(self) -> None:
        """Close the client and the local cluster this map opened (a given client stays open)."""
        if self._own:
            client, cluster = self._own
            self._own = None
            client.close()
            if cluster is not None:
                cluster.close()


def segment_dask(input_path: str, model_path: str, output_path: str, options: Optional[SegmentOptions] = None,
                 feedback: Optional[Feedback] = None, *, address: Optional[str] = None, client=None,
                 n_workers: Optional[int] = None, window_tiles: int = WINDOW_TILES) -> SegmentResult:
    """:func:`~ktextures_plugin.core.segment.segment_raster` on a Dask cluster: the same class raster, palette
    and statistics.

    Args:
        input_path: a GDAL raster or VRT, or a ``.txt``/``.lst`` file listing rasters on one grid (one path a
            line; mosaicked with ``gdal.BuildVRT`` beside the output). Every worker must see it.
        model_path: the ONNX model; every worker must see it (shared path).
        output_path: the class raster (written by this process only: partial file, renamed on success).
        options, feedback: as ``segment_raster``; ``options.threads`` is the onnxruntime intra-op threads per
            task (default 1: Dask's worker processes give the parallelism).
        address: the scheduler (``tcp://host:8786``); None starts a ``LocalCluster`` of ``n_workers``.
        client: an existing ``distributed.Client`` (overrides ``address``; not closed here).
        window_tiles: task window side in tiles (windows are aligned on the tile grid).

    Returns:
        ``SegmentResult``; ``execution_provider`` names the number of Dask workers.

    Raises:
        DistributedError: scheduler unreachable, a worker without onnxruntime/model/input.
        ModelError, RasterError, OutputError, Canceled: as ``segment_raster``.
        KeyboardInterrupt: Ctrl-C; the tasks are cancelled and no output is left behind.
    """
    opts = options or SegmentOptions()
    if opts.threads is None:
        opts = dataclasses.replace(opts, threads=1)
    model_path = os.path.abspath(model_path) if os.path.exists(model_path) else model_path
    input_path = os.path.abspath(input_path) if os.path.exists(input_path) else input_path
    path, tmp_vrt = resolve_input(input_path, classraster.partial_path(output_path, ".vrt"))
    windows = DaskWindows(address, client, n_workers, window_tiles)
    try:
        return segment_raster(path, model_path, output_path, opts, feedback, windows=windows)
    finally:
        windows.close()
        if tmp_vrt:
            gdal.Unlink(tmp_vrt)
