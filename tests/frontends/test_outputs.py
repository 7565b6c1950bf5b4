"""The input is never overwritten: every algorithm and every output parameter pointed at an input,
through the command line (subprocess), QGIS Processing (processing.run) and qgis_process; two outputs on one
file; formats that cannot hold an output; each refused before any work with a message naming the option or
parameter, and the input's sha256 unchanged."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from osgeo import gdal

from conftest import ROOT, SAMPLE, SAMPLE_LABEL
from ktextures_plugin.core.io import outputs

gdal.UseExceptions()
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cli(*args, timeout=300):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([PY, "-m", "ktextures_plugin", *map(str, args)], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def img(tmp_path):
    p = tmp_path / "in.tif"
    shutil.copy(SAMPLE, p)
    return p


@pytest.fixture
def labels(tmp_path, tiny_models, img):
    """A class raster (segment output) and a copy of the reference labels, both in tmp_path."""
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    c = tmp_path / "c.tif"
    segment_raster(str(img), tiny_models["bin4"], str(c), SegmentOptions(bands="3,2,1,4"))
    ref = tmp_path / "ref.tif"
    shutil.copy(SAMPLE_LABEL, ref)
    return c, ref


# -- command line ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, option", [
    (["--out", "{in}"], "--out"),
    (["--out", "{d}/c.tif", "--simulation", "{in}"], "--simulation"),
    (["--out", "{d}/c.tif", "--report", "{in}"], "--report"),
    (["--out", "{d}/c.tif", "--vector", "{in}"], "--vector"),
    (["--out", "{link}"], "--out"),              # a symbolic link to the input
    (["--out", "{hard}"], "--out"),              # a hard link to the input
    (["--out", "{in}.aux.xml"], "--out"),        # not the input, but no format writes a class raster as .xml
])
def test_cli_segment_never_overwrites_the_input(tmp_path, img, tiny_models, extra, option):
    os.symlink(img, tmp_path / "link.tif")
    os.link(img, tmp_path / "hard.tif")
    before = sha(img)
    args = [a.format(**{"in": img, "d": tmp_path, "link": tmp_path / "link.tif", "hard": tmp_path / "hard.tif"})
            for a in extra]
    cp = cli("segment", img, "--model", tiny_models["bin4"], "--bands", "3,2,1,4", "--quiet", *args)
    assert cp.returncode == 2, cp.stderr
    assert "Traceback" not in cp.stderr and option in cp.stderr and "error:" in cp.stderr
    assert sha(img) == before
    assert not os.path.exists(tmp_path / "c.tif")


def test_cli_segment_does_not_overwrite_the_model(tmp_path, img, tiny_models):
    model = tmp_path / "m.onnx"
    shutil.copy(tiny_models["bin4"], model)
    before = sha(model)
    cp = cli("segment", img, "--model", model, "--bands", "3,2,1,4", "--quiet", "--out", tmp_path / "c.tif",
             "--report", model)
    assert cp.returncode == 2 and "--report" in cp.stderr and "--model" in cp.stderr
    assert sha(model) == before


def test_cli_kmeans_and_fit_never_overwrite_the_input(tmp_path, img):
    before = sha(img)
    cp = cli("kmeans", img, "--bands", "3,2,1,4", "--k", 4, "--out", img)
    assert cp.returncode == 2 and "--out" in cp.stderr and "input" in cp.stderr and "Traceback" not in cp.stderr
    cp = cli("fit", img, "--bands", "3,2,1,4", "--k", 4, "--steps", 1, "--out", img)
    assert cp.returncode == 2 and "--out" in cp.stderr and "input" in cp.stderr and "Traceback" not in cp.stderr
    assert sha(img) == before


@pytest.mark.parametrize("out, words", [
    ("e.vrt", "VRT"), ("e.jpg", "JPEG"), ("noext", "no file extension"), ("DIR/", "is a folder"),
])
def test_cli_refuses_outputs_that_cannot_hold_the_result(tmp_path, img, tiny_models, out, words):
    (tmp_path / "DIR").mkdir()
    cp = cli("segment", img, "--model", tiny_models["bin4"], "--bands", "3,2,1,4", "--quiet",
             "--out", str(tmp_path / out))
    assert cp.returncode == 2 and words in cp.stderr and "--out" in cp.stderr and "Traceback" not in cp.stderr
    assert sorted(os.listdir(tmp_path)) == ["DIR", "in.tif"]


def test_cli_fit_refuses_a_folder_before_training(tmp_path, img):
    """`fit --out DIR/` used to fail after the training, with a traceback."""
    cp = cli("fit", img, "--bands", "3,2,1,4", "--k", 4, "--steps", 2, "--out", str(tmp_path) + "/",
             timeout=120)
    assert cp.returncode == 2 and "--out" in cp.stderr and "folder" in cp.stderr and "Traceback" not in cp.stderr


def test_cli_two_outputs_on_one_file_and_unknown_vector_extension(tmp_path, img, tiny_models):
    base = ["segment", img, "--model", tiny_models["bin4"], "--bands", "3,2,1,4", "--quiet"]
    cp = cli(*base, "--out", tmp_path / "x.tif", "--simulation", tmp_path / "x.tif")
    assert cp.returncode == 2 and "--simulation" in cp.stderr and "--out" in cp.stderr
    cp = cli(*base, "--out", tmp_path / "x.tif", "--vector", tmp_path / "p.xyz")
    assert cp.returncode == 2 and "--vector" in cp.stderr and ".xyz" in cp.stderr
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]  # detected before the raster was written


# -- QGIS Processing ---------------------------------------------------------------------------------------------
def _refused(alg, params, parameter, guarded):
    import processing
    from qgis.core import QgsProcessingException
    before = {p: sha(p) for p in guarded}
    with pytest.raises(QgsProcessingException) as err:
        processing.run(alg, params)
    assert parameter in str(err.value), str(err.value)
    assert "Traceback" not in str(err.value)
    assert {p: sha(p) for p in guarded} == before


@pytest.mark.parametrize("param", ["OUTPUT_RASTER", "OUTPUT_VECTOR", "OUTPUT_REPORT", "OUTPUT_SIMULATION"])
def test_qgis_segment_never_overwrites_the_input(provider, tmp_path, img, tiny_models, param):
    params = {"INPUT": str(img), "MODEL_FILE": tiny_models["bin4"], "BANDS": [3, 2, 1, 4],
              "OUTPUT_RASTER": str(tmp_path / "c.tif"), "OUTPUT_VECTOR": None, param: str(img)}
    _refused("ktextures:segment", params, param, [img])
    assert not os.path.exists(tmp_path / "c.tif")


def test_qgis_segment_two_outputs_on_one_file(provider, tmp_path, img, tiny_models):
    same = str(tmp_path / "x.tif")
    _refused("ktextures:segment", {"INPUT": str(img), "MODEL_FILE": tiny_models["bin4"], "BANDS": [3, 2, 1, 4],
                                   "OUTPUT_RASTER": same, "OUTPUT_SIMULATION": same, "OUTPUT_VECTOR": None},
             "OUTPUT_SIMULATION", [img])
    assert not os.path.exists(same)


@pytest.mark.parametrize("param, target", [("OUTPUT_TABLE", "c"), ("OUTPUT_RASTER", "c"),
                                           ("OUTPUT_TABLE", "ref"), ("OUTPUT_RASTER", "ref")])
def test_qgis_evaluate_never_overwrites_its_inputs(provider, labels, param, target):
    c, ref = labels
    params = {"INPUT": str(c), "REFERENCE": str(ref), param: str(c if target == "c" else ref)}
    _refused("ktextures:evaluate", params, param, [c, ref])


@pytest.mark.parametrize("param", ["OUTPUT_RASTER", "OUTPUT_VECTOR"])
def test_qgis_fit_never_overwrites_the_input(provider, tmp_path, img, param):
    """(OUTPUT_MODEL always ends in .onnx: QGIS fit appends it.)"""
    pytest.importorskip("torch")
    params = {"INPUT": str(img), "BANDS": [3, 2, 1, 4], "K": 4, "STEPS": 2,
              "OUTPUT_MODEL": str(tmp_path / "m.onnx"), "OUTPUT_RASTER": None, "OUTPUT_VECTOR": None}
    params[param] = str(img)
    _refused("ktextures:fit", params, param, [img])   # refused before the (long) training
    assert not os.path.exists(tmp_path / "m.onnx")


@pytest.mark.parametrize("param", ["OUTPUT_POINTS", "OUTPUT_SUMMARY", "OUTPUT_FOLDER"])
def test_qgis_sample_never_overwrites_the_input(provider, labels, tmp_path, img, param):
    c, _ = labels
    params = {"INPUT": str(c), "IMAGE": str(img), "POINTS_PER_CLASS": 2, "CHIP_SIZE_PX": 8,
              "OUTPUT_POINTS": str(tmp_path / "pts.gpkg"), "OUTPUT_FOLDER": str(tmp_path / "chips")}
    params[param] = str(c if param != "OUTPUT_SUMMARY" else img)
    _refused("ktextures:sample", params, param, [c, img])


def test_qgis_process_segment_report_on_the_input(qgis_process, tmp_path, img, tiny_models):
    """`ktextures:segment INPUT=in.tif ... OUTPUT_REPORT=in.tif` under qgis_process is refused."""
    before = sha(img)
    cp = qgis_process.run("ktextures:segment", f"INPUT={img}", f"MODEL_FILE={tiny_models['bin4']}", "BANDS=3",
                          "BANDS=2", "BANDS=1", "BANDS=4", f"OUTPUT_RASTER={tmp_path / 'c.tif'}",
                          f"OUTPUT_REPORT={img}", json_output=False)
    assert cp.returncode != 0 and "OUTPUT_REPORT" in cp.stdout + cp.stderr
    assert sha(img) == before and not os.path.exists(tmp_path / "c.tif")


# -- the core check itself ---------------------------------------------------------------------------------------
def test_core_check_names_the_parameter_and_sees_shapefile_parts(tmp_path):
    from osgeo import ogr
    shp = tmp_path / "ref.shp"
    ds = ogr.GetDriverByName("ESRI Shapefile").CreateDataSource(str(shp))
    ds.CreateLayer("ref", geom_type=ogr.wkbPolygon)
    ds = None
    with pytest.raises(outputs.OutputPathError) as err:
        outputs.check_outputs({"table": (str(tmp_path / "ref.dbf"), outputs.TABLE)}, {"vector": str(shp)})
    assert err.value.parameter == "table" and err.value.other == "vector"
    assert "OUTPUT_TABLE" in err.value.message({"table": "OUTPUT_TABLE"})
    with pytest.raises(outputs.OutputPathError):   # an output shapefile whose .dbf part is an input file
        outputs.check_outputs({"vector": (str(shp), outputs.VECTOR)}, {"input": str(tmp_path / "ref.dbf")})
    outputs.check_outputs({"vector": (str(tmp_path / "x.shp"), outputs.VECTOR),
                           "output": (str(tmp_path / "x.tif"), outputs.CLASS_RASTER)}, {"vector": str(shp)})


# -- the model contract, checked at load ----------------------------------------------------------
def _edited(src, dst, k_meta=None, float_class=False):
    import onnx
    from onnx import TensorProto
    m = onnx.load(src)
    if k_meta is not None:
        for p in m.metadata_props:
            if p.key == "ktextures.num_classes":
                p.value = str(k_meta)
            if p.key == "class_names":
                p.value = "{" + ", ".join(f'"{i}": "t{i}"' for i in range(k_meta)) + "}"
    if float_class:
        for n in m.graph.node:
            if n.op_type == "Cast" and n.output[0] == "class":
                n.attribute[0].i = TensorProto.FLOAT
        m.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.save(m, dst)
    return str(dst)


def test_model_k_smaller_than_the_graph_is_refused(tmp_path, img):
    from ktextures_plugin.core.errors import ModelError
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    from onnx_fixtures import binning_model
    model = _edited(binning_model(tmp_path / "b6.onnx", k=6), tmp_path / "k3.onnx", k_meta=3)
    with pytest.raises(ModelError, match="k = 3"):
        segment_raster(str(img), model, str(tmp_path / "c.tif"), SegmentOptions(bands="3,2,1,4", scaling="stretch"))
    assert not os.path.exists(tmp_path / "c.tif")
    cp = cli("segment", img, "--model", model, "--bands", "3,2,1,4", "--scaling", "stretch", "--quiet",
             "--out", tmp_path / "c.tif")
    assert cp.returncode == 2 and "k = 3" in cp.stderr and "Traceback" not in cp.stderr


def test_model_k_larger_than_the_graph_warns(tmp_path, img):
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    from onnx_fixtures import binning_model
    model = _edited(binning_model(tmp_path / "b6.onnx", k=6), tmp_path / "k10.onnx", k_meta=10)
    res = segment_raster(str(img), model, str(tmp_path / "c.tif"), SegmentOptions(bands="3,2,1,4", scaling="stretch"))
    assert any("no pixel" in w for w in res.warnings)


def test_float_class_output_is_refused_at_load_and_by_inspect(tmp_path, img):
    from ktextures_plugin.core.errors import ModelError
    from ktextures_plugin.core.segment.inference import read_model_info
    from onnx_fixtures import binning_model
    model = _edited(binning_model(tmp_path / "b4.onnx", k=4), tmp_path / "f.onnx", float_class=True)
    with pytest.raises(ModelError, match="integer"):
        read_model_info(model)
    cp = cli("inspect", model)
    assert cp.returncode == 2 and "integer" in cp.stdout + cp.stderr
    cp = cli("segment", img, "--model", model, "--bands", "3,2,1,4", "--quiet", "--out", tmp_path / "c.tif")
    assert cp.returncode == 2 and "integer" in cp.stderr and "Traceback" not in cp.stderr


# -- cancel in the sieve and in polygonize --------------------------------------------------------
@pytest.mark.parametrize("stage", ["sieve", "polygonize"])
def test_qgis_cancel_in_sieve_and_polygonize_is_clean(provider, tmp_path, img, tiny_models, stage):
    """Cancelled from the progress callback once the stage has started: "Canceled", no traceback, no output
    and no partial file left."""
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelInStage(QgsProcessingFeedback):
        top = 0.0

        def setProgress(self, p):
            super().setProgress(p)
            in_stage = p > 100.0 * (1 - SIEVE_SHARE) + 1e-6 if stage == "sieve" else p > 70.0 + 1e-6
            self.top = max(self.top, p)
            if in_stage:
                self.cancel()

    from ktextures_plugin.core.segment.segment import SIEVE_SHARE
    out = tmp_path / "o"
    params = {"INPUT": str(img), "MODEL_FILE": tiny_models["bin4"], "BANDS": [3, 2, 1, 4],
              "OUTPUT_RASTER": str(out / "c.tif"),
              "OUTPUT_VECTOR": str(out / "p.gpkg") if stage == "polygonize" else None,
              "MIN_SEGMENT_PX": 8 if stage == "sieve" else 0}
    fb = CancelInStage()
    with pytest.raises(QgsProcessingException) as err:
        processing.run("ktextures:segment", params, feedback=fb)
    assert fb.isCanceled()
    assert "Canceled" in str(err.value) and "User terminated" not in str(err.value)
    assert "Traceback" not in str(err.value)
    assert not out.exists() or os.listdir(out) == []


@pytest.mark.parametrize("vector", [False, True])
def test_qgis_segment_progress_only_rises(provider, tmp_path, img, tiny_models, vector):
    """Tiles, sieve and polygons on one bar from 0 to 100 (the sieve used to start again at 0)."""
    import processing
    from qgis.core import QgsProcessingFeedback
    fb = QgsProcessingFeedback()
    seen = []
    fb.progressChanged.connect(seen.append)
    processing.run("ktextures:segment", {
        "INPUT": str(img), "MODEL_FILE": tiny_models["bin4"], "BANDS": [3, 2, 1, 4], "MIN_SEGMENT_PX": 8,
        "OUTPUT_RASTER": str(tmp_path / "c.tif"), "OUTPUT_VECTOR": str(tmp_path / "p.gpkg") if vector else None},
        feedback=fb)
    assert seen == sorted(seen) and seen[-1] == 100 and len(set(seen)) > 5, seen


def test_stale_partials_of_a_killed_run_are_removed(tmp_path, img, tiny_models):
    """A `kill -9` leaves hidden partial files; writing the same output again removes them."""
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".c.tif.{dead.pid}-deadbeef.partial.tif",
             tmp_path / f".p.gpkg.{dead.pid}-deadbeef.partial.gpkg"]
    live = tmp_path / f".c.tif.{os.getppid()}-cafecafe.partial.tif"   # a process that still runs
    for p in stale + [live]:
        p.write_bytes(b"x" * 1000)
    res = segment_raster(str(img), tiny_models["bin4"], str(tmp_path / "c.tif"), SegmentOptions(bands="3,2,1,4"))
    from ktextures_plugin.core.segment.vectorize import polygonize
    polygonize(res.path, str(tmp_path / "p.gpkg"))
    assert not any(p.exists() for p in stale) and live.exists()


# -- duplicate bands and numeric options ----------------------------------------------------------
@pytest.mark.parametrize("extra, needle", [
    (["--bands", "3,3,1,4"], "more than once"),
    (["--bands", "3,2,1,4", "--tile-size", "0"], "--tile-size"),
    (["--bands", "3,2,1,4", "--min-segment-px", "-3"], "--min-segment-px"),
])
def test_cli_segment_bad_options_are_clear(tmp_path, img, tiny_models, extra, needle):
    cp = cli("segment", img, "--model", tiny_models["bin4"], "--quiet", "--out", tmp_path / "c.tif", *extra)
    assert cp.returncode == 2 and needle in cp.stderr and "Traceback" not in cp.stderr
    assert not os.path.exists(tmp_path / "c.tif")


def test_duplicate_bands_refused_by_fit_and_qgis_segment(provider, tmp_path, img, tiny_models):
    pytest.importorskip("torch")
    cp = cli("fit", img, "--bands", "3,3,1,4", "--k", 4, "--steps", 1, "--out", tmp_path / "m.onnx")
    assert cp.returncode == 2 and "more than once" in cp.stderr and not os.path.exists(tmp_path / "m.onnx")
    import processing
    from qgis.core import QgsProcessingException
    with pytest.raises(QgsProcessingException, match="more than once"):
        processing.run("ktextures:segment", {"INPUT": str(img), "MODEL_FILE": tiny_models["bin4"],
                                             "BANDS": [3, 3, 1, 4], "OUTPUT_RASTER": str(tmp_path / "c.tif"),
                                             "OUTPUT_VECTOR": None})
    with pytest.raises(QgsProcessingException, match="more than once"):
        processing.run("ktextures:fit", {"INPUT": str(img), "BANDS": [3, 3, 1, 4], "K": 4, "STEPS": 1,
                                         "OUTPUT_MODEL": str(tmp_path / "m.onnx"), "OUTPUT_RASTER": None,
                                         "OUTPUT_VECTOR": None})


@pytest.mark.parametrize("option", ["--score", "--selected", "--html"])
def test_cli_novelty_never_overwrites_the_input(tmp_path, img, option):
    before = sha(img)
    args = ["novelty", img, "--bands", "3,2,1,4", "--score", tmp_path / "s.tif", "--quiet", option, img]
    cp = cli(*args)
    assert cp.returncode == 2 and option in cp.stderr and "Traceback" not in cp.stderr, cp.stderr
    assert sha(img) == before and not os.path.exists(tmp_path / "s.tif")


@pytest.mark.parametrize("param", ["OUTPUT_SCORE", "OUTPUT_SELECTED", "OUTPUT_HTML"])
def test_qgis_novelty_never_overwrites_the_input(provider, tmp_path, img, param):
    params = {"INPUT": str(img), "BANDS": [3, 2, 1, 4], "OUTPUT_SCORE": str(tmp_path / "s.tif"),
              "OUTPUT_SELECTED": str(tmp_path / "sel.gpkg"), param: str(img)}
    _refused("ktextures:novelty", params, param, [img])
    assert not os.path.exists(tmp_path / "s.tif")
