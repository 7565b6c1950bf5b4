"""The k-class hard label raster: creation on the input's grid, colour table, category names.

Encoding (the output contract in README.md, "Algorithms"): Byte (UInt16 when k > 254), 0 = nodata, classes 1..k.
The GDAL colour table and category names are written into the file, so QGIS opens it paletted with class
names whatever ran the algorithm (toolbox, batch, modeler, ``qgis_process``).
"""
from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal
from osgeo_utils.auxiliary.util import GetOutputDriversFor

from .. import colour
from ..errors import OutputError, ParameterError
from . import atomic
from .tiling import Window

gdal.UseExceptions()

NODATA = 0
MD_CLASS_NAMES = "KTEXTURES_CLASS_NAMES"
MD_CLASS_COLORS = "KTEXTURES_CLASS_COLORS"
#: Class rasters: LZW, faster to write than DEFLATE on class data and about as small (docs/benchmarks.md,
#: "Measurements behind constants"); every GIS reads it.
GTIFF_OPTIONS = ["TILED=YES", "COMPRESS=LZW", "BIGTIFF=IF_SAFER"]
#: Float rasters (the simulated image): DEFLATE with the floating-point predictor.
GTIFF_FLOAT_OPTIONS = ["TILED=YES", "COMPRESS=DEFLATE", "PREDICTOR=3", "BIGTIFF=IF_SAFER"]

#: A qualitative palette for models without true-colour channels (Tableau 10).
QUALITATIVE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
               "#9c755f", "#bab0ac"]


def class_datatype(k: int) -> int:
    """GDAL data type for classes 1..k plus nodata 0: Byte up to k = 254, else UInt16."""
    return gdal.GDT_Byte if k <= 254 else gdal.GDT_UInt16


def driver_for_path(path: str) -> str:
    """GDAL raster driver short name for the file extension of ``path``: GTiff for none, ``.tif`` and ``.tiff``,
    else the first GDAL raster driver that creates files of that extension (GDAL's
    ``osgeo_utils.auxiliary.util.GetOutputDriversFor``, the choice of ``gdal_translate`` and ``gdal_calc``).

    Raises:
        OutputError: no GDAL raster driver writes that extension.
    """
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext in ("", "tif", "tiff"):
        return "GTiff"
    drivers = GetOutputDriversFor(path, is_raster=True)
    if drivers:
        return drivers[0]
    raise OutputError(f"No GDAL raster format writes '.{ext}' files ({path}); use .tif")


def create_on_grid(path: str, ref: gdal.Dataset, window: Tuple[int, int, int, int], bands: int,
                   datatype: int, nodata: Optional[float]) -> gdal.Dataset:
    """Create a tiled, compressed GeoTIFF on the grid of ``window`` of ``ref`` (same CRS, pixel size): LZW for
    integer data types (:data:`GTIFF_OPTIONS`), DEFLATE with predictor 3 for Float32/Float64.

    Args:
        window: ``(xoff, yoff, xsize, ysize)`` in pixels of ``ref``; the output covers exactly that window.

    Raises:
        OutputError: GDAL cannot create the file.
    """
    xoff, yoff, xs, ys = window
    try:
        options = GTIFF_FLOAT_OPTIONS if datatype in (gdal.GDT_Float32, gdal.GDT_Float64) else GTIFF_OPTIONS
        ds = gdal.GetDriverByName("GTiff").Create(path, xs, ys, bands, datatype, options=options)
    except RuntimeError as exc:
        raise OutputError(f"Cannot create '{path}': {exc}") from None
    ds.SetGeoTransform(Window(xoff, yoff, xs, ys).transform(ref.GetGeoTransform()))
    ds.SetProjection(ref.GetProjection())
    if nodata is not None:
        for b in range(1, bands + 1):
            ds.GetRasterBand(b).SetNoDataValue(nodata)
    return ds


#: the hidden partial path beside an output (:func:`atomic.partial_path`), named here for the raster writers
partial_path = atomic.partial_path


def _is_gtiff_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in ("", ".tif", ".tiff")


