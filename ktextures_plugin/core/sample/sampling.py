"""Stratified random samples and image chips from a class raster, without QGIS.

A class raster (``classraster``: Byte/UInt16, 0 = nodata, classes 1..k; any GDAL integer raster works)
is read window by window; memory grows with the window and the number of samples asked for, never with
the raster.

Method (all distances in pixels, measured between pixel centres):

1. Pass 1 counts the pixels and the area (square metres, ``geo.row_pixel_areas_m2``) of every class in
   row blocks; the counts give the per-class sample numbers when they are spread by area.
2. Pass 2 reads core windows of ``window_px`` x ``window_px`` pixels with a halo of
   ``halo = max(min_edge_distance_px + 1, distance_cap_px)`` pixels (``tiling.iter_tiles``). For each class
   present in a core, ``scipy.ndimage.distance_transform_edt`` of the mask "this class" (cropped to the
   class's bounding box plus the halo) gives every pixel's Euclidean distance to the nearest pixel of
   another class or nodata. The value is exact whenever it is below the halo and is reported clipped to
   the halo (``edge_distance_px`` = ``min(distance, halo)``).
   **Raster border:** the pixels just outside the raster count as "edge" (another class), so a sample is
   also at least ``min_edge_distance_px`` from the raster border: what lies beyond is unknown.
3. Candidates are the pixels with distance >= ``min_edge_distance_px`` (and, when chips are wanted,
   whose whole chip lies inside the raster). Every candidate gets a random key from a numpy Generator
   seeded by ``(seed, class, window)``; each class keeps only the ``pool`` candidates with the smallest
   keys (a bounded "heap" compacted with ``np.argpartition``), i.e. a uniform random subset.
4. Spacing: the candidates of all classes are visited in random-key order, class after class in turn
   (round robin, so no class is crowded out), and a candidate is accepted when no accepted sample of any
   class lies closer than ``min_spacing_px`` (a grid hash with ``min_spacing_px`` cells). Visiting the
   smallest-key prefix of a random order gives the same result as the whole order as long as the prefix
   is not used up; when a class runs short while it had more candidates than its pool, its pool grows and
   pass 2 runs again, so the outcome does not depend on the pool size.

The same raster, parameters and seed give the same samples; the window size is part of the parameters.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal
from scipy import ndimage

from ..errors import Canceled, OutputError, SamplingError
from ..feedback import Feedback
from ..io import classraster, geo, raster, tiling
from ..segment.classstats import ClassCounter

gdal.UseExceptions()

#: GDAL data types accepted as class rasters.
INTEGER_TYPES = {gdal.GDT_Byte, gdal.GDT_UInt16, gdal.GDT_Int16, gdal.GDT_UInt32, gdal.GDT_Int32}
#: Edge distances are computed exactly up to at least this many pixels (the halo of a window).
DISTANCE_CAP_PX = 32
#: A class's candidate pool never grows beyond this many pixels (about 20 bytes each).
MAX_POOL = 4_000_000


@dataclass
class Sample:
    """One sample point.

    Attributes:
        sample_id: 1-based, in output order (class by class, in the order drawn).
        class_id: the class raster's value at the point (>= 1).
        class_name: the class's name from the raster (``classraster.read_palette``).
        row, col: pixel of the class raster (0-based).
        x, y: the pixel centre in the raster's CRS (map units, metres for a projected CRS).
        edge_distance_px: Euclidean distance in pixels to the nearest pixel of another class, nodata or
            outside the raster, clipped to the halo (``SampleResult.distance_cap_px``).
    """

    sample_id: int
    class_id: int
    class_name: str
    row: int
    col: int
    x: float
    y: float
    edge_distance_px: float


@dataclass
class ClassSummary:
    """Per-class outcome. ``pixels``/``area_m2``: the whole class; ``interior_px``: candidate pixels
    (>= the edge distance, chip inside the raster); ``requested``/``found``: sample counts; ``reason``:
    why fewer were found ("" when all were)."""

    class_id: int
    class_name: str
    pixels: int
    area_m2: float
    interior_px: int
    requested: int
    found: int
    reason: str = ""

    @property
    def skipped(self) -> int:
        return max(0, self.requested - self.found)

    def as_row(self) -> dict:
        return {"class_id": self.class_id, "class_name": self.class_name, "pixels": self.pixels,
                "area_m2": self.area_m2, "interior_px": self.interior_px, "requested": self.requested,
                "found": self.found, "skipped": self.skipped, "reason": self.reason}


@dataclass
class SampleResult:
    """What :func:`draw_samples` produced: ``samples`` (list of :class:`Sample`), ``summary`` (one
    :class:`ClassSummary` per class considered, by class id), the geotransform and WKT of the class
    raster, its size ``(width, height)`` in pixels, and ``distance_cap_px`` (the halo)."""

    samples: List[Sample]
    summary: List[ClassSummary]
    geotransform: Tuple[float, ...]
    wkt: str
    size: Tuple[int, int]
    distance_cap_px: int
    log: List[str] = field(default_factory=list)


@dataclass
class Chip:
    """One chip pair: ``window`` ``(xoff, yoff, size, size)`` in pixels of the class raster; the image chip
    (``image_path``, "" when no image was given) and the class-mask chip (``mask_path``), both GeoTIFF on
    the class raster's grid; ``footprint``: the chip's four corners in the raster CRS (map units),
    clockwise from the upper left."""

    sample: Sample
    window: Tuple[int, int, int, int]
    image_path: str
    mask_path: str
    footprint: List[Tuple[float, float]]


def parse_classes(spec) -> Optional[List[int]]:
    """Class ids from ``"1,3,5"``, ``"1 3 5"``, ``3``, ``[1, 3]`` or ``None``/``""`` (= all classes).

    Returns:
        Sorted unique ids (>= 1), or None for all classes.

    Raises:
        SamplingError: an entry that is not a whole number >= 1.
    """
    if spec is None:
        return None
    if isinstance(spec, (int, np.integer)):
        parts = [spec]
    elif isinstance(spec, float):
        parts = [spec]
    elif isinstance(spec, str):
        parts = [p for p in spec.replace(";", ",").replace(" ", ",").split(",") if p.strip()]
    else:
        parts = list(spec)
    if not parts:
        return None
    out = []
    for p in parts:
        try:
            f = float(str(p).strip())
        except ValueError:
            raise SamplingError(f"{{name}} must list class ids such as '1,3,5', got {spec!r}",
                                parameter="classes") from None
        if f != int(f) or f < 1:
            raise SamplingError(f"Class ids are whole numbers >= 1 (0 is nodata), got {p!r} in {spec!r}",
                                parameter="classes")
        out.append(int(f))
    return sorted(set(out))


def allocate(areas: Dict[int, float], total: int, min_per_class: int) -> Dict[int, int]:
    """Spread ``total`` samples over classes in proportion to their area, at least ``min_per_class`` each.

    Classes whose proportional share is below the minimum get the minimum, the rest is shared by the
    others in proportion to area (repeated until stable), and shares are rounded by largest remainder,
    so the counts add up to ``total`` unless ``min_per_class`` times the number of classes exceeds it.
    Classes with no area get 0.

    Args:
        areas: class id -> area (any unit, e.g. m^2 or pixels).
    """
    present = {c: float(a) for c, a in areas.items() if a > 0}
    out = {c: 0 for c in areas}
    if not present or total <= 0:
        return out
    fixed: Dict[int, int] = {}
    while True:
        free = {c: a for c, a in present.items() if c not in fixed}
        rest = total - sum(fixed.values())
        asum = sum(free.values())
        share = {c: rest * a / asum for c, a in free.items()} if free and asum > 0 else {}
        low = [c for c, s in share.items() if s < min_per_class]
        if not low:
            break
        for c in low:
            fixed[c] = min_per_class
    rest = max(0, total - sum(fixed.values()))
    floors = {c: int(math.floor(s)) for c, s in share.items()}
    left = rest - sum(floors.values())
    for c in sorted(share, key=lambda c: (-(share[c] - floors[c]), c))[:max(0, left)]:
        floors[c] += 1
    out.update(fixed)
    out.update(floors)
    return out


def check_class_raster(ds: gdal.Dataset, path: str = "") -> None:
    """Raise :class:`SamplingError` unless band 1 of ``ds`` has an integer data type."""
    dt = ds.GetRasterBand(1).DataType
    if dt not in INTEGER_TYPES:
        raise SamplingError(
            f"'{path or ds.GetDescription()}' is not an integer class raster (band 1 is "
            f"{gdal.GetDataTypeName(dt)}). Use a class raster written by k-textures segment "
            "(Byte/UInt16, 0 = nodata, classes 1..k).")


def image_offset(class_ds: gdal.Dataset, image_ds: gdal.Dataset, tol: float = 1e-6) -> Tuple[int, int]:
    """Pixel offset ``(dx, dy)`` of the class raster's upper-left pixel inside ``image_ds``.

    The image must be on the same grid: same CRS, same pixel size and rotation, an origin a whole number
    of pixels away, and it must cover the class raster (a class raster made from a window of the image
    is accepted).

    Raises:
        SamplingError: another CRS, another pixel size/rotation, a shifted grid, or too small an image.
    """
    cw, iw = class_ds.GetProjection(), image_ds.GetProjection()
    cs, is_ = geo.srs_of(cw), geo.srs_of(iw)
    if not geo.same_crs(cw, iw):

        def name(s):
            return s.GetName() if s is not None else "none"

        raise SamplingError(f"{{name}} is in another CRS ({name(is_)}) than the class raster ({name(cs)}). "
                            "Use the image the class raster was made from, or warp it onto the class grid.",
                            parameter="image")
    cg, ig = class_ds.GetGeoTransform(), image_ds.GetGeoTransform()
    px = max(abs(cg[1]), abs(cg[5]), 1e-12)
    if any(abs(a - b) > tol * px for a, b in zip((cg[1], cg[2], cg[4], cg[5]), (ig[1], ig[2], ig[4], ig[5]))):
        raise SamplingError(f"{{name}} has another pixel size or rotation ({ig[1]:g} x {ig[5]:g}) than the class "
                            f"raster ({cg[1]:g} x {cg[5]:g}). Use the image the class raster was made from.",
                            parameter="image")
    inv = gdal.InvGeoTransform(ig)
    fx, fy = gdal.ApplyGeoTransform(inv, cg[0], cg[3])
    dx, dy = int(round(fx)), int(round(fy))
    if abs(fx - dx) > 1e-3 or abs(fy - dy) > 1e-3:
        raise SamplingError(f"{{name}} is on a shifted grid (the class raster's origin falls at pixel "
                            f"({fx:.3f}, {fy:.3f}) of the image, not on a pixel corner). Use the image the "
                            "class raster was made from, or warp it onto the class grid.", parameter="image")
    if dx < 0 or dy < 0 or dx + class_ds.RasterXSize > image_ds.RasterXSize or \
            dy + class_ds.RasterYSize > image_ds.RasterYSize:
        raise SamplingError(f"{{name}} ({image_ds.RasterXSize} x {image_ds.RasterYSize} px) does not cover the "
                            f"class raster ({class_ds.RasterXSize} x {class_ds.RasterYSize} px at offset "
                            f"{dx}, {dy}). Use the image the class raster was made from.", parameter="image")
    return dx, dy


def _class_names(path: str, ids: Iterable[int]) -> Dict[int, str]:
    try:
        names = classraster.read_palette(path)[0]
    except Exception:  # noqa: BLE001  (a raster without palette: default names)
        names = []
    return {c: (names[c - 1] if 0 < c <= len(names) else f"class {c}") for c in ids}


def _read_classes(band: gdal.Band, window, nodata) -> np.ndarray:
    """int64 ``(h, w)`` class ids of ``window``; nodata, 0 and negative values become 0."""
    a = band.ReadAsArray(*window).astype(np.int64, copy=False)
    if nodata is not None and float(nodata).is_integer():
        a = np.where(a == int(nodata), 0, a)
    return np.where(a < 0, 0, a)


def class_areas(ds: gdal.Dataset, rows: int = 256, is_canceled=None) -> Tuple[Dict[int, int], Dict[int, float]]:
    """``(pixels, area_m2)`` per class id >= 1 of band 1, read in blocks of ``rows`` rows
    (:class:`..segment.classstats.ClassCounter`)."""
    band = ds.GetRasterBand(1)
    nod = band.GetNoDataValue()
    counter = ClassCounter(None, ds.GetGeoTransform(), ds.GetProjection())
    for y in range(0, ds.RasterYSize, rows):
        if is_canceled and is_canceled():
            raise Canceled()
        h = min(rows, ds.RasterYSize - y)
        counter.add(_read_classes(band, (0, y, ds.RasterXSize, h), nod), y)
    return counter.by_class()


class _Pool:
    """The ``limit`` candidates with the smallest random keys seen so far (bounded memory)."""

    def __init__(self, limit: int):
        self.limit = int(limit)
        self.parts: List[Tuple[np.ndarray, ...]] = []
        self.size = 0
        self.seen = 0

    def add(self, keys, rows, cols, dist):
        self.seen += len(keys)
        self.parts.append((keys, rows, cols, dist))
        self.size += len(keys)
        if self.size > 2 * self.limit + 1024:
            self._compact()

    def _compact(self):
        k, r, c, d = (np.concatenate([p[i] for p in self.parts]) for i in range(4))
        if len(k) > self.limit:
            keep = np.argpartition(k, self.limit - 1)[:self.limit] if self.limit > 0 else np.zeros(0, int)
            k, r, c, d = k[keep], r[keep], c[keep], d[keep]
        self.parts = [(k, r, c, d)]
        self.size = len(k)

    def sorted(self):
        """``(keys, rows, cols, dist)`` sorted by key, at most ``limit`` long."""
        if not self.parts:
            e = np.zeros(0)
            return e, e.astype(np.int64), e.astype(np.int64), e.astype(np.float32)
        self._compact()
        k, r, c, d = self.parts[0]
        o = np.argsort(k, kind="stable")
        return k[o], r[o], c[o], d[o]

    @property
    def truncated(self) -> bool:
        return self.seen > self.limit


@dataclass(frozen=True)
class _ScanOptions:
    """How pass 2 looks for candidates (the arguments of :func:`draw_samples` of the same meaning)."""

    min_edge: int
    halo: int
    seed: int
    chip: int
    window_px: int
    border_is_edge: bool
    feedback: Feedback = field(default_factory=Feedback)


def _scan(ds, classes: Sequence[int], pools: Dict[int, _Pool], opts: _ScanOptions, span) -> Dict[int, int]:
    """Pass 2: fill ``pools`` with candidates; returns interior pixel counts per class."""
    band = ds.GetRasterBand(1)
    nod = band.GetNoDataValue()
    W, H = ds.RasterXSize, ds.RasterYSize
    want = set(classes)
    interior = {c: 0 for c in classes}
    tiles = list(tiling.iter_tiles((0, 0, W, H), (W, H), opts.window_px, opts.halo))
    for i, t in enumerate(tiles):
        opts.feedback.check_canceled()
        arr = _read_classes(band, t.read, nod)
        for c in _present(arr[t.core_in_read.slices()], want):
            found = _interior_pixels(arr, t, c, opts, (W, H))
            if found is None:
                continue
            rr, cc, d = found
            interior[c] += len(rr)
            tx, ty = t.core.xoff, t.core.yoff
            rng = np.random.default_rng([int(opts.seed), int(c), int(ty), int(tx)])
            keys = rng.random(len(rr))
            pools[c].add(keys, (rr + ty).astype(np.int64), (cc + tx).astype(np.int64), d.astype(np.float32))
        opts.feedback.progress(span[0] + (span[1] - span[0]) * (i + 1) / len(tiles), "candidates")
    return interior


def _present(core: np.ndarray, want) -> List[int]:
    """The classes of ``want`` present in ``core``, ascending."""
    if core.size and int(core.max()) < 65536:
        return [int(v) for v in np.flatnonzero(np.bincount(core.ravel())) if int(v) in want]
    return [int(v) for v in np.unique(core) if int(v) in want]


def _chip_allowed(cm: np.ndarray, t: tiling.Tile, chip: int, size) -> Optional[np.ndarray]:
    """``cm`` (the core's pixels of a class) restricted to pixels whose chip lies inside the raster, or None."""
    W, H = size
    # chip window of a sample at (r, c): rows r - chip//2 .. r - chip//2 + chip - 1, inside the raster
    lo_m = chip // 2 if chip else 0
    hi_m = (chip - chip // 2 - 1) if chip else 0
    tx, ty, tw, th = t.core
    # pixels allowed by the chip margin (absolute rows lo_m .. H-1-hi_m)
    r0, r1 = max(0, lo_m - ty), min(th, H - hi_m - ty)
    c0, c1 = max(0, lo_m - tx), min(tw, W - hi_m - tx)
    if r1 <= r0 or c1 <= c0:
        return None
    allowed = np.zeros_like(cm)
    allowed[r0:r1, c0:c1] = True
    cm &= allowed
    return cm if cm.any() else None


def _interior_pixels(arr: np.ndarray, t: tiling.Tile, c: int, opts: _ScanOptions, size):
    """``(rows, cols, distance)`` (core coordinates) of the core's pixels of class ``c`` at least
    ``opts.min_edge`` px from another class, or None when there are none."""
    cx, cy = t.crop
    cm = _chip_allowed(arr[t.core_in_read.slices()] == c, t, opts.chip, size)
    if cm is None:
        return None
    rows_any = np.flatnonzero(cm.any(axis=1))
    cols_any = np.flatnonzero(cm.any(axis=0))
    # bounding box of the class's core pixels plus the halo, in read-window coordinates
    halo, (rh, rw) = opts.halo, arr.shape
    box = (max(0, cy + rows_any[0] - halo), min(rh, cy + rows_any[-1] + 1 + halo),
           max(0, cx + cols_any[0] - halo), min(rw, cx + cols_any[-1] + 1 + halo))
    dist_sub = _edge_distance(arr, t, c, box, opts, size)
    # back to core coordinates
    oy, ox = cy - box[0], cx - box[2]
    rr, cc = np.nonzero(cm)
    d = dist_sub[rr + oy, cc + ox]
    ok = d >= opts.min_edge
    rr, cc, d = rr[ok], cc[ok], d[ok]
    return (rr, cc, d) if len(rr) else None


def _edge_distance(arr: np.ndarray, t: tiling.Tile, c: int, box, opts: _ScanOptions, size) -> np.ndarray:
    """Euclidean distance (px, capped at the halo) of each pixel of ``box`` (read-window rows ``box[0]:box[1]``,
    columns ``box[2]:box[3]``) to the nearest pixel of another class (SciPy ``distance_transform_edt``)."""
    W, H = size
    by0, by1, bx0, bx1 = box
    rx, ry = t.read.xoff, t.read.yoff
    sub = arr[by0:by1, bx0:bx1] == c
    # pad one pixel; outside the raster = another class ("edge") when border_is_edge
    pad = np.ones((sub.shape[0] + 2, sub.shape[1] + 2), bool)
    pad[1:-1, 1:-1] = sub
    if opts.border_is_edge:
        if ry + by0 == 0:
            pad[0, :] = False
        if ry + by1 == H:
            pad[-1, :] = False
        if rx + bx0 == 0:
            pad[:, 0] = False
        if rx + bx1 == W:
            pad[:, -1] = False
    if pad.all():
        return np.full(sub.shape, float(opts.halo))
    return np.minimum(ndimage.distance_transform_edt(pad)[1:-1, 1:-1], float(opts.halo))


def _select(cands: Dict[int, tuple], requested: Dict[int, int], spacing: float):
    """Round-robin greedy spacing over the sorted candidate pools.

    Returns:
        ``(accepted, exhausted)``: class -> list of candidate indexes accepted; class -> True when the
        class ran out of candidates before reaching its request.
    """
    order = [c for c in sorted(cands) if requested.get(c, 0) > 0]
    ptr = {c: 0 for c in order}
    acc: Dict[int, List[int]] = {c: [] for c in order}
    grid: Dict[Tuple[int, int], List[Tuple[int, int]]] = {}
    s2 = float(spacing) ** 2
    cell = max(float(spacing), 1.0)
    active = [c for c in order if len(cands[c][0]) > 0]
    while active:
        nxt = []
        for c in active:
            _, rows, cols, _ = cands[c]
            i = ptr[c]
            ptr[c] += 1
            r, q = int(rows[i]), int(cols[i])
            ok = True
            if spacing > 1:
                gy, gx = int(r // cell), int(q // cell)
                for yy in (gy - 1, gy, gy + 1):
                    for xx in (gx - 1, gx, gx + 1):
                        for (r2, q2) in grid.get((yy, xx), ()):
                            if (r - r2) ** 2 + (q - q2) ** 2 < s2:
                                ok = False
                                break
                        if not ok:
                            break
                    if not ok:
                        break
                if ok:
                    grid.setdefault((gy, gx), []).append((r, q))
            if ok:
                acc[c].append(i)
            if len(acc[c]) < requested[c] and ptr[c] < len(rows):
                nxt.append(c)
        active = nxt
    exhausted = {c: len(acc[c]) < requested[c] for c in order}
    return acc, exhausted


@dataclass(frozen=True)
class SampleOptions:
    """How :func:`draw_samples` samples, built once by each front end and passed whole.

    Attributes:
        points_per_class: samples per class, or the total when ``proportional``.
        proportional: spread ``points_per_class`` over the classes by area (:func:`allocate`).
        min_per_class: with ``proportional``, the fewest samples asked of a class present in the raster.
        min_edge_distance_px: a sample's Euclidean distance (pixels) to the nearest pixel of another
            class, nodata or (``border_is_edge``) outside the raster is at least this. 0 or 1 = any pixel.
        min_spacing_px: two samples (any classes) are at least this many pixels apart (0 = no limit).
        seed: seeds numpy Generators; same seed and inputs, same samples.
        classes: class ids to sample (``parse_classes`` forms); None = every class present in the raster plus
            the classes it declares by name (k-textures metadata or GDAL category names), even when empty.
        chip_size_px: when > 0, only pixels whose ``chip_size_px`` square chip (upper-left at
            ``(col - size//2, row - size//2)``) lies inside the raster are candidates.
        border_is_edge: treat outside the raster as another class (default; see module docstring).
        window_px: core window side in pixels for pass 2.
        distance_cap_px: edge distances are exact up to ``max(min_edge_distance_px + 1, distance_cap_px)``.
        pool_min, pool_factor: a class first keeps ``max(pool_factor * requested, pool_min)`` candidates;
            memory/speed tuning only, the samples do not depend on them (the pool grows when needed).
    """

    points_per_class: int = 50
    proportional: bool = False
    min_per_class: int = 0
    min_edge_distance_px: int = 3
    min_spacing_px: float = 0
    seed: int = 1
    classes: object = None
    chip_size_px: int = 0
    border_is_edge: bool = True
    window_px: int = 512
    distance_cap_px: int = DISTANCE_CAP_PX
    pool_min: int = 256
    pool_factor: int = 8


def draw_samples(class_path: str, opts: SampleOptions = SampleOptions(),
                 feedback: Optional[Feedback] = None) -> SampleResult:
    """Draw stratified random sample points from a class raster (see the module docstring for the method).

    Args:
        class_path: integer class raster (0 and the band's nodata value = nodata, classes >= 1).
        opts: the :class:`SampleOptions`.
        feedback: progress (stages "count", "candidates", "select"), cancel (polled between windows; raises
            ``errors.Canceled``) and one-line messages (``info``, also kept in ``SampleResult.log``).

    Returns:
        :class:`SampleResult`.

    Raises:
        RasterError: the raster cannot be opened.
        SamplingError: not an integer raster, chip larger than the raster, bad class list or counts.
        errors.Canceled: canceled.
    """
    o = opts
    if o.points_per_class < 0 or o.min_per_class < 0 or o.min_edge_distance_px < 0 or o.min_spacing_px < 0:
        raise SamplingError("Sample counts, edge distance and spacing must be >= 0")
    req = _Request(int(o.points_per_class), o.proportional, int(o.min_per_class), o.min_edge_distance_px,
                   o.min_spacing_px, o.classes, int(o.pool_min), int(o.pool_factor))
    halo = int(max(o.min_edge_distance_px + 1, o.distance_cap_px))
    scan = _ScanOptions(int(o.min_edge_distance_px), halo, int(o.seed), int(o.chip_size_px), int(o.window_px),
                        o.border_is_edge, feedback or Feedback())
    return _draw_samples(class_path, req, scan)


@dataclass(frozen=True)
class _Request:
    """What :func:`draw_samples` is asked for (its arguments of the same names)."""

    points_per_class: int
    proportional: bool
    min_per_class: int
    min_edge_distance_px: float
    min_spacing_px: float
    classes: object
    pool_min: int
    pool_factor: int


def _draw_samples(class_path: str, req: _Request, scan: _ScanOptions) -> SampleResult:
    msgs: List[str] = []

    def note(m):
        msgs.append(m)
        scan.feedback.info(m)

    ds = raster.open_raster(class_path)
    try:
        check_class_raster(ds, class_path)
        W, H = ds.RasterXSize, ds.RasterYSize
        _check_chip_size(scan.chip, W, H)
        pix, area = class_areas(ds, is_canceled=scan.feedback.is_canceled)
        scan.feedback.progress(0.1, "count")
        wanted = parse_classes(req.classes)
        if wanted is None:
            # the classes present, plus those the raster declares (class names) even when empty
            wanted = sorted(set(pix) | set(range(1, _declared_classes(ds) + 1)))
        if req.proportional:
            requested = allocate({c: area.get(c, 0.0) for c in wanted}, req.points_per_class, req.min_per_class)
        else:
            requested = {c: req.points_per_class for c in wanted}
        note(f"Class raster {W} x {H} px, classes {wanted}; edge distance >= {req.min_edge_distance_px} px, "
             f"spacing >= {req.min_spacing_px} px, seed {scan.seed}"
             + (f", chips {scan.chip} px inside the raster" if scan.chip else ""))
        targets = [c for c in wanted if requested.get(c, 0) > 0 and pix.get(c, 0) > 0]
        pool_size = {c: max(requested[c], min(MAX_POOL, max(req.pool_factor * requested[c], req.pool_min, 1)))
                     for c in targets}
        drawn = _draw(ds, targets, requested, pool_size, scan, float(req.min_spacing_px), note)
        gt, wkt = ds.GetGeoTransform(), ds.GetProjection()
    finally:
        ds = None
    names = _class_names(class_path, wanted)
    samples = _samples(wanted, drawn, gt, names)
    summary = [ClassSummary(c, names[c], int(pix.get(c, 0)), float(area.get(c, 0.0)), int(drawn.interior.get(c, 0)),
                            int(requested.get(c, 0)), len(drawn.accepted.get(c, [])),
                            _shortfall(c, requested.get(c, 0), pix, drawn, req, scan.chip))
               for c in wanted]
    scan.feedback.progress(1.0, "select")
    return SampleResult(samples, summary, tuple(gt), wkt, (W, H), scan.halo, msgs)


def _check_chip_size(chip_size_px: int, W: int, H: int) -> None:
    if chip_size_px and (chip_size_px > W or chip_size_px > H):
        raise SamplingError(f"{{name}} {chip_size_px} is larger than the class raster "
                            f"({W} x {H} px). Choose a chip size of at most {min(W, H)} px.", parameter="chip_size")


@dataclass
class _Drawn:
    """Passes 2 and 3: interior pixel counts, the sorted candidates and the accepted indexes per class."""

    interior: Dict[int, int]
    candidates: Dict[int, tuple]
    accepted: Dict[int, List[int]]
    pool_size: Dict[int, int]


def _draw(ds, targets, requested, pool_size, opts: _ScanOptions, spacing: float, note) -> _Drawn:
    """Scan for candidates and select with spacing; when spacing used up a class's pool, grow it and redo."""
    interior = {c: 0 for c in requested}
    passes = 0
    while True:
        passes += 1
        pools = {c: _Pool(pool_size[c]) for c in targets}
        span = (0.1, 0.9) if passes == 1 else (0.9, 0.95)
        interior.update(_scan(ds, targets, pools, opts, span))
        cands = {c: pools[c].sorted() for c in targets}
        acc, exhausted = _select(cands, requested, spacing)
        grow = [c for c in targets if exhausted.get(c) and pools[c].truncated and pool_size[c] < MAX_POOL]
        if not grow:
            return _Drawn(interior, cands, acc, pool_size)
        for c in grow:
            pool_size[c] = min(MAX_POOL, pool_size[c] * 8)
        note(f"Spacing used up the candidate pool of class(es) {grow}; drawing again with a larger pool")


def _samples(wanted, drawn: _Drawn, gt, names) -> List[Sample]:
    """The accepted candidates as :class:`Sample` (ids 1.. in class order, pixel centres in map units)."""
    samples: List[Sample] = []
    for c in wanted:
        got = drawn.accepted.get(c, [])
        if got:
            _, rows, cols, dist = drawn.candidates[c]
            for i in got:
                r, q = int(rows[i]), int(cols[i])
                x, y = gdal.ApplyGeoTransform(gt, q + 0.5, r + 0.5)
                samples.append(Sample(len(samples) + 1, c, names[c], r, q, x, y, float(dist[i])))
    return samples


def _shortfall(c: int, req: int, pix, drawn: _Drawn, request: _Request, chip: int) -> str:
    """Why class ``c`` got fewer samples than requested ("" when it got them all)."""
    got, n_int = len(drawn.accepted.get(c, [])), drawn.interior.get(c, 0)
    min_spacing_px = request.min_spacing_px
    if not (got < req or not pix.get(c)):
        return ""
    if not pix.get(c):
        return "class not present in the raster"
    if n_int < req and got == n_int:
        return (f"only {n_int} interior pixel(s) (>= {request.min_edge_distance_px} px from another class, "
                f"nodata or the raster border" + (", chip inside the raster" if chip else "") + ")")
    if drawn.pool_size.get(c, 0) >= MAX_POOL:
        return f"candidate pool limit of {MAX_POOL} pixels reached with spacing {min_spacing_px} px"
    return (f"only {got} of {n_int} interior pixel(s) are >= {min_spacing_px} px "
            "from other samples (the minimum spacing)")


def _declared_classes(ds: gdal.Dataset) -> int:
    """Number of classes the raster declares by name (k-textures metadata or GDAL category names), else 0."""
    band = ds.GetRasterBand(1)
    md = band.GetMetadataItem(classraster.MD_CLASS_NAMES)
    if md:
        try:
            return len(json.loads(md))
        except ValueError:
            pass
    names = band.GetCategoryNames() or []
    return max(0, len(names) - 1)


def chip_window(sample: Sample, chip_size_px: int) -> Tuple[int, int, int, int]:
    """``(xoff, yoff, size, size)`` of the chip of ``sample``: the sample pixel is at ``(size//2, size//2)``."""
    h = chip_size_px // 2
    return sample.col - h, sample.row - h, chip_size_px, chip_size_px


def write_chips(class_path: str, samples: Sequence[Sample], chip_size_px: int, folder: str,
                image_path: Optional[str] = None, prefix: str = "chip",
                feedback: Optional[Feedback] = None) -> List[Chip]:
    """Write an image chip and a class-mask chip (GeoTIFF, DEFLATE) for every sample.

    Files: ``<folder>/<prefix>_<sample_id:05d>_class<id>_image.tif`` (every band of ``image_path``, its data
    type, nodata and band descriptions, via ``gdal.Translate`` with ``srcWin``) and
    ``..._mask.tif`` (the class raster's values, with its colour table and class names). Both cover the
    same ``chip_size_px`` x ``chip_size_px`` window of the class raster's grid (the image at the offset given
    by :func:`image_offset`). Each file is written under a partial name and renamed when complete.

    Raises:
        SamplingError: image on another grid/CRS, chip larger than the raster, or a chip outside it.
        OutputError: the folder cannot be written.
        errors.Canceled: canceled (the finished chips stay, unless the call runs inside
            ``atomic.all_or_nothing``, as in the front ends: then they are removed).
    """

    from ..io import outputs

    feedback = feedback or Feedback()
    outputs.check_outputs({"folder": (folder, outputs.FOLDER)}, {"input": class_path, "image": image_path},
                          folders_must_exist=False)
    guard = outputs.input_guard({"input": class_path, "image": image_path})
    _refuse_other_chips(folder, prefix, samples)
    os.makedirs(folder, exist_ok=True)
    cds = raster.open_raster(class_path)
    ids = None
    try:
        check_class_raster(cds, class_path)
        W, H = cds.RasterXSize, cds.RasterYSize
        if chip_size_px < 1 or chip_size_px > W or chip_size_px > H:
            raise SamplingError(f"{{name}} {chip_size_px} must be 1..{min(W, H)} px "
                                f"(the class raster is {W} x {H} px).", parameter="chip_size")
        ids = raster.open_raster(image_path) if image_path else None
        dx, dy = image_offset(cds, ids) if ids is not None else (0, 0)
        palette = classraster.read_palette(class_path)
        out: List[Chip] = []
        for n, s in enumerate(samples):
            feedback.check_canceled()
            out.append(_write_chip(cds, ids, (dx, dy), s, chip_size_px, os.path.join(folder, prefix), palette,
                                   guard))
            feedback.progress((n + 1) / max(1, len(samples)), "chips")
        return out
    finally:
        cds = ids = None


def chip_stem(prefix: str, s: Sample) -> str:
    """``<prefix>_<sample_id:05d>_class<id>``: the chip files of sample ``s`` add ``_image.tif``/``_mask.tif``."""
    return f"{prefix}_{s.sample_id:05d}_class{s.class_id}"


def _refuse_other_chips(folder: str, prefix: str, samples: Sequence[Sample]) -> None:
    """Refuse a folder holding chips of another sample set: a training set read from the folder would mix the
    two. Chips that this run writes again (same sample id and class) are replaced, so re-running the same
    sampling into its folder works.

    Raises:
        OutputError: ``folder`` holds ``<prefix>_NNNNN_class<id>_image.tif`` / ``_mask.tif`` files of other
            samples; the message names some and the fix.
    """
    try:
        names = os.listdir(folder)
    except OSError:  # missing (made next) or unreadable (the writes will say so)
        return
    ours = {f"{chip_stem(prefix, s)}_{kind}.tif" for s in samples for kind in ("image", "mask")}
    pattern = re.compile(rf"^{re.escape(prefix)}_\d{{5}}_class\d+_(image|mask)\.tif$")
    other = sorted(n for n in names if pattern.match(n) and n not in ours)
    if other:
        raise OutputError(
            f"The chip folder '{folder}' already holds {len(other)} chip file(s) of another sample set "
            f"({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}); a training set read from it would mix "
            "the two. Choose an empty folder, or delete those chips first.")


def _write_chip(cds, ids, offset, s: Sample, chip_size_px: int, prefix_path: str, palette, guard) -> Chip:
    """The mask chip (and the image chip when ``ids`` is given) of sample ``s``, each renamed into place."""
    W, H = cds.RasterXSize, cds.RasterYSize
    win = chip_window(s, chip_size_px)
    xo, yo, cs, _ = win
    if xo < 0 or yo < 0 or xo + cs > W or yo + cs > H:
        raise SamplingError(f"The chip of sample {s.sample_id} (pixel {s.col}, {s.row}) leaves the "
                            "raster; draw samples with the same chip size.")
    base = chip_stem(prefix_path, s)
    mask_path = base + "_mask.tif"
    guard("folder", mask_path)
    guard("folder", base + "_image.tif")
    _write_mask_chip(cds, win, mask_path, palette)
    image_out = ""
    if ids is not None:
        image_out = base + "_image.tif"
        with classraster.partial_output(image_out) as po:
            po.ds = gdal.Translate(po.path, ids, format="GTiff", srcWin=[xo + offset[0], yo + offset[1], cs, cs],
                                   creationOptions=["COMPRESS=DEFLATE"])
    gt = cds.GetGeoTransform()
    corners = [gdal.ApplyGeoTransform(gt, px, py) for px, py in
               ((xo, yo), (xo + cs, yo), (xo + cs, yo + cs), (xo, yo + cs))]
    return Chip(s, win, image_out, mask_path, [tuple(c) for c in corners])


def _write_mask_chip(cds, win, mask_path: str, palette) -> None:
    """The class raster's values over ``win`` as a GeoTIFF with its colour table and class names."""
    xo, yo, cs, _ = win
    src_band = cds.GetRasterBand(1)
    gt = cds.GetGeoTransform()
    with classraster.partial_output(mask_path) as po:
        po.ds = gdal.GetDriverByName("GTiff").Create(po.path, cs, cs, 1, src_band.DataType,
                                                     options=["COMPRESS=DEFLATE"])
        mgt = list(gt)
        mgt[0], mgt[3] = gdal.ApplyGeoTransform(gt, xo, yo)
        po.ds.SetGeoTransform(mgt)
        po.ds.SetProjection(cds.GetProjection())
        mband = po.ds.GetRasterBand(1)
        mband.WriteArray(src_band.ReadAsArray(xo, yo, cs, cs))
        if src_band.DataType in (gdal.GDT_Byte, gdal.GDT_UInt16):
            classraster.write_palette(mband, *palette)
        else:
            mband.SetNoDataValue(classraster.NODATA)
        mband = None


def summary_text(result: SampleResult) -> List[str]:
    """One human-readable line per class: requested, found, skipped and why."""
    lines = []
    for s in result.summary:
        line = (f"class {s.class_id} '{s.class_name}': requested {s.requested}, found {s.found}, "
                f"skipped {s.skipped} ({s.interior_px} interior of {s.pixels} px)")
        if s.reason:
            line += f": {s.reason}"
        lines.append(line)
    return lines


__all__ = ["Sample", "ClassSummary", "SampleResult", "Chip", "SamplingError", "draw_samples", "write_chips",
           "parse_classes", "allocate", "image_offset", "check_class_raster", "chip_window", "summary_text",
           "class_areas"]
