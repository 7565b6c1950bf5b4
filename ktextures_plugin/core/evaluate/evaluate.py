"""Evaluation glue without QGIS (used by ``algorithms/evaluate.py``): reference from a raster or from
polygons (rasterised onto the class raster's grid with ``gdal.Rasterize``), the per-class IoU table, and
the class raster relabelled with the matched reference classes.

Definitions of the figures: :mod:`metrics`.
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
from osgeo import gdal, ogr

from ..errors import ParameterError
from ..io import atomic, classraster, outputs
from . import metrics

gdal.UseExceptions()
ogr.UseExceptions()

#: Background (unlabelled) value of a rasterised polygon reference (Int32), so class id 0 stays usable.
VECTOR_NODATA = -2147483648
MATCHINGS = ("hungarian", "majority")
UNMATCHED_COLOR = "#808080"
TABLE_COLUMNS = ["class_id", "class_name", "reference_class", "reference_name", "iou", "precision", "recall", "f1",
                 "pixels"]


@dataclass
class Evaluation:
    """Result of :func:`evaluate`.

    Attributes:
        scores: :class:`metrics.Scores`.
        rows: the per-class table (:func:`class_table`).
        ref_names: reference class id -> name.
        matching: "hungarian" or "majority" (used for ``rows`` and the relabelled raster).
        table_path, raster_path: files written (None when not asked for).
    """

    scores: metrics.Scores
    rows: List[dict]
    ref_names: Dict[int, str]
    matching: str
    table_path: Optional[str] = None
    raster_path: Optional[str] = None
    log: List[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- reference
def reference_palette(path: str) -> Tuple[Dict[int, str], Dict[int, str]]:
    """``(names, colors)``: class id -> name and -> ``"#rrggbb"`` known from a reference raster.

    Sources, in order: the k-textures band metadata (classes 1..k), GDAL category names, the colour table.
    Ids without a name or colour are simply absent.
    """
    names: Dict[int, str] = {}
    colors: Dict[int, str] = {}
    ds = gdal.Open(str(path))
    try:
        band = ds.GetRasterBand(1)
        md_n, md_c = band.GetMetadataItem(classraster.MD_CLASS_NAMES), band.GetMetadataItem(classraster.MD_CLASS_COLORS)
        if md_n:
            names.update({i: str(n) for i, n in enumerate(json.loads(md_n), 1)})
        if md_c:
            colors.update({i: str(c) for i, c in enumerate(json.loads(md_c), 1)})
        for i, n in enumerate(band.GetCategoryNames() or []):
            if n and i not in names:
                names[i] = n
        ct = band.GetRasterColorTable()
        if ct is not None:
            for i in range(ct.GetCount()):
                if i not in colors and ct.GetColorEntry(i)[3] > 0:
                    colors[i] = classraster.rgb_to_hex(ct.GetColorEntry(i)[:3])
    finally:
        ds = None
    return names, colors


def rasterize_reference(vector_path: str, field_name: str, like_path: str, out_path: str, *,
                        layer_name: Optional[str] = None, name_field: Optional[str] = None,
                        all_touched: bool = False) -> Dict[int, str]:
    """Burn polygon class ids onto the grid of ``like_path`` (Int32 GeoTIFF, background
    :data:`VECTOR_NODATA`) with ``gdal.Rasterize`` (pixel-centre rule unless ``all_touched``; the polygons
    are reprojected to the raster's CRS by GDAL when their CRS differs; a later polygon overwrites an
    earlier one where they overlap).

    Args:
        field_name: numeric attribute holding the class id (fractional values are truncated).
        name_field: optional text attribute with the class name (the most frequent name per id wins).

    Returns:
        class id -> name (empty without ``name_field``).

    Raises:
        ValueError: the vector cannot be opened, has no such layer or field, or the field is not numeric.
    """
    try:
        vds = ogr.Open(str(vector_path))
    except RuntimeError as exc:
        raise ParameterError(f"OGR cannot open the reference polygons '{vector_path}': {exc}") from None
    if vds is None:
        raise ParameterError(f"OGR cannot open the reference polygons '{vector_path}'")
    try:
        layer = vds.GetLayerByName(layer_name) if layer_name else vds.GetLayer(0)
        if layer is None:
            raise ParameterError(f"'{vector_path}' has no layer '{layer_name}'")
        idx = _class_field(layer, field_name)
        names = _names_by_class(layer, idx, name_field) if name_field else {}
        layer_name = layer.GetName()
    finally:
        vds = None
    _burn(vector_path, layer_name, field_name, like_path, out_path, all_touched)
    return names


def _class_field(layer, field_name: str) -> int:
    """Index of the numeric class-id field ``field_name`` of ``layer``; ValueError when missing or not numeric."""
    defn = layer.GetLayerDefn()
    idx = defn.GetFieldIndex(field_name)
    if idx < 0:
        have = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
        raise ParameterError(f"The reference polygons have no field '{field_name}' (fields: {have})")
    if defn.GetFieldDefn(idx).GetType() not in (ogr.OFTInteger, ogr.OFTInteger64, ogr.OFTReal):
        raise ParameterError(f"The reference class field '{field_name}' must be numeric (integer class ids), "
                         f"it is {defn.GetFieldDefn(idx).GetTypeName()}")
    return idx


def _names_by_class(layer, idx: int, name_field: str) -> Dict[int, str]:
    """Class id -> the most frequent name of ``name_field`` among its polygons."""
    nidx = layer.GetLayerDefn().GetFieldIndex(name_field)
    if nidx < 0:
        raise ParameterError(f"The reference polygons have no field '{name_field}'")
    tally: Dict[int, Dict[str, int]] = {}
    layer.ResetReading()
    for feat in layer:
        if feat.IsFieldSetAndNotNull(idx) and feat.IsFieldSetAndNotNull(nidx):
            cid = int(feat.GetFieldAsDouble(idx))
            nm = feat.GetFieldAsString(nidx)
            tally.setdefault(cid, {}).setdefault(nm, 0)
            tally[cid][nm] += 1
    return {cid: max(t.items(), key=lambda kv: (kv[1], kv[0]))[0] for cid, t in tally.items()}


def _burn(vector_path, layer_name: str, field_name: str, like_path, out_path, all_touched: bool) -> None:
    """``gdal.Rasterize`` of ``field_name`` into a new Int32 GeoTIFF on the grid of ``like_path``."""
    like = gdal.Open(str(like_path))
    try:
        out = gdal.GetDriverByName("GTiff").Create(str(out_path), like.RasterXSize, like.RasterYSize, 1,
                                                   gdal.GDT_Int32, options=classraster.GTIFF_OPTIONS)
        out.SetGeoTransform(like.GetGeoTransform())
        out.SetProjection(like.GetProjection())
        band = out.GetRasterBand(1)
        band.SetNoDataValue(VECTOR_NODATA)
        band.Fill(VECTOR_NODATA)
        band = None
        gdal.Rasterize(out, str(vector_path), layers=[layer_name], attribute=field_name, allTouched=all_touched)
        out = None
    except RuntimeError as exc:
        raise ParameterError(f"Cannot rasterise the reference polygons: {exc}") from None
    finally:
        like = None


# --------------------------------------------------------------------------------------------- outputs
def mapping_for(scores: metrics.Scores, matching: str) -> np.ndarray:
    """The mapping (index into ``scores.table.ref_labels`` per ``scores.table.pred_labels``, -1 = none)."""
    if matching not in MATCHINGS:
        raise ParameterError(f"matching must be one of {MATCHINGS}, got {matching!r}")
    return scores.hungarian if matching == "hungarian" else scores.majority


def class_table(scores: metrics.Scores, pred_names: Dict[int, str], ref_names: Dict[int, str],
                matching: str = "hungarian") -> List[dict]:
    """Per-class rows: one per predicted class (every id of ``pred_names`` plus any scored label), then one
    per reference class that no predicted class was matched to.

    Columns (:data:`TABLE_COLUMNS`): ``class_id``, ``class_name``; ``reference_class``, ``reference_name``
    of the matched reference class (None when unmatched or never scored); ``iou``: IoU of that reference
    class after relabelling the prediction with the matching (for the one-to-one Hungarian matching this is
    the IoU of this class with its reference class; the mean over distinct reference classes is the
    mIoU), 0 for unmatched reference classes; ``precision``, ``recall``, ``f1`` of that reference class after the
    same relabelling (:func:`metrics.precision_recall_kappa`); ``pixels``: scored pixels of the predicted class.
    """
    t = scores.table
    mapping = mapping_for(scores, matching)
    iou = scores.iou_hungarian if matching == "hungarian" else scores.iou_majority
    prec, rec, f1, _ = metrics.precision_recall_kappa(t, mapping)

    def quality(j):
        if j < 0:
            return {"iou": None, "precision": None, "recall": None, "f1": None}
        return {"iou": float(iou[j]), "precision": float(prec[j]), "recall": float(rec[j]), "f1": float(f1[j])}

    row_of = {int(v): i for i, v in enumerate(t.pred_labels)}
    ids = sorted(set(int(v) for v in pred_names) | set(row_of))
    rows = []
    for cid in ids:
        i = row_of.get(cid)
        j = int(mapping[i]) if i is not None else -1
        ref = int(t.ref_labels[j]) if j >= 0 else None
        rows.append({"class_id": cid, "class_name": pred_names.get(cid, f"class {cid}"),
                     "reference_class": ref,
                     "reference_name": ref_names.get(ref, f"class {ref}") if ref is not None else None,
                     **quality(j), "pixels": int(t.counts[i].sum()) if i is not None else 0})
    matched = set(int(j) for j in mapping if j >= 0)
    for j, ref in enumerate(t.ref_labels.tolist()):
        if j not in matched:
            rows.append({"class_id": None, "class_name": None, "reference_class": int(ref),
                         "reference_name": ref_names.get(int(ref), f"class {ref}"), **quality(j),
                         "pixels": 0})
    return rows


def write_table_csv(rows: List[dict], path: str) -> None:
    """Write ``rows`` as CSV (header :data:`TABLE_COLUMNS`; None -> empty cell), atomically
    (:func:`atomic.atomic_output`; ``OutputError`` when it cannot be written)."""
    with atomic.atomic_output(path) as part, open(part.path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in TABLE_COLUMNS})


def relabel_raster(pred_path: str, out_path: str, scores: metrics.Scores, matching: str,
                   ref_names: Dict[int, str], ref_colors: Dict[int, str],
                   pred_names: Optional[Dict[int, str]] = None,
                   window_pixels: int = metrics.WINDOW_PIXELS) -> Dict[int, int]:
    """Write the class raster relabelled with the matched reference classes (same grid, 0 = nodata).

    Output values are the reference class ids when they all lie in 1..65535, else 1..n in the order of
    the sorted reference ids. Predicted classes without a match (more clusters than reference classes
    under the Hungarian matching, or never scored) get the next free values and the name
    "unmatched: <class name>". The colour table and names come from the reference (``ref_colors``,
    ``ref_names``; the qualitative palette otherwise); unused values in between are named "".

    Returns:
        predicted class id -> output value.
    """
    lut_of, names, colors = _relabelling(scores, matching, ref_names, ref_colors, pred_names)
    kmax = max(names)
    if kmax > 65535:
        raise ParameterError(f"Too many output classes ({kmax}) for a UInt16 class raster")
    pds = gdal.Open(str(pred_path))
    try:
        pb = pds.GetRasterBand(1)
        w, h = pds.RasterXSize, pds.RasterYSize
        top = max(65535, max(lut_of, default=0))
        dtype = np.uint8 if kmax <= 255 else np.uint16
        lut = np.zeros(top + 1, dtype)
        for cid, v in lut_of.items():
            if 0 < cid <= top:
                lut[cid] = v
        with classraster.partial_output(out_path) as po:
            ob = po.create_on_grid(pds, (0, 0, w, h), 1, gdal.GDT_Byte if kmax <= 255 else gdal.GDT_UInt16,
                                   classraster.NODATA).GetRasterBand(1)
            rows = max(1, int(window_pixels) // max(1, w))
            for y in range(0, h, rows):
                n = min(rows, h - y)
                p = pb.ReadAsArray(0, y, w, n).astype(np.int64)
                res = np.zeros(p.shape, dtype)
                ok = (p > 0) & (p <= top)
                res[ok] = lut[p[ok]]
                ob.WriteArray(res, 0, y)
            ob = None
            po.close()
            classraster.write_palette_to_file(po.path, [names.get(v, "") for v in range(1, kmax + 1)],
                                              [colors.get(v, "#000000") for v in range(1, kmax + 1)])
    finally:
        pds = None
    return lut_of


def _relabelling(scores: metrics.Scores, matching: str, ref_names, ref_colors, pred_names):
    """``(predicted id -> output value, output value -> name, output value -> colour)`` of :func:`relabel_raster`."""
    t = scores.table
    mapping = mapping_for(scores, matching)
    refs = [int(v) for v in t.ref_labels]
    direct = all(1 <= v <= 65535 for v in refs)
    out_of_ref = {r: (r if direct else j + 1) for j, r in enumerate(refs)}
    names: Dict[int, str] = {}
    colors: Dict[int, str] = {}
    for j, r in enumerate(refs):
        v = out_of_ref[r]
        names[v] = ref_names.get(r, f"class {r}")
        colors[v] = ref_colors.get(r, classraster.QUALITATIVE[j % len(classraster.QUALITATIVE)])
    pred_names = dict(pred_names or {})
    row_of = {int(v): i for i, v in enumerate(t.pred_labels)}
    lut_of: Dict[int, int] = {}
    nxt = max(out_of_ref.values(), default=0) + 1
    for cid in sorted(set(pred_names) | set(row_of)):
        i = row_of.get(cid)
        if i is not None and mapping[i] >= 0:
            lut_of[cid] = out_of_ref[refs[int(mapping[i])]]
        else:
            lut_of[cid] = nxt
            names[nxt] = f"unmatched: {pred_names.get(cid, f'class {cid}')}"
            colors[nxt] = UNMATCHED_COLOR
            nxt += 1
    return lut_of, names, colors


def evaluate(pred_path: str, *, reference: Optional[str] = None, ref_nodata: Optional[float] = 0,
             vector: Optional[str] = None, vector_layer: Optional[str] = None, field_name: Optional[str] = None,
             name_field: Optional[str] = None, matching: str = "hungarian", table_path: Optional[str] = None,
             raster_path: Optional[str] = None, image: Optional[str] = None,
             bands: Optional[List[int]] = None) -> Evaluation:
    """Score ``pred_path`` against a reference raster (``reference``) or polygons (``vector`` +
    ``field_name``, rasterised onto the class raster's grid into a temporary file; pixels outside every
    polygon are unlabelled). Reference pixels equal to ``ref_nodata`` (0; None = none) are unlabelled in
    both cases,
    then optionally write the per-class CSV and the relabelled class raster. With ``image`` (the image the
    classes were made from, same grid; ``bands`` of it, default all) the downstream figures are computed too
    (:func:`metrics.downstream_scores`).

    Raises:
        ValueError: both or neither reference given, grids differ, nothing scored, bad field, ...
    """
    if (reference is None) == (vector is None):
        raise ParameterError("Give exactly one reference: a label raster or reference polygons with a class field")
    if matching not in MATCHINGS:
        raise ParameterError(f"matching must be one of {MATCHINGS}, got {matching!r}")
    outputs.check_outputs({"table": (table_path, outputs.TABLE), "raster": (raster_path, outputs.CLASS_RASTER)},
                          {"input": pred_path, "reference": reference, "vector": vector, "image": image})
    log: List[str] = []
    tmpdir = None
    try:
        if vector is not None:
            if not field_name:
                raise ParameterError("Reference polygons need a numeric class field")
            tmpdir = tempfile.mkdtemp(prefix="ktextures_eval_")
            ref_path = os.path.join(tmpdir, "reference.tif")
            names = rasterize_reference(vector, field_name, pred_path, ref_path, layer_name=vector_layer,
                                        name_field=name_field)
            colors: Dict[int, str] = {}
            nodata = ref_nodata  # the background (VECTOR_NODATA) is the band's nodata value, excluded too
            log.append(f"Rasterised the reference polygons (field '{field_name}') onto the class raster's grid")
        else:
            ref_path, nodata = reference, ref_nodata
            names, colors = reference_palette(reference)
        s = metrics.scores(metrics.confusion_from_rasters(pred_path, ref_path, ref_nodata=nodata))
        drawn = metrics.interior_samples(pred_path)
        metrics.sample_scores(pred_path, ref_path, s, nodata, drawn)
        if image is not None:
            metrics.downstream_scores(pred_path, ref_path, image, s, bands, nodata, drawn)
        pred_list, _ = classraster.read_palette(pred_path)
        pred_names = {i: n for i, n in enumerate(pred_list, 1)}
        rows = class_table(s, pred_names, names, matching)
        if table_path:
            write_table_csv(rows, table_path)
        if raster_path:
            relabel_raster(pred_path, raster_path, s, matching, names, colors, pred_names)
        return Evaluation(scores=s, rows=rows, ref_names=names, matching=matching, table_path=table_path,
                          raster_path=raster_path, log=log)
    finally:
        if tmpdir:
            for f in os.listdir(tmpdir):
                os.remove(os.path.join(tmpdir, f))
            os.rmdir(tmpdir)
