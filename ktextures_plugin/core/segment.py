"""Segment a raster: the pipeline that streams a k-textures ONNX model over a raster into a class raster.

The steps, each in its own module: choose the bands (:mod:`.bands`), scale them (:mod:`.scaling`), read the
tiles in a background thread (:mod:`.tileio`, on the tile grid of :mod:`.tiling`), classify each tile
(:func:`.inference.classify_tile`), write the classes from a writer thread into a partial GeoTIFF (:mod:`.tileio`,
:mod:`.classraster`), colour and name the classes, sieve (:mod:`.sieve`) and count them (:mod:`.classstats`).
Memory grows with the tile, not the raster. The partial file is renamed to the destination only on success, so
no half-written output is ever left behind (cancel or error delete it). Tiling, nodata and output follow
models/README.md (the model contract) and docs/method.md §7.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal

from . import atomic, classraster, geo, outputs, raster, tiling
from .bands import select_bands
from .classstats import ClassCounter, class_stats
from .errors import Progress, RasterError
from .inference import TileModel, classify_tile, model_textures, open_session, read_model_info
from .modelinfo import ModelInfo
from .scaling import range_warnings, resolve_scaling
from .sieve import sieve_in_place
from .tileio import BandWriter, any_valid, prefetch
from .tiling import Window

gdal.UseExceptions()

#: GDAL block cache during a run, bytes (:func:`raster.gdal_cache_limit`).
GDAL_CACHE_BYTES = raster.GDAL_CACHE_BYTES

#: The message when no pixel of the processing window is valid (``RasterError`` with parameter "nodata").
ALL_NODATA = ("Every pixel of the input is nodata (mask band, NaN/Inf or {name}): nothing to segment. Check "
              "{name} or choose another part of the raster.")
NO_CRS = ("The raster has no CRS: the areas (area_m2) are in square map units of its geotransform, not square "
          "metres. Assign the raster's CRS to get areas in m².")


@dataclass(frozen=True)
class SegmentOptions:
    """How to segment (every field is the keyword of the same name of :func:`segment_raster`).

    Attributes:
        bands: 1-based input bands feeding the model channels in the model's order (str "3,2,1,4" or list);
            ``None`` = match the model's channel names against band descriptions (:func:`.bands.match_bands`).
        scaling: ``"model"`` (per-band min/max stored in the model) or ``"stretch"`` (this raster's 2-98 %
            percentiles from a decimated read).
        extra_nodata: a raw value treated as nodata beside the GDAL mask band and NaN/Inf.
        window: ``(xoff, yoff, xsize, ysize)`` pixels to segment; the output covers exactly this window of the
            input grid. ``extent``: ``(xmin, ymin, xmax, ymax)`` in the raster's CRS instead (map units; the
            pixels covering it). Neither: the whole raster.
        tile_size: side of a core tile in pixels; tiles overlap by ``2 * halo_px`` of the model.
        min_segment_px: GDAL sieve threshold in pixels (0 = off).
        simulation_path: optional Float32 GeoTIFF for the simulated image (models with ``textures``).
        threads: onnxruntime intra-op threads (default: one per core).
        palette: "true colour" (the model's own colours if any, else the mean true colour of each class, at
            least ``classraster.MIN_DELTA_E`` CIEDE2000 apart) or "qualitative" (Tableau 10).
        class_names: k names in class order replacing the model's (``classraster.check_class_names``).
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


@dataclass
class Hooks:
    """The caller's callbacks: progress, cancel, log and warnings (collected in :attr:`warnings` too)."""

    progress: Optional[Progress] = None
    is_canceled: Optional[Callable[[], bool]] = None
    log: Optional[Callable[[str], None]] = None
    warn_cb: Optional[Callable[[str], None]] = None
    warnings: List[str] = field(default_factory=list)

    def say(self, message: str) -> None:
        """One line to the log, if any."""
        if self.log:
            self.log(message)

    def warn(self, message: str) -> None:
        """A warning: kept in :attr:`warnings` and handed to the warning callback (default: the log)."""
        self.warnings.append(message)
        if self.warn_cb:
            self.warn_cb(message)
        else:
            self.say("Warning: " + message)


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

    def report_rows(self) -> List[dict]:
        """Per-class table: class_id (1..k), class_name, pixels, area_m2, percent (of the valid area)."""
        total = float(self.areas_m2.sum()) or 1.0
        return [{"class_id": i + 1, "class_name": self.class_names[i], "pixels": int(self.counts[i]),
                 "area_m2": float(self.areas_m2[i]), "percent": 100.0 * float(self.areas_m2[i]) / total}
                for i in range(len(self.counts))]


