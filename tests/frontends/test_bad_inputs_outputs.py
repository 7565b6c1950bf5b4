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
    from ktextures_plugin.core.io import outputs
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
    ({"OUTPUT_RASTER": "c.tif", "OUTPUT_VECTOR": None, "OUTPUT_REPORT": "t1.qml"}, "OUTPUT_REPORT"),  # the style
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


def test_qgis_relative_output_gets_its_style(provider, case, tiny_models, monkeypatch):
    """A relative output path (as qgis_process users type it) is styled like an absolute one."""
    import processing
    monkeypatch.chdir(case)
    (case / "q").mkdir()
    processing.run("ktextures:segment", {"INPUT": str(case / "t1.tif"), "MODEL_FILE": tiny_models["bin4"],
                                         "BANDS": [3, 2, 1, 4], "OUTPUT_RASTER": "q/o.tif"})
    assert (case / "q" / "o.tif").exists() and (case / "q" / "o.qml").stat().st_size > 0


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


# -- 3. partials of a killed run -----------------------------------------------------------------------------------
def _killed_writer(final, body):
    """Run ``body`` (Python statements; ``part`` is the partial) inside ``atomic_output(final)`` in a child
    process that then kills itself with SIGKILL: the partial files of a really killed run."""
    code = ("import os, signal\nfrom ktextures_plugin.core.io.atomic import atomic_output\n"
            f"with atomic_output({str(final)!r}) as part:\n"
            + "".join(f"    {line}\n" for line in body.splitlines())
            + "    os.kill(os.getpid(), signal.SIGKILL)\n")
    cp = subprocess.run([PY, "-c", code], cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert cp.returncode == -9


def _hidden(folder):
    return sorted(f for f in os.listdir(folder) if f.startswith("."))


def test_partials_of_killed_runs_are_removed_at_the_next_start(case, tiny_models):
    """Killed (SIGKILL) while writing the raster, a shapefile, the CSV and the HTML report, and a killed
    polygonize: the next run writing those outputs removes every partial file; a live process's stay."""
    _killed_writer(case / "c.tif", "open(part.path, 'wb').write(b'x' * 999)\nopen(part.path + '.aux.xml', 'w')")
    _killed_writer(case / "p.shp", "for e in ('.shp', '.dbf', '.shx'):\n"
                                   "    open(part.path[:-4] + e, 'wb').write(b'x')")
    _killed_writer(case / "r.csv", "open(part.path, 'w').write('class_id')")
    _killed_writer(case / "r.html", "open(part.path, 'w').write('<html>')")
    code = ("import os, signal\nfrom ktextures_plugin.core.feedback import Feedback\n"
            "from ktextures_plugin.core.segment.vectorize import polygonize\n"
            f"polygonize({str(case / 'k.tif')!r}, {str(case / 'poly.gpkg')!r}, "
            "feedback=Feedback(lambda f, s: f > 0.1 and os.kill(os.getpid(), signal.SIGKILL)))\n")
    assert cli("kmeans", case / "t1.tif", *BANDS, "--k", 3, "--out", case / "k.tif").returncode == 0
    cp = subprocess.run([PY, "-c", code], cwd=str(ROOT), env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert cp.returncode == -9
    stale = _hidden(case)
    assert len(stale) >= 8 and any(".poly.gpkg." in f for f in stale), stale
    live = case / f".c.tif.{os.getpid()}-cafecafe.partial.tif"   # this test process: alive
    live.write_bytes(b"x")
    cp = cli("segment", case / "t1.tif", *BANDS, "--model", tiny_models["bin4"], "--quiet", "--out", case / "c.tif",
             "--vector", case / "p.shp", "--report", case / "r.csv", "--html", case / "r.html")
    assert cp.returncode == 0, cp.stderr
    cp = cli("segment", case / "t1.tif", *BANDS, "--model", tiny_models["bin4"], "--quiet", "--out", case / "c2.tif",
             "--vector", case / "poly.gpkg")
    assert cp.returncode == 0, cp.stderr
    assert _hidden(case) == [live.name]


def test_fit_partials_of_a_killed_run_are_found(tmp_path):
    """The model output: today's partial name and the older ``.m.onnx.tmp-PID.onnx`` of a killed fit."""
    from ktextures_plugin.core.io import outputs
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".m.onnx.tmp-{dead.pid}.onnx", tmp_path / f".m.onnx.{dead.pid}-0123abcd.partial.onnx",
             tmp_path / f"r.html.partial-{dead.pid}", tmp_path / f"m.onnx.tmp-{dead.pid}"]
    for p in stale:
        p.write_bytes(b"x")
    keep = [tmp_path / "m.onnx.notes.txt", tmp_path / ".m.onnx.bak"]   # not partials: never touched
    for p in keep:
        p.write_bytes(b"y")
    outputs.check_outputs({"output": (str(tmp_path / "m.onnx"), outputs.MODEL),
                           "html": (str(tmp_path / "r.html"), outputs.HTML)})
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)


