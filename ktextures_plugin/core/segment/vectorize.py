"""Polygons of a class raster with GDAL polygonize, and the per-class report.

The polygons come from the written (and, if asked, sieved) class raster, so raster and vector agree
pixel for pixel. Fields: ``class_id`` (the raster value 1..k), ``class_name``, ``area_m2`` (square metres,
in a geographic CRS too: polygons are measured in a Lambert azimuthal equal-area projection centred on
the raster).
"""
from __future__ import annotations

import csv
import dataclasses
import os
from typing import Dict, Optional, Sequence

from osgeo import gdal, ogr

from ..feedback import Feedback
from ..io import atomic, geo, outputs, raster
from ..io.classraster import read_palette
from ..io.outputs import vector_driver

gdal.UseExceptions()
ogr.UseExceptions()


def polygonize(class_raster: str, output_path: str, layer_name: Optional[str] = None,
               class_names: Optional[Sequence[str]] = None, eight_connected: bool = False,
               feedback: Optional[Feedback] = None) -> int:
    """Polygonize ``class_raster`` (0 = nodata, no polygons there) into ``output_path``.

    GDAL Polygonize writes into a hidden partial GeoPackage beside the destination in one transaction
    (:func:`atomic.atomic_output`);
    ``class_name`` and ``area_m2`` are then set by one SQL ``UPDATE`` (GeoPackage ``ST_Area``, and
    ``ST_Transform`` to a Lambert azimuthal equal-area CRS centred on the raster when the CRS is geographic),
    with no Python loop over the polygons. Other formats are converted from that GeoPackage with
    ``gdal.VectorTranslate``. The result is renamed into place only when complete.

    Args:
        class_raster: a class raster (UInt8/UInt16, 0 = nodata).
        output_path: vector destination; the format follows the extension (GeoPackage by default).
        layer_name: layer name (default: the file name without extension).
        class_names: names of classes 1..k (default: the raster's category names).
        eight_connected: join diagonal neighbours (GDAL ``8CONNECTED=8``); default 4-connected.
        feedback: progress (stage "polygonize") and cancel, polled by GDAL's progress callback; cancel aborts
            and removes the partial files.

    Returns:
        The number of polygons.

    Raises:
        OutputError: the destination cannot be written (``outputs.OutputPathError``: it is the class raster,
            or no OGR format writes its extension; checked before any work).
        errors.Canceled: canceled.
    """
    outputs.check_outputs({"vector": (output_path, outputs.VECTOR)}, {"input": class_raster})
    names = list(class_names) if class_names else read_palette(class_raster)[0]
    job = _Job(output_path=output_path, driver=vector_driver(output_path),
               layer_name=layer_name or os.path.splitext(os.path.basename(output_path))[0] or "polygons")
    ds = gdal.Open(class_raster)
    try:
        band = ds.GetRasterBand(1)
        # GDAL reads the raster line by line: a larger block cache would only hold blocks it has passed
        with raster.line_pass_cache(band), atomic.atomic_output(output_path) as part:
            return _polygonize(ds, band, job, part, names, eight_connected=eight_connected,
                               feedback=feedback or Feedback())
    finally:
        band = None
        ds = None


@dataclasses.dataclass(frozen=True)
class _Job:
    """What one polygonize run writes: the final path, its OGR driver and the layer name."""
    output_path: str
    driver: str
    layer_name: str


def _polygonize(ds, band, job: _Job, part: atomic.Partial, names: Sequence[str], *, eight_connected: bool,
                feedback: Feedback) -> int:
    """The steps of :func:`polygonize` once the destination is checked: polygons into a GeoPackage (the
    partial output itself, or a scratch partial converted into it for other formats), names and areas by SQL.
    ``part`` is delivered by the caller's :func:`atomic.atomic_output`."""
    gpkg = part if job.driver == "GPKG" else atomic.Partial(job.output_path,
                                                            atomic.partial_path(job.output_path, ".gpkg"))
    try:
        gpkg.ds = _create_layer(job, gpkg.path, geo.srs_of(ds.GetProjection()))
        lyr = gpkg.ds.GetLayerByName(job.layer_name)
        _run_polygonize(gpkg.ds, lyr, band, eight_connected, feedback)
        n = lyr.GetFeatureCount()
        geom_col = lyr.GetGeometryColumn()
        lyr = None
        _set_names_and_areas(gpkg.ds, job.layer_name, geom_col, names, ds.GetProjection(), _center_lonlat(ds))
        gpkg.close()
        feedback.progress(0.95, "polygonize")
        if gpkg is not part:
            try:
                part.ds = gdal.VectorTranslate(part.path, gpkg.path, format=job.driver, layerName=job.layer_name)
            except RuntimeError as exc:
                raise atomic.write_failed(job.output_path, str(exc)) from None
    finally:
        if gpkg is not part:
            gpkg.abandon()
            atomic.remove_fileset(gpkg.path)
    feedback.progress(1.0, "polygonize")
    return n


