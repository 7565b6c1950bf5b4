"""The QGIS plugin object: registers the Processing provider (desktop and qgis_process)."""
from qgis.core import QgsApplication

from .provider import KTexturesProvider


class KTexturesPlugin:
    def __init__(self, iface):
        self.iface = iface  # None under qgis_process
        self.provider = None  # keep a Python reference (qgis.md §4: the registry may lose it otherwise)

    def initProcessing(self):  # noqa: N802 (QGIS API)
        if self.provider is None:
            self.provider = KTexturesProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API)
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
