"""Styles of the ``novelty`` outputs: the score raster on a sequential colour ramp (min to max of the scores),
the selected tiles as outlines labelled with their rank; written as the default styles of the files (``.qml``
beside the raster, the GeoPackage's ``layer_styles`` table) and applied when the layers are loaded."""
from typing import List

from qgis.core import (
    QgsColorRampShader,
    QgsFillSymbol,
    QgsPalLayerSettings,
    QgsProcessingLayerPostProcessorInterface,
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


def style_score(layer: QgsRasterLayer) -> None:
    """Singleband pseudocolor on :data:`SCORE_RAMP`, stretched from the minimum to the maximum score."""
    stats = layer.dataProvider().bandStatistics(1, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
    ramp = QgsStyle.defaultStyle().colorRamp(SCORE_RAMP)
    shader_fn = QgsColorRampShader(stats.minimumValue, stats.maximumValue, ramp)
    shader_fn.classifyColorRamp(5, -1)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(stats.minimumValue)
    renderer.setClassificationMax(stats.maximumValue)
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


class NoveltyStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Styles the score raster or the selected tiles when QGIS loads them."""

    _keep = []  # Python references: only the C++ side is owned by the context

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsRasterLayer):
            style_score(layer)
        elif isinstance(layer, QgsVectorLayer):
            style_selected(layer)

    @classmethod
    def create(cls):
        pp = cls()
        cls._keep.append(pp)
        return pp


def attach_styles(context, *layer_ids_or_paths) -> None:
    """Style the given outputs when they are loaded on completion (GUI, runAndLoadResults)."""
    for dest in layer_ids_or_paths:
        if dest and context.willLoadLayerOnCompletion(dest):
            context.layerToLoadOnCompletionDetails(dest).setPostProcessor(NoveltyStylePostProcessor.create())
