"""ktextures:evaluate through real QGIS Processing: raster reference, polygon reference, outputs, errors."""
import shutil

import numpy as np
import pytest
from osgeo import gdal

from conftest import SAMPLE, SAMPLE_LABEL, algorithm_runner, csv_rows, shared
from ktextures_plugin.core.evaluate import metrics
from ktextures_plugin.core.io import classraster
from ktextures_plugin.core.kmeans import KMeansOptions, kmeans

gdal.UseExceptions()

SLO = "s2_slovenia/s2_slovenia_ref4_b2b3b4b8_10m.tif"
SLO_LABEL = "s2_slovenia/lulc_label_10m.tif"
SLO_VECTOR = "s2_slovenia/LULC_vector.gpkg"
OUT_KEYS = ["ARI", "NMI", "ACCURACY", "MIOU_HUNGARIAN", "MIOU_MAJORITY", "SAMPLE_PURITY", "CLASSES_REACHED", "KAPPA",
            "F1_MACRO"]


def _arr(path):
    ds = gdal.Open(str(path))
    return ds.GetRasterBand(1).ReadAsArray()


run = algorithm_runner("ktextures:evaluate")


@pytest.fixture(scope="module")
def slo_km(tmp_path_factory):
    out = tmp_path_factory.mktemp("alg") / "slo_k6.tif"
    kmeans.kmeans_raster(str(shared(SLO)), str(out), KMeansOptions(6, bands="3,2,1,4", seed=2))
    return str(out)


@pytest.fixture(scope="module")
def label_copy(tmp_path_factory):
    """A copy of the bundled OSM label raster: QGIS may write statistics into a .aux.xml beside a layer it
    opens, and the repository's data/ must stay untouched."""
    d = tmp_path_factory.mktemp("label")
    dst = d / SAMPLE_LABEL.name
    shutil.copy(SAMPLE_LABEL, dst)
    return dst


@pytest.fixture(scope="module")
def sample_km(tmp_path_factory):
    out = tmp_path_factory.mktemp("alg") / "bb_k4.tif"
    kmeans.kmeans_raster(str(SAMPLE), str(out), KMeansOptions(4, bands="3,2,1,4", seed=0))
    return str(out)


def test_registered_with_metadata(provider):
    from qgis.core import QgsApplication
    alg = QgsApplication.processingRegistry().algorithmById("ktextures:evaluate")
    assert alg is not None
    assert alg.group() == "" and alg.groupId() == ""
    assert "Hungarian" in alg.shortHelpString()
    names = [p.name() for p in alg.parameterDefinitions()]
    for pid in ["INPUT", "REFERENCE", "REFERENCE_VECTOR", "REFERENCE_FIELD", "REFERENCE_NAME_FIELD",
                "OUTPUT_TABLE", "OUTPUT_RASTER"]:
        assert pid in names
    outs = [o.name() for o in alg.outputDefinitions()]
    assert set(OUT_KEYS) <= set(outs)
    assert not alg.icon().isNull()


def test_raster_reference(run, sample_km, label_copy, tmp_path):
    """Fewer clusters (4) than OSM classes: outputs agree with core.evaluate.metrics, the table, and the raster."""
    table, rel = tmp_path / "t.csv", tmp_path / "rel.tif"
    res = run({"INPUT": sample_km, "REFERENCE": str(label_copy), "OUTPUT_TABLE": str(table),
               "OUTPUT_RASTER": str(rel)})
    s = metrics.evaluate_rasters(sample_km, str(label_copy))
    d = s.as_dict()
    for key in OUT_KEYS:
        assert res[key] == pytest.approx(d[key.lower()]), key
    assert res["PIXELS"] == s.pixels
    rows = csv_rows(res["OUTPUT_TABLE"])
    assert list(rows[0]) == ["class_id", "class_name", "reference_class", "reference_name", "iou", "precision",
                             "recall", "f1", "pixels"]
    f1 = {int(r["reference_class"]): float(r["f1"]) for r in rows if r["reference_class"]}
    assert [f1[int(v)] for v in s.table.ref_labels] == pytest.approx(s.f1.tolist())
    cl = [r for r in rows if r["class_id"]]
    assert [int(r["class_id"]) for r in cl] == [1, 2, 3, 4]
    assert [r["class_name"] for r in cl] == [f"cluster {i}" for i in range(1, 5)]
    assert sum(int(r["pixels"]) for r in cl) == s.pixels
    # one row per reference class with an IoU; their mean is the Hungarian mIoU
    per_ref = {int(r["reference_class"]): float(r["iou"]) for r in rows if r["reference_class"]}
    assert sorted(per_ref) == sorted(s.table.ref_labels.tolist())
    assert np.mean(list(per_ref.values())) == pytest.approx(res["MIOU_HUNGARIAN"])
    # the relabelled raster: reference class ids; its pixel agreement with the reference is ACCURACY
    a, r = _arr(rel), _arr(label_copy)
    scored = r != 0
    assert np.mean(a[scored] == r[scored]) == pytest.approx(res["ACCURACY"])
    assert set(np.unique(a).tolist()) <= set(s.table.ref_labels.tolist())
    names, colors = classraster.read_palette(str(rel))
    assert len(names) == len(colors) == max(s.table.ref_labels)