# -- 4. all or nothing ---------------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(case):
    """``case/disk``: a 200 kB tmpfs (skips when the test cannot mount one: not root, no permission)."""
    disk = case / "disk"
    disk.mkdir()
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True)
    if cp.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {cp.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def _fill(disk, free_bytes):
    """Leave about ``free_bytes`` free on ``disk`` (a filler file)."""
    st = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - free_bytes))


@pytest.mark.parametrize("outs, free", [
    ({"--simulation": "s.tif"}, None),              # the simulation used to be delivered corrupt with rc 0
    ({"--vector": "p.gpkg"}, None),                 # the raster fits, the polygons do not: both go
    ({"--vector": "p.shp"}, None),
    ({"--report": "r.csv", "--html": "r.html"}, 40_000),   # the raster and the CSV fit, the HTML does not
])
def test_cli_full_disk_leaves_nothing(case, small_disk, tiny_models, outs, free):
    if free:
        _fill(small_disk, free)
    before = shas(case)
    extra = [a for k, v in outs.items() for a in (k, small_disk / v)]
    cp = cli("segment", case / "t1.tif", *BANDS, "--model", tiny_models["bin4"], "--quiet",
             "--out", small_disk / "c.tif", *extra)
    assert cp.returncode == 2, cp.stderr
    assert "Cannot write" in cp.stderr and "Traceback" not in cp.stderr and "Exception ignored" not in cp.stderr
    assert any(w in cp.stderr for w in ("No space left", "disk is full")), cp.stderr   # the reason, not ": ."
    assert shas(case) == before     # nothing new on the disk, not even a partial; the inputs unchanged


def test_cli_kmeans_full_disk_leaves_nothing(case, small_disk):
    _fill(small_disk, 10_000)
    before = shas(case)
    cp = cli("kmeans", case / "t1.tif", *BANDS, "--k", 4, "--out", small_disk / "k.tif")
    assert cp.returncode == 2 and "Cannot write" in cp.stderr and "Traceback" not in cp.stderr, cp.stderr
    assert shas(case) == before


@pytest.mark.parametrize("params", [
    {"OUTPUT_SIMULATION": "s.tif"}, {"OUTPUT_VECTOR": "p.gpkg"}, {"OUTPUT_HTML": "r.html"},
])
def test_qgis_full_disk_leaves_nothing(provider, case, small_disk, tiny_models, params):
    import processing
    if "OUTPUT_HTML" in params:
        _fill(small_disk, 40_000)
    before = shas(case)
    full = {"INPUT": str(case / "t1.tif"), "MODEL_FILE": tiny_models["bin4"], "BANDS": [3, 2, 1, 4],
            "OUTPUT_RASTER": str(small_disk / "c.tif"), "OUTPUT_VECTOR": None}
    full.update({k: str(small_disk / v) for k, v in params.items()})
    with pytest.raises(Exception, match="Cannot write|could not be written"):
        processing.run("ktextures:segment", full)
    assert shas(case) == before


def test_a_failed_writer_removes_the_runs_earlier_outputs(tmp_path):
    """Without a tmpfs: an ``OSError`` while writing the second output (what a full disk raises) removes the
    first, already delivered, output too, and leaves no partial file."""
    from ktextures_plugin.core.errors import OutputError
    from ktextures_plugin.core.io import atomic
    with pytest.raises(OutputError, match="No space left"):
        with atomic.all_or_nothing():
            with atomic.atomic_output(str(tmp_path / "a.csv")) as part:
                Path(part.path).write_text("first")
            assert (tmp_path / "a.csv").read_text() == "first"
            with atomic.atomic_output(str(tmp_path / "b.csv")) as part:
                Path(part.path).write_text("half")
                raise OSError(28, "No space left on device")
    assert os.listdir(tmp_path) == []


def test_a_replaced_output_loses_its_stale_sidecars(tmp_path):
    """Writing over an earlier output removes its ``.aux.xml``/``.ovr`` (they would describe the old file)."""
    from ktextures_plugin.core.io import atomic
    (tmp_path / "o.tif").write_bytes(b"old")
    (tmp_path / "o.tif.ovr").write_bytes(b"old overviews")
    with atomic.atomic_output(str(tmp_path / "o.tif")) as part:
        Path(part.path).write_bytes(b"new")
    assert sorted(os.listdir(tmp_path)) == ["o.tif"] and (tmp_path / "o.tif").read_bytes() == b"new"


