"""``segment --dask [ADDRESS]``: the segment job on a Dask cluster (dask.distributed), same result as one process.

The processing window is cut into *windows* of ``window_tiles`` x ``window_tiles`` internal tiles, aligned on
the tile grid of :func:`ktextures_plugin.core.segment.segment_raster`, so every window holds exactly the tiles
(core, halo read, centre crop) that the single process runs. One Dask task per window reads its tiles with GDAL,
scales them with :func:`raster.scale_in_place` and runs the model with one onnxruntime session per worker
process (opened on the first task, then reused). The class windows go back to the client, which is the only
writer of the partial GeoTIFF (renamed into place on success, deleted on error or Ctrl-C). Per-tile partial
statistics (pixel counts, areas, colour sums) are reduced on the client in the single process's tile order, so
the palette and the per-class report are bit-identical to ``segment``'s (tests/test_distributed.py).

Dask is an optional dependency of the command line only (requirements-dev.txt); it is imported lazily and the
QGIS plugin never imports this module.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from osgeo import gdal

from ..core import classraster, raster, tileio, tiling
from ..core import segment as seg
from ..core.classstats import ClassCounter, class_stats
from ..core.errors import CoreError, RasterError
from ..core.inference import TileModel, classify_tile, open_session, read_model_info
from ..core.sieve import sieve_in_place

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


@dataclass(frozen=True)
class Job:
    """What every window task needs (small; pickled with each task).

    ``window`` is the processing window of the input ``(xoff, yoff, xsize, ysize)``; ``model`` what classifying a
    tile needs (:class:`~ktextures_plugin.core.inference.TileModel`); ``gt``/``wkt`` the class raster's grid (for
    areas)."""

    input_path: str
    model_path: str
    bands: Tuple[int, ...]
    smin: Tuple[float, ...]
    smax: Tuple[float, ...]
    extra_nodata: Optional[float]
    window: Tuple[int, int, int, int]
    tile_size: int
    model: TileModel
    threads: Optional[int]
    gt: Tuple[float, ...] = ()
    wkt: str = ""

    @property
    def k(self) -> int:
        return self.model.info.num_classes


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


def _tile_stats(job: Job, tile, tc):
    """One tile's statistics ``(n_valid, counts (k,), areas (k,), color_n (k,), color_sum (k, 3))``."""
    counter = ClassCounter(job.k, job.gt, job.wkt)
    counter.add(tc.labels, tile.out[1])
    counts, areas = counter.result()
    return tc.n_valid, counts, areas, tc.color_n, tc.color_sum


def segment_window(job: Job, win: Tuple[int, int, int, int]):
    """The Dask task: classify the tiles of ``win`` (a window of the input, aligned on the tile grid).

    Returns:
        ``(win, labels, stats)``: labels uint8/uint16 ``(ysize, xsize)`` of ``win`` (0 = nodata, 1..k);
        stats ``{(tile yoff, tile xoff): tile stats}`` (:func:`_tile_stats`).
    """
    ds = _worker_dataset(job.input_path)
    session = worker_session(job.model_path, job.threads)
    x0, y0, xs, ys = win
    labels = np.zeros((ys, xs), job.model.label_dtype)
    stats = {}
    tiles = tiling.iter_tiles(win, (ds.RasterXSize, ds.RasterYSize), job.tile_size, job.model.info.halo_px)
    with raster.gdal_cache_limit(seg.GDAL_CACHE_BYTES):
        # the reader thread reads and scales the next tile while this one is classified, as in segment_raster
        for tile, data, valid in tileio.prefetch(ds, job.bands, tiles, job.extra_nodata, None,
                                                 prepare=lambda d: raster.scale_in_place(d, job.smin, job.smax)):
            tc = classify_tile(session, job.model, tile, data, valid)
            tx, ty, tw, th = tile.core
            labels[ty - y0:ty - y0 + th, tx - x0:tx - x0 + tw] = tc.labels
            stats[(ty, tx)] = _tile_stats(job, tile, tc)
    return win, labels, stats


def windows(window: Tuple[int, int, int, int], tile_size: int, window_tiles: int) -> List[Tuple[int, ...]]:
    """The task windows: ``window`` cut into squares of ``window_tiles * tile_size`` px from its origin (the last
    row/column smaller), so that each holds whole tiles of the single-process tile grid."""
    step = tile_size * max(1, int(window_tiles))
    x0, y0, xs, ys = window
    return [(x, y, min(step, x0 + xs - x), min(step, y0 + ys - y))
            for y in range(y0, y0 + ys, step) for x in range(x0, x0 + xs, step)]


