"""Shared fixtures. QGIS runs headless through pytest-qgis (pyproject.toml: qgis_gui_enabled = false).

Real parts only: real QGIS Processing, GDAL, onnxruntime and real imagery (the bundled sample in data/, and
the labelled scenes when they are beside the checkout, docs/development.md §2; tests that need them skip with
the reason otherwise).

Fixtures and helpers for the front ends: ``provider``; :func:`algorithm_runner` makes a module's ``run``
fixture (``processing.run`` of one ``ktextures:*`` algorithm); ``qgis_process`` (and :func:`qgis_process_for`)
runs ``qgis_process.bin`` with this checkout installed and enabled as plugin ``ktextures``.
"""
import csv
import functools
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
SAMPLE = ROOT / "data" / "s2_brandenburg_sample_b2b3b4b8_10m.tif"
SAMPLE_LABEL = ROOT / "data" / "s2_brandenburg_sample_osm_label.tif"
SHARED_DATA = ROOT.parent / "shared" / "data"

#: Test modules whose tests fit real models with torch (minutes each): marked ``slow``.
SLOW_MODULES = {"test_training", "test_fit_algorithm"}


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test that starts ``qgis_process.bin`` (the fixture or :func:`qgis_process_for`)
    or fits a real model, so ``./build.sh test -m "not slow"`` is the quick subset (docs/development.md §2)."""
    for item in items:
        func = getattr(item, "function", None)
        try:
            source = inspect.getsource(func) if func else ""
        except (OSError, TypeError):
            source = ""
        if ("qgis_process" in getattr(item, "fixturenames", ()) or "qgis_process" in source
                or item.module.__name__ in SLOW_MODULES):
            item.add_marker(pytest.mark.slow)


_PROVIDER = []  # keeps the provider alive for the whole session (docs/development.md §5)


def shared(rel: str) -> Path:
    """A file of the labelled scenes (``shared/data`` beside the checkout), or skip the test when absent."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"{p} not present (the labelled scenes are not beside this checkout)")
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


def read_band(path, band: int = 1):
    """Band ``band`` of the raster at ``path`` as an array (the file closed again)."""
    from osgeo import gdal

    ds = gdal.Open(str(path))
    try:
        return ds.GetRasterBand(band).ReadAsArray()
    finally:
        ds = None


def read_array(path, window=None):
    """Every band of the raster at ``path`` as one array (``(H, W)`` for one band, ``(C, H, W)`` else), or only
    ``window`` = ``(xoff, yoff, xsize, ysize)`` of it (the file closed again)."""
    from osgeo import gdal

    ds = gdal.Open(str(path))
    try:
        return ds.ReadAsArray(*window) if window else ds.ReadAsArray()
    finally:
        ds = None


def edge_distance(arr, c, border_is_edge=True):
    """The reference edge distance of the sample tests: pixels from every pixel of ``arr`` to the nearest pixel
    that is not class ``c`` (the whole raster at once; outside the raster counts as another class when
    ``border_is_edge``)."""
    import numpy as np
    from scipy import ndimage

    return ndimage.distance_transform_edt(np.pad(arr == c, 1, constant_values=not border_is_edge))[1:-1, 1:-1]


def sample_with_nodata(tmp_path, rows: slice, cols: slice, dtype=None) -> Path:
    """A copy of the bundled sample with nodata 0 declared and the block ``[rows, cols]`` set to it in every
    band (``dtype``: a GDAL data type for the copy, default the sample's)."""
    from osgeo import gdal

    p = tmp_path / "nd.tif"
    gdal.Translate(str(p), str(SAMPLE), noData=0, **({"outputType": dtype} if dtype is not None else {}))
    ds = gdal.Open(str(p), gdal.GA_Update)
    for b in range(1, ds.RasterCount + 1):
        a = ds.GetRasterBand(b).ReadAsArray()
        a[rows, cols] = 0
        ds.GetRasterBand(b).WriteArray(a)
    ds = None
    return p


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


@pytest.fixture(scope="session")
def class_tif(tiny_models, tmp_path_factory):
    """The bundled sample (512 x 768 px) segmented by the tiny 4-class model, sieved at 4 px (the class raster
    of the sample tests, core and Processing)."""
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster

    out = tmp_path_factory.mktemp("sample_classes") / "classes.tif"
    segment_raster(str(SAMPLE), tiny_models["bin4"], str(out), SegmentOptions(min_segment_px=4))
    return str(out)


@pytest.fixture(scope="session")
def holed_tif(class_tif, tmp_path_factory):
    """The class raster with nodata (0) blocks, so nodata edges matter too."""
    from osgeo import gdal

    out = str(tmp_path_factory.mktemp("sample_holed") / "holed.tif")
    gdal.Translate(out, class_tif)
    ds = gdal.Open(out, gdal.GA_Update)
    a = ds.GetRasterBand(1).ReadAsArray()
    a[100:180, 50:400] = 0
    a[500:520, :] = 0
    ds.GetRasterBand(1).WriteArray(a)
    ds = None
    return out


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


def csv_rows(path, reader=csv.DictReader):
    """The rows of a CSV file (``reader`` = ``csv.DictReader`` or ``csv.reader``), the file closed."""
    with open(path, newline="") as f:
        return list(reader(f))


def _run_processing(alg_id, params, **kw):
    import processing

    return processing.run(alg_id, params, **kw)


def algorithm_runner(alg_id: str):
    """A fixture ``run(params, feedback=None, context=None, ...)`` that runs ``alg_id`` with ``processing.run``
    in the test QGIS (the provider registered); a module assigns it: ``run = algorithm_runner("ktextures:x")``."""
    @pytest.fixture
    def run(provider):
        return functools.partial(_run_processing, alg_id)
    return run


class QgisProcess:
    """``qgis_process.bin`` in an environment where plugin ``ktextures`` is installed and enabled."""

    def __init__(self, env):
        self.env = env

    def run(self, alg_id, *params, json_output=True, timeout=300):
        """``qgis_process.bin [--json] run ALG -- PARAM=VALUE ...``; returns the CompletedProcess (text)."""
        cmd = ["qgis_process.bin", *(["--json"] if json_output else []), "run", alg_id, "--", *map(str, params)]
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)


def qgis_process_for(tmp_path, plugins=None) -> QgisProcess:
    """A :class:`QgisProcess` with a fresh profile in ``tmp_path``: this checkout (or the plugin folders in
    ``plugins``, e.g. an unzipped package) as plugin ``ktextures``, enabled. Fails the test when enabling fails
    (rc 1 "already enabled" is fine: ``plugins enable`` is not idempotent in 3.22)."""
    env = qgis_process_env(tmp_path)
    if plugins is not None:
        env["QGIS_PLUGINPATH"] = str(plugins)
    cp = subprocess.run(["qgis_process.bin", "plugins", "enable", "ktextures"], env=env, capture_output=True,
                        text=True, timeout=120)
    assert cp.returncode == 0 or "already enabled" in cp.stderr + cp.stdout, cp.stderr
    return QgisProcess(env)


@pytest.fixture
def qgis_process(tmp_path):
    """:func:`qgis_process_for` in the test's ``tmp_path``."""
    return qgis_process_for(tmp_path)