def test_a_failed_run_puts_back_the_output_it_replaced(tmp_path):
    """A run that fails after it replaced an earlier output (and its sidecar) puts the earlier files back: a
    failed run never costs the user a result that existed before it."""
    from ktextures_plugin.core.errors import OutputError
    from ktextures_plugin.core.io import atomic
    (tmp_path / "a.tif").write_text("earlier result")
    (tmp_path / "a.tif.aux.xml").write_text("earlier class names")
    before = shas(tmp_path)
    with pytest.raises(OutputError, match="No space left"):
        with atomic.all_or_nothing():
            with atomic.atomic_output(str(tmp_path / "a.tif")) as part:
                Path(part.path).write_text("new result")
            assert (tmp_path / "a.tif").read_text() == "new result"
            assert not (tmp_path / "a.tif.aux.xml").exists()
            with atomic.atomic_output(str(tmp_path / "b.csv")):
                raise OSError(28, "No space left on device")
    assert shas(tmp_path) == before     # the earlier files, and no backup or partial left


def test_a_successful_run_removes_the_backups(tmp_path):
    from ktextures_plugin.core.io import atomic
    (tmp_path / "a.tif").write_text("earlier result")
    with atomic.all_or_nothing():
        with atomic.atomic_output(str(tmp_path / "a.tif")) as part:
            Path(part.path).write_text("new result")
        assert len(os.listdir(tmp_path)) == 2   # the new file and the hidden backup, until the run ends
    assert os.listdir(tmp_path) == ["a.tif"] and (tmp_path / "a.tif").read_text() == "new result"


def test_a_write_error_without_a_reason_says_the_disk_is_full(small_disk):
    from ktextures_plugin.core.io import atomic
    _fill(small_disk, 20_000)
    msg = str(atomic.write_failed(str(small_disk / "p.gpkg"), ""))
    assert msg.startswith(f"Cannot write '{small_disk / 'p.gpkg'}': No space left on device. Free disk space")


def test_cli_failed_run_keeps_the_earlier_result(case, small_disk, tiny_models):
    """The class raster of an earlier run survives a later run into the same path whose polygons do not fit."""
    base = ["segment", case / "t1.tif", *BANDS, "--model", tiny_models["bin4"], "--quiet", "--out",
            small_disk / "c.tif"]
    assert cli(*base).returncode == 0
    earlier = shas(small_disk)
    size = sum((small_disk / f).stat().st_size for f in earlier)
    _fill(small_disk, size + 16_000)    # room for the new raster beside the old one, not for the polygons
    (small_disk / "filler").rename(small_disk / "filler.keep")
    cp = cli(*base, "--vector", small_disk / "p.gpkg", "--min-segment-px", 0)
    assert cp.returncode == 2 and "Cannot write" in cp.stderr and "Traceback" not in cp.stderr, cp.stderr
    after = shas(small_disk)
    after.pop("filler.keep")
    assert after == earlier


# -- sample: chips and layers ----------------------------------------------------------------------------------------
@pytest.fixture
def classes(case, tiny_models):
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    segment_raster(str(case / "t1.tif"), tiny_models["bin4"], str(case / "c.tif"), SegmentOptions(bands="3,2,1,4"))
    return case / "c.tif"


def _sample(folder, points, cls, image=None):
    return {"INPUT": str(cls), "IMAGE": str(image) if image else None, "POINTS_PER_CLASS": 2, "CHIP_SIZE_PX": 8,
            "OUTPUT_POINTS": str(points), "OUTPUT_FOLDER": str(folder)}


def test_qgis_sample_chip_named_as_the_input_is_refused_before_the_points(provider, case, classes):
    import processing
    from qgis.core import QgsProcessingException
    first = case / "first"
    processing.run("ktextures:sample", _sample(first, case / "first.gpkg", classes))
    masks = sorted(f for f in os.listdir(first) if f.endswith("_mask.tif"))
    assert len(masks) >= 3
    chips = case / "chips"
    chips.mkdir()
    trap = chips / masks[-1]            # the input has the name of the last chip: the earlier chips are written
    shutil.copy(classes, trap)
    before = shas(case)
    with pytest.raises(QgsProcessingException, match="OUTPUT_FOLDER") as err:
        processing.run("ktextures:sample", _sample(chips, case / "p.gpkg", trap))
    assert "input" in str(err.value)
    assert shas(case) == before         # no points, no chips


