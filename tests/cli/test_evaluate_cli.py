"""``python -m ktextures_plugin kmeans`` and ``evaluate`` as subprocesses on real data."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal

from conftest import ROOT, SAMPLE, SAMPLE_LABEL, shared
from ktextures_plugin.core.evaluate import metrics
from ktextures_plugin.core.io import classraster

PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
KEYS = {"ari", "nmi", "accuracy", "miou_hungarian", "miou_majority", "pixels", "sample_purity", "classes_reached",
        "samples_scored", "kappa", "f1_macro"}
DOWNSTREAM = {"downstream_accuracy", "downstream_miou", "downstream_samples"}


def cli(*args, timeout=300):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([PY, "-m", "ktextures_plugin", *map(str, args)], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slovenia(tmp_path_factory):
    img, label = shared("s2_slovenia/s2_slovenia_ref4_b2b3b4b8_10m.tif"), shared("s2_slovenia/lulc_label_10m.tif")
    out = tmp_path_factory.mktemp("cli") / "slo.tif"
    cp = cli("kmeans", img, "--bands", "3,2,1,4", "--k", 5, "--out", out, "--seed", 7)
    assert cp.returncode == 0, cp.stderr
    return out, label


def test_kmeans_then_evaluate_json(slovenia):
    out, label = slovenia
    names, colors = classraster.read_palette(str(out))
    assert names == [f"cluster {i}" for i in range(1, 6)] and len(colors) == 5
    cp = cli("evaluate", out, "--reference", label, "--json")
    assert cp.returncode == 0, cp.stderr
    d = json.loads(cp.stdout)
    per_class = d.pop("per_class")
    assert set(d) == KEYS
    s = metrics.evaluate_rasters(str(out), str(label))
    assert d == pytest.approx(s.as_dict())
    assert len(per_class) == len(s.per_class())
    for got, want in zip(per_class, s.per_class()):
        assert got == pytest.approx(want)
    assert d["pixels"] == int(np.sum(_arr(label) != 0))  # k-means classifies every pixel of this scene


def _arr(path):
    ds = gdal.Open(str(path))
    return ds.GetRasterBand(1).ReadAsArray()


def test_kmeans_seed_reproducible_and_text_output(slovenia, tmp_path):
    out, label = slovenia
    img = shared("s2_slovenia/s2_slovenia_ref4_b2b3b4b8_10m.tif")
    again = tmp_path / "again.tif"
    cp = cli("kmeans", img, "--bands", "3,2,1,4", "--k", 5, "--out", again, "--seed", 7, "--json")
    assert cp.returncode == 0, cp.stderr
    summary = json.loads(cp.stdout)
    assert summary["k"] == 5 and summary["bands"] == [3, 2, 1, 4]
    assert np.array_equal(_arr(again), _arr(out))
    cp = cli("evaluate", again, "--reference", label)
    assert cp.returncode == 0, cp.stderr
    for word in ("ARI", "NMI", "accuracy (Hungarian)", "mIoU (Hungarian)", "mIoU (majority)", "sample purity",
                 "classes reached"):
        assert word in cp.stdout


def test_bundled_sample_reference_nodata_option(tmp_path):
    out = tmp_path / "bb.tif"
    cp = cli("kmeans", SAMPLE, "--bands", "3,2,1,4", "--k", 8, "--out", out)
    assert cp.returncode == 0, cp.stderr
    d0 = json.loads(cli("evaluate", out, "--reference", SAMPLE_LABEL, "--json").stdout)
    labelled = int(np.sum(_arr(SAMPLE_LABEL) != 0))
    assert d0["pixels"] == labelled
    # 'none': every reference value counts as a class, except the file's own nodata value (0 here)
    dn = json.loads(cli("evaluate", out, "--reference", SAMPLE_LABEL, "--json", "--reference-nodata", "none").stdout)
    assert dn["pixels"] == labelled
    # scoring only class != 1 by calling 1 the unlabelled value
    d1 = json.loads(cli("evaluate", out, "--reference", SAMPLE_LABEL, "--json", "--reference-nodata", 1).stdout)
    assert d1["pixels"] == labelled - int(np.sum(_arr(SAMPLE_LABEL) == 1))


@pytest.mark.parametrize("args, needle", [
    (["kmeans", "missing.tif", "--bands", "1,2,3", "--k", 3, "--out", "{tmp}/o.tif"], "cannot open"),
    (["kmeans", SAMPLE, "--bands", "3,2,1,9", "--k", 3, "--out", "{tmp}/o.tif"], "out of range"),
    (["kmeans", SAMPLE, "--bands", "3,2,1,4", "--k", 1, "--out", "{tmp}/o.tif"], "--k"),
    (["kmeans", SAMPLE, "--bands", "3,2,1,4", "--k", "x", "--out", "{tmp}/o.tif"], "invalid int"),
    (["kmeans", SAMPLE, "--k", 3, "--out", "{tmp}/o.tif"], "--bands"),
    (["kmeans", SAMPLE, "--bands", "3,2,1,4", "--k", 3, "--out", "{tmp}/no/such/dir/o.tif"], "does not exist"),
    (["evaluate", SAMPLE_LABEL, "--reference", "{tmp}/missing.tif"], "cannot open"),
    (["evaluate", SAMPLE_LABEL], "--reference"),
    (["evaluate", SAMPLE_LABEL, "--reference", SAMPLE_LABEL, "--reference-nodata", "abc"], "reference-nodata"),
])
def test_bad_input_exit_2_one_line(args, needle, tmp_path):
    cp = cli(*[a.replace("{tmp}", str(tmp_path)) if isinstance(a, str) else a for a in args])
    assert cp.returncode == 2, (cp.stdout, cp.stderr)
    lines = cp.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], cp.stderr
    assert not any("partial" in f for f in os.listdir(tmp_path))


def test_evaluate_grid_mismatch_exit_2(slovenia):
    out, _ = slovenia
    cp = cli("evaluate", out, "--reference", SAMPLE_LABEL)
    assert cp.returncode == 2
    assert "same grid" in cp.stderr and len(cp.stderr.strip().splitlines()) == 1


def test_dispatcher_lists_commands():
    cp = cli("--help")
    assert cp.returncode == 0 and "evaluate" in cp.stdout and "kmeans" in cp.stdout


def test_evaluate_downstream_with_image(slovenia):
    """--image adds the downstream figures, as core metrics computes them; --bands without --image is refused."""
    out, label = slovenia
    img = shared("s2_slovenia/s2_slovenia_ref4_b2b3b4b8_10m.tif")
    cp = cli("evaluate", out, "--reference", label, "--image", img, "--bands", "3,2,1,4", "--json")
    assert cp.returncode == 0, cp.stderr
    d = json.loads(cp.stdout)
    d.pop("per_class")
    assert set(d) == KEYS | DOWNSTREAM
    ref = metrics.evaluate_rasters(str(out), str(label), image_path=str(img), bands=[3, 2, 1, 4]).as_dict()
    assert d == pytest.approx(ref)
    bad = cli("evaluate", out, "--reference", label, "--bands", "3,2,1,4")
    assert bad.returncode == 2 and "--bands needs --image" in bad.stderr
    text = cli("evaluate", out, "--reference", label, "--image", img)
    assert text.returncode == 0 and "downstream mIoU" in text.stdout and "per reference class" in text.stdout
