"""Areas in square metres for projected and geographic CRSs."""
from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from osgeo import osr

from ..errors import ParameterError

osr.UseExceptions()

#: Radius of the sphere with the WGS 84 ellipsoid's area (authalic radius), metres.
AUTHALIC_RADIUS_M = 6371007.181


def srs_of(wkt: str) -> Optional[osr.SpatialReference]:
    if not wkt:
        return None
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def same_crs(wkt_a: str, wkt_b: str) -> bool:
    """Whether two WKT strings name the same CRS (``osr.SpatialReference.IsSame``); two empty ones (no CRS)
    are the same, an empty one and a CRS are not."""
    a, b = srs_of(wkt_a), srs_of(wkt_b)
    if a is None or b is None:
        return a is None and b is None
    return bool(a.IsSame(b))


def row_pixel_areas_m2(geotransform, wkt: str, yoff: int, rows: int) -> np.ndarray:
    """Area of one pixel in each of ``rows`` raster rows starting at ``yoff``, in square metres.

    Projected CRS: ``|pixel width x pixel height|`` times the linear unit in metres squared (constant).
    Geographic CRS (degrees): the area of a latitude-longitude cell on the authalic sphere,
    ``R^2 * dlon * |sin(lat2) - sin(lat1)|``, which varies with the row's latitude.
    No CRS: the plain ``|det|`` of the geotransform (map units squared).

    Returns:
        float64 ``(rows,)``.
    """
    gt = geotransform
    det = abs(gt[1] * gt[5] - gt[2] * gt[4])
    srs = srs_of(wkt)
    if srs is None:
        return np.full(rows, det)
    if srs.IsGeographic():
        to_rad = srs.GetAngularUnits()  # radians per unit
        r = np.arange(yoff, yoff + rows, dtype=np.float64)
        lat1 = (gt[3] + r * gt[5]) * to_rad
        lat2 = (gt[3] + (r + 1) * gt[5]) * to_rad
        dlon = abs(gt[1]) * to_rad
        return AUTHALIC_RADIUS_M ** 2 * dlon * np.abs(np.sin(lat2) - np.sin(lat1))
    unit = srs.GetLinearUnits() if srs.IsProjected() else 1.0
    return np.full(rows, det * unit * unit)


def area_transform(wkt: str, center_xy: Tuple[float, float]):
    """``(transform, factor)`` to turn polygon areas into square metres.

    Geographic CRS: an OGR transformation to a Lambert azimuthal equal-area projection centred on
    ``center_xy`` (lon, lat), factor 1. Projected: ``(None, linear unit^2)``. No CRS: ``(None, 1)``.
    """
    srs = srs_of(wkt)
    if srs is None:
        return None, 1.0
    if srs.IsGeographic():
        return osr.CoordinateTransformation(srs, equal_area_srs(center_xy)), 1.0
    unit = srs.GetLinearUnits() if srs.IsProjected() else 1.0
    return None, unit * unit


def equal_area_srs(center_xy: Tuple[float, float]) -> osr.SpatialReference:
    """A Lambert azimuthal equal-area CRS (metres, WGS 84 sphere parameters of PROJ) centred on
    ``center_xy`` = (lon, lat) in degrees, traditional GIS axis order."""
    laea = osr.SpatialReference()
    laea.SetLAEA(center_xy[1], center_xy[0], 0, 0)
    laea.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return laea


def window_center(geotransform, window) -> Tuple[float, float]:
    x0, y0, xs, ys = window
    gt = geotransform
    px, py = x0 + xs / 2.0, y0 + ys / 2.0
    return gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5]


def extent_to_window(geotransform, size: Tuple[int, int], xmin: float, ymin: float, xmax: float,
                     ymax: float) -> Tuple[int, int, int, int]:
    """Pixel window covering the extent (in the raster's CRS), clipped to the raster.

    The extent's four corners go through the inverse of the affine geotransform (GDAL's data model,
    ``X = gt0 + col*gt1 + row*gt2``, ``Y = gt3 + col*gt4 + row*gt5``), so a rotated or sheared raster gets the
    window of whole pixels that holds the extent (the bounding box of the corners in pixel space); for a
    north-up raster that is the extent itself.

    Raises:
        ParameterError: the extent does not overlap the raster, or the geotransform cannot be inverted.
    """
    gt = [float(v) for v in geotransform]
    det = gt[1] * gt[5] - gt[2] * gt[4]
    if det == 0:
        raise ParameterError("The raster's geotransform is degenerate (zero pixel size), so {name} cannot be "
                             "placed on it; fix the raster's georeferencing or leave {name} empty.",
                             parameter="extent")
    cols, rows = [], []
    for x, y in ((xmin, ymin), (xmin, ymax), (xmax, ymin), (xmax, ymax)):
        dx, dy = x - gt[0], y - gt[3]
        cols.append((gt[5] * dx - gt[2] * dy) / det)
        rows.append((gt[1] * dy - gt[4] * dx) / det)
    x0, y0 = max(0, int(math.floor(min(cols) + 1e-9))), max(0, int(math.floor(min(rows) + 1e-9)))
    x1 = min(size[0], int(math.ceil(max(cols) - 1e-9)))
    y1 = min(size[1], int(math.ceil(max(rows) - 1e-9)))
    if x1 <= x0 or y1 <= y0:
        raise ParameterError("{name} does not overlap the raster layer: choose an extent inside the layer.",
                             parameter="extent")
    return x0, y0, x1 - x0, y1 - y0
