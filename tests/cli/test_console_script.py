"""The ``ktextures`` command (pyproject.toml ``[project.scripts]``), installed as ``./build.sh`` installs it
(``pip install --no-deps --no-build-isolation -e .``) into a throwaway venv built like the project's, then run
from another folder: ``--help`` lists the commands and ``ktextures segment`` writes a class raster there."""
import os
import subprocess
import sys
import sysconfig

import pytest
from osgeo import gdal

from conftest import ROOT, SAMPLE


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    if sys.base_prefix == sys.prefix:
        pytest.skip("the tests run outside a venv")
    d = tmp_path_factory.mktemp("venv") / "v"
    base = os.path.join(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    subprocess.run([base, "-m", "venv", "--system-site-packages", str(d)], check=True, timeout=120)
    # what the project's venv has installed (onnxruntime ...), seen through a .pth as its own packages would be
    site = subprocess.run([str(d / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, "project-venv.pth"), "w") as f:
        f.write(sysconfig.get_path("purelib") + "\n")
    cp = subprocess.run([str(d / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                         "--disable-pip-version-check", "-e", str(ROOT)],
                        capture_output=True, text=True, timeout=300, cwd=d)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return d


def test_ktextures_runs_from_any_folder(venv, tmp_path, tiny_models):
    exe = venv / "bin" / "ktextures"
    assert exe.exists()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cp = subprocess.run([str(exe), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert cp.returncode == 0 and "segment" in cp.stdout and "install" in cp.stdout, cp.stdout + cp.stderr
    cp = subprocess.run([str(exe), "segment", str(SAMPLE), "--out", "classes.tif", "--model", tiny_models["bin4"]],
                        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stdout[-2000:] + cp.stderr[-2000:]
    ds = gdal.Open(str(tmp_path / "classes.tif"))
    assert (ds.RasterXSize, ds.RasterYSize) == (512, 768)
    ds = None
    assert not (ROOT / "build").exists() and not list(ROOT.glob("*.egg-info"))  # the checkout stays clean
