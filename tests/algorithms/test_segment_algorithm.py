"""ktextures:segment through real QGIS Processing: toolbox-style runs on the bundled sample and on other
kinds of raster, qgis_process, a batch-style run over several layers, a graphical model, styling, errors."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal, ogr

from conftest import ROOT, SAMPLE, algorithm_runner, csv_rows, shared
from onnx_fixtures import binning_model

gdal.UseExceptions()


run = algorithm_runner("ktextures:segment")


def _classes(path):
    ds = gdal.Open(path)
    try:
        return ds.GetRasterBand(1).ReadAsArray(), ds
    finally:
        pass


def test_provider_lists_segment(provider):
    from qgis.core import QgsApplication
    alg = QgsApplication.processingRegistry().algorithmById("ktextures:segment")
    assert alg is not None
    names = [p.name() for p in alg.parameterDefinitions()]
    for pid in ["INPUT", "MODEL", "MODEL_FILE", "BANDS", "SCALING", "NODATA", "EXTENT", "MIN_SEGMENT_PX",
                "TILE_SIZE", "OUTPUT_RASTER", "OUTPUT_VECTOR", "OUTPUT_REPORT", "OUTPUT_SIMULATION"]:
        assert pid in names
    assert "Sentinel-2 10 m, k = 6" in alg.parameterDefinition("MODEL").options()


def test_bundled_sample_with_default_model(run, tmp_path):
    """The main job as the demo runs it: default bundled model, band mapping from descriptions."""
    out = {"OUTPUT_RASTER": str(tmp_path / "c.tif"), "OUTPUT_VECTOR": str(tmp_path / "p.gpkg"),
           "OUTPUT_REPORT": str(tmp_path / "r.csv"), "OUTPUT_SIMULATION": str(tmp_path / "s.tif")}
    res = run({"INPUT": str(SAMPLE), "MIN_SEGMENT_PX": 4, **out})
    k = res["NUM_CLASSES"]
    assert k == 6
    c, ds = _classes(res["OUTPUT_RASTER"])
    present = np.unique(c)
    assert present.min() >= 1 and set(present) <= set(range(1, k + 1)) and len(present) >= 4
    assert np.bincount(c.ravel(), minlength=k + 1).max() < 0.8 * c.size
    rows = csv_rows(res["OUTPUT_REPORT"])
    assert [int(r["class_id"]) for r in rows] == list(range(1, k + 1))
    assert sum(int(r["pixels"]) for r in rows) == c.size == res["VALID_PIXELS"]
    assert sum(float(r["area_m2"]) for r in rows) == pytest.approx(c.size * 100.0, rel=1e-3)
    assert sum(float(r["percent"]) for r in rows) == pytest.approx(100, abs=0.1)
    vec = ogr.Open(res["OUTPUT_VECTOR"])
    lyr = vec.GetLayer(0)
    fields = [lyr.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(lyr.GetLayerDefn().GetFieldCount())]
    assert {"class_id", "class_name", "area_m2"} <= set(fields)
    area = {}
    for f in lyr:
        area[f["class_id"]] = area.get(f["class_id"], 0) + f["area_m2"]
    for r in rows:
        assert area.get(int(r["class_id"]), 0) == pytest.approx(float(r["area_m2"]), rel=1e-6)
    sim = gdal.Open(res["OUTPUT_SIMULATION"])
    assert sim.RasterCount == 4 and (sim.RasterXSize, sim.RasterYSize) == (512, 768)


def test_outputs_open_styled(run, tmp_path):
    """Both outputs carry their style: a fresh QgsRasterLayer is paletted with the class names, the
    GeoPackage has a default categorized style."""
    from qgis.core import QgsRasterLayer, QgsVectorLayer
    res = run({"INPUT": str(SAMPLE), "OUTPUT_RASTER": str(tmp_path / "c.tif"),
               "OUTPUT_VECTOR": str(tmp_path / "p.gpkg")})
    rl = QgsRasterLayer(res["OUTPUT_RASTER"], "classes")
    assert rl.renderer().type() == "paletted"
    labels = [c.label for c in rl.renderer().classes()]
    assert len(labels) == res["NUM_CLASSES"] and all(lbl.startswith("texture") for lbl in labels)
    vl = QgsVectorLayer(res["OUTPUT_VECTOR"], "polygons", "ogr")
    assert vl.renderer().type() == "categorizedSymbol"
    assert vl.renderer().classAttribute() == "class_id"
    assert len(vl.renderer().categories()) == res["NUM_CLASSES"]
    pal = [c.color.name() for c in rl.renderer().classes()]
    vcol = [c.symbol().color().name() for c in vl.renderer().categories()]
    assert pal == vcol


def test_run_and_load_results_styles_layers(provider, tmp_path):
    import processing
    from qgis.core import QgsProject
    QgsProject.instance().removeAllMapLayers()
    processing.runAndLoadResults("ktextures:segment", {
        "INPUT": str(SAMPLE), "OUTPUT_RASTER": str(tmp_path / "c.tif"), "OUTPUT_VECTOR": str(tmp_path / "p.gpkg")})
    layers = list(QgsProject.instance().mapLayers().values())
    kinds = sorted(lyr.renderer().type() for lyr in layers)
    assert kinds == ["categorizedSymbol", "paletted"]
    QgsProject.instance().removeAllMapLayers()


@pytest.mark.parametrize("case", ["naip", "landsat6", "amazon4326"])
def test_other_kinds_of_raster(run, tmp_path, case):
    """NAIP (Byte, R,G,B,NIR, nodata 0), 6-band Landsat 7 (Byte), geographic Float32 Sentinel-2 with NaN."""
    if case == "naip":
        src = shared("naip_nd/naip_nd_2018_rgbn_5m_alt_sample.tif")
        params = {"BANDS": [1, 2, 3, 4], "SCALING": "stretch"}
    elif case == "landsat6":
        src = shared("landsat7_olinda/L7_ETMs_olinda_6band_28m5.tif")
        params = {"BANDS": "3,2,1,4", "SCALING": "stretch"}
    else:
        src, params = shared("s2_amazon/s2_amazon_b2b3b4b8_10m_reflectance.tif"), {"SCALING": "stretch"}
    res = run({"INPUT": str(src), **params, "OUTPUT_RASTER": str(tmp_path / "c.tif"),
               "OUTPUT_VECTOR": str(tmp_path / "p.gpkg"), "OUTPUT_REPORT": str(tmp_path / "r.csv")})
    c, ds = _classes(res["OUTPUT_RASTER"])
    src_ds = gdal.Open(str(src))
    assert (ds.RasterXSize, ds.RasterYSize) == (src_ds.RasterXSize, src_ds.RasterYSize)
    assert ds.GetGeoTransform() == pytest.approx(src_ds.GetGeoTransform())
    assert ds.GetSpatialRef().IsSame(src_ds.GetSpatialRef())
    assert len(np.unique(c[c > 0])) >= 3
    rows = csv_rows(res["OUTPUT_REPORT"])
    total_m2 = sum(float(r["area_m2"]) for r in rows)
    if case == "amazon4326":
        gt = src_ds.GetGeoTransform()
        lat = np.radians(gt[3] + gt[5] * src_ds.RasterYSize / 2)
        px_m2 = abs(gt[1] * gt[5]) * (np.pi / 180 * 6371007.0) ** 2 * np.cos(lat)
        assert total_m2 == pytest.approx((c > 0).sum() * px_m2, rel=0.01)  # square metres, not degrees
        vec = ogr.Open(res["OUTPUT_VECTOR"])
        lyr = vec.GetLayer(0)
        assert sum(f["area_m2"] for f in lyr) == pytest.approx(total_m2, rel=0.01)
    if case == "naip":
        nd = src_ds.GetRasterBand(1).ReadAsArray() == 0
        assert (c[nd] == 0).all()


def test_bands_order_is_kept(run, tmp_path, tiny_models):
    """BANDS as a list, as a string and from descriptions give the same result; another order differs."""
    outs = []
    for bands in ([3, 2, 1, 4], "3,2,1,4", None, [1, 2, 3, 4]):
        p = {"INPUT": str(SAMPLE), "MODEL_FILE": tiny_models["bin4"], "OUTPUT_RASTER": "TEMPORARY_OUTPUT",
             "OUTPUT_VECTOR": None}
        if bands is not None:
            p["BANDS"] = bands
        outs.append(_classes(run(p)["OUTPUT_RASTER"])[0])
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])
    assert not np.array_equal(outs[0], outs[3])


def test_extent_limits_the_output(run, tmp_path, tiny_models):
    ds = gdal.Open(str(SAMPLE))
    gt = ds.GetGeoTransform()
    x0, y1 = gt[0] + 100 * gt[1], gt[3] + 200 * gt[5]
    x1, y0 = x0 + 50 * gt[1], y1 + 40 * gt[5]
    res = run({"INPUT": str(SAMPLE), "MODEL_FILE": tiny_models["bin4"], "EXTENT": f"{x0},{x1},{y0},{y1} [EPSG:32633]",
               "OUTPUT_RASTER": str(tmp_path / "c.tif"), "OUTPUT_VECTOR": None})
    out = gdal.Open(res["OUTPUT_RASTER"])
    assert (out.RasterXSize, out.RasterYSize) == (50, 40)
    assert out.GetGeoTransform()[0] == pytest.approx(x0) and out.GetGeoTransform()[3] == pytest.approx(y1)


def test_qgis_process_run(qgis_process, tmp_path, tiny_models):
    out = tmp_path / "qp" / "classes.tif"
    cp = qgis_process.run("ktextures:segment", f"INPUT={SAMPLE}", f"OUTPUT_RASTER={out}",
                          f"OUTPUT_VECTOR={tmp_path / 'qp' / 'p.gpkg'}", "MIN_SEGMENT_PX=4",
                          f"OUTPUT_REPORT={tmp_path / 'qp' / 'r.csv'}")
    assert cp.returncode == 0, cp.stderr[-2000:]
    res = json.loads(cp.stdout)["results"]
    assert res["NUM_CLASSES"] == 6 and os.path.exists(res["OUTPUT_RASTER"])
    ds = gdal.Open(str(out))
    assert ds.GetRasterBand(1).GetRasterColorTable() is not None
    assert os.path.exists(tmp_path / "qp" / "r.csv")
    bad = qgis_process.run("ktextures:segment", f"INPUT={SAMPLE}", "BANDS=3", "BANDS=2",
                           f"OUTPUT_RASTER={tmp_path / 'qp' / 'x.tif'}", json_output=False)
    assert bad.returncode != 0 and "needs 4 bands" in bad.stdout + bad.stderr


def test_batch_over_several_layers(run, tmp_path, tiny_models):
    """As the batch dialog does: one algorithm, one row per layer, one shared context and feedback."""
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsRasterLayer
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    layers = [QgsRasterLayer(str(SAMPLE), "sample")]
    for i, win in enumerate([(0, 0, 200, 300), (300, 400, 212, 368)]):
        p = tmp_path / f"part{i}.tif"
        gdal.Translate(str(p), str(SAMPLE), srcWin=list(win))
        layers.append(QgsRasterLayer(str(p), f"part{i}"))
    results = []
    for i, lyr in enumerate(layers):
        assert lyr.isValid()
        results.append(run({"INPUT": lyr, "MODEL_FILE": tiny_models["bin4"], "BANDS": [3, 2, 1, 4],
                            "OUTPUT_RASTER": str(tmp_path / f"c{i}.tif"),
                            "OUTPUT_VECTOR": str(tmp_path / f"p{i}.gpkg")},
                           feedback=feedback, context=context))
    full = _classes(results[0]["OUTPUT_RASTER"])[0]
    part0 = _classes(results[1]["OUTPUT_RASTER"])[0]
    part1 = _classes(results[2]["OUTPUT_RASTER"])[0]
    # a per-pixel model with global labels: each part equals the same window of the whole layer
    assert np.array_equal(part0, full[0:300, 0:200]) and np.array_equal(part1, full[400:768, 300:512])
    assert len({r["OUTPUT_VECTOR"] for r in results}) == 3


def test_graphical_model_chains_segment_with_native(provider, tmp_path, tiny_models):
    """A QgsProcessingModelAlgorithm: ktextures:segment -> native:rasterlayeruniquevaluesreport."""
    import processing
    from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingModelParameter, QgsProcessingParameterRasterLayer
    from qgis.core import QgsProcessingModelChildParameterSource as Src

    from modelbuilder import add_child
    m = QgsProcessingModelAlgorithm("segment and count", "k-textures tests")
    m.addModelParameter(QgsProcessingParameterRasterLayer("image", "image"), QgsProcessingModelParameter("image"))
    add_child(m, "ktextures:segment", "seg",
              {"INPUT": Src.fromModelParameter("image"), "MODEL_FILE": Src.fromStaticValue(tiny_models["bin4"]),
               **{pid: Src.fromStaticValue(v) for pid, v in {"MIN_SEGMENT_PX": 4, "MODEL": 1, "SCALING": "model",
                                                             "TILE_SIZE": 256}.items()}})
    add_child(m, "native:rasterlayeruniquevaluesreport", "report",
              {"INPUT": Src.fromChildOutput("seg", "OUTPUT_RASTER"), "BAND": Src.fromStaticValue(1)},
              outputs=("OUTPUT_TABLE",))
    assert m.validate()[0], m.validate()[1]
    res = processing.run(m, {"image": str(SAMPLE), "report:report_OUTPUT_TABLE": str(tmp_path / "t.csv")})
    assert os.path.exists(res["report:report_OUTPUT_TABLE"])
    rows = csv_rows(res["report:report_OUTPUT_TABLE"], csv.reader)
    assert len(rows) - 1 >= 2  # several classes counted by the native algorithm


def _error(run, params, match):
    from qgis.core import QgsProcessingException
    with pytest.raises(QgsProcessingException, match=match):
        run(params)


def test_errors_are_clear(run, tmp_path, tiny_models):
    base = {"INPUT": str(SAMPLE), "MODEL_FILE": tiny_models["bin4"], "OUTPUT_RASTER": str(tmp_path / "o.tif"),
            "OUTPUT_VECTOR": None}
    three = tmp_path / "three.tif"
    gdal.Translate(str(three), str(SAMPLE), bandList=[1, 2, 3])
    _error(run, {**base, "BANDS": [1, 2, 3]}, "needs 4 bands but 3")
    _error(run, {**base, "INPUT": str(three)}, "has 3 band.*needs 4")
    _error(run, {**base, "BANDS": "3,2,1,7"}, "out of range")
    _error(run, {**base, "MODEL_FILE": str(tmp_path / "none.onnx")}, "not found")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage" * 50)
    _error(run, {**base, "MODEL_FILE": str(bad)}, "corrupt or not ONNX")
    plain = binning_model(tmp_path / "plain.onnx", metadata=False)
    _error(run, {**base, "MODEL_FILE": plain}, "no k-textures metadata")
    nd = tmp_path / "nd.tif"
    gdal.Translate(str(nd), str(SAMPLE), noData=0, scaleParams=[[0, 65535, 0, 0]], outputType=gdal.GDT_UInt16)
    _error(run, {**base, "INPUT": str(nd)}, "Every pixel .* nodata")
    afile = tmp_path / "afile"
    afile.write_text("x")
    _error(run, {**base, "OUTPUT_RASTER": str(afile / "o.tif")}, "output folder")
    _error(run, {**base, "OUTPUT_RASTER": str(SAMPLE)}, "is the input INPUT")
    assert not os.path.exists(base["OUTPUT_RASTER"])


def test_cancel_between_tiles(run, tmp_path, tiny_models):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelAfterFirstTile(QgsProcessingFeedback):
        def setProgress(self, p):
            super().setProgress(p)
            if p > 0:
                self.cancel()

    fb = CancelAfterFirstTile()
    out = tmp_path / "o"
    with pytest.raises(QgsProcessingException, match="Canceled"):
        run({"INPUT": str(SAMPLE), "MODEL_FILE": tiny_models["bin4"], "TILE_SIZE": 64,
             "OUTPUT_RASTER": str(out / "c.tif"), "OUTPUT_VECTOR": str(out / "p.gpkg")}, feedback=fb)
    assert not out.exists() or os.listdir(out) == []


def test_without_onnxruntime_provider_loads_and_explains(tmp_path):
    """A QGIS whose Python cannot import onnxruntime still lists the algorithms; segment and novelty (the model
    runners, common.ModelInputAlgorithm) say how to install."""
    code = f"""
