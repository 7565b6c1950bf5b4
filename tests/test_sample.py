"""ktextures:sample and core.sample.sampling on the bundled sample segmented by a tiny model: the samples' class,
edge distance, spacing, reproducibility, chip alignment with the image and the class raster, errors,
batch-style runs and a graphical model chaining ktextures:segment into ktextures:sample."""
import csv
import itertools
import os

import numpy as np
import pytest
from osgeo import gdal, ogr
from scipy import ndimage

from conftest import SAMPLE, algorithm_runner
from ktextures_plugin.core.errors import Canceled
from ktextures_plugin.core.feedback import Feedback
from ktextures_plugin.core.io.classraster import read_palette
from ktextures_plugin.core.sample import SampleOptions, sampling
from ktextures_plugin.core.segment import SegmentOptions, segment_raster

gdal.UseExceptions()
ogr.UseExceptions()


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def class_tif(tiny_models, tmp_path_factory):
    """The bundled sample (512 x 768 px) segmented by the tiny 4-class model, sieved at 4 px."""
    out = tmp_path_factory.mktemp("sample_classes") / "classes.tif"
    segment_raster(str(SAMPLE), tiny_models["bin4"], str(out), SegmentOptions(min_segment_px=4))
    return str(out)


@pytest.fixture(scope="session")
def holed_tif(class_tif, tmp_path_factory):
    """The class raster with nodata (0) blocks, so nodata edges matter too."""
    out = str(tmp_path_factory.mktemp("sample_holed") / "holed.tif")
    gdal.Translate(out, class_tif)
    ds = gdal.Open(out, gdal.GA_Update)
    a = ds.GetRasterBand(1).ReadAsArray()
    a[100:180, 50:400] = 0
    a[500:520, :] = 0
    ds.GetRasterBand(1).WriteArray(a)
    ds = None
    return out


def _array(path, window=None):
    ds = gdal.Open(path)
    try:
        return ds.ReadAsArray(*window) if window else ds.ReadAsArray()
    finally:
        ds = None


def _edt(arr, c, border_is_edge=True):
    """Reference distance (pixels) of every pixel to the nearest pixel that is not class c (whole raster)."""
    return ndimage.distance_transform_edt(np.pad(arr == c, 1, constant_values=not border_is_edge))[1:-1, 1:-1]


def _check_invariants(res, arr, min_edge, spacing, border_is_edge=True):
    assert res.samples, "no samples drawn"
    halo = res.distance_cap_px
    gt = res.geotransform
    refs = {}
    for s in res.samples:
        assert arr[s.row, s.col] == s.class_id
        if s.class_id not in refs:
            refs[s.class_id] = _edt(arr, s.class_id, border_is_edge)
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
    arr = _array(class_tif)
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
        assert by[c].interior_px == int(((arr == c) & (_edt(arr, c) >= 3)).sum())


def test_small_windows_with_halo_give_exact_distances(holed_tif):
    """Windows of 37 px: candidates crossing window borders still get the whole-raster distance."""
    arr = _array(holed_tif)
    res = sampling.draw_samples(holed_tif,
        SampleOptions(30, min_edge_distance_px=4, min_spacing_px=5, seed=3, window_px=37,
                                distance_cap_px=6))
    assert res.distance_cap_px == 6
    _check_invariants(res, arr, 4, 5)
    by = {s.class_id: s for s in res.summary}
    for c in (2, 3, 4):
        assert by[c].interior_px == int(((arr == c) & (_edt(arr, c) >= 4)).sum())
    assert not any(arr[s.row, s.col] == 0 for s in res.samples)


