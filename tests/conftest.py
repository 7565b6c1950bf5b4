"""Shared fixtures. QGIS runs headless through pytest-qgis (pytest.ini: qgis_gui_enabled = false).

Real parts only: real QGIS Processing, GDAL, onnxruntime and real imagery (the bundled sample in data/,
and ../shared/data when it is beside the checkout; tests that need it skip with the reason otherwise).
"""
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
SAMPLE = ROOT / "data" / "s2_brandenburg_sample_b2b3b4b8_10m.tif"
SAMPLE_LABEL = ROOT / "data" / "s2_brandenburg_sample_osm_label.tif"
SHARED_DATA = ROOT.parent / "shared" / "data"

_PROVIDER = []  # keeps the provider alive for the whole session (docs/development.md §5)


def shared(rel: str) -> Path:
    """A file of ../shared/data, or skip the test when the folder is not beside the checkout."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"{p} not present (../shared/data is not beside this checkout)")
    return p


@pytest.fixture(scope="session")
def provider(qgis_processing):
    """The ktextures provider registered in the Processing registry of the test QGIS."""
    from qgis.core import QgsApplication

    from ktextures_plugin.provider import KTexturesProvider

    reg = QgsApplication.processingRegistry()
    prov = reg.providerById("ktextures")
    if prov is None:
        prov = KTexturesProvider()
        assert reg.addProvider(prov)
        _PROVIDER.append(prov)
    return prov


@pytest.fixture
def sample_copy(tmp_path):
    """A writable copy of the bundled sample (for tests that must show the input is not modified)."""
    dst = tmp_path / SAMPLE.name
    shutil.copy(SAMPLE, dst)
    return dst


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Plumbing models built with onnx.helper: {'bin4': path, 'box4': path}."""
    from onnx_fixtures import binning_model, box_model

    d = tmp_path_factory.mktemp("tiny_models")
    return {"bin4": binning_model(d / "bin4.onnx", k=4), "box4": box_model(d / "box4.onnx", k=4)}


def qgis_process_env(tmp_path):
    """Environment for a qgis_process.bin subprocess that sees this checkout as plugin 'ktextures'."""
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    link = plugins / "ktextures"
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(plugins),
               QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "qgiscfg"),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    return env
