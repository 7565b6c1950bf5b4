"""k-textures for QGIS: self-supervised texture segmentation with ONNX models.

Layers (one direction only): ``core`` (numpy, GDAL, onnxruntime; no QGIS) <- ``algorithms`` (QGIS
Processing glue) and ``training`` (torch, imported lazily). ``python -m ktextures_plugin`` drives the core
without QGIS.
"""
import os

__version__ = "0.1.0"

#: The plugin folder (holds metadata.txt, models/, data/).
PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_DIR = os.path.join(PLUGIN_DIR, "models")
SAMPLE_IMAGE = os.path.join(PLUGIN_DIR, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif")

#: The bundled models: (file in models/, readable title). Static on purpose: saved graphical models and
#: scripts store the MODEL index, so the list must not depend on what is installed (docs/development.md §5).
BUNDLED_MODELS = [
    ("s2_10m_k4.onnx", "Sentinel-2 10 m, k = 4"),
    ("s2_10m_k6.onnx", "Sentinel-2 10 m, k = 6"),
    ("s2_10m_k8.onnx", "Sentinel-2 10 m, k = 8"),
]
DEFAULT_MODEL = 1


def bundled_model_path(index: int) -> str:
    """Absolute path of bundled model ``index`` (0-based in :data:`BUNDLED_MODELS`)."""
    return os.path.join(MODELS_DIR, BUNDLED_MODELS[index][0])