def test_border_not_edge_option(class_tif):
    arr = _array(class_tif)
    res = sampling.draw_samples(class_tif, SampleOptions(40, min_edge_distance_px=5, min_spacing_px=0, seed=2,
                                border_is_edge=False))
    _check_invariants(res, arr, 5, 0, border_is_edge=False)
    by = {s.class_id: s for s in res.summary}
    assert by[3].interior_px == int(((arr == 3) & (_edt(arr, 3, False) >= 5)).sum())
    assert by[3].interior_px > int(((arr == 3) & (_edt(arr, 3, True) >= 5)).sum())


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
    arr = _array(class_tif)
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
        m = _array(ch.mask_path)
        assert np.array_equal(m, _array(class_tif, (xo, yo, cs, cs)))
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
        assert np.array_equal(_array(ch.image_path), _array(str(SAMPLE), (xo + 100, yo + 200, cs, cs)))


# ---------------------------------------------------------------------------------------------- algorithm
run = algorithm_runner("ktextures:sample")


def _feedback():
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.infos, self.warnings = [], []

        def pushInfo(self, info):  # noqa: N802
            self.infos.append(info)

        def pushWarning(self, warning):  # noqa: N802
            self.warnings.append(warning)

    return Recorder()


def _features(path):
    ds = ogr.Open(str(path))
    lyr = ds.GetLayer(0)
    out = []
    for f in lyr:
        g = f.GetGeometryRef()
        out.append((f.items(), g.ExportToWkt() if g else None, (g.GetX(), g.GetY()) if g and g.GetGeometryType()
                    in (ogr.wkbPoint, ogr.wkbPoint25D) else None))
    ds = None
    return out


def test_provider_lists_sample(provider):
    from qgis.core import QgsApplication
    alg = QgsApplication.processingRegistry().algorithmById("ktextures:sample")
    assert alg is not None and alg.group() == "" and alg.groupId() == ""
    names = [p.name() for p in alg.parameterDefinitions()]
    for pid in ["INPUT", "IMAGE", "POINTS_PER_CLASS", "PROPORTIONAL", "MIN_PER_CLASS", "MIN_EDGE_DISTANCE_PX",
                "MIN_SPACING_PX", "SEED", "CLASSES", "CHIP_SIZE_PX", "OUTPUT_POINTS", "OUTPUT_FOLDER",
                "OUTPUT_CHIPS", "OUTPUT_SUMMARY"]:
        assert pid in names
    assert alg.shortHelpString() and not alg.icon().isNull()


def test_algorithm_points_chips_and_summary(run, class_tif, tmp_path):
    fb = _feedback()
    res = run({"INPUT": class_tif, "IMAGE": str(SAMPLE), "POINTS_PER_CLASS": 6, "MIN_EDGE_DISTANCE_PX": 3,
               "MIN_SPACING_PX": 12, "SEED": 4, "CHIP_SIZE_PX": 24,
               "OUTPUT_POINTS": str(tmp_path / "pts.gpkg"), "OUTPUT_FOLDER": str(tmp_path / "chips"),
               "OUTPUT_CHIPS": str(tmp_path / "chips.gpkg"), "OUTPUT_SUMMARY": str(tmp_path / "summary.csv")},
              feedback=fb)
    arr = _array(class_tif)
    gt = gdal.Open(class_tif).GetGeoTransform()
    pts = _features(res["OUTPUT_POINTS"])
    assert len(pts) == res["SAMPLE_COUNT"] == 18  # classes 2, 3, 4; class 1 has no interior pixel
    names = read_palette(class_tif)[0]
    rc = []
    for attrs, _, (x, y) in pts:
        col, row = int((x - gt[0]) / gt[1]), int((y - gt[3]) / gt[5])
        assert arr[row, col] == attrs["class_id"] and attrs["class_name"] == names[attrs["class_id"] - 1]
        assert (row, col) == (attrs["row"], attrs["col"])
        assert _edt(arr, attrs["class_id"])[row, col] >= 3 and attrs["edge_distance_px"] >= 3
        rc.append((row, col))
    rc = np.array(rc, float)
    assert min(np.hypot(*(a - b)) for a, b in itertools.combinations(rc, 2)) >= 12
    # class 1 is named in a warning, not a failure
    assert any("Class 1" in w and names[0] in w for w in fb.warnings), fb.warnings
    assert any("requested 6, found 6" in i for i in fb.infos)
    with open(res["OUTPUT_SUMMARY"]) as fh:
        rows = {int(r["class_id"]): r for r in csv.DictReader(fh)}
    assert sorted(rows) == [1, 2, 3, 4]
    assert rows[1]["found"] == "0" and rows[1]["skipped"] == "6" and "interior" in rows[1]["reason"]
    assert rows[3]["found"] == "6" and int(rows[3]["pixels"]) == int((arr == 3).sum())
    # chips: footprints with file names, image and mask chips on the same window
    chips = _features(res["OUTPUT_CHIPS"])
    assert len(chips) == res["CHIP_COUNT"] == 18
    for attrs, wkt, _ in chips:
        xo, yo, cs = attrs["xoff"], attrs["yoff"], attrs["size_px"]
        assert cs == 24 and os.path.dirname(attrs["image_file"]) == str(tmp_path / "chips")
        assert np.array_equal(_array(attrs["image_file"]), _array(str(SAMPLE), (xo, yo, cs, cs)))
        assert np.array_equal(_array(attrs["mask_file"]), arr[yo:yo + cs, xo:xo + cs])
        env = ogr.CreateGeometryFromWkt(wkt).GetEnvelope()
        assert env == pytest.approx((gt[0] + xo * gt[1], gt[0] + (xo + cs) * gt[1],
                                     gt[3] + (yo + cs) * gt[5], gt[3] + yo * gt[5]))
    assert len([f for f in os.listdir(tmp_path / "chips") if f.endswith(".tif")]) == 36