def segment_raster(input_path: str, model_path: str, output_path: str, *, bands=None,
                   scaling: str = "model", extra_nodata: Optional[float] = None,
                   window: Optional[Tuple[int, int, int, int]] = None,
                   extent: Optional[Tuple[float, float, float, float]] = None, tile_size: int = 512,
                   min_segment_px: int = 0, simulation_path: Optional[str] = None,
                   threads: Optional[int] = None, progress: Optional[Progress] = None,
                   is_canceled: Optional[Callable[[], bool]] = None,
                   log: Optional[Callable[[str], None]] = None, session=None,
                   warn: Optional[Callable[[str], None]] = None, palette: str = "true colour",
                   class_names: Optional[Sequence[str]] = None) -> SegmentResult:
    """Segment ``input_path`` with the k-textures model ``model_path`` into ``output_path``.

    Args:
        input_path: any GDAL raster (any band count; Byte, UInt16, Int16, Float32; any CRS). Read only.
        model_path: a k-textures ONNX model (models/README.md).
        output_path: class raster destination (GeoTIFF by default; other GDAL formats by extension).
        bands, scaling, extra_nodata, window, extent, tile_size, min_segment_px, simulation_path, threads,
            palette, class_names: how to segment, as the fields of :class:`SegmentOptions`.
        progress: ``progress(fraction 0..1, stage)``; stages "segment", "sieve".
        is_canceled: polled between tiles; True stops and removes the partial outputs.
        log: receives one-line messages (execution provider, bands, scaling).
        session: an open onnxruntime session on ``model_path`` (reused across runs in batch mode).
        warn: receives warnings as they arise (default: ``log`` with a "Warning: " prefix); they are also
            in :attr:`SegmentResult.warnings`.

    Returns:
        :class:`SegmentResult`.

    Raises:
        ModelError: model missing, corrupt or without k-textures metadata.
        RasterError: too few bands, bad band list, every pixel nodata, an extent outside the raster
            (``parameter`` names the input to change).
        OutputError: the destination cannot be written; ``outputs.OutputPathError`` (before any work) when an
            output is an input, both outputs are one file, or the format cannot hold it (:mod:`.outputs`).
        Canceled: canceled; nothing is left behind.
        ImportError: onnxruntime missing (the message says how to install it).
    """
    t0 = time.perf_counter()
    outputs.check_outputs({"output": (output_path, outputs.CLASS_RASTER),
                           "simulation": (simulation_path, outputs.FLOAT_RASTER)},
                          {"input": input_path, "model": model_path})
    opts = SegmentOptions(bands=bands, scaling=scaling, extra_nodata=extra_nodata, window=window, extent=extent,
                          tile_size=tile_size, min_segment_px=min_segment_px, simulation_path=simulation_path,
                          threads=threads, palette=palette, class_names=class_names)
    hooks = Hooks(progress=progress, is_canceled=is_canceled, log=log, warn_cb=warn)
    with raster.gdal_cache_limit(GDAL_CACHE_BYTES):
        result = _segment(input_path, model_path, output_path, opts, hooks, session)
    result.seconds = time.perf_counter() - t0
    return result


def processing_window(ds: gdal.Dataset, opts: SegmentOptions) -> Window:
    """The window to segment: ``opts.window``, else the pixels covering ``opts.extent`` (map units of the
    raster's CRS, :func:`.geo.extent_to_window`), else the whole raster.

    Raises:
        RasterError: the extent does not overlap the raster (``parameter`` "extent").
    """
    if opts.window is not None:
        return Window(*(int(v) for v in opts.window))
    if opts.extent is not None:
        try:
            return Window(*geo.extent_to_window(ds.GetGeoTransform(), (ds.RasterXSize, ds.RasterYSize),
                                                *opts.extent))
        except ValueError as exc:
            raise RasterError(str(exc), parameter="extent") from None
    return Window(0, 0, ds.RasterXSize, ds.RasterYSize)


