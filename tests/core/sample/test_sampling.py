"""core/sample/sampling.py on the bundled sample segmented by a tiny model: the samples' class, edge
distance, spacing, reproducibility, class subsets and allocation, chip alignment with the image and the class
raster, cancel, any integer raster."""

import numpy as np
import pytest
from osgeo import gdal

from conftest import SAMPLE, edge_distance, read_array
from ktextures_plugin.core.errors import Canceled
from ktextures_plugin.core.feedback import Feedback
from ktextures_plugin.core.io.classraster import read_palette
from ktextures_plugin.core.sample import SampleOptions, sampling
from ktextures_plugin.core.segment import SegmentOptions, segment_raster


def _check_invariants(res, arr, min_edge, spacing, border_is_edge=True):
    assert res.samples, "no samples drawn"
    halo = res.distance_cap_px
    gt = res.geotransform
    refs = {}
    for s in res.samples:
        assert arr[s.row, s.col] == s.class_id
        if s.class_id not in refs:
            refs[s.class_id] = edge_distance(arr, s.class_id, border_is_edge)
        d = refs[s.class_id][s.row, s.col]
        assert d >= min_edge, (s, d)
        assert s.edge_distance_px == pytest.approx(min(d, halo), abs=1e-4), (s, d)
        # the point is the pixel centre
        assert s.x == pytest.approx(gt[0] + (s.col + 0.5) * gt[1])
        assert s.y == pytest.approx(gt[3] + (s.row + 0.5) * gt[5])
    rc = np.array([(s.row, s.col) for s in res.samples], float)
    if len(rc) > 1 and spacing > 0:
        d2 = ((rc[:, None, :] - rc[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d2, np.inf)
        assert d2.min() >= spacing ** 2


# ---------------------------------------------------------------------------------------------- core
def test_samples_are_interior_spaced_and_at_pixel_centres(class_tif):
    arr = read_array(class_tif)
    res = sampling.draw_samples(class_tif, SampleOptions(25, min_edge_distance_px=3, min_spacing_px=8, seed=7))
    _check_invariants(res, arr, 3, 8)
    by = {s.class_id: s for s in res.summary}
    # class 1 has 70 pixels in thin strips: no interior pixel at 3 px, a reason, not a failure
    assert by[1].pixels == int((arr == 1).sum()) and by[1].found == 0 and "interior" in by[1].reason
    assert by[3].found == 25 and by[3].reason == ""
    assert by[4].found == 25
    names = read_palette(class_tif)[0]
    assert all(s.class_name == names[s.class_id - 1] for s in res.samples)
    # interior pixel counts equal the reference distance transform's
    for c in (2, 3, 4):
        assert by[c].interior_px == int(((arr == c) & (edge_distance(arr, c) >= 3)).sum())


def test_small_windows_with_halo_give_exact_distances(holed_tif):
    """Windows of 37 px: candidates crossing window borders still get the whole-raster distance."""
    arr = read_array(holed_tif)
    res = sampling.draw_samples(holed_tif,
        SampleOptions(30, min_edge_distance_px=4, min_spacing_px=5, seed=3, window_px=37,
                                distance_cap_px=6))
    assert res.distance_cap_px == 6
    _check_invariants(res, arr, 4, 5)
    by = {s.class_id: s for s in res.summary}
    for c in (2, 3, 4):
        assert by[c].interior_px == int(((arr == c) & (edge_distance(arr, c) >= 4)).sum())
    assert not any(arr[s.row, s.col] == 0 for s in res.samples)


def test_border_not_edge_option(class_tif):
    arr = read_array(class_tif)
    res = sampling.draw_samples(class_tif, SampleOptions(40, min_edge_distance_px=5, min_spacing_px=0, seed=2,
                                border_is_edge=False))
    _check_invariants(res, arr, 5, 0, border_is_edge=False)
    by = {s.class_id: s for s in res.summary}
    assert by[3].interior_px == int(((arr == 3) & (edge_distance(arr, 3, False) >= 5)).sum())
    assert by[3].interior_px > int(((arr == 3) & (edge_distance(arr, 3, True) >= 5)).sum())


def test_same_seed_same_samples_other_seed_other_samples(class_tif):
    kw = dict(min_edge_distance_px=2, min_spacing_px=6)
    a = sampling.draw_samples(class_tif, SampleOptions(20, seed=11, **kw))
    b = sampling.draw_samples(class_tif, SampleOptions(20, seed=11, **kw))
    c = sampling.draw_samples(class_tif, SampleOptions(20, seed=12, **kw))
    def key(r):
        return [(s.class_id, s.row, s.col) for s in r.samples]
    assert key(a) == key(b)
    assert key(a) != key(c)
    assert len(set(key(a)) & set(key(c))) < len(key(a)) // 2


def test_classes_subset_and_proportional(class_tif):
    arr = read_array(class_tif)
    res = sampling.draw_samples(class_tif, SampleOptions(10, classes="2, 4", min_edge_distance_px=2, min_spacing_px=3))
    assert {s.class_id for s in res.samples} == {2, 4}
    assert [s.class_id for s in res.summary] == [2, 4]
    res = sampling.draw_samples(class_tif, SampleOptions(60, proportional=True, min_per_class=4, min_edge_distance_px=1,
                                min_spacing_px=2, seed=1))
    req = {s.class_id: s.requested for s in res.summary}
    assert sum(req.values()) == 60
    assert min(req.values()) >= 4
    counts = np.bincount(arr.ravel(), minlength=5)
    assert max(req, key=req.get) == int(np.argmax(counts[1:]) + 1)
    assert {s.class_id: s.found for s in res.summary} == req


def test_allocate_by_area():
    got = sampling.allocate({1: 900.0, 2: 90.0, 3: 10.0, 4: 0.0}, 100, 5)
    assert got == {1: 86, 2: 9, 3: 5, 4: 0}
    assert sampling.allocate({1: 1.0, 2: 1.0, 3: 1.0}, 10, 0) in ({1: 4, 2: 3, 3: 3},)
    assert sum(sampling.allocate({1: 5.0, 2: 1.0}, 7, 5).values()) == 10  # minimum wins over the total


def test_parse_classes():
    assert sampling.parse_classes("1,3,5") == [1, 3, 5]
    assert sampling.parse_classes("5 3;3") == [3, 5]
    assert sampling.parse_classes([4, 2]) == [2, 4]
    assert sampling.parse_classes(3) == [3]
    assert sampling.parse_classes("") is None and sampling.parse_classes(None) is None
    for bad in ("a,b", "0", "1.5", "-2"):
        with pytest.raises(sampling.SamplingError):
            sampling.parse_classes(bad)


def test_pool_keeps_smallest_keys():
    rng = np.random.default_rng(0)
    pool = sampling._Pool(50)
    keys = rng.random(10_000)
    for i in range(0, 10_000, 700):
        k = keys[i:i + 700]
        idx = np.arange(i, i + len(k))
        pool.add(k, idx, idx, k.astype(np.float32))
        assert pool.size <= 2 * 50 + 1024 + 700
    k, r, _, _ = pool.sorted()
    assert np.array_equal(r, np.argsort(keys)[:50]) and pool.truncated


def test_core_cancel(class_tif):
    with pytest.raises(Canceled):
        sampling.draw_samples(class_tif, SampleOptions(5), feedback=Feedback(is_canceled=lambda: True))
    polls = []

    def cancel_in_pass_2():  # pass 1 polls once per 256-row block (3 here), pass 2 once per window
        polls.append(1)
        return len(polls) > 5

    with pytest.raises(Canceled):
        sampling.draw_samples(class_tif,
            SampleOptions(5, window_px=64), feedback=Feedback(is_canceled=cancel_in_pass_2))
    assert len(polls) == 6


def test_chips_line_up_with_image_and_classes(class_tif, tmp_path):
    res = sampling.draw_samples(class_tif,
        SampleOptions(4, min_edge_distance_px=2, min_spacing_px=20, seed=5, chip_size_px=33))
    assert len(res.samples) >= 9
    chips = sampling.write_chips(class_tif, res.samples, 33, str(tmp_path / "chips"), str(SAMPLE))
    img = gdal.Open(str(SAMPLE))
    names, colors = read_palette(class_tif)
    for ch in chips:
        xo, yo, cs, _ = ch.window
        assert (xo + cs // 2, yo + cs // 2) == (ch.sample.col, ch.sample.row)
        ci = gdal.Open(ch.image_path)
        assert ci.RasterCount == img.RasterCount and (ci.RasterXSize, ci.RasterYSize) == (33, 33)
        assert ci.GetRasterBand(1).DataType == img.GetRasterBand(1).DataType
        assert np.array_equal(ci.ReadAsArray(), img.ReadAsArray(xo, yo, cs, cs))
        assert np.allclose(ci.GetGeoTransform(), gdal.Open(ch.mask_path).GetGeoTransform())
        ul = gdal.ApplyGeoTransform(img.GetGeoTransform(), xo, yo)
        assert ci.GetGeoTransform()[0] == pytest.approx(ul[0]) and ci.GetGeoTransform()[3] == pytest.approx(ul[1])
        ci = None
        m = read_array(ch.mask_path)
        assert np.array_equal(m, read_array(class_tif, (xo, yo, cs, cs)))
        assert m[cs // 2, cs // 2] == ch.sample.class_id
        assert read_palette(ch.mask_path) == (names, colors)
        md = gdal.Open(ch.mask_path)
        assert md.GetRasterBand(1).GetRasterColorTable() is not None
        md = None
    img = None


def test_chips_from_a_window_of_the_image(tiny_models, tmp_path):
    """A class raster made from a window of the image: chips are cut at the window offset of the image."""
    cls = str(tmp_path / "win.tif")
    segment_raster(str(SAMPLE), tiny_models["bin4"], cls, SegmentOptions(window=(100, 200, 300, 400)))
    res = sampling.draw_samples(cls, SampleOptions(3, min_edge_distance_px=1, min_spacing_px=10, chip_size_px=16))
    chips = sampling.write_chips(cls, res.samples, 16, str(tmp_path / "c"), str(SAMPLE))
    assert chips
    for ch in chips:
        xo, yo, cs, _ = ch.window
        assert np.array_equal(read_array(ch.image_path), read_array(str(SAMPLE), (xo + 100, yo + 200, cs, cs)))


def test_result_does_not_depend_on_the_candidate_pool(class_tif):
    """Tiny starting pools force the grow-and-redraw path; the samples are the same as with large pools."""
    kw = dict(min_edge_distance_px=2, min_spacing_px=15, seed=21)
    small = sampling.draw_samples(class_tif, SampleOptions(30, pool_min=1, pool_factor=1, **kw))
    large = sampling.draw_samples(class_tif, SampleOptions(30, pool_min=100_000, **kw))
    assert any("larger pool" in m for m in small.log)
    def key(r):
        return [(s.class_id, s.row, s.col) for s in r.samples]
    assert key(small) == key(large) and len(key(small)) >= 60


def test_absent_class_is_reported(class_tif):
    res = sampling.draw_samples(class_tif, SampleOptions(5, classes=[3, 9], min_spacing_px=0))
    by = {s.class_id: s for s in res.summary}
    assert by[9].requested == 5 and by[9].found == 0 and by[9].reason == "class not present in the raster"
    assert by[9].class_name == "class 9" and by[3].found == 5


def test_plain_integer_raster_geographic_with_negative_nodata(class_tif, tmp_path):
    """Any GDAL integer raster: Int16 with nodata -1, EPSG:4326, no palette; only present classes reported."""
    a = read_array(class_tif).astype(np.int16)
    a[a == 1] = -1
    a[:50] = 300
    path = str(tmp_path / "i16.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, a.shape[1], a.shape[0], 1, gdal.GDT_Int16)
    ds.SetGeoTransform([13.0, 0.0001, 0, 52.5, 0, -0.0001])
    ds.SetProjection("EPSG:4326")
    ds.GetRasterBand(1).SetNoDataValue(-1)
    ds.GetRasterBand(1).WriteArray(a)
    ds = None
    res = sampling.draw_samples(path, SampleOptions(5, min_edge_distance_px=2, min_spacing_px=5))
    assert [s.class_id for s in res.summary] == [2, 3, 4, 300]
    assert all(s.found == 5 for s in res.summary)
    _check_invariants(res, np.where(a < 0, 0, a), 2, 5)
    by = {s.class_id: s for s in res.summary}
    assert by[300].class_name == "class 300"
    # pixel areas on the sphere shrink with latitude: the top rows (class 300) are a bit smaller
    assert by[300].area_m2 / by[300].pixels < by[3].area_m2 / by[3].pixels
