"""No input lost on any route, and all-or-nothing outputs: each case builds its own folder (VRTs of VRTs, a
``--dask`` list, style files, sidecars, odd extensions, a full disk, partials of a killed run), runs it through
the command line (subprocess), QGIS Processing (``processing.run``) or ``qgis_process``, and asserts the exit
status, the message and the sha256 of every file of the folder before and after."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from osgeo import gdal

from conftest import ROOT, SAMPLE

gdal.UseExceptions()
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
BANDS = ["--bands", "3,2,1,4"]


def shas(folder) -> dict:
    """Relative path -> sha256 of every file under ``folder`` (hidden files included)."""
    out = {}
    for root, _dirs, files in os.walk(folder):
        for f in files:
            p = Path(root) / f
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def cli(*args, timeout=300, cwd=None):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    return subprocess.run([PY, "-m", "ktextures_plugin", *map(str, args)], cwd=str(cwd or ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout)


def refused(cp, option):
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert option in cp.stderr and "error:" in cp.stderr and "Traceback" not in cp.stderr, cp.stderr


@pytest.fixture
def case(tmp_path):
    """A case folder holding ``t1.tif`` (the sample), ``v1.vrt`` (a VRT of it) and ``v2.vrt`` (a VRT of v1)."""
    d = tmp_path / "case"
    d.mkdir()
    shutil.copy(SAMPLE, d / "t1.tif")
    gdal.BuildVRT(str(d / "v1.vrt"), [str(d / "t1.tif")]).FlushCache()
    gdal.BuildVRT(str(d / "v2.vrt"), [str(d / "v1.vrt")]).FlushCache()
    return d


# -- 1. the files a run reads ------------------------------------------------------------------------------------
def test_core_follows_a_vrt_of_a_vrt_to_its_raster(case):
    from ktextures_plugin.core import outputs
    read = {os.path.realpath(p) for p in outputs.files_read(str(case / "v2.vrt"))}
    for name in ("v2.vrt", "v1.vrt", "t1.tif", "t1.tif.aux.xml", "t1.tif.ovr", "t1.tif.msk", "v2.qml"):
        assert os.path.realpath(case / name) in read, name


@pytest.mark.parametrize("command", ["segment", "kmeans"])
def test_cli_refuses_the_raster_behind_a_vrt_of_a_vrt(case, tiny_models, command):
    before = shas(case)
    extra = ["--model", tiny_models["bin4"], "--quiet"] if command == "segment" else ["--k", 4]
    cp = cli(command, case / "v2.vrt", *BANDS, *extra, "--out", case / "t1.tif")
    refused(cp, "--out")
    assert "input" in cp.stderr
    assert shas(case) == before


def test_qgis_refuses_the_raster_behind_a_vrt_of_a_vrt(provider, case, tiny_models):
    import processing
    from qgis.core import QgsProcessingException
    before = shas(case)
    with pytest.raises(QgsProcessingException, match="OUTPUT_RASTER") as err:
        processing.run("ktextures:segment", {"INPUT": str(case / "v2.vrt"), "MODEL_FILE": tiny_models["bin4"],
                                             "BANDS": [3, 2, 1, 4], "OUTPUT_RASTER": str(case / "t1.tif"),
                                             "OUTPUT_VECTOR": None})
    assert "input" in str(err.value) and "Traceback" not in str(err.value)
    assert shas(case) == before


def test_qgis_process_refuses_the_raster_behind_a_vrt_of_a_vrt(qgis_process, case, tiny_models):
    before = shas(case)
    cp = qgis_process.run("ktextures:segment", f"INPUT={case / 'v2.vrt'}", f"MODEL_FILE={tiny_models['bin4']}",
                          "BANDS=3", "BANDS=2", "BANDS=1", "BANDS=4", f"OUTPUT_RASTER={case / 't1.tif'}",
                          json_output=False)
    assert cp.returncode != 0 and "OUTPUT_RASTER" in cp.stdout + cp.stderr
    after = shas(case)
    assert after["t1.tif"] == before["t1.tif"]
    # QGIS itself (loading INPUT, before the algorithm runs) writes band statistics into the VRTs and
    # t1.tif.aux.xml; its own gdal:translate does the same (README, "Notes on inputs")
    assert {k for k in after if after[k] != before.get(k)} <= {"v1.vrt", "v2.vrt", "t1.tif.aux.xml"}


@pytest.mark.parametrize("option", ["--out", "--report"])
def test_cli_dask_list_members_are_inputs(case, tiny_models, option):
    """``--dask`` with a ``.txt`` list: an output equal to a listed raster is refused before Dask starts."""
    shutil.copy(case / "t1.tif", case / "t2.tif")
    (case / "list.txt").write_text(f"# two tiles\n{case / 't1.tif'}\n\nt2.tif\n")
    before = shas(case)
    outs = {"--out": case / "c.tif", "--report": case / "r.csv", option: case / "t2.tif"}
    cp = cli("segment", "list.txt", "--dask", *BANDS, "--model", tiny_models["bin4"], "--quiet",
             "--out", outs["--out"], "--report", outs["--report"], cwd=case)
    refused(cp, option)
    assert shas(case) == before


def test_cli_report_on_the_inputs_aux_xml_is_refused(case, tiny_models):
    before = shas(case)
    cp = cli("segment", case / "t1.tif", *BANDS, "--model", tiny_models["bin4"], "--quiet",
             "--out", case / "c.tif", "--report", case / "t1.tif.aux.xml")
    refused(cp, "--report")
    assert shas(case) == before


def _styled(case):
    """A user's own style beside the input: t1.qml."""
    (case / "t1.qml").write_text("<!DOCTYPE qgis><qgis version='3.22'><pipe/></qgis>\n")
    return shas(case)


