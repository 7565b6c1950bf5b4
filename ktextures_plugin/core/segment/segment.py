"""Segment a raster: the pipeline that streams a k-textures ONNX model over a raster into a class raster.

The steps, each in its own module: choose the bands (:mod:`.bands`), scale them (:mod:`.scaling`), read the
tiles in a background thread (:mod:`.tileio`, on the tile grid of :mod:`..io.tiling`), classify each tile
(:func:`.inference.classify_tile`, optionally smoothed by :mod:`.smoothing`), write the classes from a writer
thread into a partial GeoTIFF (:mod:`.tileio`, :mod:`..io.classraster`), colour and name the classes, sieve
(:mod:`.sieve`) and count them (:mod:`.classstats`). This is the one engine of every front end: *how* the
windows are classified is pluggable (:mod:`.windowmap`: this process by default, a Dask cluster for
``segment --dask``), everything else happens here once.
Memory grows with the tile, not the raster. The partial file is renamed to the destination only on success, so
no half-written output is ever left behind (cancel or error delete it). Tiling, nodata and output follow
models/README.md (the model contract) and docs/method.md §7.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal

from ..errors import RasterError
from ..feedback import Feedback
from ..io import atomic, classraster, outputs, raster
from ..io.modelinfo import K_SMOOTHING_BETA, OUTPUT_SCORES, ModelInfo
from ..io.tiling import Window
from .bands import select_bands
from .classstats import class_stats
from .inference import TileModel, model_textures, read_model_info
from .scaling import range_warnings, resolve_scaling
from .sieve import sieve_in_place
from .tileio import BandWriter, any_valid
from .windowmap import LocalWindows, SegmentJob, TileStats, window_grid

gdal.UseExceptions()

#: GDAL block cache during a run, bytes (:func:`raster.gdal_cache_limit`).
GDAL_CACHE_BYTES = raster.GDAL_CACHE_BYTES

#: The message when no pixel of the processing window is valid (``RasterError`` with parameter "nodata").
ALL_NODATA = ("Every pixel of the input is nodata (mask band, NaN/Inf or {name}): nothing to segment. Check "
              "{name} or choose another part of the raster.")
NO_CRS = ("The raster has no CRS: the areas (area_m2) are in square map units of its geotransform, not square "
          "metres. Assign the raster's CRS to get areas in m².")
NO_SCORES = ("Smoothing {beta:g} was asked for, but the model '{title}' has no 'scores' output (models/README.md): "
             "segmenting without smoothing. Re-export the model with a 'scores' output, or set the smoothing to 0.")


@dataclass(frozen=True)
class SegmentOptions:
    """How to segment: built once by each front end (QGIS parameters, command-line options) and passed whole to
    :func:`segment_raster`. Adding an option means a field here, its front-end parameters and its use.

    Attributes:
        bands: 1-based input bands feeding the model channels in the model's order (str "3,2,1,4" or list);
            ``None`` = match the model's channel names against band descriptions (:func:`.bands.match_bands`).
        scaling: ``"model"`` (per-band min/max stored in the model) or ``"stretch"`` (this raster's 2-98 %
            percentiles from a decimated read).
        extra_nodata: a raw value treated as nodata beside the GDAL mask band and NaN/Inf.
        window: ``(xoff, yoff, xsize, ysize)`` pixels to segment; the output covers exactly this window of the
            input grid. ``extent``: ``(xmin, ymin, xmax, ymax)`` in the raster's CRS instead (map units; the
            pixels covering it). Neither: the whole raster.
        tile_size: side of a core tile in pixels; tiles overlap by ``2 * halo_px`` of the model (plus the
            smoothing's sweeps).
        min_segment_px: GDAL sieve threshold in pixels (0 = off).
        simulation_path: optional Float32 GeoTIFF for the simulated image (models with ``textures``).
        threads: onnxruntime intra-op threads (default: one per core).
        palette: "true colour" (the model's own colours if any, else the mean true colour of each class, at
            least ``classraster.MIN_DELTA_E`` CIEDE2000 apart) or "qualitative" (Tableau 10).
        class_names: k names in class order replacing the model's (``classraster.check_class_names``).
        smoothing: Potts weight beta of the smoothing step, in units of the model's ``scores`` per disagreeing
            8-neighbour (:mod:`.smoothing`; 0 = off); ``None`` = the model's recommendation
            (``ktextures.smoothing_beta``, models/README.md), else 0. Needs a ``scores`` output.
    """

    bands: object = None
    scaling: str = "model"
    extra_nodata: Optional[float] = None
    window: Optional[Tuple[int, int, int, int]] = None
    extent: Optional[Tuple[float, float, float, float]] = None
    tile_size: int = 512
    min_segment_px: int = 0
    simulation_path: Optional[str] = None
    threads: Optional[int] = None
    palette: str = "true colour"
    class_names: Optional[Sequence[str]] = None
    smoothing: Optional[float] = None


@dataclass(frozen=True)
class Plan:
    """What :func:`plan_run` decided before any tile is read: bands, window and scaling."""

    bands: List[int]
    window: Window
    scale_min: List[float]
    scale_max: List[float]


@dataclass
class SegmentResult:
    """What :func:`segment_raster` produced.

    Attributes:
        path: the class raster (UInt8/UInt16, 0 = nodata, 1..k).
        counts: int64 ``(k,)`` pixels per class 1..k (after the sieve).
        areas_m2: float64 ``(k,)`` square metres per class.
        valid_pixels: pixels with a class.
        class_names, colors: k names and ``"#rrggbb"`` colours written into the file.
        bands: the 1-based input bands used, in the model's channel order.
        scale_min, scale_max: the scaling applied (raw value -> 0 and 1).
        execution_provider: the onnxruntime execution provider that ran the model.
        window: the processed window ``(xoff, yoff, xsize, ysize)`` of the input.
        seconds: wall time of the whole run.
        simulation_path: the simulated image, when asked for.
        warnings: what the user should know about this run (e.g. :func:`.scaling.range_warnings`).
        smoothing: the smoothing beta applied (0 = none).
    """

    path: str
    info: ModelInfo
    counts: np.ndarray
    areas_m2: np.ndarray
    valid_pixels: int
    class_names: List[str]
    colors: List[str]
    bands: List[int]
    scale_min: List[float]
    scale_max: List[float]
    execution_provider: str
    window: Window
    seconds: float
    simulation_path: Optional[str] = None
    log: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    smoothing: float = 0.0

    def report_rows(self) -> List[dict]:
        """Per-class table: class_id (1..k), class_name, pixels, area_m2, percent (of the valid area)."""
        total = float(self.areas_m2.sum()) or 1.0
        return [{"class_id": i + 1, "class_name": self.class_names[i], "pixels": int(self.counts[i]),
                 "area_m2": float(self.areas_m2[i]), "percent": 100.0 * float(self.areas_m2[i]) / total}
                for i in range(len(self.counts))]


def segment_raster(input_path: str, model_path: str, output_path: str, options: Optional[SegmentOptions] = None,
                   feedback: Optional[Feedback] = None, *, session=None, windows=None) -> SegmentResult:
    """Segment ``input_path`` with the k-textures model ``model_path`` into ``output_path``.

    Args:
        input_path: any GDAL raster (any band count; Byte, UInt16, Int16, Float32; any CRS). Read only.
        model_path: a k-textures ONNX model (models/README.md).
        output_path: class raster destination (GeoTIFF by default; other GDAL formats by extension).
        options: how to segment (:class:`SegmentOptions`; default: its defaults).
        feedback: progress (stages "segment", "sieve"), cancel (polled between tiles), information and warnings
            (:class:`..feedback.Feedback`); the warnings are also in :attr:`SegmentResult.warnings`.
        session: an open onnxruntime session on ``model_path`` (reused across runs in batch mode).
        windows: how the windows are classified (:mod:`.windowmap`): default this process
            (:class:`.windowmap.LocalWindows`); ``cli/distributed.py`` supplies a Dask cluster's.

    Returns:
        :class:`SegmentResult`.

    Raises:
        ModelError: model missing, corrupt or without k-textures metadata.
        RasterError: too few bands, bad band list, every pixel nodata, an extent outside the raster
            (``parameter`` names the input to change).
        OutputError: the destination cannot be written; ``outputs.OutputPathError`` (before any work) when an
            output is an input, both outputs are one file, or the format cannot hold it (:mod:`..io.outputs`).
        Canceled: canceled; nothing is left behind.
        ImportError: onnxruntime missing (the message says how to install it).
    """
    t0 = time.perf_counter()
    opts, feedback = options or SegmentOptions(), feedback or Feedback()
    outputs.check_outputs({"output": (output_path, outputs.CLASS_RASTER),
                           "simulation": (opts.simulation_path, outputs.FLOAT_RASTER)},
                          {"input": input_path, "model": model_path})
    windows = windows or LocalWindows(session)
    n_warned = len(feedback.warnings)
    with raster.gdal_cache_limit(GDAL_CACHE_BYTES):
        result = _segment(input_path, model_path, output_path, _Run(opts, feedback, windows, n_warned))
    result.seconds = time.perf_counter() - t0
    return result


def processing_window(ds: gdal.Dataset, opts: SegmentOptions) -> Window:
    """The window to segment: ``opts.window``, else the pixels covering ``opts.extent`` (map units of the
    raster's CRS, :func:`..io.geo.extent_to_window`), else the whole raster.

    Raises:
        RasterError: the extent does not overlap the raster (``parameter`` "extent").
    """
    if opts.window is not None:
        return Window(*(int(v) for v in opts.window))
    if opts.extent is not None:
        try:
            return Window.from_extent(ds.GetGeoTransform(), (ds.RasterXSize, ds.RasterYSize), *opts.extent)
        except ValueError as exc:
            raise RasterError(str(exc), parameter="extent") from None
    return Window(0, 0, ds.RasterXSize, ds.RasterYSize)


def plan_run(ds: gdal.Dataset, info: ModelInfo, opts: SegmentOptions, feedback: Feedback) -> Plan:
    """Bands, window and scaling of a run, checked before any tile is read; warns when the raster's values do
    not fit the model's range (:func:`.scaling.range_warnings`).

    Raises:
        RasterError: bad band list or too few bands (parameter "bands"), every pixel nodata ("nodata"), an
            extent outside the raster ("extent").
        ModelError: ``"model"`` scaling with a model that stores none (parameter "scaling").
    """
    bands = select_bands(ds, info, opts.bands)
    window = processing_window(ds, opts)
    probe = raster.sample_windows(ds, bands, window, extra_nodata=opts.extra_nodata)
    if probe.shape[1] == 0 and not any_valid(ds, bands, window, opts.extra_nodata):
        raise RasterError(ALL_NODATA, parameter="nodata")
    smin, smax = resolve_scaling(info, ds, bands, opts.scaling, window, opts.extra_nodata)
    if opts.scaling == "model":
        for w in range_warnings(probe, smin, smax, info.channel_names, bands):
            feedback.warning(w)
    feedback.info(f"Model '{info.title}': k = {info.num_classes}, channels {info.channel_names}, "
                  f"halo {info.halo_px} px")
    feedback.info(f"Bands {bands} -> {info.channel_names}; scaling '{opts.scaling}': min {smin}, max {smax}")
    return Plan(bands=bands, window=window, scale_min=smin, scale_max=smax)


def smoothing_beta(info: ModelInfo, opts: SegmentOptions, feedback: Feedback) -> float:
    """The smoothing beta of a run: ``opts.smoothing``, else the model's ``ktextures.smoothing_beta``, else 0;
    0 (with a warning when smoothing was asked for) when the model has no ``scores`` output.

    Raises:
        RasterError: a negative smoothing (parameter "smoothing").
    """
    beta = opts.smoothing
    if beta is None:
        rec = info.raw.get(K_SMOOTHING_BETA)
        try:
            beta = float(rec) if rec is not None else 0.0
        except ValueError:
            beta = 0.0
        asked = False
    else:
        asked = True
    if not beta >= 0:
        raise RasterError(f"The smoothing must be >= 0 (0 = off), got {beta}.", parameter="smoothing")
    if beta > 0 and OUTPUT_SCORES not in info.outputs:
        if asked:
            feedback.warning(NO_SCORES.format(beta=beta, title=info.title))
        return 0.0
    if beta > 0:
        feedback.info(f"Smoothing: Potts beta {beta:g}, {TileModel.of(info, beta).sweeps} ICM sweeps on the "
                      "model's scores")
    return float(beta)


@dataclass
class _Run:
    """One run's options, feedback, window map and the warnings it started with."""

    opts: SegmentOptions
    feedback: Feedback
    windows: object
    n_warned: int = 0

    @property
    def warnings(self) -> List[str]:
        """The warnings of this run."""
        return self.feedback.warnings[self.n_warned:]


@dataclass
class Tally:
    """Run totals of the tiles' statistics (:class:`.windowmap.TileStats`), added in tile order."""

    k: int
    n_valid: int = 0
    color_n: np.ndarray = None
    color_sum: np.ndarray = None
    counts: np.ndarray = None
    areas: np.ndarray = None

    def __post_init__(self):
        self.color_n = np.zeros(self.k, np.int64) if self.color_n is None else self.color_n
        self.color_sum = np.zeros((self.k, 3), np.float64) if self.color_sum is None else self.color_sum
        self.counts = np.zeros(self.k, np.int64) if self.counts is None else self.counts
        self.areas = np.zeros(self.k, np.float64) if self.areas is None else self.areas

    def add(self, st: TileStats) -> None:
        """Add one tile's statistics."""
        self.n_valid += st.n_valid
        self.color_n += st.color_n
        self.color_sum += st.color_sum
        self.counts += st.counts
        self.areas += st.areas

    @classmethod
    def reduce(cls, k: int, stats: Dict[Tuple[int, int], TileStats]) -> "Tally":
        """The totals of per-tile statistics keyed ``(yoff, xoff)``, summed row by row whatever order they
        arrived in, so that every window map gives identical floats."""
        tally = cls(k)
        for key in sorted(stats):
            tally.add(stats[key])
        return tally


def _segment(input_path, model_path, output_path, run: _Run) -> SegmentResult:
    opts, feedback = run.opts, run.feedback
    session = run.windows.open_session(model_path, opts.threads)
    info = read_model_info(model_path, session)
    ds = raster.open_raster(input_path)
    try:
        plan = plan_run(ds, info, opts, feedback)
        if not ds.GetProjection():
            feedback.warning(NO_CRS)
        beta = smoothing_beta(info, opts, feedback)
        job = SegmentJob(input_path, model_path, tuple(plan.bands), tuple(plan.scale_min), tuple(plan.scale_max),
                         opts.extra_nodata, Window(*plan.window), int(opts.tile_size), TileModel.of(info, beta),
                         opts.threads, textures=_textures(session, info, opts))
        provider = run.windows.start(job, feedback)
        # partial files: moved into place on success, else deleted; the simulation goes with a failed raster
        with atomic.all_or_nothing(), contextlib.ExitStack() as stack:
            po = stack.enter_context(classraster.partial_output(output_path))
            ps = stack.enter_context(classraster.partial_output(opts.simulation_path)) \
                if job.textures is not None else None
            job = _create_outputs(job, ds, po, ps)
            tally = _write_windows(run, job, stack, po, ps)
            info, colors = _name_and_colour(run, job, tally)
            po.close()
            classraster.write_palette_to_file(po.path, info.class_names, colors)
            counts, areas = _sieve(run, job, po.path, tally)
    finally:
        ds = None
    return SegmentResult(path=output_path, info=info, counts=counts, areas_m2=areas,
                         valid_pixels=int(counts.sum()), class_names=list(info.class_names), colors=colors,
                         bands=plan.bands, scale_min=plan.scale_min, scale_max=plan.scale_max,
                         execution_provider=provider, window=plan.window, seconds=0.0,
                         simulation_path=opts.simulation_path, warnings=list(run.warnings), smoothing=beta)


def _textures(session, info: ModelInfo, opts: SegmentOptions) -> Optional[np.ndarray]:
    """The model's textures ``(k, C, p, p)`` when a simulated image is asked for, else ``None``.

    Raises:
        RasterError: the model has no ``textures`` output (parameter "simulation").
    """
    if not opts.simulation_path:
        return None
    if not info.has_textures:
        raise RasterError(f"The model '{info.title}' has no 'textures' output, so it cannot simulate the "
                          "image; leave the simulation output empty.", parameter="simulation")
    return model_textures(session, info)


def _create_outputs(job: SegmentJob, ds, po, ps) -> SegmentJob:
    """Create the partial class raster (and simulation) on the window's grid; the job with the output's grid."""
    info = job.model.info
    # no local reference to the output datasets, so that the context managers can close them
    out_ds = po.create_on_grid(ds, job.window, 1, classraster.class_datatype(job.k), classraster.NODATA)
    job = dataclasses.replace(job, gt=tuple(out_ds.GetGeoTransform()), wkt=out_ds.GetProjection())
    out_ds = None
    if ps:
        ps.create_on_grid(ds, job.window, info.num_channels, gdal.GDT_Float32, float("nan"))
        for i, name in enumerate(info.channel_names, 1):
            ps.ds.GetRasterBand(i).SetDescription(name)
    return job


def _write_windows(run: _Run, job: SegmentJob, stack: contextlib.ExitStack, po, ps) -> Tally:
    """Classify every window through the run's window map, write its classes (and simulation) as it arrives,
    and reduce the per-tile statistics in tile order."""
    # the class raster is written (and LZW-encoded) by a writer thread, beside inference; it is joined
    # before the outputs are closed (the ExitStack unwinds in reverse order)
    writer = BandWriter(po.ds.GetRasterBand(1))
    stack.callback(writer.abort)
    wins = window_grid(job.window, job.tile_size, run.windows.window_tiles)
    # closed first on any exit: stops the map (reader thread joined, Dask tasks cancelled) before the outputs
    results = stack.enter_context(contextlib.closing(run.windows.classify(job, wins, run.feedback)))
    stats: Dict[Tuple[int, int], TileStats] = {}
    x0, y0 = job.window.xoff, job.window.yoff
    for n_done, wc in enumerate(results, 1):
        writer.write(wc.labels, wc.window.xoff - x0, wc.window.yoff - y0)
        if ps is not None and wc.simulation is not None:
            ps.ds.WriteArray(wc.simulation, wc.window.xoff - x0, wc.window.yoff - y0,
                             band_list=list(range(1, job.model.info.num_channels + 1)))
        stats.update(wc.stats)
        run.feedback.progress(n_done / len(wins) * (1.0 - sieve_share(run.opts)), "segment")
        run.feedback.check_canceled()
    writer.close()
    return Tally.reduce(job.k, stats)


def class_colors(info: ModelInfo, tally: Tally, has_rgb: bool, palette: str = "true colour") -> List[str]:
    """The k class colours: the model's own (unless ``palette`` is "qualitative"), else the palette of the
    classes' mean true colour (``classraster.palette_colors``; Tableau 10 when the model has no RGB channels)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rgb = tally.color_sum / tally.color_n[:, None]
    if not has_rgb:
        mean_rgb = np.full((info.num_classes, 3), np.nan)
    return (palette != "qualitative" and info.class_colors) or classraster.palette_colors(mean_rgb, palette)


def _name_and_colour(run: _Run, job: SegmentJob, tally: Tally) -> Tuple[ModelInfo, List[str]]:
    """``(info with the class names asked for, colours)`` after every tile; refuses an all-nodata run."""
    if tally.n_valid == 0:
        raise RasterError(ALL_NODATA, parameter="nodata")
    info = job.model.info
    colors = class_colors(info, tally, min(job.model.rgb_idx) >= 0, run.opts.palette)
    if run.opts.class_names:
        info = dataclasses.replace(info, class_names=classraster.check_class_names(run.opts.class_names,
                                                                                   info.num_classes))
    return info, colors


#: share of the run's progress the sieve reports in (the tiles report in the rest), when it runs
SIEVE_SHARE = 0.1


def sieve_share(opts: SegmentOptions) -> float:
    """:data:`SIEVE_SHARE` when ``opts`` sieve (``min_segment_px`` > 0), else 0: progress only rises."""
    return SIEVE_SHARE if opts.min_segment_px > 0 else 0.0


def _sieve(run: _Run, job: SegmentJob, path: str, tally: Tally) -> Tuple[np.ndarray, np.ndarray]:
    """Sieve the written class raster when asked; ``(counts, areas)`` per class; warns about empty classes."""
    k, min_px = job.k, run.opts.min_segment_px
    if min_px > 0:
        run.feedback.info(f"Sieve: merging regions smaller than {min_px} px (GDAL SieveFilter, 4-connected)")
        sieve_in_place(path, min_px, run.feedback.share(1.0 - sieve_share(run.opts), 1.0))
        counts, areas = class_stats(path, k)   # the sieve moved pixels between classes
    else:
        counts, areas = tally.counts.copy(), tally.areas.copy()
    empty = [i + 1 for i in range(k) if counts[i] == 0]
    if empty and min_px == 0 and not run.warnings:  # a range warning already explains it
        run.feedback.warning(f"{len(empty)} of the model's {k} classes got no pixel (classes {empty}); if that "
                             "holds for every raster, the model's metadata k may be larger than the classes its "
                             "graph produces.")
    return counts, areas