def plan_run(ds: gdal.Dataset, info: ModelInfo, opts: SegmentOptions, hooks: Hooks) -> Plan:
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
            hooks.warn(w)
    hooks.say(f"Model '{info.title}': k = {info.num_classes}, channels {info.channel_names}, "
              f"halo {info.halo_px} px")
    hooks.say(f"Bands {bands} -> {info.channel_names}; scaling '{opts.scaling}': min {smin}, max {smax}")
    return Plan(bands=bands, window=window, scale_min=smin, scale_max=smax)


@dataclass
class _Run:
    """One run's state shared by its steps."""

    ds: gdal.Dataset
    session: object
    model: TileModel
    plan: Plan
    opts: SegmentOptions
    hooks: Hooks
    textures: Optional[np.ndarray] = None


@dataclass
class Tally:
    """Run totals of the tiles' statistics (:class:`.inference.TileClasses`), added in tile order."""

    k: int
    n_valid: int = 0
    color_n: np.ndarray = None
    color_sum: np.ndarray = None

    def __post_init__(self):
        self.color_n = np.zeros(self.k, np.int64) if self.color_n is None else self.color_n
        self.color_sum = np.zeros((self.k, 3), np.float64) if self.color_sum is None else self.color_sum

    def add(self, n_valid: int, color_n: np.ndarray, color_sum: np.ndarray) -> None:
        """Add one tile's valid pixels and colour sums."""
        self.n_valid += n_valid
        self.color_n += color_n
        self.color_sum += color_sum


def _segment(input_path, model_path, output_path, opts: SegmentOptions, hooks: Hooks, session) -> SegmentResult:
    session = session or open_session(model_path, threads=opts.threads)
    info = read_model_info(model_path, session)
    ds = raster.open_raster(input_path)
    try:
        plan = plan_run(ds, info, opts, hooks)
        if not ds.GetProjection():
            hooks.warn(NO_CRS)
        provider = session.get_providers()[0]
        hooks.say(f"onnxruntime execution provider: {provider}")
        run = _Run(ds, session, TileModel.of(info), plan, opts, hooks, _textures(session, info, opts))
        # partial files: moved into place on success, else deleted; the simulation goes with a failed raster
        with atomic.all_or_nothing(), contextlib.ExitStack() as stack:
            po = stack.enter_context(classraster.partial_output(output_path))
            ps = stack.enter_context(classraster.partial_output(opts.simulation_path)) if run.textures is not None \
                else None
            tally, counter = _write_tiles(run, stack, po, ps)
            info, colors = _name_and_colour(run, tally)
            po.close()
            classraster.write_palette_to_file(po.path, info.class_names, colors)
            counts, areas = _sieve(run, po.path, counter)
    finally:
        ds = None
    return SegmentResult(path=output_path, info=info, counts=counts, areas_m2=areas,
                         valid_pixels=int(counts.sum()), class_names=list(info.class_names), colors=colors,
                         bands=plan.bands, scale_min=plan.scale_min, scale_max=plan.scale_max,
                         execution_provider=provider, window=plan.window, seconds=0.0,
                         simulation_path=opts.simulation_path, warnings=hooks.warnings)


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


def _write_tiles(run: _Run, stack: contextlib.ExitStack, po, ps) -> Tuple[Tally, ClassCounter]:
    """Classify every tile and write its classes (and simulation); returns the run's tally and class counts."""
    ds, info, plan = run.ds, run.model.info, run.plan
    k = info.num_classes
    # no local reference to the output datasets, so that the context managers can close them
    out_ds = po.create_on_grid(ds, plan.window, 1, classraster.class_datatype(k), classraster.NODATA)
    counter = ClassCounter(k, out_ds.GetGeoTransform(), out_ds.GetProjection())  # classes as written
    # the class raster is written (and LZW-encoded) by a writer thread, beside inference; it is joined
    # before the outputs are closed (the ExitStack unwinds in reverse order)
    writer = BandWriter(out_ds.GetRasterBand(1))
    stack.callback(writer.abort)
    out_ds = None
    if ps:
        ps.create_on_grid(ds, plan.window, info.num_channels, gdal.GDT_Float32, float("nan"))
        for i, name in enumerate(info.channel_names, 1):
            ps.ds.GetRasterBand(i).SetDescription(name)
    tiles = tiling.iter_tiles(plan.window, (ds.RasterXSize, ds.RasterYSize), run.opts.tile_size, info.halo_px)
    total = tiling.count_tiles(plan.window, run.opts.tile_size)
    # closed first on any exit: stops and joins the reader thread before the outputs are handled;
    # tiles are scaled in the reader thread too (NumPy releases the GIL), beside onnxruntime's run
    reader = stack.enter_context(contextlib.closing(prefetch(
        ds, plan.bands, tiles, run.opts.extra_nodata, run.hooks.is_canceled,
        prepare=lambda d: raster.scale_in_place(d, plan.scale_min, plan.scale_max))))
    tally = Tally(k)
    for n_done, (tile, data, valid) in enumerate(reader):
        tc = classify_tile(run.session, run.model, tile, data, valid)
        tally.add(tc.n_valid, tc.color_n, tc.color_sum)
        if ps is not None and tc.cls is not None:
            _write_simulation(ps, run, tile, tc)
        writer.write(tc.labels, tile.out[0], tile.out[1])
        counter.add(tc.labels, tile.out[1])
        if run.hooks.progress:
            run.hooks.progress((n_done + 1) / total, "segment")
    writer.close()
    return tally, counter


