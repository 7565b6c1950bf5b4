"""Renaming the classes of a class raster and of its polygons: new files with the new names in place of
"texture 1..k", the colours kept; the inputs are never modified.

The raster copy carries the names where :func:`classraster.read_palette` (and so ``sample`` and ``evaluate``)
finds them: the band's category names and metadata, with the unchanged colour table. The polygon copy
(``gdal.VectorTranslate``) gets ``class_name`` from ``class_id``: one SQL ``UPDATE`` on a GeoPackage (SQLite
dialect, https://gdal.org/user/sql_sqlite_dialect.html), feature by feature in other OGR formats.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence

from osgeo import gdal

from ..errors import ParameterError
from ..io import atomic, classraster, outputs

gdal.UseExceptions()

#: Fields a polygon layer of ``ktextures:segment`` / ``core.segment.vectorize.polygonize`` has.
CLASS_FIELDS = ("class_id", "class_name")


@dataclass
class RenameResult:
    """What :func:`rename_classes` wrote.

    Attributes:
        raster: the new class raster. polygons: the new polygon file, or None.
        old_names, names: the k names before and after. colors: the k ``"#rrggbb"`` colours (unchanged).
        polygon_count: polygons written (0 without polygons).
    """

    raster: str
    polygons: Optional[str]
    old_names: List[str]
    names: List[str]
    colors: List[str]
    polygon_count: int = 0


def rename_classes(raster_in: str, raster_out: str, names, *, polygons_in: Optional[str] = None,
                   polygons_out: Optional[str] = None) -> RenameResult:
    """Write ``raster_out`` (and ``polygons_out``), copies of the inputs whose classes 1..k carry ``names``.

    Args:
        raster_in: a class raster (0 = nodata, classes 1..k, colour table; e.g. from ``segment``). Read only.
        raster_out: the new class raster (GeoTIFF by default; a format of ``outputs.PALETTE_DRIVERS``).
        names: k names in class order, a sequence or a comma-separated string (:func:`classraster.check_class_names`).
        polygons_in: polygons with ``class_id`` and ``class_name`` fields (e.g. from ``segment``). Read only.
        polygons_out: the new polygon file (GeoPackage by default; other OGR formats by extension).

    Raises:
        ValueError: not k different non-empty names; the polygons lack ``class_id``/``class_name``.
        outputs.OutputPathError: an output is an input or the other output, or its format cannot hold it
            (keys ``"output"``, ``"vector"``, ``"input"``, ``"polygons"``), before anything is written.
        OutputError, RuntimeError: GDAL could not read or write a file; nothing is left behind.
    """
    outputs.check_outputs({"output": (raster_out, outputs.CLASS_RASTER),
                           "vector": (polygons_out if polygons_in else None, outputs.VECTOR)},
                          {"input": raster_in, "polygons": polygons_in})
    old, colors = classraster.read_palette(raster_in)
    new = classraster.check_class_names(names, len(old))
    if polygons_in:
        check_polygon_fields(polygons_in)
    copy_class_raster(raster_in, raster_out, new, colors)
    count = 0
    if polygons_in and polygons_out:
        try:
            count = copy_polygons(polygons_in, polygons_out, new)
        except BaseException:
            gdal.GetDriverByName(classraster.driver_for_path(raster_out)).Delete(raster_out)
            raise
    return RenameResult(raster=raster_out, polygons=polygons_out if polygons_in else None, old_names=old,
                        names=new, colors=colors, polygon_count=count)


def copy_class_raster(src: str, dst: str, names: Sequence[str], colors: Sequence[str]) -> None:
    """Copy the class raster ``src`` to ``dst`` (LZW-compressed GeoTIFF, or the format of ``dst``'s
    extension) with ``names`` and ``colors`` as its palette; ``dst`` appears only complete."""
    with classraster.partial_output(dst) as po:
        out = gdal.Translate(po.path, src, format="GTiff", creationOptions=["COMPRESS=LZW", "TILED=YES"])
        del out  # closed before the palette is written
        classraster.write_palette_to_file(po.path, names, colors)
        aux = po.path + ".aux.xml"
        if os.path.exists(aux):  # the names live in the GeoTIFF's own tags; no stale PAM copy
            os.remove(aux)


def check_polygon_fields(path: str) -> None:
    """Raise ``ValueError`` when the first layer of ``path`` has no ``class_id`` and ``class_name`` fields."""
    ds = gdal.OpenEx(path, gdal.OF_VECTOR)
    try:
        defn = ds.GetLayer(0).GetLayerDefn()
        fields = {defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())}
    finally:
        ds = None
    if not set(CLASS_FIELDS) <= fields:
        raise ParameterError(f"The polygons '{path}' have no class_id and class_name fields; give the polygons "
                         "written with this class raster by 'Segment'.")


def copy_polygons(src: str, dst: str, names: Sequence[str]) -> int:
    """Copy the first layer of ``src`` (only that layer) to ``dst`` and set ``class_name`` = ``names[class_id - 1]`` for
    class_id 1..k (other ids keep theirs). Returns the number of polygons. A failed copy is removed."""
    from .vectorize import vector_driver

    driver = vector_driver(dst)
    ds = gdal.OpenEx(src, gdal.OF_VECTOR)
    try:
        layer_name = ds.GetLayer(0).GetName()
    finally:
        ds = None
    with atomic.atomic_output(dst, ext=os.path.splitext(dst)[1] or ".gpkg") as part:
        # only the polygon layer: a copied QGIS layer_styles table made QGIS 3.22 hang saving the new style
        try:
            part.ds = gdal.VectorTranslate(part.path, src, format=driver, layers=[layer_name])
            return _set_names(part.ds, names)
        except RuntimeError as exc:  # GDAL's message names neither the output nor the cause (a full disk)
            raise atomic.write_failed(dst, str(exc)) from None


def _set_names(ds, names: Sequence[str]) -> int:
    lyr = ds.GetLayer(0)
    n = lyr.GetFeatureCount()
    if ds.GetDriver().ShortName == "GPKG":
        cases = " ".join(f"WHEN {i} THEN {sql_text(v)}" for i, v in enumerate(names, 1))
        table = lyr.GetName().replace('"', '""')
        ds.ExecuteSQL(f'UPDATE "{table}" SET class_name = CASE class_id {cases} ELSE class_name END')
        return n
    lyr.StartTransaction()
    for f in lyr:
        cid = f.GetField("class_id")
        if cid is not None and 1 <= cid <= len(names):
            f.SetField("class_name", names[cid - 1])
            lyr.SetFeature(f)
    lyr.CommitTransaction()
    return n


def sql_text(value: str) -> str:
    """``value`` as an SQL string literal (single quotes doubled)."""
    return "'" + str(value).replace("'", "''") + "'"