def finish(tmp_path: str, final_path: str) -> None:
    """Put a closed partial GeoTIFF (with its sidecars) at ``final_path``: renamed when ``final_path`` is a
    GeoTIFF name (``.tif``, ``.tiff``, any case), else converted (``CreateCopy`` to the extension's format)
    into a second partial file that is then renamed. The final file appears only complete."""
    if _is_gtiff_name(final_path):
        atomic.move_fileset(tmp_path, final_path)
        return
    drv = gdal.GetDriverByName(driver_for_path(final_path))
    converted = atomic.Partial(final_path, atomic.partial_path(final_path))
    src = gdal.Open(tmp_path)
    try:
        converted.ds = drv.CreateCopy(converted.path, src)
        converted.close()
        atomic.move_fileset(converted.path, final_path)
    except BaseException:
        converted.abandon()
        atomic.remove_fileset(converted.path)
        raise
    finally:
        src = None
        atomic.remove_fileset(tmp_path)


class PartialOutput(atomic.Partial):
    """A raster output being written to a hidden partial GeoTIFF (:func:`partial_output`). Put the open
    dataset in ``ds`` (or create it with :meth:`create_on_grid`); it is closed before the file is moved or
    deleted (a dataset closed after deletion would leave a PAM ``.aux.xml`` behind). :meth:`close` may be
    called inside the block to reopen the file (e.g. to write its palette)."""

    def create_on_grid(self, ref: gdal.Dataset, window: Tuple[int, int, int, int], bands: int, datatype: int,
                       nodata: Optional[float]) -> gdal.Dataset:
        """:func:`create_on_grid` on the partial path; the dataset is kept in ``ds`` and returned."""
        self.ds = create_on_grid(self.path, ref, window, bands, datatype, nodata)
        return self.ds


def partial_output(final_path: str):
    """Context manager for one raster output (:func:`atomic.atomic_output`): yields a :class:`PartialOutput`
    whose ``path`` is a hidden GeoTIFF beside ``final_path`` (same extension for a GeoTIFF name, ``.tif``
    otherwise); on a normal exit its dataset is closed and the file put in place (:func:`finish`); on any
    exception (cancel included) it is closed and deleted and the exception propagates.

    Raises:
        OutputError: the destination folder is missing or not writable; a write error (full disk).
    """
    ext = os.path.splitext(final_path)[1] if _is_gtiff_name(final_path) and os.path.splitext(final_path)[1] \
        else ".tif"
    return atomic.atomic_output(final_path, ext=ext, deliver=finish, partial_type=PartialOutput)


def hex_to_rgb(color: str) -> Tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def rgb_to_hex(rgb: Sequence[float]) -> str:
    return "#%02x%02x%02x" % tuple(int(round(min(255, max(0, v)))) for v in rgb)


#: Default sieve threshold of ktextures:segment (pixels): the measured knee of polygon count against the
#: share of pixels the sieve changes, docs/benchmarks.md "Default minimum segment size" (bench/sieve_default.py).
DEFAULT_MIN_SEGMENT_PX = 8
#: Smallest CIEDE2000 colour difference between two class colours (core/colour.py). 15 is clearly
#: distinguishable side by side (about 7 just-noticeable differences); Tableau 10 keeps 18.1.
MIN_DELTA_E = 15.0
#: The PALETTE choices: the mean true colour of each class, or the qualitative palette.
PALETTES = ["true colour", "qualitative"]


def true_colors(mean_rgb: np.ndarray, min_delta_e: float = MIN_DELTA_E) -> List[str]:
    """Class colours from the mean true colour of each class's pixels, kept distinguishable.

    Args:
        mean_rgb: float ``(k, 3)``, mean scaled red, green, blue of each class in [0, 1] (NaN for an
            empty class: it gets the qualitative colour). Shown as ``0.12 + 0.85 * rgb ** (1/1.6)``: the
            2-98 % stretched reflectance of dark classes (forest, water) is lifted for display.
        min_delta_e: smallest CIEDE2000 difference between two colours; a class too close to an earlier one
            gets its lightness and chroma moved, hue kept (:func:`colour.separate`).

    Returns:
        k ``"#rrggbb"`` strings.
    """
    out: List[np.ndarray] = []
    for i, rgb in enumerate(np.asarray(mean_rgb, float)):
        if not np.all(np.isfinite(rgb)):
            base = np.array(hex_to_rgb(QUALITATIVE[i % len(QUALITATIVE)]), float)
        else:
            base = 255.0 * (0.12 + 0.85 * np.clip(rgb, 0, 1) ** (1 / 1.6))  # lifted blacks, for display
        out.append(colour.separate(base, out, min_delta_e + 0.5))  # + margin for the 8-bit rounding
    return [rgb_to_hex(c) for c in out]


