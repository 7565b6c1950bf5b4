"""The outputs of ``novelty`` (docs/novelty.md, "Outputs"): the tile-grid score raster, the selected tiles as
polygons, and the HTML explanation (tile, simulation, heat map of their feature difference).

Every file is written beside its destination under a hidden partial name and moved into place when complete
(:func:`atomic.atomic_output`), so no half-written output is left behind.
"""
from __future__ import annotations

import base64
import html
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal, ogr, osr

from ..errors import OutputError
from ..io import atomic, classraster, raster
from ..io.outputs import vector_driver
from ..segment.html_report import png_bytes
from ..segment.inference import infer_classes, open_session
from .novelty import NoveltyResult, SelectedTile, heat_map, model_input, scale_for_features, simulate

gdal.UseExceptions()
ogr.UseExceptions()

#: nodata of the score raster (scores are >= 0)
SCORE_NODATA = -1.0
#: heat map colours, low to high (a sequential ramp, dark to bright)
HEAT_RAMP = [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)]


def tile_grid_geotransform(gt: Sequence[float], stride: int) -> List[float]:
    """The geotransform of the score raster: pixel (row, col) is the central half of tile (row, col), which
    covers raster pixels ``[col * stride, col * stride + 2 * stride)``: the raster's geotransform with the
    pixel size multiplied by ``stride`` and the origin moved by half a stride."""
    s, h = float(stride), stride / 2.0
    return [gt[0] + h * gt[1] + h * gt[2], gt[1] * s, gt[2] * s, gt[3] + h * gt[4] + h * gt[5], gt[4] * s, gt[5] * s]


def write_score_raster(path: str, result: NoveltyResult, input_path: str) -> str:
    """One Float32 pixel per tile, the tile's initial score (its reconstruction error under the initial model
    of the scene, before any selection; :data:`SCORE_NODATA` = tile not scored); same CRS as the input; pixel
    (row, col) = the central half of tile (row, col) (:func:`tile_grid_geotransform`).

    Raises:
        OutputError: the folder is missing or not writable, or GDAL cannot write the format.
    """
    src = raster.open_raster(input_path)
    gt, wkt = src.GetGeoTransform(), src.GetProjection()
    src = None
    rows, cols = result.scores.shape
    try:
        with classraster.partial_output(path) as po:
            po.ds = gdal.GetDriverByName("GTiff").Create(po.path, cols, rows, 1, gdal.GDT_Float32,
                                                         options=["COMPRESS=DEFLATE"])
            po.ds.SetGeoTransform(tile_grid_geotransform(gt, result.table.stride))
            po.ds.SetProjection(wkt)
            band = po.ds.GetRasterBand(1)
            band.SetNoDataValue(SCORE_NODATA)
            band.SetDescription("initial score (reconstruction error under the initial model)")
            band.WriteArray(np.where(np.isfinite(result.scores), result.scores, SCORE_NODATA).astype(np.float32))
            band = None
    except RuntimeError as exc:
        raise OutputError(f"Cannot write the score raster '{path}': {exc}") from None
    return path


def dominant_classes(counts: np.ndarray, names: Sequence[str], min_share: float = 0.05) -> str:
    """``"texture 2 61 %, texture 5 30 %"``: the classes covering at least ``min_share`` of the tile's valid
    pixels, largest first."""
    total = max(int(counts.sum()), 1)
    order = np.argsort(counts)[::-1]
    return ", ".join(f"{names[i]} {100.0 * counts[i] / total:.0f} %" for i in order
                     if counts[i] / total >= min_share)


def _tile_polygon(gt, win) -> ogr.Geometry:
    x0, y0, xs, ys = win
    ring = ogr.Geometry(ogr.wkbLinearRing)
    for px, py in [(x0, y0), (x0 + xs, y0), (x0 + xs, y0 + ys), (x0, y0 + ys), (x0, y0)]:
        ring.AddPoint_2D(gt[0] + px * gt[1] + py * gt[2], gt[3] + px * gt[4] + py * gt[5])
    poly = ogr.Geometry(ogr.wkbPolygon)
    poly.AddGeometry(ring)
    return poly


#: fields of the selected-tiles layer: name, OGR type
SELECTED_FIELDS = [("rank", ogr.OFTInteger), ("selection_score", ogr.OFTReal), ("residual", ogr.OFTReal),
                   ("residual_share", ogr.OFTReal), ("initial_score", ogr.OFTReal), ("tile_row", ogr.OFTInteger),
                   ("tile_col", ogr.OFTInteger), ("class_id", ogr.OFTInteger), ("classes", ogr.OFTString)]