def test_polygon_reference_matches_label_raster(run, slo_km, tmp_path):
    """LULC polygons (field LULC_ID, names LULC_NAME) rasterised onto the Slovenia grid score like the
    label raster derived from them; more clusters (6) than reference classes (5): one stays unmatched."""
    vec = shared(SLO_VECTOR)
    table, rel = tmp_path / "t.csv", tmp_path / "rel.tif"
    res = run({"INPUT": slo_km, "REFERENCE_VECTOR": str(vec), "REFERENCE_FIELD": "LULC_ID",
               "REFERENCE_NAME_FIELD": "LULC_NAME", "OUTPUT_TABLE": str(table), "OUTPUT_RASTER": str(rel)})
    by_raster = metrics.evaluate_rasters(slo_km, str(shared(SLO_LABEL)))
    assert res["PIXELS"] == pytest.approx(by_raster.pixels, rel=0.02)
    for key in OUT_KEYS:
        assert res[key] == pytest.approx(by_raster.as_dict()[key.lower()], abs=0.02), key
    rows = csv_rows(table)
    ref_names = {r["reference_name"] for r in rows if r["reference_class"]}
    assert {"forest", "grassland", "cultivated land"} <= ref_names
    unmatched = [r for r in rows if r["class_id"] and not r["reference_class"]]
    assert len(unmatched) == 1 and unmatched[0]["iou"] == ""
    names, _ = classraster.read_palette(str(rel))
    a = _arr(rel)
    assert names[2 - 1] == "forest"  # LULC_ID 2, written as value 2
    assert any(n.startswith("unmatched: cluster") for n in names)
    assert a.min() >= 1  # every pixel of the k-means raster is classified, unmatched ones too


def test_majority_matching_raster(run, slo_km, tmp_path):
    rel = tmp_path / "rel.tif"
    res = run({"INPUT": slo_km, "REFERENCE": str(shared(SLO_LABEL)), "MATCHING": 1,
               "OUTPUT_TABLE": str(tmp_path / "t.csv"), "OUTPUT_RASTER": str(rel)})
    s = metrics.evaluate_rasters(slo_km, str(shared(SLO_LABEL)))
    a, r = _arr(rel), _arr(shared(SLO_LABEL))
    assert np.mean(a[r != 0] == r[r != 0]) == pytest.approx(s.accuracy_majority)
    assert res["MIOU_MAJORITY"] == pytest.approx(s.miou_majority)


def test_grid_mismatch_is_a_processing_error(run, slo_km, label_copy, tmp_path):
    from qgis.core import QgsProcessingException
    with pytest.raises(QgsProcessingException, match="same grid"):
        run({"INPUT": slo_km, "REFERENCE": str(label_copy), "OUTPUT_TABLE": str(tmp_path / "t.csv")})
    assert not (tmp_path / "t.csv").exists()


@pytest.mark.parametrize("extra", [{}, {"REFERENCE": "LABEL", "REFERENCE_VECTOR": "VECTOR",
                                         "REFERENCE_FIELD": "LULC_ID"},
                                    {"REFERENCE_VECTOR": "VECTOR"}])
def test_reference_choice_errors(run, slo_km, tmp_path, extra):
    from qgis.core import QgsProcessingException
    subst = {"LABEL": str(shared(SLO_LABEL)), "VECTOR": str(shared(SLO_VECTOR))}
    params = {"INPUT": slo_km, "OUTPUT_TABLE": str(tmp_path / "t.csv")}
    params.update({k: subst.get(v, v) for k, v in extra.items()})
    with pytest.raises(QgsProcessingException):
        run(params)