def test_classes_as_string_or_numbers(run, class_tif, tmp_path):
    for i, classes in enumerate(["2,4", [2, 4], 4]):
        res = run({"INPUT": class_tif, "POINTS_PER_CLASS": 3, "MIN_EDGE_DISTANCE_PX": 1, "MIN_SPACING_PX": 2,
                   "CLASSES": classes, "OUTPUT_POINTS": str(tmp_path / f"p{i}.gpkg"), "OUTPUT_SUMMARY": None})
        got = {a["class_id"] for a, _, _ in _features(res["OUTPUT_POINTS"])}
        assert got == ({4} if classes == 4 else {2, 4})


def test_batch_style_runs_share_a_context(run, class_tif, holed_tif, tmp_path):
    """Batch mode runs the algorithm once per row with one context; each row gets its own outputs."""
    from qgis.core import QgsProcessingContext
    context = QgsProcessingContext()
    fb = _feedback()
    outs = []
    for i, (src, seed) in enumerate([(class_tif, 1), (holed_tif, 1), (class_tif, 2)]):
        res = run({"INPUT": src, "POINTS_PER_CLASS": 5, "SEED": seed, "MIN_SPACING_PX": 4,
                   "OUTPUT_POINTS": str(tmp_path / f"b{i}.gpkg"), "OUTPUT_SUMMARY": str(tmp_path / f"s{i}.csv")},
                  feedback=fb, context=context)
        outs.append(sorted((a["class_id"], a["row"], a["col"]) for a, _, _ in _features(res["OUTPUT_POINTS"])))
    assert all(outs) and outs[0] != outs[1] and outs[0] != outs[2]
    holed = _array(holed_tif)
    assert all(holed[r, c] == k for k, r, c in outs[1])