def test_qgis_sample_read_only_chip_folder_leaves_no_points(provider, case, classes):
    import processing
    from qgis.core import QgsProcessingException
    ro = case / "ro"
    ro.mkdir()
    cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)], capture_output=True)
    if cp.returncode != 0:
        os.chmod(ro, 0o555)
        if os.access(ro, os.W_OK):
            pytest.skip("cannot make a read-only folder here")
    try:
        before = shas(case)
        with pytest.raises(QgsProcessingException, match="OUTPUT_FOLDER") as err:
            processing.run("ktextures:sample", _sample(ro / "chips", case / "p.gpkg", classes, case / "t1.tif"))
        assert "read-only" in str(err.value) or "write" in str(err.value)
        assert shas(case) == before
    finally:
        if cp.returncode == 0:
            subprocess.run(["umount", str(ro)], check=True)


def test_qgis_sample_ogr_uri_into_the_input_is_refused_saying_why(provider, case, classes):
    import processing
    from qgis.core import QgsProcessingException
    before = shas(case)
    params = _sample(case / "chips", "", classes)
    params["OUTPUT_POINTS"] = f"ogr:dbname='{classes}' table=\"points\" (geom)"
    with pytest.raises(QgsProcessingException, match="OUTPUT_POINTS") as err:
        processing.run("ktextures:sample", params)
    assert "input INPUT" in str(err.value) and "never overwritten" in str(err.value)
    assert shas(case) == before


def test_cli_never_delivers_a_truncated_raster_with_status_0(case, small_disk, tiny_models):
    """From too little room to just enough: each run either fails (status 2, nothing left) or delivers the
    complete class raster (same pixels and class names as on a roomy disk), never a truncated one or one
    whose .aux.xml (which holds the class names) could not be saved."""
    ref = case / "ref.tif"
    base = ["segment", case / "t1.tif", *BANDS, "--model", tiny_models["bin4"], "--quiet", "--min-segment-px", 0]
    assert cli(*base, "--out", ref).returncode == 0
    want = gdal.Open(str(ref))
    want = (want.GetRasterBand(1).Checksum(), want.GetRasterBand(1).GetCategoryNames())
    outcomes = set()
    for free in range(2_000, 22_000, 2_000):
        (small_disk / "filler").unlink(missing_ok=True)
        _fill(small_disk, free)
        cp = cli(*base, "--out", small_disk / "c.tif")
        assert cp.returncode in (0, 2) and "Traceback" not in cp.stderr, cp.stderr
        if cp.returncode == 0:
            ds = gdal.Open(str(small_disk / "c.tif"))
            assert (ds.GetRasterBand(1).Checksum(), ds.GetRasterBand(1).GetCategoryNames()) == want, free
            ds = None
            os.remove(small_disk / "c.tif")
            os.remove(small_disk / "c.tif.aux.xml")
        else:
            assert "Cannot write" in cp.stderr and ".partial" not in cp.stderr
        assert sorted(os.listdir(small_disk)) == ["filler"], free
        outcomes.add(cp.returncode)
    assert outcomes == {0, 2}


@pytest.mark.parametrize("name", ["p.gpkg", "p.shp"])
def test_qgis_sample_full_disk_fails_and_leaves_nothing(provider, case, classes, small_disk, name):
    """The points used to be reported written (status 0, SAMPLE_COUNT) into a corrupt GeoPackage or an empty
    shapefile with an empty .qml beside it."""
    import processing
    from qgis.core import QgsProcessingException
    _fill(small_disk, 20_000)
    with pytest.raises(QgsProcessingException, match="Cannot write") as err:
        processing.run("ktextures:sample", {"INPUT": str(classes), "POINTS_PER_CLASS": 40,
                                            "OUTPUT_POINTS": str(small_disk / name)})
    assert "Free disk space" in str(err.value)
    assert os.listdir(small_disk) == ["filler"]


def test_qgis_sample_full_disk_keeps_the_earlier_points(provider, case, classes, small_disk):
    import processing
    from qgis.core import QgsProcessingException
    params = {"INPUT": str(classes), "POINTS_PER_CLASS": 2, "OUTPUT_POINTS": str(small_disk / "p.gpkg")}
    processing.run("ktextures:sample", params)
    earlier = shas(small_disk)
    _fill(small_disk, 20_000)
    (small_disk / "filler").rename(small_disk / "filler.keep")
    with pytest.raises(QgsProcessingException, match="Cannot write"):
        processing.run("ktextures:sample", dict(params, POINTS_PER_CLASS=40))
    after = shas(small_disk)
    after.pop("filler.keep")
    assert after == earlier