import sys, os
sys.modules['onnxruntime'] = None  # makes 'import onnxruntime' raise ImportError, as when it is not installed
sys.path.insert(0, {str(ROOT)!r})
from qgis.core import QgsApplication
app = QgsApplication([], False); app.initQgis()
from processing.core.Processing import Processing
Processing.initialize()
import processing
from ktextures_plugin.provider import KTexturesProvider
prov = KTexturesProvider(); QgsApplication.processingRegistry().addProvider(prov)
alg = QgsApplication.processingRegistry().algorithmById('ktextures:segment')
print('LOADED', alg is not None, alg.canExecute())
print('NOVELTY', QgsApplication.processingRegistry().algorithmById('ktextures:novelty').canExecute())
try:
    processing.run('ktextures:segment', {{'INPUT': {str(SAMPLE)!r}, 'OUTPUT_RASTER': {str(tmp_path / 'x.tif')!r}}})
except Exception as e:
    print('ERROR', e)
os._exit(0)
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    cp = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "LOADED True (False" in cp.stdout and "NOVELTY (False" in cp.stdout, cp.stdout + cp.stderr
    assert "ERROR" in cp.stdout and "-m ktextures_plugin install onnxruntime --profile" in cp.stdout


def test_smoothing_parameter_runs_the_smoothing_step(run, tmp_path):
    """SMOOTHING through Processing gives the core's smoothed raster; empty takes the model's recommendation."""
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    from onnx_fixtures import scores_model
    model = scores_model(tmp_path / "s.onnx", k=4, smoothing_beta=1.5)
    base = {"INPUT": str(SAMPLE), "MODEL_FILE": model, "BANDS": [3, 2, 1, 4], "MIN_SEGMENT_PX": 0,
            "OUTPUT_VECTOR": None}
    a = run({**base, "SMOOTHING": 2.0, "OUTPUT_RASTER": str(tmp_path / "a.tif")})
    d = run({**base, "OUTPUT_RASTER": str(tmp_path / "d.tif")})
    ref = segment_raster(str(SAMPLE), model, str(tmp_path / "r.tif"), SegmentOptions(bands=[3, 2, 1, 4],
                                                                                     smoothing=2.0))
    rec = segment_raster(str(SAMPLE), model, str(tmp_path / "q.tif"), SegmentOptions(bands=[3, 2, 1, 4]))
    assert ref.smoothing == 2.0 and rec.smoothing == 1.5
    assert np.array_equal(_classes(a["OUTPUT_RASTER"])[0], _classes(ref.path)[0])
    assert np.array_equal(_classes(d["OUTPUT_RASTER"])[0], _classes(rec.path)[0])
    assert not np.array_equal(_classes(ref.path)[0], _classes(rec.path)[0])
