"""Bad inputs through QGIS (processing.run and qgis_process): each is a ``QgsProcessingException`` with the
message (no traceback, not QGIS's "There were errors executing the algorithm"), and no input file changes (the
sha256 of every file of the case folder before and after). Inputs: tests/bad_inputs.py; command line:
tests/cli/test_bad_inputs.py."""
import pytest
from osgeo import gdal

import bad_inputs as bad

gdal.UseExceptions()


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_inputs_qgis")
    return dict(bad.build_case(d), folder=d)


@pytest.fixture
def unchanged(case):
    """Asserts, after the test, that no file of the case folder changed, appeared or went away (QGIS may
    write statistics into ``.aux.xml`` sidecars: those are its own doing, left out)."""
    def digest():
        return {k: v for k, v in bad.hashes(case["folder"]).items() if not k.endswith(".aux.xml")}
    before = digest()
    yield
    assert digest() == before


class Recorder:
    """A QgsProcessingFeedback that keeps its warnings."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class _Feedback(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.warnings = []

            def pushWarning(self, text):  # noqa: N802
                self.warnings.append(text)
                super().pushWarning(text)
        return _Feedback()


def refused(alg, params, *words):
    """``processing.run(alg, params)`` raises a QgsProcessingException holding ``words`` and no traceback."""
    import processing
    from qgis.core import QgsProcessingException
    with pytest.raises(QgsProcessingException) as err:
        processing.run(alg, params)
    text = str(err.value)
    assert "Traceback" not in text and "There were errors" not in text, text
    for w in words:
        assert w in text, (w, text)
    return text


def segment_params(case, tmp_path, **kw):
    p = {"INPUT": str(case["img"]), "MODEL_FILE": str(case["good"]), "BANDS": [3, 2, 1, 4],
         "OUTPUT_RASTER": str(tmp_path / "c.tif")}
    p.update({k: (str(v) if hasattr(v, "name") else v) for k, v in kw.items()})
    return p


# -- damaged GeoTIFFs ------------------------------------------------------------------------------------------
def test_qgis_damaged_geotiff_segment_novelty(provider, case, unchanged, tmp_path):
    refused("ktextures:segment", segment_params(case, tmp_path, INPUT=case["trunc"]),
            "the file is damaged or truncated", "trunc.tif")
    refused("ktextures:novelty", {"INPUT": str(case["trunc"]), "MODEL_FILE": str(case["good"]),
                                  "BANDS": [3, 2, 1, 4], "OUTPUT_SCORE": str(tmp_path / "s.tif"),
                                  "OUTPUT_SELECTED": None, "OUTPUT_HTML": None},
            "the file is damaged or truncated", "trunc.tif")
    assert not (tmp_path / "c.tif").exists() and not (tmp_path / "s.tif").exists()


def test_qgis_damaged_geotiff_evaluate_and_sample(provider, case, unchanged, tmp_path):
    refused("ktextures:evaluate", {"INPUT": str(case["labels_trunc"]), "REFERENCE": str(case["labels"])},
            "the file is damaged or truncated", "labels_trunc.tif")
    refused("ktextures:sample", {"INPUT": str(case["labels_trunc"]), "IMAGE": str(case["img"]),
                                 "POINTS_PER_CLASS": 2, "CHIP_SIZE_PX": 8,
                                 "OUTPUT_POINTS": str(tmp_path / "pts.gpkg"),
                                 "OUTPUT_FOLDER": str(tmp_path / "chips")},
            "the file is damaged or truncated", "labels_trunc.tif")


def test_qgis_damaged_geotiff_fit(provider, case, unchanged, tmp_path):
    pytest.importorskip("torch")
    refused("ktextures:fit", {"INPUT": str(case["trunc"]), "BANDS": [3, 2, 1, 4], "K": 3, "STEPS": 2,
                              "TILE_SIZE": 64, "RETRIES": 0, "OUTPUT_MODEL": str(tmp_path / "m.onnx"),
                              "OUTPUT_RASTER": None, "OUTPUT_VECTOR": None},
            "the file is damaged or truncated", "trunc.tif")
    assert not (tmp_path / "m.onnx").exists()


# -- model files -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["model_trunc", "model_text", "model_empty", "model_pickle", "model_escape"]
                         + list(bad.BAD_METADATA) + list(bad.BAD_GRAPHS))
def test_qgis_bad_model_files(provider, case, unchanged, tmp_path, model):
    words = [case[model].name]
    if model in bad.BAD_METADATA:
        words.append(bad.BAD_METADATA[model][2])
    elif model in bad.BAD_GRAPHS:
        words.append(bad.BAD_GRAPHS[model])
    refused("ktextures:segment", segment_params(case, tmp_path, MODEL_FILE=case[model]), *words)
    assert not (tmp_path / "c.tif").exists()


# -- parameters ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bands", ["a,b,c,d", ["a", "b", "c", "d"]])
def test_qgis_bands_that_are_no_numbers(provider, case, unchanged, tmp_path, bands):
    refused("ktextures:segment", segment_params(case, tmp_path, BANDS=bands), "BANDS", "band numbers")


def test_qgis_html_report_with_mathtext_class_names(provider, case, unchanged, tmp_path):
    import processing
    processing.run("ktextures:segment", segment_params(case, tmp_path, CLASS_NAMES="$\\foo$,a_$b^c$,$,plain",
                                                       OUTPUT_HTML=str(tmp_path / "r.html")))
    page = (tmp_path / "r.html").read_text()
    assert "$\\foo$" in page and "data:image/png;base64" in page


# -- Alpha-tagged bands and rotated rasters ----------------------------------------------------------------------
def test_qgis_alpha_band_warns_and_can_be_ignored(provider, case, unchanged, tmp_path):
    import processing
    fb = Recorder()
    processing.run("ktextures:segment", segment_params(case, tmp_path, INPUT=case["alpha"]), feedback=fb)
    warning = [w for w in fb.warnings if "Alpha" in w]
    assert len(warning) == 1 and "band 4" in warning[0] and f" {bad.ALPHA_ZEROS} " in warning[0]
    assert "IGNORE_MASK_BANDS" in warning[0]
    assert int((gdal.Open(str(tmp_path / "c.tif")).ReadAsArray() == 0).sum()) == bad.ALPHA_ZEROS
    fb = Recorder()
    processing.run("ktextures:segment", segment_params(case, tmp_path, INPUT=case["alpha"], IGNORE_MASK_BANDS=True,
                                                       OUTPUT_RASTER=str(tmp_path / "d.tif")), feedback=fb)
    assert not [w for w in fb.warnings if "Alpha" in w]
    assert int((gdal.Open(str(tmp_path / "d.tif")).ReadAsArray() == 0).sum()) == 0


def test_qgis_rotated_raster_with_extent(provider, case, unchanged, tmp_path):
    import processing
    xmin, ymin, xmax, ymax = bad.world_bounds(case["rotated"], (100, 200, 150, 120))
    srs = gdal.Open(str(case["rotated"])).GetSpatialRef()
    crs = f"{srs.GetAuthorityName(None)}:{srs.GetAuthorityCode(None)}"
    processing.run("ktextures:segment", segment_params(case, tmp_path, INPUT=case["rotated"],
                                                       EXTENT=f"{xmin},{xmax},{ymin},{ymax} [{crs}]"))
    out = gdal.Open(str(tmp_path / "c.tif"))
    src = gdal.Open(str(case["rotated"]))
    assert 150 <= out.RasterXSize < src.RasterXSize and 120 <= out.RasterYSize < src.RasterYSize


# -- qgis_process ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, params, words", [
    ("damaged", ["INPUT={trunc}", "MODEL_FILE={good}"], ["the file is damaged or truncated", "trunc.tif"]),
    ("text model", ["INPUT={img}", "MODEL_FILE={model_text}"], ["text.onnx"]),
    ("huge k", ["INPUT={img}", "MODEL_FILE={huge_k}"], ["huge_k.onnx", "2..255"]),
])
def test_qgis_process_bad_inputs(qgis_process, case, unchanged, tmp_path, name, params, words):
    args = [p.format(**case) for p in params] + ["BANDS=3", "BANDS=2", "BANDS=1", "BANDS=4",
                                                f"OUTPUT_RASTER={tmp_path / 'c.tif'}"]
    cp = qgis_process.run("ktextures:segment", *args, json_output=False)
    text = cp.stdout + cp.stderr
    assert cp.returncode != 0 and "Traceback" not in text, text[-2000:]
    for w in words:
        assert w in text, (w, text[-2000:])
    assert not (tmp_path / "c.tif").exists()


def test_qgis_process_bands_that_are_no_numbers(qgis_process, case, unchanged, tmp_path):
    cp = qgis_process.run("ktextures:segment", f"INPUT={case['img']}", f"MODEL_FILE={case['good']}",
                          "BANDS=a,b,c,d", f"OUTPUT_RASTER={tmp_path / 'c.tif'}", json_output=False)
    text = cp.stdout + cp.stderr
    assert cp.returncode != 0 and "Traceback" not in text and "invalid literal" not in text, text[-2000:]
    assert "BANDS" in text


# -- the one translation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("exc, words", [
    (KeyboardInterrupt(), "Canceled"),
    (RuntimeError("User terminated"), "Canceled"),
    (RuntimeError("x.tif: TIFFReadDirectory:Failed to read directory at offset 8"),
     "the file is damaged or truncated: x.tif"),
    (OSError(28, "No space left on device", "/d/out.tif"), "No space left on device"),
    (MemoryError(), "Not enough memory"),
])
def test_qgis_translation(exc, words):
    from ktextures_plugin.algorithms.common import processing_error
    from ktextures_plugin.core.errors import RasterError
    assert words in str(processing_error(exc))
    assert "BANDS" in str(processing_error(RasterError("Set {name}", parameter="bands"), {"bands": "BANDS"}))
    assert processing_error(ZeroDivisionError("a bug")) is None