def test_errors_are_clear(run, class_tif, tmp_path):
    from qgis.core import QgsProcessingException
    base = {"INPUT": class_tif, "POINTS_PER_CLASS": 3, "OUTPUT_POINTS": str(tmp_path / "e.gpkg"),
            "OUTPUT_SUMMARY": None}
    flt = str(tmp_path / "float.tif")
    gdal.Translate(flt, class_tif, outputType=gdal.GDT_Float32)
    with pytest.raises(QgsProcessingException, match="not an integer class raster"):
        run({**base, "INPUT": flt})
    with pytest.raises(QgsProcessingException, match="CHIP_SIZE_PX 600 is larger than the class raster"):
        run({**base, "IMAGE": str(SAMPLE), "CHIP_SIZE_PX": 600, "OUTPUT_FOLDER": str(tmp_path / "c")})
    other_crs = str(tmp_path / "crs.tif")
    gdal.Translate(other_crs, str(SAMPLE), outputSRS="EPSG:32632")
    with pytest.raises(QgsProcessingException, match="IMAGE is in another CRS"):
        run({**base, "IMAGE": other_crs, "CHIP_SIZE_PX": 8, "OUTPUT_FOLDER": str(tmp_path / "c")})
    shifted = str(tmp_path / "shift.tif")
    gdal.Translate(shifted, str(SAMPLE))
    ds = gdal.Open(shifted, gdal.GA_Update)
    gt = list(ds.GetGeoTransform())
    gt[0] += 0.5 * gt[1]
    ds.SetGeoTransform(gt)
    ds = None
    with pytest.raises(QgsProcessingException, match="shifted grid"):
        run({**base, "IMAGE": shifted, "CHIP_SIZE_PX": 8, "OUTPUT_FOLDER": str(tmp_path / "c")})
    coarse = str(tmp_path / "coarse.tif")
    gdal.Translate(coarse, str(SAMPLE), xRes=20, yRes=20)
    with pytest.raises(QgsProcessingException, match="pixel size"):
        run({**base, "IMAGE": coarse, "CHIP_SIZE_PX": 8, "OUTPUT_FOLDER": str(tmp_path / "c")})
    small = str(tmp_path / "small.tif")
    gdal.Translate(small, str(SAMPLE), srcWin=[0, 0, 100, 100])
    with pytest.raises(QgsProcessingException, match="does not cover"):
        run({**base, "IMAGE": small, "CHIP_SIZE_PX": 8, "OUTPUT_FOLDER": str(tmp_path / "c")})
    with pytest.raises(QgsProcessingException, match="CLASSES"):
        run({**base, "CLASSES": "two"})
    assert not os.path.exists(tmp_path / "c") or not os.listdir(tmp_path / "c")


def test_cancel(run, class_tif, tmp_path):
    from qgis.core import QgsProcessingException
    fb = _feedback()
    fb.cancel()
    with pytest.raises(QgsProcessingException, match="Canceled"):
        run({"INPUT": class_tif, "OUTPUT_POINTS": str(tmp_path / "x.gpkg")}, feedback=fb)


