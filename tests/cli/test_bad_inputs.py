"""Bad inputs through the command line (subprocess) and the core: each gives one clear line on stderr, a
non-zero exit status and no traceback, and no input file changes (the sha256 of every file of the case folder
before and after). The inputs are built by tests/bad_inputs.py; QGIS: tests/algorithms/test_bad_inputs_qgis.py."""
import errno
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from osgeo import gdal

import bad_inputs as bad
from conftest import ROOT
from ktextures_plugin.core import errors

gdal.UseExceptions()
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
PROG = "python -m ktextures_plugin"


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_inputs")
    return dict(bad.build_case(d), folder=d)


@pytest.fixture
def unchanged(case):
    """Asserts, after the test, that no file of the case folder changed, appeared or went away."""
    before = bad.hashes(case["folder"])
    yield
    assert bad.hashes(case["folder"]) == before


def cli(*args, module="ktextures_plugin", timeout=300):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([PY, "-m", module, *map(str, args)], cwd=str(ROOT), env=env, capture_output=True,
                          text=True, timeout=timeout)


def refused(cp, *words, status=2):
    """The run failed with ``status``, one ``error:`` line holding ``words``, and no traceback."""
    assert cp.returncode == status, (cp.returncode, cp.stderr[-2000:])
    assert "Traceback" not in cp.stderr + cp.stdout, cp.stderr[-2000:]
    lines = [ln for ln in cp.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, cp.stderr[-2000:]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


# -- damaged GeoTIFFs ------------------------------------------------------------------------------------------
DAMAGED = {
    "segment": ["segment", "{trunc}", "--model", "{good}", "--bands", "3,2,1,4", "--quiet", "--out", "{o}/c.tif"],
    "kmeans": ["kmeans", "{trunc}", "--bands", "3,2,1,4", "--k", "3", "--out", "{o}/c.tif"],
    "novelty": ["novelty", "{trunc}", "--model", "{good}", "--bands", "3,2,1,4", "--quiet", "--score",
                "{o}/s.tif"],
    "evaluate labels": ["evaluate", "{labels_trunc}", "--reference", "{labels}"],
    "evaluate reference": ["evaluate", "{labels}", "--reference", "{labels_trunc}"],
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_cli_damaged_geotiff_is_named(case, unchanged, tmp_path, name):
    args = [a.format(o=tmp_path, **case) for a in DAMAGED[name]]
    damaged = "labels_trunc.tif" if "evaluate" in name else "trunc.tif"
    refused(cli(*args), "the file is damaged or truncated", damaged)
    assert not [p for p in tmp_path.iterdir() if not p.name.endswith(".aux.xml")]


def test_cli_fit_damaged_geotiff_is_named(case, unchanged, tmp_path):
    pytest.importorskip("torch")
    cp = cli("fit", case["trunc"], "--bands", "3,2,1,4", "--k", "3", "--out", tmp_path / "m.onnx", "--steps", "2",
             "--tile-size", "64", "--retries", "0", "--quiet")
    line = refused(cp, "the file is damaged or truncated", "trunc.tif")
    assert line.startswith("error: the file is damaged")  # not worded as "every pixel is nodata"
    assert not (tmp_path / "m.onnx").exists()


# -- model files -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["model_trunc", "model_text", "model_empty", "model_pickle", "model_escape"])
def test_cli_model_file_that_is_no_model(case, unchanged, tmp_path, model):
    path = case[model]
    refused(cli("segment", case["img"], "--model", path, "--bands", "3,2,1,4", "--quiet", "--out",
                tmp_path / "c.tif"), path.name)
    refused(cli("inspect", path), path.name)
    assert not (tmp_path / "c.tif").exists()


@pytest.mark.parametrize("model", ["model_trunc", "model_text", "model_empty", "model_pickle", "model_escape"])
def test_onnx_rewrite_refuses_files_that_are_no_model(case, unchanged, model):
    """``training/onnx_rewrite``: one line per bad file and exit status 2; an empty file fails too."""
    cp = cli(case[model], module="ktextures_plugin.training.onnx_rewrite")
    assert cp.returncode == 2 and "Traceback" not in cp.stderr, cp.stderr
    assert cp.stderr.startswith("error:") and case[model].name in cp.stderr
    assert "rewritten" not in cp.stdout


@pytest.mark.parametrize("model", list(bad.BAD_METADATA) + list(bad.BAD_GRAPHS))
def test_cli_model_metadata_and_graph_are_checked_first(case, unchanged, tmp_path, model):
    words = bad.BAD_METADATA[model][2] if model in bad.BAD_METADATA else bad.BAD_GRAPHS[model]
    refused(cli("segment", case["img"], "--model", case[model], "--bands", "3,2,1,4", "--quiet", "--out",
                tmp_path / "c.tif"), f"{model}.onnx", words)
    refused(cli("inspect", case[model]), f"{model}.onnx", words)
    assert not (tmp_path / "c.tif").exists()


# -- parameters ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, option", [
    (["segment", "{img}", "--model", "{good}", "--bands", "3,2,1,4", "--out", "{o}/c.tif",
      "--min-segment-px", "99999999999"], "--min-segment-px"),
    (["novelty", "{img}", "--model", "{good}", "--bands", "3,2,1,4", "--score", "{o}/s.tif", "--threads", "-1"],
     "--threads"),
    (["segment", "{img}", "--model", "{good}", "--bands", "a,b,c,d", "--out", "{o}/c.tif", "--quiet"], "--bands"),
])
def test_cli_parameters_out_of_bounds(case, unchanged, tmp_path, args, option):
    refused(cli(*[a.format(o=tmp_path, **case) for a in args]), option)
    assert not list(tmp_path.iterdir())


