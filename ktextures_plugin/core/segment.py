"""The main job without QGIS: stream a k-textures ONNX model over a raster and write the class raster.

Pipeline (models/README.md for the model contract, docs/method.md §7 for tiling, nodata, outputs):
a reader thread reads tile windows with GDAL (``raster.read_window``) while the main thread scales them,
runs onnxruntime and writes each tile's core into a partial GeoTIFF; memory grows with the tile, not the
raster. The colour table, category names and (optionally) sieve are applied to the partial file, which is
then renamed to the destination, so no half-written output is ever left behind (cancel or error delete it).
"""
from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from dataclasses import dataclass, field
import dataclasses
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal

from . import classraster, geo, outputs, raster, tiling
from .modelinfo import INPUT_NAME, OUTPUT_CLASS, OUTPUT_TEXTURES, ModelInfo, check_classes, read_model_info
from .raster import RasterError
from .runtime import open_session

gdal.UseExceptions()

Progress = Callable[[float, str], None]


class Canceled(Exception):
    """The run was canceled through ``is_canceled``; no output was left behind."""


#: Words that identify a channel in a band description (tokens split on non-alphanumerics).
_CHANNEL_WORDS = {
    "red": [{"red"}, {"r"}],
    "green": [{"green"}, {"g"}],
    "blue": [{"blue"}, {"b"}],
    "nir": [{"nir"}, {"near", "infrared"}, {"nearinfrared"}, {"nir08"}],
}
_CHANNEL_GCI = {"red": gdal.GCI_RedBand, "green": gdal.GCI_GreenBand, "blue": gdal.GCI_BlueBand}
#: Sentinel-2 band names, used only when the raster names its bands like Sentinel-2 (B8/B08 present).
_S2_NAMES = {"blue": {"b2", "b02"}, "green": {"b3", "b03"}, "red": {"b4", "b04"}, "nir": {"b8", "b08"}}


def match_bands(ds: gdal.Dataset, channel_names: Sequence[str]) -> List[int]:
    """Default band mapping: the raster band whose description or colour interpretation names each channel.

    Matching, per channel: a description token set containing one of the channel's words (``"B04 red"``
    and ``"Red"`` match red, ``"red edge"`` does not), else the GDAL colour interpretation (RedBand, ...),
    else Sentinel-2 band names (B2/B02 ... B8/B08) when the raster has a band named B8 or B08.

    Returns:
        1-based band numbers in the model's channel order.

    Raises:
        RasterError: a channel matches no band or several bands; the message asks for an explicit mapping.
    """
    descs = [(ds.GetRasterBand(b).GetDescription() or "").strip().lower() for b in range(1, ds.RasterCount + 1)]
    desc_toks = [set(t for t in re.split(r"[^a-z0-9]+", d) if t) for d in descs]
    s2 = any(t & {"b8", "b08"} for t in desc_toks)
    out = []
    for ch in channel_names:
        hits = [i + 1 for i, t in enumerate(desc_toks)
                if "edge" not in t and any(w <= t for w in _CHANNEL_WORDS.get(ch, [{ch}]))]
        if not hits and ch in _CHANNEL_GCI:
            hits = [b for b in range(1, ds.RasterCount + 1)
                    if ds.GetRasterBand(b).GetColorInterpretation() == _CHANNEL_GCI[ch]]
        if not hits and s2 and ch in _S2_NAMES:
            hits = [i + 1 for i, t in enumerate(desc_toks) if t & _S2_NAMES[ch]]
        if len(hits) != 1:
            found = ", ".join(f"{i + 1}: '{d or '-'}'" for i, d in enumerate(descs))
            why = "no band" if not hits else f"bands {hits}"
            raise RasterError(
                f"Cannot tell which band is '{ch}': {why} match by description or colour interpretation "
                f"(bands {found}). Set BANDS to the band numbers for {', '.join(channel_names)} in this order, "
                f"e.g. '3,2,1,4' for a blue,green,red,nir file.")
        out.append(hits[0])
    if len(set(out)) != len(out):
        raise RasterError(f"The automatic band mapping gave the same band twice ({out}); set BANDS explicitly.")
    return out


