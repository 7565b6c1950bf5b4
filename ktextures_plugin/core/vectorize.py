"""Polygons of a class raster with GDAL polygonize, and the per-class report.

The polygons come from the written (and, if asked, sieved) class raster, so raster and vector agree
pixel for pixel. Fields: ``class_id`` (the raster value 1..k), ``class_name``, ``area_m2`` (square metres,
in a geographic CRS too: polygons are measured in a Lambert azimuthal equal-area projection centred on
the raster).
"""
from __future__ import annotations

import csv
import os
from typing import Callable, Dict, Optional, Sequence

from osgeo import gdal, ogr

from . import geo
from .classraster import OutputError, partial_path, read_palette

gdal.UseExceptions()
ogr.UseExceptions()

Progress = Callable[[float, str], None]


def vector_driver(path: str) -> str:
    """OGR vector driver short name for the extension of ``path`` (GeoPackage for none or unknown)."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    known = {"gpkg": "GPKG", "shp": "ESRI Shapefile", "geojson": "GeoJSON", "json": "GeoJSON",
             "fgb": "FlatGeobuf", "sqlite": "SQLite", "gml": "GML", "kml": "KML", "csv": "CSV"}
    if ext in known:
        return known[ext]
    for i in range(ogr.GetDriverCount()):
        drv = ogr.GetDriver(i)
        md = drv.GetMetadata() or {}
        if md.get(gdal.DCAP_VECTOR) == "YES" and ext in (md.get(gdal.DMD_EXTENSIONS) or "").split():
            return drv.GetName()
    raise OutputError(f"No OGR vector format writes '.{ext}' files ({path}); use .gpkg")


def polygonize(class_raster: str, output_path: str, layer_name: Optional[str] = None,
               class_names: Optional[Sequence[str]] = None, eight_connected: bool = False,
               progress: Optional[Progress] = None, is_canceled: Optional[Callable[[], bool]] = None) -> int:
    """Polygonize ``class_raster`` (0 = nodata, no polygons there) into ``output_path``.

    Written to a hidden partial file beside the destination and renamed when complete.

    Args:
        class_raster: a class raster (UInt8/UInt16, 0 = nodata).
        output_path: vector destination; the format follows the extension (GeoPackage by default).
        class_names: names of classes 1..k (default: the raster's category names).
        progress: ``progress(fraction, "polygonize")``.
        is_canceled: polled by GDAL's progress callback; True aborts and removes the partial file.

    Returns:
        The number of polygons.

    Raises:
        OutputError: the destination cannot be written.
        segment.Canceled: canceled.
    """
    from .segment import Canceled

    drv_name = vector_driver(output_path)
    names = list(class_names) if class_names else read_palette(class_raster)[0]
    ds = gdal.Open(class_raster)
    band = ds.GetRasterBand(1)
    wkt = ds.GetProjection()
    srs = geo.srs_of(wkt)
    ext = os.path.splitext(output_path)[1] or ".gpkg"
    tmp = partial_path(output_path)[:-len(".partial.tif")] + ".partial" + ext
    drv = ogr.GetDriverByName(drv_name)
    layer_name = layer_name or os.path.splitext(os.path.basename(output_path))[0] or "polygons"
    out = None
    try:
        try:
            out = drv.CreateDataSource(tmp)
        except RuntimeError as exc:
            raise OutputError(f"Cannot create '{output_path}': {exc}") from None
        lyr = out.CreateLayer(layer_name, srs=srs, geom_type=ogr.wkbPolygon)
        lyr.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
        name_fd = ogr.FieldDefn("class_name", ogr.OFTString)
        name_fd.SetWidth(80)
        lyr.CreateField(name_fd)
        lyr.CreateField(ogr.FieldDefn("area_m2", ogr.OFTReal))

        def cb(frac, _msg, _data):
            if progress:
                progress(frac * 0.8, "polygonize")
            return 0 if (is_canceled and is_canceled()) else 1

        options = ["8CONNECTED=8"] if eight_connected else []
        gdal.Polygonize(band, band.GetMaskBand(), lyr, 0, options, callback=cb)
        if is_canceled and is_canceled():
            raise Canceled()
        ct, factor = geo.area_transform(wkt, _center_lonlat(ds))
        n = lyr.GetFeatureCount()
        lyr.StartTransaction()
        lyr.ResetReading()
        for i, feat in enumerate(lyr):
            cid = feat.GetFieldAsInteger(0)
            feat.SetField(1, names[cid - 1] if 0 < cid <= len(names) else f"class {cid}")
            g = feat.GetGeometryRef()
            if ct is not None:
                g = g.Clone()
                g.Transform(ct)
            feat.SetField(2, g.GetArea() * factor)
            lyr.SetFeature(feat)
            if progress and i % 2000 == 0:
                progress(0.8 + 0.2 * i / max(1, n), "polygonize")
        lyr.CommitTransaction()
        out = None
        if os.path.exists(output_path):
            drv.DeleteDataSource(output_path)
        os.replace(tmp, output_path)
        return n
    except BaseException:
        out = None
        if os.path.exists(tmp):
            drv.DeleteDataSource(tmp)
        raise
    finally:
        band = None
        ds = None


def _center_lonlat(ds):
    x, y = geo.window_center(ds.GetGeoTransform(), (0, 0, ds.RasterXSize, ds.RasterYSize))
    return x, y


def write_report(path: str, rows: Sequence[Dict]) -> None:
    """CSV with one row per class: class_id, class_name, pixels, area_m2, percent (of the valid area)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["class_id", "class_name", "pixels", "area_m2", "percent"])
        w.writeheader()
        for r in rows:
            w.writerow({**r, "area_m2": f"{r['area_m2']:.1f}", "percent": f"{r['percent']:.2f}"})


def format_report(rows: Sequence[Dict]) -> str:
    """The per-class table as aligned text lines (for logs and the command line)."""
    lines = [f"{'class':>5}  {'name':<20} {'pixels':>10} {'area (ha)':>12} {'%':>7}"]
    for r in rows:
        lines.append(f"{r['class_id']:>5}  {r['class_name'][:20]:<20} {r['pixels']:>10} "
                     f"{r['area_m2'] / 1e4:>12.2f} {r['percent']:>7.2f}")
    return "\n".join(lines)