def _create_layer(job: _Job, path: str, srs):
    """The GeoPackage ``path`` with one empty polygon layer (fields class_id, class_name, area_m2)."""
    try:
        out = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    except RuntimeError as exc:
        raise atomic.write_failed(job.output_path, str(exc)) from None
    # the R-tree is only useful in the delivered GeoPackage (other formats are converted from this one)
    lyr = out.CreateLayer(job.layer_name, srs=srs, geom_type=ogr.wkbPolygon,
                          options=[] if job.driver == "GPKG" else ["SPATIAL_INDEX=NO"])
    lyr.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    name_fd = ogr.FieldDefn("class_name", ogr.OFTString)
    name_fd.SetWidth(80)
    lyr.CreateField(name_fd)
    lyr.CreateField(ogr.FieldDefn("area_m2", ogr.OFTReal))
    return out


def _run_polygonize(out, lyr, band, eight_connected: bool, feedback: Feedback) -> None:
    """``gdal.Polygonize`` of ``band`` (its mask band excludes nodata) into ``lyr`` in one transaction.

    Raises:
        errors.Canceled: the progress callback saw ``feedback.is_canceled()`` True.
        KeyboardInterrupt: Ctrl-C during ``Polygonize`` (GDAL stopped cleanly, no traceback printed).
    """
    options = ["8CONNECTED=8"] if eight_connected else []
    out.StartTransaction()  # one transaction: 5x faster than a commit per polygon
    raster.GdalProgress("polygonize", feedback.progress, feedback.is_canceled, scale=0.8).run(
        gdal.Polygonize, band, band.GetMaskBand(), lyr, 0, options)
    out.CommitTransaction()
    feedback.check_canceled()


def _sql_text(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _set_names_and_areas(gpkg_ds, layer_name: str, geom_col: str, names: Sequence[str], wkt: str,
                         center_xy) -> None:
    """One SQL UPDATE (SQLite dialect of the GeoPackage driver) sets class_name and area_m2 of every polygon.

    Areas: ``ST_Area`` in the layer CRS times the square of its linear unit (metres for most projected CRSs);
    in a geographic CRS ``ST_Area(ST_Transform(geom, laea))``, where laea is a Lambert azimuthal equal-area
    CRS centred on the raster (registered in gpkg_spatial_ref_sys through an empty helper table).
    """
    ct, factor = geo.area_transform(wkt, center_xy)
    area = f'ST_Area("{geom_col}")'
    if ct is not None:
        gpkg_ds.CreateLayer("ktextures_area_crs", srs=geo.equal_area_srs(center_xy), geom_type=ogr.wkbPolygon)
        res = gpkg_ds.ExecuteSQL("SELECT srs_id FROM gpkg_geometry_columns "
                                 "WHERE table_name = 'ktextures_area_crs'")
        srs_id = res.GetNextFeature().GetField(0)
        gpkg_ds.ReleaseResultSet(res)
        area = f'ST_Area(ST_Transform("{geom_col}", {int(srs_id)}))'
    cases = " ".join(f"WHEN {i} THEN {_sql_text(n)}" for i, n in enumerate(names, 1))
    name_expr = (f"CASE class_id {cases} ELSE 'class ' || class_id END" if names
                 else "'class ' || class_id")
    table = layer_name.replace('"', '""')
    gpkg_ds.ExecuteSQL(f'UPDATE "{table}" SET class_name = {name_expr}, area_m2 = {area} * {factor!r}')
    if ct is not None:
        gpkg_ds.DeleteLayer(_layer_index(gpkg_ds, "ktextures_area_crs"))


def _layer_index(ds, name: str) -> int:
    for i in range(ds.GetLayerCount()):
        if ds.GetLayer(i).GetName() == name:
            return i
    raise KeyError(name)


def _center_lonlat(ds):
    x, y = geo.window_center(ds.GetGeoTransform(), (0, 0, ds.RasterXSize, ds.RasterYSize))
    return x, y


def write_report(path: str, rows: Sequence[Dict]) -> None:
    """CSV with one row per class: class_id, class_name, pixels, area_m2, percent (of the valid area); written
    atomically (:func:`atomic.atomic_output`).

    Raises:
        OutputError: the file cannot be written (folder, full disk).
    """
    with atomic.atomic_output(path) as part, open(part.path, "w", newline="", encoding="utf-8") as fh:
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
