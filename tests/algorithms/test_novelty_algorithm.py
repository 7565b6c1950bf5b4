"""ktextures:novelty through real QGIS Processing: processing.run on a planted anomaly, styled outputs,
qgis_process on the sample, a graphical model segment -> novelty, errors named with QGIS parameters."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr

from conftest import SAMPLE, algorithm_runner
from planted import PATCH_XY, amazon_patch, assert_found_once, cloud, overlaps, plant, unaligned

gdal.UseExceptions()


run = algorithm_runner("ktextures:novelty")


def test_parameters_are_listed(provider):
    from qgis.core import QgsApplication
    alg = QgsApplication.processingRegistry().algorithmById("ktextures:novelty")
    assert alg is not None
    names = [p.name() for p in alg.parameterDefinitions()]
    for pid in ["INPUT", "MODEL", "MODEL_FILE", "BANDS", "TILE_SIZE", "N_SELECT", "RANK", "SEED", "OUTPUT_SCORE",
                "OUTPUT_SELECTED", "OUTPUT_HTML"]:
        assert pid in names
    assert alg.parameterDefinition("TILE_SIZE").defaultValue() == 64
    assert alg.parameterDefinition("N_SELECT").defaultValue() == 20
    # a file output (QGIS 3.22's batch dialog fails on HTML outputs); the Results Viewer shows it anyway
    assert alg.outputDefinition("OUTPUT_HTML").type() == "outputFile"


def test_planted_anomaly_through_qgis(run, tmp_path):
    from qgis.core import QgsRasterLayer, QgsVectorLayer
    src = plant(tmp_path / "planted.tif", [(*PATCH_XY, amazon_patch())])
    before = Path(src).read_bytes()
    res = run({"INPUT": str(src), "N_SELECT": 5, "OUTPUT_SCORE": str(tmp_path / "score.tif"),
               "OUTPUT_SELECTED": str(tmp_path / "tiles.gpkg"), "OUTPUT_HTML": str(tmp_path / "page.html")})
    assert Path(src).read_bytes() == before
    assert res["TILES"] == 15 * 23 and res["SKIPPED_TILES"] == 0
    vec = ogr.Open(res["OUTPUT_SELECTED"])
    feats = sorted(vec.GetLayer(0), key=lambda f: f["rank"])
    first = feats[0]
    assert first["rank"] == 1
    win = (first["tile_col"] * 32, first["tile_row"] * 32, 64, 64)
    assert overlaps(win, *PATCH_XY)
    assert Path(res["OUTPUT_HTML"]).read_text().count("data:image/png") == 15
    rl = QgsRasterLayer(res["OUTPUT_SCORE"], "score")
    assert rl.renderer().type() == "singlebandpseudocolor"
    assert rl.renderer().classificationMax() > rl.renderer().classificationMin()
    scores = gdal.Open(res["OUTPUT_SCORE"]).ReadAsArray()
    assert rl.renderer().classificationMax() < scores.max()           # a percentile stretch, not the maximum
    assert 0 < rl.renderer().opacity() < 1                            # the image shows through
    items = rl.renderer().shader().rasterShaderFunction().colorRampItemList()
    assert len({i.color.name() for i in items}) >= 5   # a real ramp, dark to bright
    assert items[0].color.lightness() < items[-1].color.lightness()
    vl = QgsVectorLayer(res["OUTPUT_SELECTED"], "tiles", "ogr")
    assert vl.labelsEnabled() and vl.labeling().settings().fieldName == "rank"


@pytest.mark.parametrize("x, y", [(90, 150), (300, 420)])
def test_unaligned_cloud_through_qgis(run, tmp_path, x, y):
    """processing.run: a cloud-like block off the tile grid is rank 1 and shown once in the first three."""
    src = plant(tmp_path / "cloud.tif", [(x, y, cloud())])
    res = run({"INPUT": str(src), "N_SELECT": 3, "OUTPUT_SCORE": str(tmp_path / "score.tif"),
               "OUTPUT_SELECTED": str(tmp_path / "tiles.gpkg"), "OUTPUT_HTML": ""})
    vec = ogr.Open(res["OUTPUT_SELECTED"])   # kept: its features die with it
    feats = sorted(vec.GetLayer(0), key=lambda f: f["rank"])
    gt = gdal.Open(str(src)).GetGeoTransform()
    windows = []
    for f in feats:
        e = f.GetGeometryRef().GetEnvelope()   # (minx, maxx, miny, maxy) in the sample's metres
        windows.append((round((e[0] - gt[0]) / gt[1]), round((e[3] - gt[3]) / gt[5]), 64, 64))
    assert_found_once(windows, x, y, 64, 64)
    scores = [f["selection_score"] for f in feats]
    assert scores[0] == max(scores) and all(f["initial_score"] > 0 for f in feats)


@pytest.mark.parametrize("kind", ["seam-long", "dark-large"])
def test_unaligned_seam_and_dark_block_through_qgis(run, tmp_path, kind):
    """processing.run: a seam of bad lines and a dark block off the tile grid are rank 1, shown once."""
    x, y, arr = unaligned(kind)
    src = plant(tmp_path / "anomaly.tif", [(x, y, arr)])
    res = run({"INPUT": str(src), "N_SELECT": 3, "OUTPUT_SCORE": str(tmp_path / "score.tif"),
               "OUTPUT_SELECTED": str(tmp_path / "tiles.gpkg"), "OUTPUT_HTML": ""})
    vec = ogr.Open(res["OUTPUT_SELECTED"])
    feats = sorted(vec.GetLayer(0), key=lambda f: f["rank"])
    assert_found_once([(f["tile_col"] * 32, f["tile_row"] * 32, 64, 64) for f in feats], x, y, arr.shape[2],
                      arr.shape[1])
    assert feats[0]["selection_score"] == max(f["selection_score"] for f in feats)


def test_errors_name_the_parameter(run, tmp_path):
    from qgis.core import QgsProcessingException
    small = tmp_path / "small.tif"
    gdal.Translate(str(small), str(SAMPLE), srcWin=[0, 0, 40, 40])
    with pytest.raises(QgsProcessingException, match="TILE_SIZE"):
        run({"INPUT": str(small), "OUTPUT_SCORE": str(tmp_path / "s.tif")})
    with pytest.raises(QgsProcessingException, match="needs 4 bands"):
        run({"INPUT": str(SAMPLE), "BANDS": [3, 2, 1], "OUTPUT_SCORE": str(tmp_path / "s2.tif")})
    assert not (tmp_path / "s.tif").exists() and not (tmp_path / "s2.tif").exists()


def test_qgis_process_on_the_sample(qgis_process, tmp_path):
    out = tmp_path / "qp"
    cp = qgis_process.run("ktextures:novelty", f"INPUT={SAMPLE}", "N_SELECT=6", f"OUTPUT_SCORE={out / 'score.tif'}",
                          f"OUTPUT_SELECTED={out / 'tiles.gpkg'}", f"OUTPUT_HTML={out / 'page.html'}")
    assert cp.returncode == 0, cp.stderr[-2000:]
    res = json.loads(cp.stdout)["results"]
    assert res["TILES"] == 15 * 23
    score = gdal.Open(res["OUTPUT_SCORE"]).ReadAsArray()
    assert score.shape == (23, 15) and (score > 0).all()
    vec = ogr.Open(res["OUTPUT_SELECTED"])
    assert vec.GetLayer(0).GetFeatureCount() == 6
    assert os.path.getsize(res["OUTPUT_HTML"]) > 10000


def test_graphical_model_segment_then_novelty(provider, tmp_path):
    """A QgsProcessingModelAlgorithm: ktextures:segment, then ktextures:novelty on the same image with the same
    model file (a model parameter), the class raster and the novel tiles as model outputs."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildDependency,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )
    from qgis.core import QgsProcessingModelChildParameterSource as Src

    from modelbuilder import add_child
    m = QgsProcessingModelAlgorithm("segment then novelty", "k-textures tests")
    m.addModelParameter(QgsProcessingParameterRasterLayer("image", "image"), QgsProcessingModelParameter("image"))
    add_child(m, "ktextures:segment", "seg", {"INPUT": Src.fromModelParameter("image")},
              outputs=("OUTPUT_RASTER",))
    add_child(m, "ktextures:novelty", "nov",
                    {"INPUT": Src.fromModelParameter("image"), "N_SELECT": Src.fromStaticValue(4)},
                    outputs=("OUTPUT_SELECTED",))
    m.childAlgorithm("nov").setDependencies([QgsProcessingModelChildDependency("seg")])
    assert m.validate()[0], m.validate()[1]
    res = processing.run(m, {"image": str(SAMPLE), "seg:seg_OUTPUT_RASTER": str(tmp_path / "classes.tif"),
                             "nov:nov_OUTPUT_SELECTED": str(tmp_path / "tiles.gpkg")})
    classes = gdal.Open(res["seg:seg_OUTPUT_RASTER"]).ReadAsArray()
    vec = ogr.Open(res["nov:nov_OUTPUT_SELECTED"])
    feats = list(vec.GetLayer(0))
    assert len(feats) == 4
    for f in feats:  # the dominant class of each tile is the most frequent class in the segment output there
        r, c = f["tile_row"], f["tile_col"]
        block = classes[r * 32:r * 32 + 64, c * 32:c * 32 + 64]
        assert f["class_id"] == np.bincount(block.ravel()).argmax()


