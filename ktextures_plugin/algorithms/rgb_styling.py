"""True-colour styling of the simulated image (``OUTPUT_SIMULATION`` of ``ktextures:segment``): a
``QgsMultiBandColorRenderer`` on its red, green and blue bands with a 2-98 % cumulative-cut stretch, applied
when QGIS loads the layer and written as its default style (``.qml``) so the file opens the same way."""
from typing import Optional, Sequence

from qgis.core import (
    QgsContrastEnhancement,
    QgsMultiBandColorRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterLayer,
)

#: Cumulative cut of the stretch (fractions of the pixels below the minimum and above the maximum).
CUT = (0.02, 0.98)


def rgb_bands(channel_names: Sequence[str]) -> Optional[Sequence[int]]:
    """1-based bands of red, green and blue in an image with the model's channels, or None."""
    names = list(channel_names)
    if not {"red", "green", "blue"} <= set(names):
        return None
    return [names.index(n) + 1 for n in ("red", "green", "blue")]


def true_colour_renderer(layer: QgsRasterLayer, bands: Sequence[int]) -> QgsMultiBandColorRenderer:
    """Red, green, blue of ``layer`` with a min-max stretch between the 2 and 98 % cumulative cut of each band."""
    provider = layer.dataProvider()
    renderer = QgsMultiBandColorRenderer(provider, *bands)
    setters = (renderer.setRedContrastEnhancement, renderer.setGreenContrastEnhancement,
               renderer.setBlueContrastEnhancement)
    for band, setter in zip(bands, setters):
        lo, hi = provider.cumulativeCut(band, CUT[0], CUT[1], layer.extent(), 250000)
        ce = QgsContrastEnhancement(provider.dataType(band))
        ce.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum, False)
        ce.setMinimumValue(lo)
        ce.setMaximumValue(hi if hi > lo else lo + 1)
        setter(ce)
    return renderer


class TrueColourPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies :func:`true_colour_renderer` to the simulated image when QGIS loads it."""

    _keep = []  # Python references: only the C++ side is owned by the context (QGIS issues #48087/#47533)

    def __init__(self, bands):
        super().__init__()
        self.bands = list(bands)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsRasterLayer) and layer.isValid():
            layer.setRenderer(true_colour_renderer(layer, self.bands))
            layer.triggerRepaint()

    @classmethod
    def create(cls, bands):
        pp = cls(bands)
        cls._keep.append(pp)
        return pp


def style_simulation(context, path: str, channel_names: Sequence[str], feedback=None) -> None:
    """Write the true-colour default style of the simulated image at ``path`` and attach it for loading
    on completion; nothing when the model has no red, green and blue channels."""
    bands = rgb_bands(channel_names)
    if not bands or not path:
        return
    layer = QgsRasterLayer(path, "simulation", "gdal")
    if layer.isValid():
        layer.setRenderer(true_colour_renderer(layer, bands))
        msg, ok = layer.saveDefaultStyle()
        if not ok and feedback is not None:
            feedback.pushWarning(f"OUTPUT_SIMULATION style not saved: {msg}")
    if context.willLoadLayerOnCompletion(path):
        context.layerToLoadOnCompletionDetails(path).setPostProcessor(TrueColourPostProcessor.create(bands))
