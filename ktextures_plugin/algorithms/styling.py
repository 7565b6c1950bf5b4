"""Styling of the outputs in QGIS, in one place: the renderers (class raster, class polygons, sample points and chip
footprints, the true-colour simulation, the novelty score and its selected tiles), their default styles written into
the files (``.qml`` sidecar or the GeoPackage's ``layer_styles`` table) so that the files open styled however they
were produced, and one generic layer post-processor (:class:`StylePostProcessor`) that styles a layer QGIS loads on
completion and puts it in reading order among the layers of the same run: the simulation at the bottom, the class
raster above it, then the polygons (outlines, so the raster shows through), the chip footprints and the sample
points (a white halo, so they stand out on a class of their own colour); novelty's semi-transparent score raster
sits where the class raster would, its selected tiles where the footprints would.

Post-processors are kept alive at class level: QGIS owns only the C++ object (QGIS issues #48087/#47533).
"""
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsFillSymbol,
    QgsLayerTreeLayer,
    QgsMarkerSymbol,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsPalLayerSettings,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterBandStats,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRendererCategory,
    QgsSimpleFillSymbolLayer,
    QgsSimpleMarkerSymbolLayer,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsStyle,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor, QFont

from ..core.io.modelinfo import channel_indices

#: Reading order of a run's layers, bottom to top.
SIMULATION, CLASSES, POLYGONS, FOOTPRINTS, POINTS = range(5)
#: Cumulative cut of the true-colour stretch (fractions of the pixels below the minimum and above the maximum).
CUT = (0.02, 0.98)
#: The sequential ramp of the novelty score raster (a QGIS default style ramp), dark = low, bright = high.
SCORE_RAMP = "Magma"
#: The score raster's colours run between these percentiles of its scores (a few extreme tiles do not wash out
#: the rest).
SCORE_STRETCH = (2.0, 98.0)
#: Opacity of the score raster, so that the image below it (and the tiles above) stay readable.
SCORE_OPACITY = 0.6


# ------------------------------------------------------------------------------------------ renderers
def raster_renderer(layer: QgsRasterLayer, names: Sequence[str], colors: Sequence[str]):
    """Paletted renderer of a class raster: value i + 1 in ``colors[i]``, labelled ``names[i]``."""
    classes = [QgsPalettedRasterRenderer.Class(i + 1, QColor(c), n) for i, (n, c) in enumerate(zip(names, colors))]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)


def vector_renderer(names: Sequence[str], colors: Sequence[str], field: str = "class_id"):
    """Class polygons as outlines (no fill: the class raster below shows through): a line in a darker shade of
    the class colour on a light casing, so the boundaries read over the class raster and over the image alike.
    The casing is locked, so the symbol's colour (legend, ``symbol().color()``) stays the class colour."""
    cats = []
    for i, (n, c) in enumerate(zip(names, colors)):
        fill = QColor(c)
        fill.setAlpha(0)
        clear = ",".join(map(str, fill.getRgb()))
        sym = QgsFillSymbol.createSimple({"color": clear, "outline_color": QColor(c).darker(170).name(),
                                          "outline_width": "0.3"})
        casing = QgsSimpleFillSymbolLayer.create({"color": clear, "outline_color": "255,255,255,140",
                                                  "outline_width": "0.55"})
        casing.setLocked(True)
        sym.insertSymbolLayer(0, casing)
        cats.append(QgsRendererCategory(i + 1, sym, n))
    return QgsCategorizedSymbolRenderer(field, cats)


def sample_renderer(names: Sequence[str], colors: Sequence[str], polygons: bool) -> QgsCategorizedSymbolRenderer:
    """Categories 1..k on ``class_id``: chip footprints as outlines in the class colour (``polygons``), sample
    points as class-coloured dots on a white halo with a dark rim, visible on any class (the halo is locked, so
    ``symbol().color()`` is the class colour)."""
    cats = []
    for i, (n, c) in enumerate(zip(names, colors)):
        if polygons:
            sym = QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": c, "outline_width": "0.5"})
        else:
            sym = QgsMarkerSymbol.createSimple({"name": "circle", "color": c, "outline_style": "no", "size": "2.4"})
            halo = QgsSimpleMarkerSymbolLayer.create({"name": "circle", "color": "255,255,255,255",
                                                      "outline_color": "#202020", "outline_width": "0.25",
                                                      "size": "3.8"})
            halo.setLocked(True)
            sym.insertSymbolLayer(0, halo)
        cats.append(QgsRendererCategory(i + 1, sym, n))
    return QgsCategorizedSymbolRenderer("class_id", cats)


def rgb_bands(channel_names: Sequence[str]) -> Optional[Sequence[int]]:
    """1-based bands of red, green and blue in an image with the model's channels, or None."""
    idx = channel_indices(channel_names)
    return None if idx is None else [i + 1 for i in idx]


