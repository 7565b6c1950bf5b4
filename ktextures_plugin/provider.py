"""The ``ktextures`` Processing provider. It loads even without onnxruntime or torch; the algorithms that
need them explain how to install them when run."""
import importlib
import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from . import __version__

ICON_PATH = os.path.join(os.path.dirname(__file__), "icons", "icon.svg")

#: (module in ktextures_plugin.algorithms, class name); a module not shipped is skipped.
ALGORITHMS = [
    ("segment", "SegmentAlgorithm"),
    ("fit", "FitAlgorithm"),
    ("evaluate", "EvaluateAlgorithm"),
    ("sample", "SampleAlgorithm"),
    ("novelty", "NoveltyAlgorithm"),
    ("rename", "RenameClassesAlgorithm"),
]


def icon() -> QIcon:
    try:
        from . import resources  # noqa: F401  (compiled by build.sh from resources.qrc)
        ic = QIcon(":/plugins/ktextures/icon.svg")
        if not ic.isNull():
            return ic
    except ImportError:
        pass
    return QIcon(ICON_PATH)


class KTexturesProvider(QgsProcessingProvider):
    def id(self):
        return "ktextures"

    def name(self):
        return "k-textures"

    def longName(self):  # noqa: N802
        return f"k-textures self-supervised segmentation ({__version__})"

    def icon(self):
        return icon()

    def versionInfo(self):  # noqa: N802
        return __version__

    def loadAlgorithms(self):  # noqa: N802
        here = os.path.join(os.path.dirname(__file__), "algorithms")
        for module, cls in ALGORITHMS:
            if not os.path.exists(os.path.join(here, module + ".py")):
                continue
            mod = importlib.import_module(f"{__package__}.algorithms.{module}")
            self.addAlgorithm(getattr(mod, cls)())
