"""ktextures:fit through real QGIS: fit on the bundled sample with few steps, use the model in segment,
cancel, the chain fit -> segment -> sample in a graphical model, and a QGIS without torch."""
import os
import subprocess
import sys

import numpy as np
import pytest
from osgeo import gdal, ogr

from conftest import ROOT, SAMPLE

pytest.importorskip("torch", reason="training tests need torch (./build.sh test installs it)")


def test_fit_writes_a_model_segment_can_use(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingFeedback, QgsRasterLayer
    fb = QgsProcessingFeedback()
    seen = []
    fb.progressChanged.connect(seen.append)
    res = processing.run("ktextures:fit", {
        "INPUT": str(SAMPLE), "K": 4, "STEPS": 3, "SEED": 1, "MASK_WIDTH": 8, "OUTPUT_MODEL": str(tmp_path / "m.onnx"),
        "OUTPUT_RASTER": str(tmp_path / "c.tif"), "OUTPUT_VECTOR": str(tmp_path / "p.gpkg")}, feedback=fb)
    assert os.path.exists(res["OUTPUT_MODEL"]) and res["FINAL_LOSS"] > 0
    # one bar from 0 to 100: the segment step of fit used to start again at 0
    assert seen == sorted(seen) and seen[-1] == 100 and any(85 < p < 100 for p in seen), seen
    from ktextures_plugin.core.segment.inference import read_model_info
    info = read_model_info(res["OUTPUT_MODEL"])
    assert info.num_classes == 4 and info.provenance.get("steps") == 3 and info.provenance["mask_width"] == 8
    c = gdal.Open(res["OUTPUT_RASTER"]).ReadAsArray()
    assert c.shape == (768, 512) and c.min() >= 1 and c.max() <= 4
    assert QgsRasterLayer(res["OUTPUT_RASTER"], "c").renderer().type() == "paletted"
    vec = ogr.Open(res["OUTPUT_VECTOR"])
    assert vec.GetLayer(0).GetFeatureCount() > 0
    again = processing.run("ktextures:segment", {"INPUT": str(SAMPLE), "MODEL_FILE": res["OUTPUT_MODEL"],
                                                 "OUTPUT_RASTER": str(tmp_path / "c2.tif"), "OUTPUT_VECTOR": None})
    assert np.array_equal(gdal.Open(again["OUTPUT_RASTER"]).ReadAsArray(), c)


def test_fit_cancel_writes_no_model(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelAtFirstStep(QgsProcessingFeedback):
        def setProgress(self, p):
            super().setProgress(p)
            if p > 0:
                self.cancel()

    with pytest.raises(QgsProcessingException, match="Canceled"):
        processing.run("ktextures:fit", {"INPUT": str(SAMPLE), "K": 3, "STEPS": 200,
                                         "OUTPUT_MODEL": str(tmp_path / "m.onnx"), "OUTPUT_RASTER": None,
                                         "OUTPUT_VECTOR": None}, feedback=CancelAtFirstStep())
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".onnx") or "partial" in f]