def test_reference_nodata_parameter(run, slo_km, tmp_path):
    """LULC_ID 0 polygons are 'no data' by default; with no unlabelled value they are scored as a class."""
    vec = str(shared(SLO_VECTOR))
    base = {"INPUT": slo_km, "REFERENCE_VECTOR": vec, "REFERENCE_FIELD": "LULC_ID",
            "OUTPUT_TABLE": str(tmp_path / "t.csv")}
    default = run(dict(base))
    everything = run(dict(base, REFERENCE_NODATA=None, OUTPUT_TABLE=str(tmp_path / "t2.csv")))
    assert everything["PIXELS"] > default["PIXELS"]
    rows = csv_rows(tmp_path / "t2.csv")
    assert "0" in {r["reference_class"] for r in rows}
    assert "0" not in {r["reference_class"] for r in csv_rows(tmp_path / "t.csv")}


def test_polygons_in_another_crs_are_reprojected(run, slo_km, tmp_path):
    """Reference polygons in EPSG:4326 score like the same polygons in the raster's UTM CRS."""
    vec = str(shared(SLO_VECTOR))
    geo = tmp_path / "lulc_4326.gpkg"
    gdal.VectorTranslate(str(geo), vec, dstSRS="EPSG:4326", format="GPKG")
    base = {"INPUT": slo_km, "REFERENCE_FIELD": "LULC_ID"}
    utm = run(dict(base, REFERENCE_VECTOR=vec, OUTPUT_TABLE=str(tmp_path / "a.csv")))
    wgs = run(dict(base, REFERENCE_VECTOR=str(geo), OUTPUT_TABLE=str(tmp_path / "b.csv")))
    assert wgs["PIXELS"] == pytest.approx(utm["PIXELS"], rel=0.01)
    for key in OUT_KEYS:
        assert wgs[key] == pytest.approx(utm[key], abs=0.01), key


def test_table_output_optional_and_temporary(run, slo_km):
    import os
    label = str(shared(SLO_LABEL))
    bare = run({"INPUT": slo_km, "REFERENCE": label})
    assert 0 < bare["ARI"] <= 1 and bare["PIXELS"] > 0
    tmp = run({"INPUT": slo_km, "REFERENCE": label, "OUTPUT_TABLE": "TEMPORARY_OUTPUT"})
    assert tmp["OUTPUT_TABLE"].endswith(".csv") and os.path.exists(tmp["OUTPUT_TABLE"])
    assert tmp["ARI"] == bare["ARI"]


def test_qgis_process_run(qgis_process, slo_km, label_copy, tmp_path):
    """ktextures:evaluate under qgis_process with a polygon reference; numbers agree with core.evaluate.metrics."""
    import json

    table = tmp_path / "iou.csv"
    cp = qgis_process.run("ktextures:evaluate", f"INPUT={slo_km}", f"REFERENCE={shared(SLO_LABEL)}",
                          f"OUTPUT_TABLE={table}")
    assert cp.returncode == 0, cp.stderr[-2000:]
    res = json.loads(cp.stdout)["results"]
    s = metrics.evaluate_rasters(slo_km, str(shared(SLO_LABEL)))
    for key in OUT_KEYS:
        assert res[key] == pytest.approx(s.as_dict()[key.lower()]), key
    assert table.exists()
    bad = qgis_process.run("ktextures:evaluate", f"INPUT={slo_km}", f"REFERENCE={label_copy}", json_output=False)
    assert bad.returncode != 0 and "same grid" in bad.stdout + bad.stderr


def test_downstream_outputs_with_image(run, slo_km, tmp_path):
    """With the image (and its bands), the downstream figures are those of core metrics; without it they are NaN."""
    res = run({"INPUT": slo_km, "REFERENCE": str(shared(SLO_LABEL)), "IMAGE": str(shared(SLO)),
               "IMAGE_BANDS": [3, 2, 1, 4], "OUTPUT_TABLE": str(tmp_path / "t.csv")})
    s = metrics.evaluate_rasters(slo_km, str(shared(SLO_LABEL)), image_path=str(shared(SLO)), bands=[3, 2, 1, 4])
    assert s.downstream_samples > 0
    assert res["DOWNSTREAM_MIOU"] == pytest.approx(s.downstream_miou)
    assert res["DOWNSTREAM_ACCURACY"] == pytest.approx(s.downstream_accuracy)
    plain = run({"INPUT": slo_km, "REFERENCE": str(shared(SLO_LABEL)), "OUTPUT_TABLE": str(tmp_path / "u.csv")})
    assert np.isnan(plain["DOWNSTREAM_MIOU"])