def select_bands(ds: gdal.Dataset, info: ModelInfo, bands=None) -> List[int]:
    """The 1-based input bands feeding the model's channels: ``bands`` parsed and checked against the raster
    (``raster.parse_bands``), or, when empty, matched by band description (:func:`match_bands`).

    Raises:
        RasterError: fewer bands than the model's channels; bad, duplicate or out-of-range bands; a channel
            matched by no band or by several.
    """
    c = info.num_channels
    if ds.RasterCount < c:
        raise RasterError(f"The raster has {ds.RasterCount} band(s) but the model needs {c} "
                          f"({', '.join(info.channel_names)}). Choose a raster with these bands.")
    if bands in (None, "", []):
        return match_bands(ds, info.channel_names)
    return raster.parse_bands(bands, ds.RasterCount, needed=info.num_channels)


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
        warnings: what the user should know about this run (e.g. :func:`range_warnings`).
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
    window: Tuple[int, int, int, int]
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


class ClassCounter:
    """Pixel counts and areas per class of class-raster blocks, accumulated block by block.

    Args:
        k: number of classes; block values are 0 (nodata) and 1..k.
        geotransform, wkt: the class raster's grid (areas: :func:`geo.row_pixel_areas_m2`, m²).
    """

    def __init__(self, k: int, geotransform, wkt: str) -> None:
        self.k, self.gt, self.wkt = int(k), geotransform, wkt
        self.counts = np.zeros(self.k + 1, np.int64)
        self.areas = np.zeros(self.k + 1, np.float64)

    def add(self, block: np.ndarray, yoff: int) -> None:
        """Count one (H,W) integer block whose first row is raster row ``yoff``."""
        row_area = geo.row_pixel_areas_m2(self.gt, self.wkt, yoff, block.shape[0])
        c = np.bincount(block.ravel(), minlength=self.k + 1)[:self.k + 1]
        self.counts += c
        if np.all(row_area == row_area[0]):  # projected CRS: every pixel has the same area
            self.areas += c * row_area[0]
        else:                                 # geographic CRS: the pixel area changes with the row
            per_row = np.stack([np.bincount(r, minlength=self.k + 1)[:self.k + 1] for r in block])  # (H, k+1)
            self.areas += row_area @ per_row

    def result(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(counts, areas_m2)`` of classes 1..k: int64 (k,), float64 (k,)."""
        return self.counts[1:].copy(), self.areas[1:].copy()


def class_stats(path: str, k: int, window_rows: int = 512) -> Tuple[np.ndarray, np.ndarray]:
    """``(counts, areas_m2)`` per class 1..k of a class raster, read row block by row block."""
    ds = gdal.Open(path)
    try:
        band = ds.GetRasterBand(1)
        counter = ClassCounter(k, ds.GetGeoTransform(), ds.GetProjection())
        for y in range(0, ds.RasterYSize, window_rows):
            counter.add(band.ReadAsArray(0, y, ds.RasterXSize, min(window_rows, ds.RasterYSize - y)), y)
        return counter.result()
    finally:
        ds = None


def sieve_in_place(path: str, min_segment_px: int, progress: Optional[Progress] = None,
                   is_canceled: Optional[Callable[[], bool]] = None, eight_connected: bool = False) -> None:
    """GDAL sieve (``gdal.SieveFilter``) of the class raster in place: regions smaller than
    ``min_segment_px`` pixels take the class of their largest neighbour; nodata (0) is masked out.

    Raises:
        Canceled: when ``is_canceled()`` turns True during the sieve.
    """
    ds = gdal.Open(path, gdal.GA_Update)
    try:
        band = ds.GetRasterBand(1)

        def cb(frac, _msg, _data):
            if progress:
                progress(frac, "sieve")
            return 0 if (is_canceled and is_canceled()) else 1

        try:
            gdal.SieveFilter(band, band.GetMaskBand(), band, int(min_segment_px), 8 if eight_connected else 4,
                             callback=cb)
        except RuntimeError:  # GDAL's "User terminated" when the callback returned 0
            if is_canceled and is_canceled():
                raise Canceled() from None
            raise
        if is_canceled and is_canceled():
            raise Canceled()
    finally:
        ds = None


def _resolve_scaling(info: ModelInfo, ds, bands, scaling: str, window, extra_nodata):
    if scaling == "model":
        if info.scale_min is None:
            raise RasterError(f"The model '{info.path}' stores no scaling: choose SCALING = stretch.")
        return list(info.scale_min), list(info.scale_max)
    if scaling == "stretch":
        return raster.percentile_scale(ds, bands, window, extra_nodata=extra_nodata)
    raise ValueError(f"scaling must be 'model' or 'stretch', got {scaling!r}")


def segment_raster(input_path: str, model_path: str, output_path: str, *, bands=None,
                   scaling: str = "model", extra_nodata: Optional[float] = None,
                   window: Optional[Tuple[int, int, int, int]] = None, tile_size: int = 512,
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
        bands: 1-based input bands feeding the model channels in the model's order (str "3,2,1,4" or
            list); ``None`` = match the model's channel names against band descriptions (:func:`match_bands`).
        scaling: ``"model"`` (per-band min/max stored in the model) or ``"stretch"`` (this raster's 2-98 %
            percentiles from a decimated read).
        extra_nodata: a raw value treated as nodata beside the GDAL mask band and NaN/Inf.
        window: ``(xoff, yoff, xsize, ysize)`` pixels to segment (default: the whole raster); the output
            covers exactly this window of the input grid.
        tile_size: side of a core tile in pixels; tiles overlap by ``2 * halo_px`` of the model.
        min_segment_px: GDAL sieve threshold in pixels (0 = off).
        simulation_path: optional Float32 GeoTIFF for the simulated image (models with ``textures``).
        progress: ``progress(fraction 0..1, stage)``; stages "segment", "sieve".
        is_canceled: polled between tiles; True stops and removes the partial outputs.
        log: receives one-line messages (execution provider, bands, scaling).
        session: an open onnxruntime session on ``model_path`` (reused across runs in batch mode).
        warn: receives warnings as they arise (default: ``log`` with a "Warning: " prefix); they are also
            in :attr:`SegmentResult.warnings`.
        palette: "true colour" (the model's own colours if any, else the mean true colour of each class,
            at least ``classraster.MIN_DELTA_E`` CIEDE2000 apart) or "qualitative" (Tableau 10).
        class_names: k names in class order replacing the model's (``classraster.check_class_names``).

    Returns:
        :class:`SegmentResult`.

    Raises:
        ModelError: model missing, corrupt or without k-textures metadata.
        RasterError: too few bands, bad band list, every pixel nodata.
        OutputError: the destination cannot be written; ``outputs.OutputPathError`` (before any work) when an
            output is an input, both outputs are one file, or the format cannot hold it (:mod:`.outputs`).
        Canceled: canceled; nothing is left behind.
        ImportError: onnxruntime missing (the message says how to install it).
    """
    t0 = time.perf_counter()
    outputs.check_outputs({"output": (output_path, outputs.CLASS_RASTER),
                           "simulation": (simulation_path, outputs.FLOAT_RASTER)},
                          {"input": input_path, "model": model_path})
    with raster.gdal_cache_limit(GDAL_CACHE_BYTES):
        return _segment(input_path, model_path, output_path, bands, scaling, extra_nodata, window, tile_size,
                        min_segment_px, simulation_path, threads, progress, is_canceled, log, session, t0,
                        warn, palette=palette, class_names=class_names)


#: GDAL block cache during a run, bytes (:func:`raster.gdal_cache_limit`).
GDAL_CACHE_BYTES = raster.GDAL_CACHE_BYTES
#: Pixels per onnxruntime call. A 1x1 network's 64-channel intermediates for a whole 512 px tile (64 MB) do
#: not fit in the CPU caches; strips of ~16k pixels do (docs/benchmarks.md, "Measurements behind constants").
INFER_CHUNK_PX = 16384
#: ... that is about this many hidden values per call; a per-pixel model whose provenance gives its
#: ``mask_width`` runs on strips of ``INFER_CHUNK_VALUES // mask_width`` pixels (65536 at width 16: fewer
#: calls, each still cache-sized).
INFER_CHUNK_VALUES = 64 * INFER_CHUNK_PX


#: ... and a context-variant model (halo 12 px, 16 feature channels) runs on strips of this many pixels: each
#: strip re-reads 2 x 12 halo rows, so 16384-px strips (about 30 rows at 512 px) spend most of their time on
#: halo rows (docs/benchmarks.md, "Measurements behind constants").
CONTEXT_CHUNK_PX = 8 * INFER_CHUNK_PX


def chunk_px_for(info: ModelInfo) -> int:
    """Pixels per onnxruntime call for this model: :data:`CONTEXT_CHUNK_PX` for the context variant,
    ``INFER_CHUNK_VALUES // mask_width`` for a per-pixel model that records its ``mask_width`` in its
    provenance (between 16384 and 262144), else :data:`INFER_CHUNK_PX`."""
    prov = info.provenance if isinstance(info.provenance, dict) else {}
    if prov.get("variant") == "context":
        return CONTEXT_CHUNK_PX
    width = prov.get("mask_width")
    if info.halo_px != 0 or not isinstance(width, int) or width < 1:
        return INFER_CHUNK_PX
    return int(min(max(INFER_CHUNK_VALUES // width, INFER_CHUNK_PX), 16 * INFER_CHUNK_PX))


#: Class mean colours (the palette) are averaged over every 4th pixel in each direction.
COLOR_STRIDE = 4


def _segment(input_path, model_path, output_path, bands, scaling, extra_nodata, window, tile_size,
             min_segment_px, simulation_path, threads, progress, is_canceled, log, session, t0, warn=None,
             palette="true colour", class_names=None):
    say = log or (lambda _m: None)
    warnings: List[str] = []
    session = session or open_session(model_path, threads=threads)
    info = read_model_info(model_path, session)
    ds = raster.open_raster(input_path)
    c = info.num_channels
    band_list = select_bands(ds, info, bands)
    full = (0, 0, ds.RasterXSize, ds.RasterYSize)
    window = tuple(int(v) for v in (window or full))
    probe = raster.sample_windows(ds, band_list, window, extra_nodata=extra_nodata)
    if probe.shape[1] == 0 and not _any_valid(ds, band_list, window, extra_nodata):
        raise RasterError("Every pixel of the input is nodata (mask band, NaN/Inf or the NODATA value): "
                          "nothing to segment. Check NODATA or choose another extent.")
    smin, smax = _resolve_scaling(info, ds, band_list, scaling, window, extra_nodata)
    if scaling == "model":
        for w in range_warnings(probe, smin, smax, info.channel_names, band_list):
            warnings.append(w)
            (warn or (lambda m: say("Warning: " + m)))(w)
    if not ds.GetProjection():
        w = ("The raster has no CRS: the areas (area_m2) are in square map units of its geotransform, not "
             "square metres. Assign the raster's CRS to get areas in m².")
        warnings.append(w)
        (warn or (lambda m: say("Warning: " + m)))(w)
    provider = session.get_providers()[0]
    say(f"Model '{info.title}': k = {info.num_classes}, channels {info.channel_names}, halo {info.halo_px} px")
    say(f"Bands {band_list} -> {info.channel_names}; scaling '{scaling}': min {smin}, max {smax}")
    say(f"onnxruntime execution provider: {provider}")

    k = info.num_classes
    rgb_idx = [info.channel_names.index(n) if n in info.channel_names else -1 for n in ("red", "green", "blue")]
    textures = None
    if simulation_path:
        if not info.has_textures:
            raise RasterError(f"The model '{info.title}' has no 'textures' output, so it cannot simulate the "
                              "image; leave the simulation output empty.")
        textures = session.run([OUTPUT_TEXTURES], {INPUT_NAME: np.zeros((1, c, 8, 8), np.float32)})[0]

    chunk_px = chunk_px_for(info)
    color_sum = np.zeros((k, 3), np.float64)
    color_n = np.zeros(k, np.int64)
    n_valid = 0
    total_tiles = tiling.count_tiles(window, tile_size)
    try:
        with contextlib.ExitStack() as outputs:  # partial files: moved into place on success, else deleted
            po = outputs.enter_context(classraster.partial_output(output_path))
            ps = outputs.enter_context(classraster.partial_output(simulation_path)) if simulation_path else None
            # no local reference to the output datasets, so that the context managers can close them
            out_ds = po.create_on_grid(ds, window, 1, classraster.class_datatype(k), classraster.NODATA)
            counter = ClassCounter(k, out_ds.GetGeoTransform(), out_ds.GetProjection())  # classes as written
            # the class raster is written (and LZW-encoded) by a writer thread, beside inference; it is joined
            # before the outputs are closed (the ExitStack unwinds in reverse order)
            writer = _BandWriter(out_ds.GetRasterBand(1))
            outputs.callback(writer.abort)
            out_ds = None
            if ps:
                ps.create_on_grid(ds, window, c, gdal.GDT_Float32, float("nan"))
                for i, name in enumerate(info.channel_names, 1):
                    ps.ds.GetRasterBand(i).SetDescription(name)
            tiles = tiling.iter_tiles(window, (ds.RasterXSize, ds.RasterYSize), tile_size, info.halo_px)
            out_dtype = np.uint8 if k <= 254 else np.uint16
            lo = np.asarray(smin, np.float32).reshape(-1, 1, 1)
            span = (np.asarray(smax, np.float32) - np.asarray(smin, np.float32)).reshape(-1, 1, 1)
            # closed first on any exit: stops and joins the reader thread before the outputs are handled
            # tiles are scaled in the reader thread too (NumPy releases the GIL), beside onnxruntime's run
            reader = outputs.enter_context(contextlib.closing(_prefetch(
                ds, band_list, tiles, extra_nodata, is_canceled,
                prepare=lambda d: raster.scale_in_place(d, smin, smax))))
            for n_done, (tile, data, valid) in enumerate(reader):
                cx, cy = tile.crop
                _, _, tw, th = tile.core
                cvalid = valid[cy:cy + th, cx:cx + tw]
                labels = np.zeros((th, tw), out_dtype)
                if cvalid.any():
                    full = bool(valid.all())
                    n_valid += cvalid.size if full else int(cvalid.sum())
                    x = data  # scaled by the reader
                    if not full:
                        x[:, ~valid] = info.nodata_fill
                    cls = infer_classes(session, x, info.halo_px, chunk_px)[cy:cy + th, cx:cx + tw]
                    check_classes(cls, info)  # a model outside the contract never writes a wrong class
                    if full:  # no boolean indexing on tiles without nodata (most of them)
                        np.add(cls, 1, out=labels, casting="unsafe")
                    else:
                        labels[cvalid] = cls[cvalid] + 1
                    if min(rgb_idx) >= 0:  # class mean colours from every COLOR_STRIDE-th pixel
                        sub = (slice(None, None, COLOR_STRIDE), slice(None, None, COLOR_STRIDE))
                        sub_valid = cvalid[sub]
                        sel = cls[sub][sub_valid]
                        color_n += np.bincount(sel, minlength=k)
                        for j, ci in enumerate(rgb_idx):
                            xs = x[ci, cy:cy + th, cx:cx + tw][sub][sub_valid]
                            color_sum[:, j] += np.bincount(sel, weights=xs, minlength=k)
                    if ps is not None:
                        x0, y0 = tile.core[0], tile.core[1]
                        p = textures.shape[-1]
                        rows = (np.arange(y0, y0 + th) % p)[:, None]
                        cols = (np.arange(x0, x0 + tw) % p)[None, :]
                        s = textures[cls, :, rows, cols].transpose(2, 0, 1) * span + lo  # (C,th,tw) raw
                        s[:, ~cvalid] = np.nan
                        ps.ds.WriteArray(s.astype(np.float32), tile.out[0], tile.out[1],
                                       band_list=list(range(1, c + 1)))
                writer.write(labels, tile.out[0], tile.out[1])
                counter.add(labels, tile.out[1])
                if progress:
                    progress((n_done + 1) / total_tiles, "segment")
            if n_valid == 0:
                raise RasterError("Every pixel of the input is nodata (mask band, NaN/Inf or the NODATA "
                                  "value): nothing to segment. Check NODATA or choose another extent.")
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_rgb = color_sum / color_n[:, None]
            if not (min(rgb_idx) >= 0):
                mean_rgb = np.full((k, 3), np.nan)
            colors = ((palette != "qualitative" and info.class_colors)
                      or classraster.palette_colors(mean_rgb, palette))
            if class_names:
                info = dataclasses.replace(info, class_names=classraster.check_class_names(class_names, k))
            writer.close()
            po.close()
            classraster.write_palette_to_file(po.path, info.class_names, colors)
            if min_segment_px > 0:
                say(f"Sieve: merging regions smaller than {min_segment_px} px (GDAL SieveFilter, 4-connected)")
                sieve_in_place(po.path, min_segment_px, progress, is_canceled)
                counts, areas = class_stats(po.path, k)   # the sieve moved pixels between classes
            else:
                counts, areas = counter.result()
            empty = [i + 1 for i in range(k) if counts[i] == 0]
            if empty and min_segment_px == 0 and not warnings:  # a range warning already explains it
                w = (f"{len(empty)} of the model's {k} classes got no pixel (classes {empty}); if that holds for "
                     "every raster, the model's metadata k may be larger than the classes its graph produces.")
                warnings.append(w)
                (warn or (lambda m: say("Warning: " + m)))(w)
    finally:
        ds = None
    return SegmentResult(path=output_path, info=info, counts=counts, areas_m2=areas,
                         valid_pixels=int(counts.sum()), class_names=list(info.class_names), colors=colors,
                         bands=band_list, scale_min=smin, scale_max=smax, execution_provider=provider,
                         window=window, seconds=time.perf_counter() - t0, simulation_path=simulation_path,
                         warnings=warnings)


#: :func:`range_warnings` flags a channel when fewer than this fraction of its sampled pixels fall within the
#: model's scaling range widened by half its span on both sides ...
IN_RANGE_MIN_FRACTION = 0.5
#: ... or when its 2-98 % spread is below this fraction of the model's span (a 0-1 reflectance band against
#: a model scaled in digital numbers).
MIN_SPREAD_FRACTION = 0.01


#: ... and only with at least this many valid sampled pixels.
MIN_PROBE_PIXELS = 64


def range_warnings(probe: np.ndarray, scale_min: Sequence[float], scale_max: Sequence[float],
                   channel_names: Sequence[str], bands: Sequence[int]) -> List[str]:
    """A warning when the raster's values do not match the range the model was trained on.

    A model applies its stored scaling (raw value -> [0, 1]); on a raster in other units (reflectance 0-1
    instead of Sentinel-2 digital numbers, another sensor, another processing level) nearly every pixel
    saturates or collapses to one value and lands in one class. A channel is flagged when fewer than
    :data:`IN_RANGE_MIN_FRACTION` of the sampled pixels fall in ``[min - span/2, max + span/2]``, or its
    2-98 % spread is below :data:`MIN_SPREAD_FRACTION` of the span.

    Args:
        probe: float32 (C, n) valid pixel values in the model's channel order (``raster.sample_windows``).
        scale_min, scale_max: the model's per-channel scaling (raw units).
        channel_names, bands: for the message.

    Returns:
        ``[]`` when the raster fits the model, else one message naming the channels and the fix.
    """
    if probe.shape[-1] < MIN_PROBE_PIXELS:  # too few pixels to tell a spread (a 1 x 1 raster)
        return []
    flagged = []
    for i, (lo, hi) in enumerate(zip(scale_min, scale_max)):
        span = float(hi) - float(lo)
        v = probe[i]
        inside = float(np.mean((v >= lo - span / 2) & (v <= hi + span / 2)))
        p2, p98 = (float(q) for q in np.percentile(v, [2, 98]))
        if inside < IN_RANGE_MIN_FRACTION or (p98 - p2) < MIN_SPREAD_FRACTION * span:
            flagged.append(f"'{channel_names[i]}' (band {bands[i]}): model {lo:g} .. {hi:g}, "
                           f"raster 2-98 % {p2:.4g} .. {p98:.4g}")
    if not flagged:
        return []
    return ["The raster's values do not match the range the model was trained on, so most pixels will likely "
            "fall in one class: " + "; ".join(flagged) + ". If the raster is in other units (e.g. reflectance "
            "0-1 instead of digital numbers), set scaling to 'stretch' or fit a model on this raster."]


def infer_classes(session, x: np.ndarray, halo_px: int, chunk_px: int = INFER_CHUNK_PX) -> np.ndarray:
    """Run the model's ``class`` output on one scaled tile, in row strips of about ``chunk_px`` pixels.

    Each strip is read with ``halo_px`` extra rows on both sides (clipped to the tile) and cropped back, so
    the result equals one call on the whole tile for any model whose receptive field radius is <= its
    ``halo_px`` (models/README.md); with ``halo_px`` 0 (a per-pixel network) the strips do not overlap.

    Args:
        session: an onnxruntime session on a k-textures model.
        x: (C,H,W) float32, scaled to the model's [0, 1] range.
        halo_px: the model's halo in pixels.
        chunk_px: target pixels per call (excluding halo rows).

    Returns:
        (H,W) integer class indices 0..k-1 as the model returns them.
    """
    c, h, w = x.shape
    rows = max(1, int(chunk_px) // max(1, w), 4 * int(halo_px))
    if rows >= h:
        return session.run([OUTPUT_CLASS], {INPUT_NAME: x[None]})[0][0, 0]
    out = None
    for r in range(0, h, rows):
        a, b = max(0, r - halo_px), min(h, r + rows + halo_px)
        part = session.run([OUTPUT_CLASS], {INPUT_NAME: np.ascontiguousarray(x[None, :, a:b])})[0][0, 0]
        if out is None:
            out = np.empty((h, w), part.dtype)
        out[r:min(h, r + rows)] = part[r - a:r - a + min(rows, h - r)]
    return out


class _BandWriter:
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
        if self._error is not None:
            raise self._error
        self._q.put((array, int(xoff), int(yoff)))

    def _join(self) -> None:
        if self._th.is_alive():
            self._q.put(None)
            self._th.join()

    def close(self) -> None:
        self._join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        self._dropping = True
        self._join()


def _any_valid(ds, bands, window, extra_nodata, rows: int = 256) -> bool:
    """Full-resolution scan for at least one valid pixel (only when the decimated probe found none)."""
    x0, y0, xs, ys = window
    for y in range(y0, y0 + ys, rows):
        _, valid = raster.read_window(ds, bands, (x0, y, xs, min(rows, y0 + ys - y)), extra_nodata)
        if valid.any():
            return True
    return False


def _prefetch(ds, bands, tiles, extra_nodata, is_canceled, depth: int = 2, prepare=None):
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