def write_selected(path: str, result: NoveltyResult, input_path: str, layer_name: str = "novelty") -> int:
    """Polygons of the selected tiles with ``rank`` (1 = first selected), ``selection_score`` (the tile's
    reconstruction error when it was selected: what ordered the list), ``residual`` (the k-textures
    residual's part of it), ``residual_share``, ``initial_score`` (its error under the initial model, as in the
    score raster), ``tile_row``, ``tile_col``, ``class_id`` (dominant class, 1..k) and ``classes``
    (:func:`dominant_classes`). Field names as in :data:`SELECTED_FIELDS` (docs/novelty.md, "Outputs").

    Returns:
        the number of polygons. Raises: OutputError (folder, format).
    """
    src = raster.open_raster(input_path)
    gt, wkt = src.GetGeoTransform(), src.GetProjection()
    src = None
    drv_name = vector_driver(path)
    names = result.info.class_names
    try:
        with atomic.atomic_output(path, ext=os.path.splitext(path)[1] or ".gpkg") as part:
            part.ds = ogr.GetDriverByName(drv_name).CreateDataSource(part.path)
            srs = osr.SpatialReference(wkt=wkt) if wkt else None
            lyr = part.ds.CreateLayer(layer_name, srs, ogr.wkbPolygon)
            for name, kind in SELECTED_FIELDS:
                lyr.CreateField(ogr.FieldDefn(name, kind))
            lyr.StartTransaction()
            for s in result.selected:
                lyr.CreateFeature(_selected_feature(lyr, s, gt, names))
            lyr.CommitTransaction()
            lyr = None
    except RuntimeError as exc:
        raise atomic.write_failed(path, str(exc)) from None
    return len(result.selected)


def _selected_feature(lyr, s: SelectedTile, gt, names: Sequence[str]) -> ogr.Feature:
    f = ogr.Feature(lyr.GetLayerDefn())
    values = [s.rank, s.score, s.residual, s.residual / s.score if s.score > 0 else 0.0, s.initial, s.row,
              s.col, int(np.argmax(s.class_counts)) + 1, dominant_classes(s.class_counts, names)]
    for i, v in enumerate(values):  # by index: a shapefile shortens names to 10 characters
        f.SetField(i, v)
    f.SetGeometry(_tile_polygon(gt, s.window))
    return f