def _write_simulation(ps, run: _Run, tile: tiling.Tile, tc) -> None:
    """The simulated image of one tile's core: each pixel's class texture at its position, in raw units."""
    textures, plan = run.textures, run.plan
    lo = np.asarray(plan.scale_min, np.float32).reshape(-1, 1, 1)
    span = (np.asarray(plan.scale_max, np.float32) - lo.ravel()).reshape(-1, 1, 1)
    x0, y0, tw, th = tile.core
    p = textures.shape[-1]
    rows = (np.arange(y0, y0 + th) % p)[:, None]
    cols = (np.arange(x0, x0 + tw) % p)[None, :]
    s = textures[tc.cls, :, rows, cols].transpose(2, 0, 1) * span + lo  # (C,th,tw) raw
    s[:, ~tc.valid] = np.nan
    ps.ds.WriteArray(s.astype(np.float32), tile.out[0], tile.out[1],
                     band_list=list(range(1, run.model.info.num_channels + 1)))


def class_colors(info: ModelInfo, tally: Tally, has_rgb: bool, palette: str = "true colour") -> List[str]:
    """The k class colours: the model's own (unless ``palette`` is "qualitative"), else the palette of the
    classes' mean true colour (``classraster.palette_colors``; Tableau 10 when the model has no RGB channels)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_rgb = tally.color_sum / tally.color_n[:, None]
    if not has_rgb:
        mean_rgb = np.full((info.num_classes, 3), np.nan)
    return (palette != "qualitative" and info.class_colors) or classraster.palette_colors(mean_rgb, palette)


def _name_and_colour(run: _Run, tally: Tally) -> Tuple[ModelInfo, List[str]]:
    """``(info with the class names asked for, colours)`` after every tile; refuses an all-nodata run."""
    if tally.n_valid == 0:
        raise RasterError(ALL_NODATA, parameter="nodata")
    info = run.model.info
    colors = class_colors(info, tally, min(run.model.rgb_idx) >= 0, run.opts.palette)
    if run.opts.class_names:
        info = dataclasses.replace(info, class_names=classraster.check_class_names(run.opts.class_names,
                                                                                   info.num_classes))
    return info, colors


def _sieve(run: _Run, path: str, counter: ClassCounter) -> Tuple[np.ndarray, np.ndarray]:
    """Sieve the written class raster when asked; ``(counts, areas)`` per class; warns about empty classes."""
    k, min_px = run.model.info.num_classes, run.opts.min_segment_px
    if min_px > 0:
        run.hooks.say(f"Sieve: merging regions smaller than {min_px} px (GDAL SieveFilter, 4-connected)")
        sieve_in_place(path, min_px, run.hooks.progress, run.hooks.is_canceled)
        counts, areas = class_stats(path, k)   # the sieve moved pixels between classes
    else:
        counts, areas = counter.result()
    empty = [i + 1 for i in range(k) if counts[i] == 0]
    if empty and min_px == 0 and not run.hooks.warnings:  # a range warning already explains it
        run.hooks.warn(f"{len(empty)} of the model's {k} classes got no pixel (classes {empty}); if that holds "
                       "for every raster, the model's metadata k may be larger than the classes its graph "
                       "produces.")
    return counts, areas