def test_loaded_results_read_together(provider, tmp_path):
    """Loaded on completion: the score raster semi-transparent below the selected tiles, labelled by rank."""
    import processing
    from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer

    QgsProject.instance().removeAllMapLayers()
    try:
        processing.runAndLoadResults("ktextures:novelty", {
            "INPUT": str(SAMPLE), "N_SELECT": 3, "OUTPUT_SCORE": str(tmp_path / "score.tif"),
            "OUTPUT_SELECTED": str(tmp_path / "tiles.gpkg"), "OUTPUT_HTML": ""})
        tree = [n.layer() for n in QgsProject.instance().layerTreeRoot().findLayers()]
        kinds = [type(lyr) for lyr in tree]
        assert kinds.index(QgsVectorLayer) < kinds.index(QgsRasterLayer), [lyr.name() for lyr in tree]
        score = next(lyr for lyr in tree if isinstance(lyr, QgsRasterLayer))
        tiles = next(lyr for lyr in tree if isinstance(lyr, QgsVectorLayer))
        assert score.renderer().type() == "singlebandpseudocolor" and 0 < score.renderer().opacity() < 1
        assert tiles.labelsEnabled() and tiles.labeling().settings().fieldName == "rank"
        stem = os.path.splitext(os.path.basename(str(SAMPLE)))[0]
        assert [lyr.name() for lyr in tree] == [f"Selected tiles ({stem})", f"Novelty score per tile ({stem})"]
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_cancel_after_the_ranking_writes_nothing(provider, tmp_path):
    """A cancel once the tiles are ranked (progress 90 %, before the writers) still stops the run: it used to
    write every output and return as if it had succeeded."""
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelLate(QgsProcessingFeedback):
        def setProgress(self, p):
            super().setProgress(p)
            if p >= 90:
                self.cancel()

    out = tmp_path / "o"
    out.mkdir()
    with pytest.raises(QgsProcessingException, match="Canceled"):
        processing.run("ktextures:novelty", {
            "INPUT": str(SAMPLE), "N_SELECT": 3, "OUTPUT_SCORE": str(out / "score.tif"),
            "OUTPUT_SELECTED": str(out / "tiles.gpkg"), "OUTPUT_HTML": str(out / "page.html")}, feedback=CancelLate())
    assert os.listdir(out) == []