def test_sieve_threshold_beyond_gdal_int_is_a_parameter_error(case, tmp_path):
    from ktextures_plugin.core.segment.sieve import MAX_SIEVE_PX, sieve_in_place
    c = tmp_path / "c.tif"
    gdal.Translate(str(c), str(case["labels"]))
    with pytest.raises(errors.ParameterError) as ei:
        sieve_in_place(str(c), MAX_SIEVE_PX + 1)
    assert ei.value.parameter == "min_segment_px" and str(MAX_SIEVE_PX) in str(ei.value)


# -- class names that are mathtext -----------------------------------------------------------------------------
def test_cli_html_report_with_mathtext_class_names(case, unchanged, tmp_path):
    cp = cli("segment", case["img"], "--model", case["mathtext"], "--bands", "3,2,1,4", "--quiet", "--out",
             tmp_path / "c.tif", "--html", tmp_path / "r.html")
    assert cp.returncode == 0 and "Traceback" not in cp.stderr, cp.stderr
    page = (tmp_path / "r.html").read_text()
    assert "$\\foo$" in page and "data:image/png;base64" in page


# -- Alpha-tagged bands ----------------------------------------------------------------------------------------
def _nodata_pixels(path) -> int:
    return int((gdal.Open(str(path)).ReadAsArray() == 0).sum())


def test_cli_alpha_band_warns_and_can_be_ignored(case, unchanged, tmp_path):
    base = ["segment", case["alpha"], "--model", case["good"], "--bands", "3,2,1,4", "--quiet"]
    cp = cli(*base, "--out", tmp_path / "a.tif")
    assert cp.returncode == 0, cp.stderr
    warning = [ln for ln in cp.stderr.splitlines() if ln.startswith("warning:") and "Alpha" in ln]
    assert len(warning) == 1 and "band 4" in warning[0] and f" {bad.ALPHA_ZEROS} " in warning[0]
    assert "--ignore-mask-bands" in warning[0]
    assert _nodata_pixels(tmp_path / "a.tif") == bad.ALPHA_ZEROS
    cp = cli(*base, "--out", tmp_path / "b.tif", "--ignore-mask-bands")
    assert cp.returncode == 0 and "Alpha" not in cp.stderr, cp.stderr
    assert _nodata_pixels(tmp_path / "b.tif") == 0