def test_graphical_model_segment_then_sample(provider, tmp_path, tiny_models):
    """A QgsProcessingModelAlgorithm chaining ktextures:segment into ktextures:sample, run headless."""
    import processing
    from qgis.core import (
        QgsApplication,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    from modelbuilder import add_child
    assert QgsApplication.processingRegistry().algorithmById("ktextures:segment") is not None, \
        "ktextures:segment is not registered by the provider"
    src = QgsProcessingModelChildParameterSource
    m = QgsProcessingModelAlgorithm("segment and sample", "k-textures tests")
    m.addModelParameter(QgsProcessingParameterRasterLayer("image", "image"), QgsProcessingModelParameter("image"))
    add_child(m, "ktextures:segment", "seg", {"INPUT": src.fromModelParameter("image"),
                                              "MODEL_FILE": src.fromStaticValue(tiny_models["bin4"]),
                                              "MIN_SEGMENT_PX": src.fromStaticValue(4)})
    add_child(m, "ktextures:sample", "sample",
              {"INPUT": src.fromChildOutput("seg", "OUTPUT_RASTER"), "IMAGE": src.fromModelParameter("image"),
               **{pid: src.fromStaticValue(v) for pid, v in {"POINTS_PER_CLASS": 4, "MIN_EDGE_DISTANCE_PX": 2,
                                                             "MIN_SPACING_PX": 10, "SEED": 9,
                                                             "CHIP_SIZE_PX": 16}.items()}},
              outputs=("OUTPUT_POINTS", "OUTPUT_CHIPS", "OUTPUT_FOLDER"))
    ok, errors = m.validate()
    assert ok, errors
    res = processing.run(m, {"image": str(SAMPLE), "sample:sample_OUTPUT_POINTS": str(tmp_path / "pts.gpkg"),
                             "sample:sample_OUTPUT_CHIPS": str(tmp_path / "chips.gpkg"),
                             "sample:sample_OUTPUT_FOLDER": str(tmp_path / "chips")})
    pts = _features(res["sample:sample_OUTPUT_POINTS"])
    assert len(pts) >= 9
    chips = _features(res["sample:sample_OUTPUT_CHIPS"])
    assert len(chips) == len(pts)
    for attrs, _, _ in chips:
        xo, yo = attrs["xoff"], attrs["yoff"]
        assert np.array_equal(_array(attrs["image_file"]), _array(str(SAMPLE), (xo, yo, 16, 16)))
        m_ = _array(attrs["mask_file"])
        assert m_[8, 8] == attrs["class_id"]


def test_qgis_process_run(qgis_process, class_tif, tmp_path):
    """The algorithm under qgis_process (what scripts and the R/Python clients call)."""
    import json

    pts = tmp_path / "qp_points.gpkg"
    cp = qgis_process.run("ktextures:sample", f"INPUT={class_tif}", f"IMAGE={SAMPLE}", "POINTS_PER_CLASS=3",
                          "CLASSES=2,4", "CHIP_SIZE_PX=8", f"OUTPUT_FOLDER={tmp_path / 'qp_chips'}",
                          f"OUTPUT_POINTS={pts}", f"OUTPUT_SUMMARY={tmp_path / 'qp_summary.csv'}")
    assert cp.returncode == 0, cp.stderr[-2000:]
    res = json.loads(cp.stdout)["results"]
    assert res["SAMPLE_COUNT"] == 6 and res["CHIP_COUNT"] == 6
    assert {a["class_id"] for a, _, _ in _features(pts)} == {2, 4}
    assert len(os.listdir(tmp_path / "qp_chips")) >= 12


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


def test_loaded_points_are_coloured_by_class(provider, class_tif, tmp_path):
    """Loaded on completion (as in the GUI), points and chip footprints get the class raster's colours."""
    import processing
    from qgis.core import QgsProject
    res = processing.runAndLoadResults("ktextures:sample", {
        "INPUT": class_tif, "POINTS_PER_CLASS": 2, "CHIP_SIZE_PX": 8, "OUTPUT_FOLDER": str(tmp_path / "c"),
        "OUTPUT_POINTS": str(tmp_path / "styled.gpkg"), "OUTPUT_CHIPS": str(tmp_path / "fp.gpkg"),
        "OUTPUT_SUMMARY": None})
    names, colors = read_palette(class_tif)
    try:
        for key in ("OUTPUT_POINTS", "OUTPUT_CHIPS"):
            lyrs = [m for m in QgsProject.instance().mapLayers().values()
                    if m.source().split("|")[0] == res[key]]
            assert len(lyrs) == 1, [m.source() for m in QgsProject.instance().mapLayers().values()]
            lyr = lyrs[0]
            r = lyr.renderer()
            assert r.type() == "categorizedSymbol" and r.classAttribute() == "class_id"
            cats = r.categories()
            assert [c.value() for c in cats] == [1, 2, 3, 4] and [c.label() for c in cats] == names
            col = cats[1].symbol().color() if key == "OUTPUT_POINTS" else \
                cats[1].symbol().symbolLayer(0).strokeColor()
            assert col.name() == colors[1]
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_plain_integer_raster_geographic_with_negative_nodata(class_tif, tmp_path):
    """Any GDAL integer raster: Int16 with nodata -1, EPSG:4326, no palette; only present classes reported."""
    a = _array(class_tif).astype(np.int16)
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


def test_points_and_footprints_open_styled_from_disk(run, class_tif, tmp_path):
    """The styles are in the files: a GeoPackage's layer_styles table (points) and a .qml beside a shapefile
    (footprints); a fresh layer opened from disk is categorised by class with the class raster's palette."""
    from qgis.core import QgsVectorLayer
    res = run({"INPUT": class_tif, "POINTS_PER_CLASS": 2, "CHIP_SIZE_PX": 8, "OUTPUT_FOLDER": str(tmp_path / "c"),
               "OUTPUT_POINTS": str(tmp_path / "pts.gpkg"), "OUTPUT_CHIPS": str(tmp_path / "fp.shp"),
               "OUTPUT_SUMMARY": None})
    names, colors = read_palette(class_tif)
    assert (tmp_path / "fp.qml").exists()
    for key, polygons in (("OUTPUT_POINTS", False), ("OUTPUT_CHIPS", True)):
        lyr = QgsVectorLayer(res[key], "from disk", "ogr")
        assert lyr.isValid()
        r = lyr.renderer()
        assert r.type() == "categorizedSymbol" and r.classAttribute() == "class_id"
        cats = r.categories()
        assert [str(c.value()) for c in cats] == ["1", "2", "3", "4"] and [c.label() for c in cats] == names
        sym = cats[2].symbol()
        col = sym.symbolLayer(0).strokeColor() if polygons else sym.color()
        assert col.name() == colors[2]
        del lyr


def _error_recorder():
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.errors = []

        def reportError(self, error, fatal_error=False):  # noqa: N802
            self.errors.append(error)

    return Recorder()


NOT_GENERATED = "not correctly generated"


def test_temporary_outputs_load_without_not_generated_line(provider, class_tif):
    """Default (temporary) outputs, loaded on completion as the dialog does: both layers load, and QGIS reports
    no layer as "not correctly generated" (the sinks' destinations are read without registering extra layers)."""
    import processing
    from qgis.core import QgsProject
    fb = _error_recorder()
    res = processing.runAndLoadResults("ktextures:sample", {
        "INPUT": class_tif, "POINTS_PER_CLASS": 3, "OUTPUT_POINTS": "TEMPORARY_OUTPUT",
        "OUTPUT_SUMMARY": "TEMPORARY_OUTPUT"}, feedback=fb)
    try:
        assert not [e for e in fb.errors if NOT_GENERATED in e], fb.errors
        loaded = {lyr.id() for lyr in QgsProject.instance().mapLayers().values()}
        assert {res["OUTPUT_POINTS"], res["OUTPUT_SUMMARY"]} <= loaded
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_model_segment_then_sample_loads_without_not_generated_line(provider, tiny_models):
    """A segment -> sample graphical model with temporary outputs, run and loaded as from the modeler."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
        QgsProject,
    )

    from modelbuilder import add_child
    src = QgsProcessingModelChildParameterSource
    m = QgsProcessingModelAlgorithm("segment and sample", "k-textures tests")
    m.addModelParameter(QgsProcessingParameterRasterLayer("image", "image"), QgsProcessingModelParameter("image"))
    add_child(m, "ktextures:segment", "seg", {"INPUT": src.fromModelParameter("image"),
                                              "MODEL_FILE": src.fromStaticValue(tiny_models["bin4"])},
              outputs=("OUTPUT_RASTER",))
    add_child(m, "ktextures:sample", "sample", {"INPUT": src.fromChildOutput("seg", "OUTPUT_RASTER"),
                                                "POINTS_PER_CLASS": src.fromStaticValue(3)},
              outputs=("OUTPUT_POINTS", "OUTPUT_SUMMARY"))
    ok, errors = m.validate()
    assert ok, errors
    fb = _error_recorder()
    res = processing.runAndLoadResults(m, {"image": str(SAMPLE), "seg:seg_OUTPUT_RASTER": "TEMPORARY_OUTPUT",
                                           "sample:sample_OUTPUT_POINTS": "TEMPORARY_OUTPUT",
                                           "sample:sample_OUTPUT_SUMMARY": "TEMPORARY_OUTPUT"}, feedback=fb)
    try:
        assert res is not None and not [e for e in fb.errors if NOT_GENERATED in e], fb.errors
        assert len(QgsProject.instance().mapLayers()) >= 3
    finally:
        QgsProject.instance().removeAllMapLayers()
