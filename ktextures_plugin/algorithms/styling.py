"""Styling of the outputs in QGIS: a paletted renderer for the class raster, a categorized renderer for
the polygons, written as the layer's default style (GeoPackage ``layer_styles`` table or a ``.qml`` sidecar)
so the files open styled however they were produced, plus a layer post-processor for layers loaded on
completion (kept alive at class level: QGIS issues #48087/#47533)."""
from typing import List, Sequence

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor


def raster_renderer(layer: QgsRasterLayer, names: Sequence[str], colors: Sequence[str]):
    classes = [QgsPalettedRasterRenderer.Class(i + 1, QColor(c), n) for i, (n, c) in enumerate(zip(names, colors))]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)


def vector_renderer(names: Sequence[str], colors: Sequence[str], field: str = "class_id"):
    cats = []
    for i, (n, c) in enumerate(zip(names, colors)):
        sym = QgsFillSymbol.createSimple({"color": c, "outline_color": "#3a3a3a", "outline_width": "0.1"})
        cats.append(QgsRendererCategory(i + 1, sym, n))
    return QgsCategorizedSymbolRenderer(field, cats)


def apply_raster_style(layer: QgsRasterLayer, names, colors) -> None:
    layer.setRenderer(raster_renderer(layer, names, colors))
    layer.triggerRepaint()


def apply_vector_style(layer: QgsVectorLayer, names, colors) -> None:
    layer.setRenderer(vector_renderer(names, colors))
    layer.triggerRepaint()


def save_default_styles(raster_path: str, vector_path: str, names: List[str], colors: List[str]) -> List[str]:
    """Write the default style of the outputs: ``<raster>.qml``; the GeoPackage's ``layer_styles`` table
    (other vector formats: ``<vector>.qml``). Returns warnings (empty when all went well)."""
    warnings = []
    if raster_path:
        rl = QgsRasterLayer(raster_path, "classes", "gdal")
        if rl.isValid():
            apply_raster_style(rl, names, colors)
            msg, ok = rl.saveDefaultStyle()
            if not ok:
                warnings.append(f"raster style not saved: {msg}")
    if vector_path:
        vl = QgsVectorLayer(vector_path, "polygons", "ogr")
        if vl.isValid():
            apply_vector_style(vl, names, colors)
            if vector_path.lower().endswith(".gpkg"):
                err = vl.saveStyleToDatabase("default", "k-textures classes", True, "")
                if err:
                    warnings.append(f"vector style not saved: {err}")
            else:
                msg, ok = vl.saveDefaultStyle()
                if not ok:
                    warnings.append(f"vector style not saved: {msg}")
    return warnings


class ClassStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies the class colours and names to a raster or vector output when QGIS loads it."""

    _keep = []  # Python references: only the C++ side is owned by the context

    def __init__(self, names, colors):
        super().__init__()
        self.names, self.colors = list(names), list(colors)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsRasterLayer):
            apply_raster_style(layer, self.names, self.colors)
        elif isinstance(layer, QgsVectorLayer):
            apply_vector_style(layer, self.names, self.colors)

    @classmethod
    def create(cls, names, colors):
        pp = cls(names, colors)
        cls._keep.append(pp)
        return pp


def attach_style(context, layer_id_or_path: str, names, colors) -> None:
    """Style ``layer_id_or_path`` when it is loaded on completion (GUI, runAndLoadResults)."""
    if layer_id_or_path and context.willLoadLayerOnCompletion(layer_id_or_path):
        context.layerToLoadOnCompletionDetails(layer_id_or_path).setPostProcessor(
            ClassStylePostProcessor.create(names, colors))
