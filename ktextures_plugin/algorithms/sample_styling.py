"""Styling of the outputs of ``ktextures:sample``: sample points (filled circles) and chip footprints (outlines)
categorised by ``class_id`` with the class raster's colours and names, both when QGIS loads them on
completion (a layer post-processor) and in the files themselves (the GeoPackage's ``layer_styles`` table, or
a ``.qml`` sidecar for other formats), so that they open styled from disk."""
import os
from typing import List, Optional, Sequence

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFillSymbol,
    QgsMarkerSymbol,
    QgsProcessingLayerPostProcessorInterface,
    QgsRendererCategory,
    QgsVectorLayer,
)


def class_renderer(names: Sequence[str], colors: Sequence[str], polygons: bool) -> QgsCategorizedSymbolRenderer:
    """Categories 1..k on ``class_id``: outlines in the class colour (``polygons``) or filled circles."""
    cats = []
    for i, (n, c) in enumerate(zip(names, colors)):
        if polygons:
            sym = QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": c, "outline_width": "0.5"})
        else:
            sym = QgsMarkerSymbol.createSimple({"name": "circle", "color": c, "outline_color": "#202020",
                                                "size": "2.6"})
        cats.append(QgsRendererCategory(i + 1, sym, n))
    return QgsCategorizedSymbolRenderer("class_id", cats)


class ClassSymbolPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies :func:`class_renderer` to a sample layer when QGIS loads it (GUI, runAndLoadResults)."""

    _keep = []  # Python references: only the C++ side is owned by the context (QGIS issues #48087/#47533)

    def __init__(self, names, colors, polygons: bool):
        super().__init__()
        self.names, self.colors, self.polygons = list(names), list(colors), polygons

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsVectorLayer):
            layer.setRenderer(class_renderer(self.names, self.colors, self.polygons))
            layer.triggerRepaint()

    @classmethod
    def attach(cls, context, layer_id, names, colors, polygons):
        if layer_id and context.willLoadLayerOnCompletion(layer_id):
            pp = cls(names, colors, polygons)
            cls._keep.append(pp)
            context.layerToLoadOnCompletionDetails(layer_id).setPostProcessor(pp)


def file_of(dest: str) -> Optional[str]:
    """The file of a sink destination (``/x/p.gpkg|layername=p`` -> ``/x/p.gpkg``), or None for a memory or
    database layer."""
    path = (dest or "").split("|")[0]
    return path if path and os.path.isabs(path) and os.path.isfile(path) else None


def save_style(dest: str, names: Sequence[str], colors: Sequence[str], polygons: bool) -> List[str]:
    """Write the class style as the default style of the file layer ``dest``: into the GeoPackage's
    ``layer_styles`` table, else a ``.qml`` beside the file. The sink writing ``dest`` must be closed first
    (an open GeoPackage writer locks the file). Returns warnings (empty when all went well)."""
    path = file_of(dest)
    if not path or not names:
        return []
    layer = QgsVectorLayer(dest, "samples", "ogr")
    if not layer.isValid():
        return [f"style not saved: {path} could not be opened"]
    layer.setRenderer(class_renderer(names, colors, polygons))
    if path.lower().endswith(".gpkg"):
        err = layer.saveStyleToDatabase("default", "k-textures classes", True, "")
        return [f"style not saved in {path}: {err}"] if err else []
    msg, ok = layer.saveDefaultStyle()
    return [] if ok else [f"style not saved for {path}: {msg}"]