def palette_colors(mean_rgb: np.ndarray, palette: str = "true colour",
                   min_delta_e: float = MIN_DELTA_E) -> List[str]:
    """k class colours for ``palette`` (one of :data:`PALETTES`); ``mean_rgb`` as in :func:`true_colors`
    (all NaN when the model has no true-colour channels). Qualitative: Tableau 10, cycled and separated
    beyond 10 classes."""
    if palette == "qualitative" or not np.any(np.isfinite(mean_rgb)):
        out: List[np.ndarray] = []
        for i in range(len(mean_rgb)):
            base = np.array(hex_to_rgb(QUALITATIVE[i % len(QUALITATIVE)]), float)
            out.append(colour.separate(base, out, min_delta_e + 0.5))  # + margin for the 8-bit rounding
        return [rgb_to_hex(c) for c in out]
    if palette != "true colour":
        raise ParameterError(f"unknown palette {palette!r}; choose one of {PALETTES}")
    return true_colors(mean_rgb, min_delta_e)


def check_class_names(names, k: int) -> List[str]:
    """``names`` as k stripped strings: a comma-separated string or a sequence, in class order (1..k).

    Raises:
        ValueError: not exactly k names, or an empty or repeated name; the message lists what was given.
    """
    if isinstance(names, str):
        names = names.split(",")
    out = [str(n).strip() for n in names]
    if len(out) != k or not all(out) or len(set(out)) != k:
        raise ParameterError(f"Class names: give {k} different, non-empty names separated by commas, in class "
                         f"order 1..{k}; got {len(out)}: {', '.join(out) or '(none)'}.")
    return out


def write_palette_to_file(path: str, class_names: Sequence[str], colors: Sequence[str]) -> None:
    """:func:`write_palette` on band 1 of the closed raster ``path``, opened in update mode.

    Class rasters get their palette only after every pixel is written and the dataset is closed: a
    GeoTIFF refuses to change its colour table tags once GDAL has flushed blocks to disk.
    """
    out = atomic.Partial(path, path, gdal.Open(path, gdal.GA_Update))
    try:
        write_palette(out.ds.GetRasterBand(1), class_names, colors)
    except BaseException:
        out.abandon()
        raise
    out.close()  # raises OutputError on a write error GDAL reports on close (a full disk)


def write_palette(band: gdal.Band, class_names: Sequence[str], colors: Sequence[str]) -> None:
    """Write a GDAL colour table (0 transparent, class i+1 = ``colors[i]``) and category names.

    Category entry 0 is "nodata"; entries 1..k are ``class_names``.
    """
    ct = gdal.ColorTable()
    ct.SetColorEntry(0, (0, 0, 0, 0))
    for i, c in enumerate(colors, start=1):
        ct.SetColorEntry(i, (*hex_to_rgb(c), 255))
    band.SetRasterColorTable(ct)
    if band.GetColorInterpretation() != gdal.GCI_PaletteIndex:
        band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    band.SetCategoryNames(["nodata"] + [str(n) for n in class_names])
    band.SetNoDataValue(NODATA)
    # GDAL 3.6's Python GetCategoryNames() returns None for GeoTIFF, so the names also go into metadata.
    band.SetMetadataItem(MD_CLASS_NAMES, json.dumps([str(n) for n in class_names]))
    band.SetMetadataItem(MD_CLASS_COLORS, json.dumps(list(colors)))


def read_palette(path: str) -> Tuple[List[str], List[str]]:
    """``(class_names, colors)`` of classes 1..k from a class raster written by this module.

    Falls back to "class i" names and the qualitative palette when the file has none.
    """
    ds = gdal.Open(path)
    try:
        band = ds.GetRasterBand(1)
        md_names, md_colors = band.GetMetadataItem(MD_CLASS_NAMES), band.GetMetadataItem(MD_CLASS_COLORS)
        if md_names and md_colors:
            return json.loads(md_names), json.loads(md_colors)
        names = band.GetCategoryNames() or []
        ct = band.GetRasterColorTable()
        k = max(len(names) - 1, (ct.GetCount() - 1) if ct is not None else 0)
        if k <= 0:
            k = int(band.ComputeRasterMinMax(False)[1])
        names = [names[i] if i < len(names) and names[i] else f"class {i}" for i in range(1, k + 1)]
        colors = [rgb_to_hex(ct.GetColorEntry(i)[:3]) if ct is not None and i < ct.GetCount()
                  else QUALITATIVE[(i - 1) % len(QUALITATIVE)] for i in range(1, k + 1)]
        return names, colors
    finally:
        ds = None