def true_colour_renderer(layer: QgsRasterLayer, bands: Sequence[int]) -> QgsMultiBandColorRenderer:
    """Red, green, blue of ``layer`` with a min-max stretch between the 2 and 98 % cumulative cut of each band."""
    provider = layer.dataProvider()
    renderer = QgsMultiBandColorRenderer(provider, *bands)
    setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
               renderer.setBlueContrastEnhancement)
    for band, setter in zip(bands, setters):
        lo, hi = provider.cumulativeCut(band, CUT[0], CUT[1], layer.extent(), 250000)
        ce = QgsContrastEnhancement(provider.dataType(band))
        ce.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum, False)
        ce.setMinimumValue(lo)
        ce.setMaximumValue(hi if hi > lo else lo + 1)
        setter(ce)
    return renderer


def apply_raster_style(layer: QgsRasterLayer, names, colors) -> None:
    layer.setRenderer(raster_renderer(layer, names, colors))
    layer.triggerRepaint()


def apply_vector_style(layer: QgsVectorLayer, names, colors) -> None:
    layer.setRenderer(vector_renderer(names, colors))
    layer.triggerRepaint()


def class_style(names, colors) -> Callable:
    """The class style of a raster or vector layer (paletted raster, outlined polygons), as one function."""
    def apply(layer):
        if isinstance(layer, QgsRasterLayer):
            apply_raster_style(layer, names, colors)
        elif isinstance(layer, QgsVectorLayer):
            apply_vector_style(layer, names, colors)
    return apply


# ------------------------------------------------------------------------------------------ default styles
def file_of(dest: str) -> Optional[str]:
    """The file of a destination (``/x/p.gpkg|layername=p`` -> ``/x/p.gpkg``), or None for a memory or database
    layer."""
    path = (dest or "").split("|")[0]
    return os.path.abspath(path) if path and os.path.isfile(path) else None  # relative: qgis_process q/c.tif


def save_default_style(dest: str, apply: Callable, raster: bool, what: str) -> List[str]:
    """Open the file of ``dest``, style it with ``apply`` and save that as its default style: ``<file>.qml``, or
    the GeoPackage's ``layer_styles`` table. Writers must be closed first (an open GeoPackage writer locks the
    file). Returns warnings (empty when all went well; nothing for memory or database layers)."""
    if not file_of(dest):
        return []
    layer = QgsRasterLayer(dest, what, "gdal") if raster else QgsVectorLayer(dest, what, "ogr")
    if not layer.isValid():
        return [f"{what} style not saved: {dest} could not be opened"]
    apply(layer)
    if not raster and file_of(dest).lower().endswith(".gpkg"):
        err = layer.saveStyleToDatabase("default", f"k-textures {what}", True, "")
        return [f"{what} style not saved in {dest}: {err}"] if err else []
    qml = os.path.splitext(file_of(dest))[0] + ".qml"
    existed = os.path.exists(qml)
    msg, ok = layer.saveDefaultStyle()
    if os.path.exists(qml) and (os.path.getsize(qml) == 0 or (not ok and not existed)):
        os.remove(qml)  # a full disk leaves an empty .qml that QGIS would try to load with the layer
        ok, msg = False, msg or f"{qml} could not be written"
    return [] if ok else [f"{what} style not saved: {msg}"]


def save_default_styles(raster_path: str, vector_path: str, names: List[str], colors: List[str]) -> List[str]:
    """The default styles of a class raster and its polygons. Returns warnings (empty when all went well)."""
    apply = class_style(names, colors)
    return ((save_default_style(raster_path, apply, True, "raster") if raster_path else [])
            + (save_default_style(vector_path, apply, False, "vector") if vector_path else []))


def save_sample_style(dest: str, names: Sequence[str], colors: Sequence[str], polygons: bool) -> List[str]:
    """The default style of sample points or chip footprints (:func:`sample_renderer`)."""
    if not names:
        return []

    def apply(layer):
        layer.setRenderer(sample_renderer(names, colors, polygons))
    return save_default_style(dest, apply, False, "footprints" if polygons else "samples")


# ------------------------------------------------------------------------------------------ on loading
#: layer id -> (run, rank) of the layers styled by :class:`StylePostProcessor`
_ORDER: Dict[str, Tuple[int, int]] = {}