def test_kmeans_alpha_band_option(case, unchanged, tmp_path):
    cp = cli("kmeans", case["alpha"], "--bands", "3,2,1,4", "--k", "3", "--out", tmp_path / "k.tif",
             "--ignore-mask-bands")
    assert cp.returncode == 0 and "Alpha" not in cp.stderr, cp.stderr
    assert _nodata_pixels(tmp_path / "k.tif") == 0


def test_without_mask_bands_leaves_no_trace(case, unchanged):
    from ktextures_plugin.core.io import raster
    with raster.without_mask_bands(str(case["alpha"])) as view:
        ds = gdal.Open(view)
        assert view.startswith("/vsimem/") and ds.GetRasterBand(1).GetMaskFlags() == gdal.GMF_ALL_VALID
        ds = None
    assert gdal.VSIStatL(view) is None
    with raster.without_mask_bands(str(case["img"])) as view:  # nothing to ignore: the file itself
        assert view == str(case["img"])


# -- rotated raster with an extent ------------------------------------------------------------------------------
def test_rotated_raster_extent_covers_the_pixels_asked(case, unchanged, tmp_path):
    """An extent on a rotated raster gives the pixel window holding it (the corners through the inverse
    geotransform), not 'does not overlap'."""
    from ktextures_plugin.core.io.geo import extent_to_window
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    ds = gdal.Open(str(case["rotated"]))
    target = (100, 200, 150, 120)
    extent = bad.world_bounds(case["rotated"], target)
    x0, y0, xs, ys = extent_to_window(ds.GetGeoTransform(), (ds.RasterXSize, ds.RasterYSize), *extent)
    assert x0 <= 100 and y0 <= 200 and x0 + xs >= 250 and y0 + ys >= 320
    assert xs < ds.RasterXSize and ys < ds.RasterYSize  # a window, not the whole raster
    res = segment_raster(str(case["rotated"]), str(case["good"]), str(tmp_path / "r.tif"),
                         SegmentOptions(bands="3,2,1,4", extent=extent))
    out = gdal.Open(str(tmp_path / "r.tif"))
    assert (out.RasterXSize, out.RasterYSize) == (xs, ys) and res.valid_pixels == xs * ys


def test_north_up_extent_unchanged_and_outside_refused(case):
    from ktextures_plugin.core.io.geo import extent_to_window
    ds = gdal.Open(str(case["img"]))
    gt, size = ds.GetGeoTransform(), (ds.RasterXSize, ds.RasterYSize)
    assert extent_to_window(gt, size, *bad.world_bounds(case["img"], (10, 20, 30, 40))) == (10, 20, 30, 40)
    with pytest.raises(errors.ParameterError, match="does not overlap"):
        extent_to_window(gt, size, gt[0] - 1000, gt[3] + 10, gt[0] - 10, gt[3] + 1000)


# -- Ctrl-C ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big(case):
    """The sample at 2.5 m (2048 x 3072 px), so that each stage lasts long enough to be interrupted."""
    p = case["folder"].parent / "big.tif"
    if not p.exists():
        gdal.Warp(str(p), str(case["img"]), xRes=2.5, yRes=2.5, creationOptions=["TILED=YES"])
    return p