def test_fit_bad_input_is_a_clear_error(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException
    with pytest.raises(QgsProcessingException, match="band"):
        processing.run("ktextures:fit", {"INPUT": str(SAMPLE), "BANDS": [1, 2], "K": 3, "STEPS": 2,
                                         "OUTPUT_MODEL": str(tmp_path / "m.onnx")})
    small = tmp_path / "small.tif"
    gdal.Translate(str(small), str(SAMPLE), srcWin=[0, 0, 60, 60])
    with pytest.raises(QgsProcessingException, match="(?i)smaller|tile"):
        processing.run("ktextures:fit", {"INPUT": str(small), "K": 3, "STEPS": 2,
                                         "OUTPUT_MODEL": str(tmp_path / "m2.onnx")})


def test_model_chains_fit_segment_sample(provider, tmp_path):
    """The graphical model an analyst builds: fit on the layer, segment with the new model, sample points."""
    import processing
    from qgis.core import QgsProcessingModelAlgorithm, QgsProcessingModelParameter, QgsProcessingParameterRasterLayer
    from qgis.core import QgsProcessingModelChildParameterSource as Src
    m = QgsProcessingModelAlgorithm("fit segment sample", "k-textures tests")
    m.addModelParameter(QgsProcessingParameterRasterLayer("image", "image"), QgsProcessingModelParameter("image"))

    from modelbuilder import add_child

    def child(alg_id, cid, sources, outputs=()):
        add_child(m, alg_id, cid, sources, outputs)

    child("ktextures:fit", "fit", {"INPUT": Src.fromModelParameter("image"), "K": Src.fromStaticValue(4),
                                   "STEPS": Src.fromStaticValue(3), "SEED": Src.fromStaticValue(0),
                                   "VARIANT": Src.fromStaticValue("faithful"),
                                   "FEATURES": Src.fromStaticValue("random"),
                                   "OUTPUT_RASTER": Src.fromStaticValue(None),
                                   "OUTPUT_VECTOR": Src.fromStaticValue(None)})
    child("ktextures:segment", "seg", {"INPUT": Src.fromModelParameter("image"),
                                       "MODEL_FILE": Src.fromChildOutput("fit", "OUTPUT_MODEL"),
                                       "MODEL": Src.fromStaticValue(1), "SCALING": Src.fromStaticValue("model"),
                                       "TILE_SIZE": Src.fromStaticValue(512), "MIN_SEGMENT_PX": Src.fromStaticValue(4),
                                       "OUTPUT_VECTOR": Src.fromStaticValue(None)})
    child("ktextures:sample", "smp", {"INPUT": Src.fromChildOutput("seg", "OUTPUT_RASTER"),
                                      "POINTS_PER_CLASS": Src.fromStaticValue(5),
                                      "MIN_EDGE_DISTANCE_PX": Src.fromStaticValue(2),
                                      "MIN_SPACING_PX": Src.fromStaticValue(5), "SEED": Src.fromStaticValue(0)},
          outputs=["OUTPUT_POINTS"])
    ok, errors = m.validate()
    assert ok, errors
    res = processing.run(m, {"image": str(SAMPLE), "smp:smp_OUTPUT_POINTS": str(tmp_path / "points.gpkg")})
    vec = ogr.Open(res["smp:smp_OUTPUT_POINTS"])
    lyr = vec.GetLayer(0)
    assert lyr.GetFeatureCount() >= 5
    assert {f["class_id"] for f in lyr} <= {1, 2, 3, 4}


def test_without_torch_fit_explains_and_segment_works(tmp_path, tiny_models):
    code = f"""
import sys, os
sys.modules['torch'] = None  # 'import torch' raises ImportError, as when torch is not installed
sys.path.insert(0, {str(ROOT)!r})
from qgis.core import QgsApplication
app = QgsApplication([], False); app.initQgis()
from processing.core.Processing import Processing
Processing.initialize()
import processing
from ktextures_plugin.provider import KTexturesProvider
prov = KTexturesProvider(); QgsApplication.processingRegistry().addProvider(prov)
reg = QgsApplication.processingRegistry()
print('ALGS', sorted(a.id() for a in prov.algorithms()))
print('FIT', reg.algorithmById('ktextures:fit').canExecute())
try:
    processing.run('ktextures:fit', {{'INPUT': {str(SAMPLE)!r}, 'OUTPUT_MODEL': {str(tmp_path / 'm.onnx')!r}}})
except Exception as e:
    print('ERROR', e)
r = processing.run('ktextures:segment', {{'INPUT': {str(SAMPLE)!r}, 'MODEL_FILE': {tiny_models['bin4']!r},
                   'OUTPUT_RASTER': {str(tmp_path / 'c.tif')!r}, 'OUTPUT_VECTOR': None}})
print('SEGMENT', r['NUM_CLASSES'])
os._exit(0)
"""
    cp = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
                        capture_output=True, text=True, timeout=180)
    out = cp.stdout
    assert "'ktextures:fit'" in out and "'ktextures:segment'" in out, out + cp.stderr
    assert "FIT (False" in out and "ERROR" in out and "-m ktextures_plugin install torch --profile" in out
    assert "SEGMENT 4" in out


def test_fit_defaults_follow_the_training_defaults(provider):
    from qgis.core import QgsApplication

    from ktextures_plugin.training import train
    alg = QgsApplication.processingRegistry().algorithmById("ktextures:fit")
    assert alg.parameterDefinition("STEPS").defaultValue() == train.DEFAULT_STEPS
    assert alg.parameterDefinition("VARIANT").defaultValue() == train.DEFAULT_VARIANT
    assert alg.parameterDefinition("CONTINUITY").defaultValue() == train.FitConfig(k=2).continuity
    assert alg.parameterDefinition("MASK_WIDTH").defaultValue() == train.FitConfig(k=2).mask_width
    assert train.FitConfig(k=2).mask_width == train.DEFAULT_MASK_WIDTH == 16
    assert train.FitConfig(k=2).variant == train.DEFAULT_VARIANT
    assert alg.parameterDefinition("RETRIES").defaultValue() == train.DEFAULT_RETRIES
