"""Styles of the ``novelty`` outputs: the score raster semi-transparent on a sequential colour ramp (a 2-98 %
percentile stretch of the scores), the selected tiles as outlines labelled with their rank; written as the
default styles of the files (``.qml`` beside the raster, the GeoPackage's ``layer_styles`` table) and applied
when the layers are loaded."""
from typing import List

from qgis.core import (
    QgsColorRampShader,
    QgsFillSymbol,
    QgsPalLayerSettings,
    QgsRasterBandStats,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsStyle,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor, QFont

#: the sequential ramp of the score raster (a QGIS default style ramp), dark = low, bright = high
SCORE_RAMP = "Magma"
#: the score raster's colours run between these percentiles of its scores (a few extreme tiles do not wash
#: out the rest)
SCORE_STRETCH = (2.0, 98.0)
#: opacity of the score raster, so that the image below it (and the tiles above) stay readable
SCORE_OPACITY = 0.6


def score_stretch(path: str):
    """``(low, high)``: the :data:`SCORE_STRETCH` percentiles of the valid scores of the raster at ``path``
    (GDAL; the raster has one pixel per tile, so it is small); ``None`` when it has no valid score."""
    import numpy as np
    from osgeo import gdal
    ds = gdal.OpenEx(path, gdal.OF_RASTER)
    if ds is None:
        return None
    band = ds.GetRasterBand(1)
    a, nd = band.ReadAsArray().astype(np.float64), band.GetNoDataValue()
    a = a[np.isfinite(a) & (a != nd)] if nd is not None else a[np.isfinite(a)]
    if a.size == 0:
        return None
    lo, hi = (float(v) for v in np.percentile(a, SCORE_STRETCH))
    return (lo, hi) if hi > lo else (float(a.min()), float(a.max()) + 1e-6)


def style_score(layer: QgsRasterLayer) -> None:
    """Singleband pseudocolor on :data:`SCORE_RAMP` between the :data:`SCORE_STRETCH` percentiles of the
    scores (minimum to maximum when they cannot be read), at :data:`SCORE_OPACITY`."""
    rng = score_stretch(layer.source())
    if rng is None:
        stats = layer.dataProvider().bandStatistics(1, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
        rng = (stats.minimumValue, stats.maximumValue)
    ramp = QgsStyle.defaultStyle().colorRamp(SCORE_RAMP)
    shader_fn = QgsColorRampShader(rng[0], rng[1], ramp)
    shader_fn.classifyColorRamp(5, -1)
    shader_fn.setClip(False)   # scores above the stretch keep the brightest colour
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(rng[0])
    renderer.setClassificationMax(rng[1])
    renderer.setOpacity(SCORE_OPACITY)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def style_selected(layer: QgsVectorLayer) -> None:
    """Red outlines, no fill; labels = the ``rank`` field (white buffer)."""
    symbol = QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": "#e31a1c", "outline_width": "0.6"})
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
    settings = QgsPalLayerSettings()
    settings.fieldName = "rank"
    fmt = QgsTextFormat()
    fmt.setFont(QFont("Sans", 10, QFont.Weight.Bold))
    fmt.setSize(10)
    fmt.setColor(QColor("#e31a1c"))
    buf = QgsTextBufferSettings()
    buf.setEnabled(True)
    buf.setColor(QColor("white"))
    buf.setSize(1.0)
    fmt.setBuffer(buf)
    settings.setFormat(fmt)
    settings.placement = QgsPalLayerSettings.OverPoint
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)
    layer.triggerRepaint()


def save_default_styles(score_path: str, selected_path: str) -> List[str]:
    """Write the default styles; returns warnings (empty when all went well)."""
    warnings = []
    if score_path:
        rl = QgsRasterLayer(score_path, "novelty score", "gdal")
        if rl.isValid():
            style_score(rl)
            msg, ok = rl.saveDefaultStyle()
            if not ok:
                warnings.append(f"score raster style not saved: {msg}")
    if selected_path:
        vl = QgsVectorLayer(selected_path, "novel tiles", "ogr")
        if vl.isValid():
            style_selected(vl)
            if selected_path.lower().endswith(".gpkg"):
                err = vl.saveStyleToDatabase("default", "k-textures novelty", True, "")
                if err:
                    warnings.append(f"selected tiles style not saved: {err}")
            else:
                msg, ok = vl.saveDefaultStyle()
                if not ok:
                    warnings.append(f"selected tiles style not saved: {msg}")
    return warnings


def attach_styles(context, score: str, selected: str) -> None:
    """Style the outputs when they are loaded on completion (GUI, batch, runAndLoadResults), the score raster
    below the selected tiles (``styling.attach``'s reading order of a run's layers)."""
    from .styling import CLASSES, FOOTPRINTS, attach
    attach(context, score, style_score, lambda _layer: CLASSES)
    attach(context, selected, style_selected, lambda _layer: FOOTPRINTS)
