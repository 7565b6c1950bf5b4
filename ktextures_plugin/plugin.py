"""The QGIS plugin object: puts the plugin's package folder on sys.path, registers the Processing provider
(desktop and qgis_process) and, in the desktop, offers to install onnxruntime when it is missing."""
from qgis.core import QgsApplication

from .installer_gui import add_deps_to_path
from .provider import KTexturesProvider


class KTexturesPlugin:
    def __init__(self, iface):
        self.iface = iface  # None under qgis_process
        self.provider = None  # keep a Python reference (docs/development.md §5: the registry may lose it otherwise)
        self.installer = None
        self.action = self.torch_action = None
        add_deps_to_path()  # packages installed by the "Install" button (installer.py)

    def initProcessing(self):  # noqa: N802 (QGIS API)
        if self.provider is None:
            self.provider = KTexturesProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API)
        try:
            from qgis.PyQt.QtGui import QAction  # Qt 6 (QGIS 4)
        except ImportError:
            from qgis.PyQt.QtWidgets import QAction  # Qt 5

        from . import installer_gui
        self.initProcessing()
        self.installer = installer_gui.Installer(self.iface)
        installer_gui.CURRENT[:] = [self.installer]
        if self.iface is not None:
            self.action = QAction(installer_gui.menu_text("onnxruntime"), self.iface.mainWindow())
            self.action.triggered.connect(lambda: self.installer.start("onnxruntime"))
            self.iface.addPluginToMenu("k-textures", self.action)
            self.torch_action = QAction(installer_gui.menu_text("torch"), self.iface.mainWindow())
            self.torch_action.triggered.connect(lambda: self.installer.start("torch"))
            self.iface.addPluginToMenu("k-textures", self.torch_action)
            self.installer.finished.connect(self._update_menu)
        self.installer.notice("onnxruntime")

    def _update_menu(self, *_):
        """The menu entries say what is installed (after an install too)."""
        from . import installer_gui
        for action, feature in ((self.action, "onnxruntime"), (self.torch_action, "torch")):
            if action is not None:
                action.setText(installer_gui.menu_text(feature))

    def unload(self):
        from . import installer_gui
        installer_gui.CURRENT[:] = []
        if self.iface is not None and self.action is not None:
            for a in (self.action, self.torch_action):
                self.iface.removePluginMenu("k-textures", a)
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
