"""QGIS plugin entry point. Only ``classFactory``: no heavy imports here (no onnxruntime, torch or GDAL)."""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """Called by QGIS (``iface`` is None under ``qgis_process``)."""
    from .ktextures_plugin.plugin import KTexturesPlugin

    return KTexturesPlugin(iface)
