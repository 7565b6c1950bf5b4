"""``python -m ktextures_plugin novelty`` as a subprocess: an unaligned cloud ranks first, the outputs are
written and the input is kept."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from osgeo import gdal

from conftest import ROOT
from planted import PATCH_XY, T, amazon_patch, assert_found_once, cloud, overlaps, plant, unaligned


@pytest.fixture(scope="module")
def planted_one(tmp_path_factory):
    return plant(tmp_path_factory.mktemp("nov") / "planted.tif", [(*PATCH_XY, amazon_patch())])


@pytest.mark.parametrize("x, y, size", [(411, 37, 64), (233, 517, 48)])
def test_cli_unaligned_cloud(tmp_path, x, y, size):
    path = plant(tmp_path / "cloud.tif", [(x, y, cloud(size, seed=x))])
    cp = subprocess.run([sys.executable, "-m", "ktextures_plugin", "novelty", str(path), "--score",
                         str(tmp_path / "s.tif"), "--n-select", "3", "--json", "--quiet"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr[-2000:]
    rows = json.loads(cp.stdout)["selected"]
    assert_found_once([r["window"] for r in rows], x, y, size, size)
    assert rows[0]["selection_score"] == max(r["selection_score"] for r in rows)


@pytest.mark.parametrize("kind", ["dark", "seam", "roof"])
def test_cli_unaligned_dark_block_seam_and_roof(tmp_path, kind):
    """The CLI ranks a dark block, a seam of bad lines and a roof block off the tile grid first, shown once."""
    x, y, arr = unaligned(kind)
    path = plant(tmp_path / f"{kind}.tif", [(x, y, arr)])
    cp = subprocess.run([sys.executable, "-m", "ktextures_plugin", "novelty", str(path), "--score",
                         str(tmp_path / "s.tif"), "--n-select", "3", "--json", "--quiet"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr[-2000:]
    rows = json.loads(cp.stdout)["selected"]
    assert_found_once([r["window"] for r in rows], x, y, arr.shape[2], arr.shape[1])
    assert rows[0]["selection_score"] == max(r["selection_score"] for r in rows)


def test_cli_writes_outputs_and_keeps_the_input(planted_one, tmp_path):
    before = hashlib.sha256(Path(planted_one).read_bytes()).hexdigest()
    out = {"score": tmp_path / "s.tif", "selected": tmp_path / "t.gpkg", "html": tmp_path / "e.html"}
    cp = subprocess.run([sys.executable, "-m", "ktextures_plugin", "novelty", str(planted_one), "--n-select", "4",
                         "--json", "--quiet"] + [a for k, v in out.items() for a in (f"--{k}", str(v))],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr[-2000:]
    rep = json.loads(cp.stdout)
    assert [r["rank"] for r in rep["selected"]] == [1, 2, 3, 4]
    assert overlaps(rep["selected"][0]["window"], *PATCH_XY)
    assert hashlib.sha256(Path(planted_one).read_bytes()).hexdigest() == before
    src, ds = gdal.Open(str(planted_one)), gdal.Open(str(out["score"]))
    assert (ds.RasterXSize, ds.RasterYSize) == (15, 23)   # one pixel per tile position, every 32 px
    assert ds.GetGeoTransform()[1] == pytest.approx(src.GetGeoTransform()[1] * T / 2)
    assert ds.GetGeoTransform()[0] == pytest.approx(src.GetGeoTransform()[0] + src.GetGeoTransform()[1] * T / 4)
    assert ds.GetSpatialRef().IsSame(src.GetSpatialRef())
    sc = ds.GetRasterBand(1).ReadAsArray()
    first = rep["selected"][0]
    assert sc[first["row"], first["col"]] == pytest.approx(sc.max())   # rank 1: the highest initial score
    sel = [r["selection_score"] for r in rep["selected"]]
    assert sel[0] == pytest.approx(first["initial_score"]) and sel == sorted(sel, reverse=True)
    from osgeo import ogr
    vec = ogr.Open(str(out["selected"]))
    feats = sorted(vec.GetLayer(0), key=lambda f: f["rank"])
    assert [f["rank"] for f in feats] == [1, 2, 3, 4]
    assert all(0 <= f["residual"] <= f["selection_score"] for f in feats)
    assert feats[0].GetGeometryRef().GetArea() == pytest.approx((T * 10.0) ** 2)
    assert feats[0]["classes"].startswith("texture")
    page = out["html"].read_text()
    assert page.count("data:image/png;base64,") == 3 * 4
    assert "Selection score" in page and "Initial score" in page
    bad = subprocess.run([sys.executable, "-m", "ktextures_plugin", "novelty", str(planted_one), "--bands", "1,2,3",
                          "--score", str(tmp_path / "x.tif")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "needs 4 bands" in bad.stderr
    assert not (tmp_path / "x.tif").exists()
