"""Novelty (the core; the CLI: tests/cli/test_novelty_cli.py) on real imagery: a patch of another scene planted in
a copy of the bundled sample is found first and explained where it is; a second copy is not shown right after the
first; determinism; errors."""

import numpy as np
import pytest
from osgeo import gdal

from conftest import SAMPLE
from ktextures_plugin import bundled_model_path
from ktextures_plugin.core.errors import Canceled, RasterError
from ktextures_plugin.core.feedback import Feedback
from ktextures_plugin.core.novelty import NoveltyOptions, novelty, novelty_output
from planted import (
    CLOUD_XY,
    PATCH_XY,
    T,
    amazon_patch,
    assert_found_once,
    cloud,
    overlaps,
    plant,
    shared_px,
    stripe,
)

gdal.UseExceptions()


MODEL = bundled_model_path(1)


@pytest.fixture(scope="module")
def planted_one(tmp_path_factory):
    return plant(tmp_path_factory.mktemp("nov") / "planted.tif", [(*PATCH_XY, amazon_patch())])


def test_planted_patch_ranks_first_and_heat_map_points_at_it(planted_one):
    res = novelty.rank_tiles(str(planted_one), MODEL, NoveltyOptions(n_select=5))
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
    base = novelty.rank_tiles(str(SAMPLE), MODEL, NoveltyOptions(n_select=1))
    assert base.scores[first.row, first.col] < res.scores[first.row, first.col]


@pytest.mark.parametrize("x, y", CLOUD_XY)
def test_unaligned_cloud_ranks_first_and_once(tmp_path, x, y):
    path = plant(tmp_path / "cloud.tif", [(x, y, cloud())])
    res = novelty.rank_tiles(str(path), MODEL, NoveltyOptions(n_select=5))
    assert_found_once([s.window for s in res.selected], x, y, T, T)
    sel = [s.score for s in res.selected]
    assert sel == sorted(sel, reverse=True)          # the score shown is the one that ordered the list


@pytest.mark.parametrize("x, y, vertical", [(133, 405, False), (301, 77, True)])
def test_unaligned_seam_of_bad_lines_ranks_first(tmp_path, x, y, vertical):
    arr = stripe()
    arr = arr.transpose(0, 2, 1).copy() if vertical else arr
    path = plant(tmp_path / "seam.tif", [(x, y, arr)])
    res = novelty.rank_tiles(str(path), MODEL, NoveltyOptions(n_select=3))
    assert_found_once([s.window for s in res.selected], x, y, arr.shape[2], arr.shape[1])


def test_two_identical_patches_are_not_ranked_one_and_two(tmp_path):
    """Two copies of one patch: once one is shown, DEMUD has learnt it and the other scores at most half as high, so
    it is not shown second. Rank 1 is a tile half over the first copy; the sample's own darkest water (about half
    of its pixels at or below the scene's 1st percentile, the tail block) and the second copy come next, in an
    order that depends on the bundled model (the copy is 4th with the k-means-start k = 6 model, 3rd with the
    Gaussian-mixture one), so the test does not fix it."""
    p = amazon_patch()
    spots = [(1 * T, 2 * T), (5 * T, 9 * T)]          # on the tile grid: each copy fills one tile
    path = plant(tmp_path / "twins.tif", [(x, y, p) for x, y in spots])
    res = novelty.rank_tiles(str(path), MODEL, NoveltyOptions(n_select=4))
    shows = [[shared_px(s.window, x, y, T, T) >= T * T / 2 for x, y in spots] for s in res.selected]
    first = next(i for i, h in enumerate(shows) if any(h))
    assert first == 0, [s.window for s in res.selected]
    assert not any(shows[1]), [s.window for s in res.selected]
    later = [i for i, h in enumerate(shows) if any(h) and i > first]
    assert later and res.selected[later[0]].score <= 0.5 * res.selected[first].score


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
    runs = [novelty.rank_tiles(str(planted_one), MODEL, NoveltyOptions(n_select=6, init_tiles=16, seed=s))
            for s in (3, 3, 4)]
    a, b, c = runs
    assert [s.window for s in a.selected] == [s.window for s in b.selected]
    assert np.array_equal(a.scores, b.scores)
    assert not np.array_equal(a.scores, c.scores)  # the seed draws the initial tiles


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
    res = novelty.rank_tiles(str(path), MODEL, NoveltyOptions(n_select=3))
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
        novelty.rank_tiles(str(SAMPLE), MODEL, NoveltyOptions(bands="3,2,1"))
    with pytest.raises(ValueError, match="multiple of 32"):
        novelty.rank_tiles(str(SAMPLE), MODEL, NoveltyOptions(tile_size=50))


def test_progress_and_cancel():
    seen = []
    res = novelty.rank_tiles(str(SAMPLE), MODEL, NoveltyOptions(n_select=2),
                             Feedback(progress=lambda f, s: seen.append((f, s))))
    assert len(res.selected) == 2
    assert seen[-1][0] == pytest.approx(1.0) and {"features", "select"} <= {s for _, s in seen}
    assert all(b >= a for (a, _), (b, _) in zip(seen, seen[1:]))
    calls = []
    with pytest.raises(Canceled):
        novelty.rank_tiles(str(SAMPLE), MODEL, feedback=Feedback(is_canceled=lambda: calls.append(1) or len(calls) > 3))


def test_classes_per_tile_match_segment_with_a_halo_model(tiny_models, tmp_path):
    """With a 3x3 model (halo 1 px) the windows are read with their halo: every tile's class counts equal the
    class raster that segment writes, whose tiles are cut differently (512 px)."""
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    seg = segment_raster(str(SAMPLE), tiny_models["box4"], str(tmp_path / "c.tif"), SegmentOptions(bands="3,2,1,4"))
    classes = gdal.Open(seg.path).ReadAsArray()
    res = novelty.rank_tiles(str(SAMPLE), tiny_models["box4"], NoveltyOptions(bands="3,2,1,4", n_select=2))
    for idx, counts in zip(res.table.index, res.table.class_counts):
        r, c = divmod(int(idx), res.table.grid[0])
        block = classes[r * T // 2:r * T // 2 + T, c * T // 2:c * T // 2 + T]
        assert np.array_equal(counts, np.bincount(block.ravel() - 1, minlength=4))


def test_models_novelty_cannot_use(tmp_path):
    from ktextures_plugin.core.errors import ModelError
    from onnx_fixtures import binning_model
    plain = binning_model(tmp_path / "notex.onnx", with_textures=False)
    with pytest.raises(ModelError, match="no 'textures' output"):
        novelty.rank_tiles(str(SAMPLE), plain, NoveltyOptions(bands="3,2,1,4"))
    rgb = binning_model(tmp_path / "rgb.onnx", channels=("red", "green", "blue"), scale_min=(0, 0, 0),
                        scale_max=(3000, 3000, 3000))
    with pytest.raises(ModelError, match="red, green, blue and NIR"):
        novelty.rank_tiles(str(SAMPLE), rgb, NoveltyOptions(bands="3,2,1"))
