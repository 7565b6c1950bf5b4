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
from ktextures_plugin.core.errors import Canceled, RasterError
from ktextures_plugin.core.novelty import novelty, novelty_output

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
#: unaligned places (x, y) of a 64 px cloud-like block, the first five as a new user tried them
CLOUD_XY = [(200, 300), (411, 37), (90, 150), (300, 420), (170, 610)]


def cloud(size=T, seed=0):
    """A bright, flat, cloud-like block: values 7000-7300 in all four bands (reflectance x 10000)."""
    return np.random.default_rng(seed).integers(7000, 7301, (4, size, size)).astype(np.uint16)


def stripe(length=80):
    """A seam of 8 bad lines: saturated and dropped lines alternating, all bands."""
    rows = np.where(np.arange(8) % 2 == 0, 4000, 100).astype(np.uint16)
    return np.broadcast_to(rows[None, :, None], (4, 8, length)).copy()


def _sample_percentile(q):
    return np.percentile(gdal.Open(str(SAMPLE)).ReadAsArray().reshape(4, -1), q, axis=1)


def dark_block(size):
    """A dark, flat, water-like block: 0.6 x the sample's 0.5th percentile per band, +-3 % (bench/novelty.py)."""
    jitter = np.random.default_rng(size).uniform(0.97, 1.03, (4, size, size))
    v = (0.6 * _sample_percentile(0.5))[:, None, None] * jitter
    return np.rint(v).astype(np.uint16)


def roof(w, h):
    """A bright roof block, 1.15 x the sample's 99.9th percentile +-7 %, with a dark 2 px edge on two sides."""
    v = (1.15 * _sample_percentile(99.9))[:, None, None] * np.random.default_rng(w).uniform(0.93, 1.07, (4, h, w))
    v[:, -2:, :] = v[:, :, -2:] = _sample_percentile(2)[:, None, None]
    return np.rint(v).astype(np.uint16)


#: fixed unaligned plantings of the other kinds for the CLI and QGIS tests: (name, x, y, (4, h, w) array)
def unaligned(kind):
    return {"dark": (141, 389, dark_block(40)), "seam": (377, 213, stripe(72).transpose(0, 2, 1).copy()),
            "roof": (59, 627, roof(56, 44)), "dark-large": (405, 555, dark_block(60)),
            "seam-long": (251, 99, stripe(80))}[kind]


def shared_px(window, x, y, w, h):
    wx, wy, ww, wh = window
    return max(0, min(wx + ww, x + w) - max(wx, x)) * max(0, min(wy + wh, y + h) - max(wy, y))


def assert_found_once(windows, x, y, w, h):
    """Rank 1 shows the anomaly (shares at least half of the smaller of tile and anomaly) and no other of
    the first three touches it (shares a tenth of that): the measurement's rule (bench/novelty.py)."""
    need = min(w * h, T * T)
    got = [shared_px(win, x, y, w, h) for win in windows[:3]]
    assert got[0] >= 0.5 * need, (windows[:3], (x, y, w, h))
    assert sum(g >= 0.1 * need for g in got) == 1, (windows[:3], (x, y, w, h))


@pytest.fixture(scope="module")
def planted_one(tmp_path_factory):
    return plant(tmp_path_factory.mktemp("nov") / "planted.tif", [(*PATCH_XY, amazon_patch())])


def test_planted_patch_ranks_first_and_heat_map_points_at_it(planted_one):
    res = novelty.rank_tiles(str(planted_one), MODEL, n_select=5)
    first = res.selected[0]
    assert overlaps(first.window, *PATCH_XY), first.window
    assert res.table.index.size == 15 * 23 and res.table.skipped == 0   # tiles every 32 px
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


@pytest.mark.parametrize("x, y", CLOUD_XY)
def test_unaligned_cloud_ranks_first_and_once(tmp_path, x, y):
    path = plant(tmp_path / "cloud.tif", [(x, y, cloud())])
    res = novelty.rank_tiles(str(path), MODEL, n_select=5)
    assert_found_once([s.window for s in res.selected], x, y, T, T)
    sel = [s.score for s in res.selected]
    assert sel == sorted(sel, reverse=True)          # the score shown is the one that ordered the list


@pytest.mark.parametrize("x, y, vertical", [(133, 405, False), (301, 77, True)])
def test_unaligned_seam_of_bad_lines_ranks_first(tmp_path, x, y, vertical):
    arr = stripe()
    arr = arr.transpose(0, 2, 1).copy() if vertical else arr
    path = plant(tmp_path / "seam.tif", [(x, y, arr)])
    res = novelty.rank_tiles(str(path), MODEL, n_select=3)
    assert_found_once([s.window for s in res.selected], x, y, arr.shape[2], arr.shape[1])


def test_two_identical_patches_are_not_ranked_one_and_two(tmp_path):
    """Two copies of one patch: one is shown in the first three, the other not (DEMUD has learnt it). Rank 1
    is a tile half over the first copy, rank 2 the sample's own darkest water (about half of its pixels at or
    below the scene's 1st percentile, the tail block), so the test does not fix the rank of the copy."""
    p = amazon_patch()
    spots = [(1 * T, 2 * T), (5 * T, 9 * T)]          # on the tile grid: each copy fills one tile
    path = plant(tmp_path / "twins.tif", [(x, y, p) for x, y in spots])
    res = novelty.rank_tiles(str(path), MODEL, n_select=3)
    shows = [[shared_px(s.window, x, y, T, T) >= T * T / 2 for x, y in spots] for s in res.selected]
    assert sum(any(h) for h in shows) == 1, [s.window for s in res.selected]


