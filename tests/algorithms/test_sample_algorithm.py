"""ktextures:sample through real QGIS Processing and qgis_process, on the bundled sample segmented by a tiny
model: points, chips and summary, errors, cancel, batch-style runs, styled and loaded outputs, and a graphical
model chaining ktextures:segment into ktextures:sample."""
import csv
import itertools
import os

import numpy as np
import pytest
from osgeo import gdal, ogr

from conftest import SAMPLE, algorithm_runner, edge_distance, read_array
from ktextures_plugin.core.io.classraster import read_palette

gdal.UseExceptions()
ogr.UseExceptions()


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
    arr = read_array(class_tif)
    gt = gdal.Open(class_tif).GetGeoTransform()
    pts = _features(res["OUTPUT_POINTS"])
    assert len(pts) == res["SAMPLE_COUNT"] == 18  # classes 2, 3, 4; class 1 has no interior pixel
    names = read_palette(class_tif)[0]
    rc = []
    for attrs, _, (x, y) in pts:
        col, row = int((x - gt[0]) / gt[1]), int((y - gt[3]) / gt[5])
        assert arr[row, col] == attrs["class_id"] and attrs["class_name"] == names[attrs["class_id"] - 1]
        assert (row, col) == (attrs["row"], attrs["col"])
        assert edge_distance(arr, attrs["class_id"])[row, col] >= 3 and attrs["edge_distance_px"] >= 3
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
        assert np.array_equal(read_array(attrs["image_file"]), read_array(str(SAMPLE), (xo, yo, cs, cs)))
        assert np.array_equal(read_array(attrs["mask_file"]), arr[yo:yo + cs, xo:xo + cs])
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
    holed = read_array(holed_tif)
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
        assert np.array_equal(read_array(attrs["image_file"]), read_array(str(SAMPLE), (xo, yo, 16, 16)))
        m_ = read_array(attrs["mask_file"])
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
                                                "IMAGE": src.fromModelParameter("image"),
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
        names = {lyr.name() for lyr in QgsProject.instance().mapLayers().values()}
        stem = os.path.splitext(os.path.basename(str(SAMPLE)))[0]
        assert f"Sample points ({stem})" in names, names  # the image's name, not the child's "OUTPUT_RASTER"
    finally:
        QgsProject.instance().removeAllMapLayers()
