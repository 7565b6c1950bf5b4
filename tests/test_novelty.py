"""Novelty (core and CLI) on real imagery: a patch of another scene planted in a copy of the bundled sample is
found first and explained where it is; a second copy is not shown right after the first; determinism; errors."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import ROOT, SAMPLE, shared
from ktextures_plugin import bundled_model_path
from ktextures_plugin.core import novelty, novelty_output
from ktextures_plugin.core.errors import Canceled, RasterError

gdal.UseExceptions()
MODEL = bundled_model_path(1)
T = 64


def amazon_patch(size=T):
    """A size x size patch of the Amazon scene (a high-contrast place), in the sample's units (x 10000)."""
    a = gdal.Open(str(shared("s2_amazon/s2_amazon_b2b3b4b8_10m_reflectance.tif"))).ReadAsArray(72, 0, size, size)
    return np.clip(a * 10000, 0, 65535).astype(np.uint16)  # bands B2, B3, B4, B8 as in the sample


def plant(dst, patches):
    """Copy the sample to ``dst`` and paste ``(x, y, (4, h, w) array)`` patches into it."""
    gdal.Translate(str(dst), str(SAMPLE))
    ds = gdal.Open(str(dst), gdal.GA_Update)
    for x, y, arr in patches:
        for b in range(4):
            ds.GetRasterBand(b + 1).WriteArray(np.ascontiguousarray(arr[b]), x, y)
    ds = None
    return dst


def overlaps(window, x, y, size=T):
    wx, wy, ww, wh = window
    return wx < x + size and x < wx + ww and wy < y + size and y < wy + wh


PATCH_XY = (200, 300)   # not on the tile grid: the patch covers parts of four tiles


@pytest.fixture(scope="module")
def planted_one(tmp_path_factory):
    return plant(tmp_path_factory.mktemp("nov") / "planted.tif", [(*PATCH_XY, amazon_patch())])


def test_planted_patch_ranks_first_and_heat_map_points_at_it(planted_one):
    res = novelty.rank_tiles(str(planted_one), MODEL, n_select=5)
    first = res.selected[0]
    assert overlaps(first.window, *PATCH_XY), first.window
    assert res.table.index.size == 96 and res.table.skipped == 0
    # the explanation: the heat map is higher inside the patch than in the rest of the same tile
    _, _, heat = novelty_output.explanations(res, str(planted_one), MODEL)[0]
    x0, y0, w, h = first.window
    yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w]
    inside = (xx >= PATCH_XY[0]) & (xx < PATCH_XY[0] + T) & (yy >= PATCH_XY[1]) & (yy < PATCH_XY[1] + T)
    assert 0 < inside.sum() < inside.size
    assert heat[inside].mean() > 2 * heat[~inside].mean()
    # the same tile on the untouched sample is not remarkable
    base = novelty.rank_tiles(str(SAMPLE), MODEL, n_select=1)
    assert base.scores[first.row, first.col] < res.scores[first.row, first.col]


def test_two_identical_patches_are_not_ranked_one_and_two(tmp_path):
    p = amazon_patch()
    spots = [(1 * T, 2 * T), (5 * T, 9 * T)]          # on the tile grid: each copy fills one tile
    path = plant(tmp_path / "twins.tif", [(x, y, p) for x, y in spots])
    res = novelty.rank_tiles(str(path), MODEL, n_select=3)
    hit = [(s.window[0], s.window[1]) in spots for s in res.selected]
    assert hit[0], [s.window for s in res.selected]
    assert not hit[1]