def arrange(layer, run: int, rank: int, project=None) -> None:
    """Put ``layer`` in reading order (by ``rank``, highest on top) among the layers of the same ``run`` in its
    layer-tree group; the other layers keep their places."""
    _ORDER[layer.id()] = (run, rank)
    project = project or layer.project()
    node = project.layerTreeRoot().findLayer(layer.id()) if project is not None else None
    if node is None:
        return
    parent = node.parent()
    ours = [(i, c) for i, c in enumerate(parent.children()) if isinstance(c, QgsLayerTreeLayer)
            and _ORDER.get(c.layerId(), (None,))[0] == run]
    wanted = sorted((c for _, c in ours), key=lambda c: -_ORDER[c.layerId()][1])
    if [c.layerId() for _, c in ours] == [c.layerId() for c in wanted]:
        return
    clones = [c.clone() for c in wanted]
    # clones in first (from the bottom, so the slots above keep their indices), then the originals out: a layer
    # whose last tree node goes would be removed from the project
    for (i, _), clone in reversed(list(zip(ours, clones))):
        parent.insertChildNode(i, clone)
    for _, c in ours:
        parent.removeChildNode(c)


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Styles a layer when QGIS loads it (``apply(layer)``), then puts it in reading order (:func:`arrange`)."""

    _keep = []  # Python references: only the C++ side is owned by the context

    def __init__(self, apply: Callable, run: int, rank: Optional[Callable] = None):
        super().__init__()
        self.apply, self.run, self.rank = apply, run, rank

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if layer is None or not layer.isValid():
            return
        self.apply(layer)
        if self.rank is not None:
            arrange(layer, self.run, self.rank(layer), context.project())


def attach(context, dest: str, apply: Callable, rank: Optional[Callable] = None) -> None:
    """Style ``dest`` with ``apply`` when it is loaded on completion (GUI, batch, runAndLoadResults) and order it
    by ``rank(layer)`` among the layers of this run (this ``context``)."""
    if dest and context.willLoadLayerOnCompletion(dest):
        pp = StylePostProcessor(apply, id(context), rank)
        StylePostProcessor._keep.append(pp)
        context.layerToLoadOnCompletionDetails(dest).setPostProcessor(pp)


def _class_rank(layer) -> int:
    return CLASSES if isinstance(layer, QgsRasterLayer) else POLYGONS


def attach_style(context, layer_id_or_path: str, names, colors) -> None:
    """The class style (raster or polygons) on loading."""
    attach(context, layer_id_or_path, class_style(names, colors), _class_rank)


def attach_sample_style(context, dest: str, names, colors, polygons: bool) -> None:
    """The sample style (points or chip footprints) on loading."""
    def apply(layer):
        if isinstance(layer, QgsVectorLayer):
            layer.setRenderer(sample_renderer(names, colors, polygons))
            layer.triggerRepaint()
    attach(context, dest, apply, lambda _layer: FOOTPRINTS if polygons else POINTS)


def style_simulation(context, path: str, channel_names: Sequence[str], feedback=None) -> None:
    """The true-colour style of the simulated image: written as its default style and applied on loading
    (below the class raster); nothing when the model has no red, green and blue channels."""
    bands = rgb_bands(channel_names)
    if not bands or not path:
        return

    def apply(layer):
        if isinstance(layer, QgsRasterLayer):
            layer.setRenderer(true_colour_renderer(layer, bands))
            layer.triggerRepaint()
    for w in save_default_style(path, apply, True, "OUTPUT_SIMULATION"):
        if feedback is not None:
            feedback.pushWarning(w)
    attach(context, path, apply, lambda _layer: SIMULATION)


# ------------------------------------------------------------------------------------------ novelty outputs
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
    """The novelty score raster: singleband pseudocolor on :data:`SCORE_RAMP` between the :data:`SCORE_STRETCH`
    percentiles of the scores (minimum to maximum when they cannot be read), at :data:`SCORE_OPACITY`."""
    rng = score_stretch(layer.source())
    if rng is None:
        stats = layer.dataProvider().bandStatistics(1, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
        rng = (stats.minimumValue, stats.maximumValue)
    shader_fn = QgsColorRampShader(rng[0], rng[1], QgsStyle.defaultStyle().colorRamp(SCORE_RAMP))
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
    """Novelty's selected tiles: red outlines, no fill; labels = the ``rank`` field (white buffer)."""
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


def save_novelty_styles(score_path: str, selected_path: str) -> List[str]:
    """The default styles of the score raster and the selected tiles (:func:`save_default_style`). Returns
    warnings (empty when all went well)."""
    return ((save_default_style(score_path, style_score, True, "score raster") if score_path else [])
            + (save_default_style(selected_path, style_selected, False, "selected tiles") if selected_path else []))


def attach_novelty_styles(context, score: str, selected: str) -> None:
    """Style novelty's outputs when they are loaded on completion, the score raster below the selected tiles."""
    attach(context, score, style_score, lambda _layer: CLASSES)
    attach(context, selected, style_selected, lambda _layer: FOOTPRINTS)