@pytest.mark.parametrize("params, refused_param", [
    ({"OUTPUT_RASTER": "c.tif", "OUTPUT_VECTOR": "t1.shp"}, "OUTPUT_VECTOR"),   # would save its style as t1.qml
    ({"OUTPUT_RASTER": "t1.png"}, "OUTPUT_RASTER"),                            # likewise
    ({"OUTPUT_RASTER": "o.tif", "OUTPUT_VECTOR": None, "OUTPUT_REPORT": "o.qml"}, "OUTPUT_REPORT"),
    ({"OUTPUT_RASTER": "o.tif", "OUTPUT_VECTOR": "o.shp"}, "OUTPUT_VECTOR"),   # both styles o.qml
    ({"OUTPUT_RASTER": "c.tif", "OUTPUT_VECTOR": None, "OUTPUT_HTML": "t1.qml"}, "OUTPUT_HTML"),
])
def test_qgis_style_files_never_collide(provider, case, tiny_models, params, refused_param):
    import processing
    from qgis.core import QgsProcessingException
    before = _styled(case)
    full = {"INPUT": str(case / "t1.tif"), "MODEL_FILE": tiny_models["bin4"], "BANDS": [3, 2, 1, 4]}
    full.update({k: (str(case / v) if v else None) for k, v in params.items()})
    with pytest.raises(QgsProcessingException) as err:
        processing.run("ktextures:segment", full)
    assert refused_param in str(err.value) and ".qml" in str(err.value), str(err.value)
    assert shas(case) == before


def test_qgis_styles_beside_other_names_are_fine(provider, case, tiny_models):
    """Raster and GeoPackage polygons of one name: the GeoPackage keeps its style inside, no collision."""
    import processing
    before = _styled(case)
    processing.run("ktextures:segment", {"INPUT": str(case / "t1.tif"), "MODEL_FILE": tiny_models["bin4"],
                                         "BANDS": [3, 2, 1, 4], "OUTPUT_RASTER": str(case / "o.tif"),
                                         "OUTPUT_VECTOR": str(case / "o.gpkg")})
    after = shas(case)
    assert {k: after[k] for k in before} == before
    assert {"o.tif", "o.gpkg", "o.qml"} <= set(after)


# -- 2. .tiff, .TIF, .Tif ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["o.tiff", "o.TIF", "o.Tif", "o.TIFF"])
def test_cli_tiff_names_work(case, tiny_models, name):
    cp = cli("segment", case / "t1.tif", *BANDS, "--model", tiny_models["bin4"], "--quiet", "--out", case / name,
             "--simulation", case / ("s" + name[1:]))
    assert cp.returncode == 0, cp.stderr
    cp = cli("kmeans", case / "t1.tif", *BANDS, "--k", 3, "--out", case / ("k" + name[1:]))
    assert cp.returncode == 0, cp.stderr
    for stem in "osk":
        ds = gdal.Open(str(case / (stem + name[1:])))
        assert ds.GetDriver().ShortName == "GTiff" and ds.RasterXSize == 512
    assert not [f for f in os.listdir(case) if f.startswith(".")]


def test_qgis_tiff_name_works(provider, case, tiny_models):
    import processing
    res = processing.run("ktextures:segment", {"INPUT": str(case / "t1.tif"), "MODEL_FILE": tiny_models["bin4"],
                                               "BANDS": [3, 2, 1, 4], "OUTPUT_RASTER": str(case / "o.TIFF"),
                                               "OUTPUT_VECTOR": str(case / "o.gpkg")})
    assert res["OUTPUT_RASTER"] == str(case / "o.TIFF")
    assert gdal.Open(str(case / "o.TIFF")).GetRasterBand(1).GetColorTable() is not None
    assert not [f for f in os.listdir(case) if f.startswith(".")]