def test_same_seed_same_ranking(planted_one):
    runs = [novelty.rank_tiles(str(planted_one), MODEL, n_select=6, init_tiles=16, seed=s) for s in (3, 3, 4)]
    a, b, c = runs
    assert [s.window for s in a.selected] == [s.window for s in b.selected]
    assert np.array_equal(a.scores, b.scores)
    assert not np.array_equal(a.scores, c.scores)  # the seed draws the initial tiles


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
    assert (ds.RasterXSize, ds.RasterYSize) == (8, 12)
    assert ds.GetGeoTransform()[1] == pytest.approx(src.GetGeoTransform()[1] * T)
    assert ds.GetGeoTransform()[0] == pytest.approx(src.GetGeoTransform()[0])
    assert ds.GetSpatialRef().IsSame(src.GetSpatialRef())
    sc = ds.GetRasterBand(1).ReadAsArray()
    first = rep["selected"][0]
    assert sc[first["row"], first["col"]] == sc.max()   # the first selection had the highest initial score
    from osgeo import ogr
    vec = ogr.Open(str(out["selected"]))
    feats = sorted(vec.GetLayer(0), key=lambda f: f["rank"])
    assert [f["rank"] for f in feats] == [1, 2, 3, 4]
    assert all(0 <= f["residual"] <= f["score"] for f in feats)
    assert feats[0].GetGeometryRef().GetArea() == pytest.approx((T * 10.0) ** 2)
    assert feats[0]["classes"].startswith("texture")
    page = out["html"].read_text()
    assert page.count("data:image/png;base64,") == 3 * 4
    bad = subprocess.run([sys.executable, "-m", "ktextures_plugin", "novelty", str(planted_one), "--bands", "1,2,3",
                          "--score", str(tmp_path / "x.tif")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "needs 4 bands" in bad.stderr
    assert not (tmp_path / "x.tif").exists()


def test_mostly_nodata_tiles_are_skipped_and_counted(tmp_path):
    path = tmp_path / "holes.tif"
    gdal.Translate(str(path), str(SAMPLE), noData=0)
    ds = gdal.Open(str(path), gdal.GA_Update)
    for b in range(1, 5):
        ds.GetRasterBand(b).WriteArray(np.zeros((T, 100), np.uint16), 0, 0)  # tile 0 empty, tile 1 56 % empty
    ds = None
    res = novelty.rank_tiles(str(path), MODEL, n_select=3)
    assert res.table.skipped == 2 and res.table.index.size == 94
    assert np.isnan(res.scores[0, :2]).all() and np.isfinite(res.scores[0, 2:]).all()
    assert all((s.row, s.col) not in [(0, 0), (0, 1)] for s in res.selected)


def test_clear_errors(tmp_path):
    small = tmp_path / "small.tif"
    gdal.Translate(str(small), str(SAMPLE), srcWin=[0, 0, 40, 40])
    with pytest.raises(RasterError, match="smaller than one tile"):
        novelty.rank_tiles(str(small), MODEL)
    empty = tmp_path / "empty.tif"
    gdal.Translate(str(empty), str(SAMPLE), srcWin=[0, 0, 128, 128], noData=0, scaleParams=[[0, 65535, 0, 0]])
    with pytest.raises(RasterError, match="Every pixel"):
        novelty.rank_tiles(str(empty), MODEL)
    with pytest.raises(RasterError, match="needs 4 bands"):
        novelty.rank_tiles(str(SAMPLE), MODEL, bands="3,2,1")
    with pytest.raises(ValueError, match="multiple of 16"):
        novelty.rank_tiles(str(SAMPLE), MODEL, tile_size=50)


def test_progress_and_cancel():
    seen = []
    res = novelty.rank_tiles(str(SAMPLE), MODEL, n_select=2, progress=lambda f, s: seen.append((f, s)))
    assert len(res.selected) == 2
    assert seen[-1][0] == pytest.approx(1.0) and {"features", "select"} <= {s for _, s in seen}
    assert all(b >= a for (a, _), (b, _) in zip(seen, seen[1:]))
    calls = []
    with pytest.raises(Canceled):
        novelty.rank_tiles(str(SAMPLE), MODEL, is_canceled=lambda: calls.append(1) or len(calls) > 3)


def test_classes_per_tile_match_segment_with_a_halo_model(tiny_models, tmp_path):
    """With a 3x3 model (halo 1 px) the windows are read with their halo: every tile's class counts equal the
    class raster that segment writes, whose tiles are cut differently (512 px)."""
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    seg = segment_raster(str(SAMPLE), tiny_models["box4"], str(tmp_path / "c.tif"), SegmentOptions(bands="3,2,1,4"))
    classes = gdal.Open(seg.path).ReadAsArray()
    res = novelty.rank_tiles(str(SAMPLE), tiny_models["box4"], bands="3,2,1,4", n_select=2)
    for idx, counts in zip(res.table.index, res.table.class_counts):
        r, c = divmod(int(idx), res.table.grid[0])
        block = classes[r * T:(r + 1) * T, c * T:(c + 1) * T]
        assert np.array_equal(counts, np.bincount(block.ravel() - 1, minlength=4))


def test_models_novelty_cannot_use(tmp_path):
    from ktextures_plugin.core.errors import ModelError
    from onnx_fixtures import binning_model
    plain = binning_model(tmp_path / "notex.onnx", with_textures=False)
    with pytest.raises(ModelError, match="no 'textures' output"):
        novelty.rank_tiles(str(SAMPLE), plain, bands="3,2,1,4")
    rgb = binning_model(tmp_path / "rgb.onnx", channels=("red", "green", "blue"), scale_min=(0, 0, 0),
                        scale_max=(3000, 3000, 3000))
    with pytest.raises(ModelError, match="red, green, blue and NIR"):
        novelty.rank_tiles(str(SAMPLE), rgb, bands="3,2,1")