def explain_tile(ds, session, fsess, result: NoveltyResult, tile: SelectedTile, textures: np.ndarray,
                 extra_nodata: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three pictures of one selected tile: ``(tile, simulation, heat)``; tile and simulation float32
    (4, h, w) red, green, blue, NIR in the model's scaled units (the tile not clipped to [0, 1], as the
    features see it); heat float32 (h, w) (:func:`ktextures_plugin.core.novelty.novelty.heat_map`;
    1 = the mean difference over all tiles). Nodata pixels are filled as in the features."""
    info, t = result.info, result.tile_size
    halo = info.halo_px
    x0, y0, w, h = tile.window
    rx0, ry0 = max(0, x0 - halo), max(0, y0 - halo)
    rx1, ry1 = min(ds.RasterXSize, x0 + w + halo), min(ds.RasterYSize, y0 + h + halo)
    data, valid = raster.read_window(ds, result.bands, (rx0, ry0, rx1 - rx0, ry1 - ry0), extra_nodata)
    scale_for_features(data, result.scale_min, result.scale_max)   # as the features: not clipped
    order = [list(info.channel_names).index(c) for c in ("red", "green", "blue", "nir")]
    x = np.zeros((4, t, t), np.float32)
    sim = np.zeros((4, t, t), np.float32)
    x[:, :h, :w] = data[order, y0 - ry0:y0 - ry0 + h, x0 - rx0:x0 - rx0 + w]
    model_input(data, info)                                          # the model's input, as segment's
    data[:, ~valid] = info.nodata_fill
    cls = infer_classes(session, data, halo)[y0 - ry0:y0 - ry0 + h, x0 - rx0:x0 - rx0 + w]
    cls = np.clip(cls, 0, info.num_classes - 1)
    sim[:, :h, :w] = simulate(textures, cls, x0, y0)[order]
    v = np.zeros((t, t), bool)
    v[:h, :w] = valid[y0 - ry0:y0 - ry0 + h, x0 - rx0:x0 - rx0 + w]
    if not v.all():
        fill = (x * v).sum(axis=(1, 2)) / max(int(v.sum()), 1)
        x[:, ~v] = fill[:, None]
        sim[:, ~v] = fill[:, None]
    heat = heat_map(fsess, x, sim, result.stage_norm)
    return x[:, :h, :w], sim[:, :h, :w], heat[:h, :w]


def _png(rgb: np.ndarray) -> str:
    """uint8 (3, h, w) -> PNG as base64 text (:func:`..segment.html_report.png_bytes`)."""
    return base64.b64encode(png_bytes(rgb)).decode("ascii")


def _true_colour(x: np.ndarray) -> np.ndarray:
    return (np.clip(x[:3], 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def heat_colours(heat: np.ndarray, vmax: float) -> np.ndarray:
    """float (h, w) -> uint8 (3, h, w) on :data:`HEAT_RAMP` from 0 to ``vmax``."""
    ramp = np.asarray(HEAT_RAMP, np.float64)
    pos = np.clip(heat / max(vmax, 1e-12), 0.0, 1.0) * (len(ramp) - 1)
    return np.stack([np.interp(pos, np.arange(len(ramp)), ramp[:, i]) for i in range(3)]).astype(np.uint8)


def explanations(result: NoveltyResult, input_path: str, model_path: str, extra_nodata: Optional[float] = None,
                 session=None, threads: Optional[int] = None, features_path: Optional[str] = None):
    """:func:`explain_tile` for every selected tile, in rank order: a list of ``(tile, simulation, heat)``."""
    from ..segment.inference import model_textures
    from .novelty import FEATURES_MODEL

    session = session or open_session(model_path, threads=threads)
    fsess = open_session(features_path or FEATURES_MODEL, threads=threads)
    textures = model_textures(session, result.info)
    ds = raster.open_raster(input_path)
    try:
        return [explain_tile(ds, session, fsess, result, s, textures, extra_nodata) for s in result.selected]
    finally:
        ds = None


#: what the two scores of the page mean (docs/novelty.md, "Outputs")
_SCORES_HELP = (
    "<p><b>Selection score</b>: how badly the model reconstructed the tile when it was selected (squared "
    "distance in the standardised features); it ordered the list: each tile is the one the model explained worst "
    "at its turn, then the model learns it, so rank 1 has the highest selection score and one kind of novelty "
    "is shown once. The model starts as a model of the scene (the mean and leading direction of its typical tiles). "
    "<b>Initial score</b>: the tile's error under that starting model, before any selection (the score raster); "
    "a tile like one shown before keeps a high initial score but gets a low selection score. <b>Residual</b>: "
    "the part of the selection score from what the k textures cannot simulate.</p>")

_CSS = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{padding:4px 8px;"
        "border-bottom:1px solid #ccc;vertical-align:middle;text-align:left}"
        "img{width:192px;height:192px;image-rendering:pixelated}")


def write_html(path: str, result: NoveltyResult, input_path: str, model_path: str,
               extra_nodata: Optional[float] = None, session=None, threads: Optional[int] = None) -> str:
    """The explanation page: per selected tile, in rank order, the tile in true colour, the k-textures
    simulation of it and the heat map of their feature difference (one colour scale for all tiles, 0 to the
    99th percentile of all heat values), with rank, score, residual and classes. Images are embedded (PNG,
    base64), so the file stands alone.

    Raises:
        OutputError: the folder is missing or not writable.
    """
    expl = explanations(result, input_path, model_path, extra_nodata, session, threads)
    vmax = float(np.percentile(np.concatenate([h.ravel() for _, _, h in expl]), 99)) if expl else 1.0
    rows = []
    for s, (x, sim, heat) in zip(result.selected, expl):
        imgs = "".join(f'<td><img alt="{a}" src="data:image/png;base64,{_png(p)}"></td>' for a, p in
                       [("tile", _true_colour(x)), ("simulation", _true_colour(sim)),
                        ("difference", heat_colours(heat, vmax))])
        share = s.residual / s.score if s.score > 0 else 0.0
        rows.append(f"<tr><td><b>{s.rank}</b></td>{imgs}<td>{s.score:.4g}</td><td>{s.initial:.4g}</td>"
                    f"<td>{s.residual:.4g} ({100 * share:.0f} %)</td><td>row {s.row}, col {s.col}<br>"
                    f"{html.escape(dominant_classes(s.class_counts, result.info.class_names))}</td></tr>")
    body = (f"<h1>k-textures novelty: {len(result.selected)} tiles</h1><p>{html.escape(os.path.basename(input_path))}"
            f", model '{html.escape(result.info.title)}', tiles {result.tile_size} px every {result.table.stride} px,"
            f" rank {result.rank}; {result.table.index.size} tiles scored, {result.table.skipped} skipped (mostly "
            "nodata). Each row: the tile in true colour, the model's simulation of it (the texture of each pixel's "
            "class), and where their multi-scale features differ (dark = as usual, bright = "
            f"{vmax:.3g} times the mean difference or more).</p>" + _SCORES_HELP +
            "<table><tr><th>rank</th><th>tile</th><th>simulation</th><th>difference</th><th>selection score</th>"
            "<th>initial score</th><th>residual (share)</th><th>tile, classes</th></tr>"
            + "".join(rows) + "</table>")
    with atomic.atomic_output(path) as part, open(part.path, "w", encoding="utf-8") as f:
        f.write(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>k-textures novelty</title>"
                f"<style>{_CSS}</style></head><body>{body}</body></html>")
    return path