def test_qgis_rename_full_disk_says_so(provider, case, tiny_models, small_disk):
    import processing
    from qgis.core import QgsProcessingException
    cp = cli("segment", case / "t1.tif", *BANDS, "--model", tiny_models["bin4"], "--quiet", "--out",
             case / "c.tif", "--vector", case / "p.gpkg")
    assert cp.returncode == 0, cp.stderr
    before = shas(case)
    _fill(small_disk, 20_000)
    before["disk/filler"] = shas(small_disk)["filler"]
    with pytest.raises(QgsProcessingException, match="Cannot write") as err:
        processing.run("ktextures:rename_classes", {
            "INPUT": str(case / "c.tif"), "CLASS_NAMES": "a,b,c,d", "POLYGONS": str(case / "p.gpkg"),
            "OUTPUT_RASTER": str(small_disk / "o.tif"), "OUTPUT_VECTOR": str(small_disk / "o.gpkg")})
    assert "Traceback" not in str(err.value) and "Free disk space" in str(err.value)
    assert shas(case) == before


def test_qgis_sample_refuses_a_folder_holding_other_chips(provider, case, classes):
    """Chips of another sample set in OUTPUT_FOLDER would mix two training sets: refused before any output;
    the same sampling run again into its own folder replaces its chips."""
    import processing
    from qgis.core import QgsProcessingException
    chips = case / "chips"
    processing.run("ktextures:sample", _sample(chips, case / "first.gpkg", classes))
    n = len(os.listdir(chips))
    processing.run("ktextures:sample", _sample(chips, case / "again.gpkg", classes))
    assert len(os.listdir(chips)) == n
    before = shas(case)
    with pytest.raises(QgsProcessingException, match="another sample set") as err:
        processing.run("ktextures:sample", dict(_sample(chips, case / "second.gpkg", classes), POINTS_PER_CLASS=1))
    assert "empty folder" in str(err.value)
    assert shas(case) == before



def test_cli_a_list_without_dask_names_the_fix(case):
    (case / "l.txt").write_text(f"{case / 't1.tif'}\n")
    before = shas(case)
    cp = cli("segment", case / "l.txt", *BANDS, "--out", case / "c.tif")
    assert cp.returncode == 2 and "--dask" in cp.stderr and "gdalbuildvrt" in cp.stderr, cp.stderr
    assert "Traceback" not in cp.stderr and shas(case) == before


def test_qgis_outputs_named_like_the_model_are_fine(provider, case, tiny_models):
    """``m.onnx`` and ``m.tif`` side by side (what fit writes as OUTPUT_MODEL and OUTPUT_RASTER): the model is no
    layer, so the raster's style ``m.qml`` is not a file the model input reads."""
    import processing
    shutil.copy(tiny_models["bin4"], case / "m.onnx")
    processing.run("ktextures:segment", {"INPUT": str(case / "t1.tif"), "MODEL_FILE": str(case / "m.onnx"),
                                         "BANDS": [3, 2, 1, 4], "OUTPUT_RASTER": str(case / "m.tif")})
    assert (case / "m.tif").exists() and (case / "m.qml").exists()


@pytest.mark.parametrize("name", ["p.gml", "p.vrt"])
def test_cli_vector_formats_that_leave_files_behind_are_refused_first(case, tiny_models, name):
    """GML writes a schema naming the partial file, a VRT cannot be created: refused before any work."""
    before = shas(case)
    cp = cli("segment", case / "t1.tif", *BANDS, "--model", tiny_models["bin4"], "--quiet", "--out", case / "c.tif",
             "--vector", case / name)
    refused(cp, "--vector")
    assert ".gpkg" in cp.stderr and shas(case) == before


def test_write_failed_is_one_short_line():
    from ktextures_plugin.core.io import atomic
    sql = "sqlite3_exec(CREATE TABLE gpkg_spatial_ref_sys (" + "srs_name TEXT NOT NULL, " * 200 + ") failed: " \
          "database or disk is full"
    assert str(atomic.write_failed("/tmp/p.gpkg", sql)) == (
        "Cannot write '/tmp/p.gpkg': No space left on device. Free disk space or choose another folder you can "
        "write to.")
    long = "Terminating translation prematurely after failed\ntranslation of layer poly " + "x " * 300
    msg = str(atomic.write_failed("/tmp/p.gpkg", long))
    assert "\n" not in msg and len(msg) < 400 and msg.startswith("Cannot write '/tmp/p.gpkg': Terminating")