def is_list(path: str) -> bool:
    """Whether ``path`` is a text file listing rasters (``.txt``/``.lst``) rather than a raster."""
    return os.path.splitext(str(path))[1].lower() in (".txt", ".lst")


def listed_rasters(path: str) -> List[str]:
    """The raster paths of a list file (one a line; blank lines and ``#`` comments skipped), as written; the
    output check reads them too (``core.outputs.files_read``)."""
    with open(path) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.lstrip().startswith("#")]


def resolve_input(path: str, scratch_dir: str) -> Tuple[str, Optional[str]]:
    """``(raster path, temporary VRT or None)``: a text file listing rasters (one per line, ``.txt``/``.lst``)
    becomes a VRT mosaic (``gdal.BuildVRT``) written in ``scratch_dir``, which the workers must see too.

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
                or any(abs(o - round(o)) > 1e-6 for o in off) or not _same_crs(wkt, ref[1])):
            raise RasterError(f"'{p}' is not on the grid of '{ref[2]}' (CRS, pixel size and pixel-aligned origin "
                              "must match); warp it with gdalwarp -tap first.")
    vrt = os.path.join(scratch_dir, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.vrt")
    out = gdal.BuildVRT(vrt, [os.path.abspath(p) for p in files])
    first = raster.open_raster(files[0])
    for b in range(1, min(out.RasterCount, first.RasterCount) + 1):  # band names drive the band matching
        out.GetRasterBand(b).SetDescription(first.GetRasterBand(b).GetDescription())
        out.GetRasterBand(b).SetColorInterpretation(first.GetRasterBand(b).GetColorInterpretation())
    out = None
    return vrt, vrt


def _same_crs(a: str, b: str) -> bool:
    from osgeo import osr
    if not a or not b:
        return a == b
    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


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


def _prepare(input_path, model_path, opts: seg.SegmentOptions, hooks: seg.Hooks):
    """``(info, ds, plan)``: model info, band list, window and scaling, as :func:`seg.segment_raster` plans them."""
    info = read_model_info(model_path, open_session(model_path, threads=1, for_inference=False))
    ds = raster.open_raster(input_path)
    return info, ds, seg.plan_run(ds, info, opts, hooks)


def _run_windows(client, job: Job, wins, band, progress) -> Dict:
    """Submit one task per window, write each class window as it arrives (this is the only writer) and collect
    the per-tile statistics. Any exception (KeyboardInterrupt included) cancels the remaining tasks."""
    from distributed import as_completed

    futures = [client.submit(segment_window, job, w, key=f"ktextures-window-{uuid.uuid4().hex}", retries=2)
               for w in wins]
    stats: Dict = {}
    try:
        for n, fut in enumerate(as_completed(futures), 1):
            (x, y, _, _), labels, st = fut.result()
            fut.release()
            band.WriteArray(labels, x - job.window[0], y - job.window[1])
            stats.update(st)
            if progress:
                progress(n / len(wins), "segment")
    except BaseException as exc:
        client.cancel(futures)
        if isinstance(exc, (KeyboardInterrupt, ValueError, OSError, ImportError)):
            raise  # Ctrl-C, RasterError/ModelError/OutputError from a task: already clear
        raise DistributedError(f"A Dask task failed ({type(exc).__name__}: {str(exc)[:300]}); no output was "
                               "written. A KilledWorker means workers died repeatedly on one window: give them "
                               "more memory or fewer threads (dask worker --memory-limit, --nthreads).") from exc
    return stats


def _reduce(stats: Dict, k: int):
    """Sum the per-tile statistics in the single process's tile order (row by row): identical floats.
    Returns ``(tally, counts, areas)``."""
    tally, counts, areas = seg.Tally(k), np.zeros(k, np.int64), np.zeros(k, np.float64)
    for key in sorted(stats):
        nv, c, a, cn, cs = stats[key]
        tally.add(nv, cn, cs)
        counts += c
        areas += a
    return tally, counts, areas


def segment_dask(input_path: str, model_path: str, output_path: str, *, address: Optional[str] = None,
                 client=None, n_workers: Optional[int] = None, bands=None, scaling: str = "model",
                 extra_nodata: Optional[float] = None, tile_size: int = 512, window_tiles: int = WINDOW_TILES,
                 min_segment_px: int = 0, threads: Optional[int] = 1,
                 progress: Optional[Callable[[float, str], None]] = None,
                 log: Optional[Callable[[str], None]] = None,
                 warn: Optional[Callable[[str], None]] = None) -> seg.SegmentResult:
    """:func:`seg.segment_raster` on a Dask cluster: the same class raster, palette and statistics.

    Args:
        input_path: a GDAL raster or VRT, or a ``.txt``/``.lst`` file listing rasters on one grid (one path a
            line; mosaicked with ``gdal.BuildVRT`` beside the output). Every worker must see it.
        model_path: the ONNX model; every worker must see it (shared path).
        output_path: the class raster (written by this process only: partial file, renamed on success).
        address: the scheduler (``tcp://host:8786``); None starts a ``LocalCluster`` of ``n_workers``.
        client: an existing ``distributed.Client`` (overrides ``address``; not closed here).
        window_tiles: task window side in tiles (windows are aligned on the tile grid).
        threads: onnxruntime intra-op threads per task (1: Dask's worker threads give the parallelism).
        Other arguments as :func:`seg.segment_raster` (no simulation output, no sub-window).

    Returns:
        :class:`seg.SegmentResult`; ``execution_provider`` names the number of Dask workers.

    Raises:
        DistributedError: scheduler unreachable, a worker without onnxruntime/model/input.
        ModelError, RasterError, OutputError: as :func:`seg.segment_raster`.
        KeyboardInterrupt: Ctrl-C; the tasks are cancelled and no output is left behind.
    """
    t0 = time.perf_counter()
    hooks = seg.Hooks(progress=progress, log=log, warn_cb=warn)
    opts = seg.SegmentOptions(bands=bands, scaling=scaling, extra_nodata=extra_nodata, tile_size=tile_size,
                              min_segment_px=min_segment_px, threads=threads)
    model_path = os.path.abspath(model_path) if os.path.exists(model_path) else model_path
    input_path = os.path.abspath(input_path) if os.path.exists(input_path) else input_path
    path, tmp_vrt = resolve_input(input_path, os.path.dirname(classraster.partial_path(output_path)))
    own = None
    try:
        info, ds, plan = _prepare(path, model_path, opts, hooks)
        if client is None:
            client, cluster = connect(address, n_workers=n_workers)
            own = (client, cluster)
        n = check_workers(client, model_path, path, threads)
        hooks.say(f"Dask: {n} worker(s) at {client.scheduler.address}")
        job = Job(path, model_path, tuple(plan.bands), tuple(plan.scale_min), tuple(plan.scale_max), extra_nodata,
                  tuple(plan.window), int(tile_size), TileModel.of(info), threads)
        res = _segment_on(client, job, ds, output_path, opts, window_tiles, hooks)
    finally:
        ds = None
        if own:
            own[0].close()
            if own[1] is not None:
                own[1].close()
        if tmp_vrt:
            gdal.Unlink(tmp_vrt)
    res.warnings, res.seconds = list(hooks.warnings), time.perf_counter() - t0
    res.execution_provider = f"CPUExecutionProvider on {n} Dask worker(s)"
    return res


def _segment_on(client, job: Job, ds, output_path: str, opts: seg.SegmentOptions, window_tiles: int,
                hooks: seg.Hooks) -> seg.SegmentResult:
    """Run the windows of ``job`` on the cluster into ``output_path``: partial file, palette, sieve, statistics."""
    info, k = job.model.info, job.k
    with classraster.partial_output(output_path) as po:
        out_ds = po.create_on_grid(ds, job.window, 1, classraster.class_datatype(k), classraster.NODATA)
        job = dataclasses.replace(job, gt=tuple(out_ds.GetGeoTransform()), wkt=out_ds.GetProjection())
        out_ds = None
        with raster.gdal_cache_limit(seg.GDAL_CACHE_BYTES):
            stats = _run_windows(client, job, windows(job.window, job.tile_size, window_tiles),
                                 po.ds.GetRasterBand(1), hooks.progress)
        tally, counts, areas = _reduce(stats, k)
        if tally.n_valid == 0:
            raise RasterError(seg.ALL_NODATA, parameter="nodata")
        colors = seg.class_colors(info, tally, min(job.model.rgb_idx) >= 0)
        po.close()
        classraster.write_palette_to_file(po.path, info.class_names, colors)
        if opts.min_segment_px > 0:
            hooks.say(f"Sieve: merging regions smaller than {opts.min_segment_px} px (GDAL SieveFilter, "
                      "4-connected)")
            sieve_in_place(po.path, opts.min_segment_px, hooks.progress)
            counts, areas = class_stats(po.path, k)
    return seg.SegmentResult(path=output_path, info=info, counts=counts, areas_m2=areas,
                             valid_pixels=int(counts.sum()), class_names=list(info.class_names), colors=colors,
                             bands=list(job.bands), scale_min=list(job.smin), scale_max=list(job.smax),
                             execution_provider="", window=job.window, seconds=0.0)