def interrupt(args, when, timeout=300):
    """Run the CLI, send SIGINT once ``when`` (bytes) shows on stderr (or after ``when`` seconds, a float);
    returns (returncode, stderr, sent)."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    chunks, sent = [], False
    with subprocess.Popen([PY, "-m", "ktextures_plugin", *map(str, args)], cwd=str(ROOT), env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as p:
        reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: p.stderr.read(1), b"")))
        reader.start()
        t0 = time.monotonic()
        while p.poll() is None and time.monotonic() - t0 < timeout:
            ready = (when in b"".join(chunks)) if isinstance(when, bytes) else time.monotonic() - t0 > when
            if ready and not sent:
                p.send_signal(signal.SIGINT)
                sent = True
            time.sleep(0.02)
        p.wait(timeout=60)
        reader.join()
    return p.returncode, b"".join(chunks).decode(errors="replace"), sent


@pytest.mark.slow
@pytest.mark.parametrize("stage", [b"sieve:", b"polygonize:"])
def test_ctrl_c_in_sieve_and_polygonize(case, tmp_path, big, stage):
    rc, err, sent = interrupt(["segment", big, "--model", case["good"], "--bands", "3,2,1,4", "--min-segment-px",
                               "50", "--out", tmp_path / "c.tif", "--vector", tmp_path / "c.gpkg"], stage)
    if rc == 0:
        pytest.skip(f"the run finished before the signal (sent: {sent})")
    assert sent and rc == 130 and "Traceback" not in err and "canceled" in err.splitlines()[-1], err[-1500:]
    assert not (tmp_path / "c.tif").exists() and not (tmp_path / "c.gpkg").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["kmeans", "novelty"])
def test_ctrl_c_in_kmeans_and_novelty(case, tmp_path, big, command):
    args = (["kmeans", big, "--bands", "3,2,1,4", "--k", "5", "--context", "--out", tmp_path / "c.tif"]
            if command == "kmeans" else
            ["novelty", big, "--model", case["good"], "--bands", "3,2,1,4", "--score", tmp_path / "s.tif"])
    rc, err, sent = interrupt(args, 1.5)
    if rc == 0:
        pytest.skip(f"the run finished before the signal (sent: {sent})")
    assert sent and rc == 130 and "Traceback" not in err and "canceled" in err.splitlines()[-1], err[-1500:]


# -- the one translation ---------------------------------------------------------------------------------------
def test_every_error_type_is_rooted_at_core_error():
    from ktextures_plugin.cli.distributed import DistributedError
    from ktextures_plugin.training.errors import BadKError, FitInputError, TorchMissingError
    for t in (errors.ModelError, errors.RasterError, errors.OutputError, errors.DamagedFileError,
              errors.ParameterError, errors.InstallError, errors.RuntimeMissingError, FitInputError, BadKError,
              DistributedError, TorchMissingError):
        assert issubclass(t, errors.CoreError), t
    assert issubclass(errors.ParameterError, ValueError) and issubclass(TorchMissingError, ImportError)


@pytest.mark.parametrize("exc, status, words", [
    (KeyboardInterrupt(), 130, "canceled"),
    (errors.Canceled(), 130, "canceled"),
    (RuntimeError("User terminated"), 130, "canceled"),
    (RuntimeError("/d/x.tif, band 2: IReadBlock failed at X offset 0, Y offset 3: TIFFReadEncodedTile() failed."),
     2, "the file is damaged or truncated: x.tif"),
    (OSError(errno.ENOSPC, "No space left on device", "/d/out.tif"), 2, "No space left on device"),
    (MemoryError(), 2, "Not enough memory"),
    (RuntimeError("TIFFAppendToStrip:Write error at scanline 0"), 2, "GDAL cannot write or access a file"),
    (RuntimeError("x.tif' not recognized as a supported file format."), 2, "GDAL cannot open a file"),
    (ImportError("No module named 'dask'"), 2, "No module named 'dask'"),
    (errors.RasterError("Set {name} right", parameter="bands"), 2, "Set --bands right"),
])
def test_cli_translation(capsys, exc, status, words):
    from ktextures_plugin.cli._args import exit_status
    assert exit_status("prog", exc, {"bands": "--bands"}) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("prog: ") and words in err, err


def test_cli_translation_lets_bugs_through():
    from ktextures_plugin.cli._args import exit_status
    assert exit_status("prog", ZeroDivisionError("bug")) is None
    assert exit_status("prog", RuntimeError("a GDAL or library error that is no read error")) is None