def test_pooled_features_equal_the_statistics_of_each_tile_window():
    """Features pooled from the maps of a whole window (half-tile block sums) equal the mean, standard deviation
    and mean squared difference computed directly on each 64 px tile's part of the maps, tiles every 32 px."""
    rng = np.random.default_rng(0)
    h, w = 192, 256
    maps = [rng.random((2, 3, h // c, w // c), dtype=np.float32) for c in (1, 4, 16)]
    origin, shape = (32, 16), (3, 4)
    app, res = novelty.pooled_features(maps, origin, shape, T)
    assert app.shape == (12, 2 * 9) and res.shape == (12, 9)
    for i in range(12):
        r, c = divmod(i, shape[1])
        x0, y0 = origin[0] + c * T // 2, origin[1] + r * T // 2
        want_a, want_r = [], []
        for f in maps:
            k = w // f.shape[-1]
            tx, ts = (g[:, y0 // k:(y0 + T) // k, x0 // k:(x0 + T) // k] for g in f)
            want_a += [tx.mean(axis=(1, 2)), tx.std(axis=(1, 2))]
            want_r.append(((tx - ts) ** 2).mean(axis=(1, 2)))
        np.testing.assert_allclose(app[i], np.concatenate(want_a), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(res[i], np.concatenate(want_r), rtol=1e-4, atol=1e-6)


def test_tail_features_equal_the_statistics_of_each_tile():
    """The tail block pooled over half-tile blocks equals, per 64 px tile every 32 px, the share of its pixels
    beyond the thresholds and the largest deviation of a row (column) mean from its two neighbours, computed
    on the tile alone with nodata pixels left out; a seam of bad lines gives the largest jump."""
    rng = np.random.default_rng(1)
    s = T // 2
    x = rng.normal(0.5, 0.1, (2, 4 * s, 5 * s)).astype(np.float32)
    x[:, 40:44, 70:130] = np.array([2.0, -1.0, 2.0, -1.0], np.float32)[None, :, None]   # a seam of 4 lines
    valid = rng.random((4 * s, 5 * s)) > 0.05
    valid[:, 150:] = False                                                                # nodata at the edge
    low, high = np.array([0.2, 0.25]), np.array([0.8, 0.85])
    got = novelty.tail_features(x, valid, low, high, T)
    assert got.shape == (3 * 4, 3 * 2)

    def jump(t, v):   # rows of (h, w) tile t, valid v: max |m_y - (m_y-1 + m_y+1) / 2| over rows with >= s valid
        m = np.array([t[i][v[i]].mean() if v[i].sum() >= s else np.nan for i in range(t.shape[0])])
        d = np.abs(m[1:-1] - 0.5 * (m[:-2] + m[2:]))
        return np.nanmax(np.where(np.isnan(d), 0.0, d), initial=0.0)

    for i in range(12):
        r, c = divmod(i, 4)
        tx, tv = x[:, r * s:r * s + T, c * s:c * s + T], valid[r * s:r * s + T, c * s:c * s + T]
        want = [((tx[b] <= low[b]) & tv).sum() / T ** 2 for b in range(2)]
        want += [((tx[b] >= high[b]) & tv).sum() / T ** 2 for b in range(2)]
        want += [max(jump(tx[b], tv), jump(tx[b].T, tv.T)) for b in range(2)]
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)
    seam = [i for i in range(12) if divmod(i, 4)[0] in (0, 1) and divmod(i, 4)[1] in (1, 2, 3)]
    assert got[:, 4].argmax() in seam and got[seam, 4].max() > 1.0 > got[[0, 8, 11], 4].max()


def test_same_seed_same_ranking(planted_one):
    runs = [novelty.rank_tiles(str(planted_one), MODEL, n_select=6, init_tiles=16, seed=s) for s in (3, 3, 4)]
    a, b, c = runs
    assert [s.window for s in a.selected] == [s.window for s in b.selected]
    assert np.array_equal(a.scores, b.scores)
    assert not np.array_equal(a.scores, c.scores)  # the seed draws the initial tiles


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


def test_mostly_nodata_tiles_are_skipped_and_counted(tmp_path):
    path = tmp_path / "holes.tif"
    gdal.Translate(str(path), str(SAMPLE), noData=0)
    ds = gdal.Open(str(path), gdal.GA_Update)
    for b in range(1, 5):
        ds.GetRasterBand(b).WriteArray(np.zeros((T, 100), np.uint16), 0, 0)
    ds = None
    valid = np.ones((768, 512), bool)
    valid[:T, :100] = False
    s = T // 2
    frac = np.array([[valid[r * s:r * s + T, c * s:c * s + T].mean() for c in range(15)] for r in range(23)])
    res = novelty.rank_tiles(str(path), MODEL, n_select=3)
    skip = frac < novelty.MIN_VALID_FRACTION
    assert skip.sum() == 3                     # tiles 0, 1 empty, tile 2 at 56 % nodata; row 1 half valid
    assert res.table.skipped == skip.sum() and res.table.index.size == skip.size - skip.sum()
    assert np.array_equal(np.isnan(res.scores), skip)
    assert all(not skip[s.row, s.col] for s in res.selected)


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
    with pytest.raises(ValueError, match="multiple of 32"):
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
        block = classes[r * T // 2:r * T // 2 + T, c * T // 2:c * T // 2 + T]
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
