"""``segment --dask``: a real dask.distributed LocalCluster (2 worker processes) against single-process segment."""
import dataclasses
import os
import signal

import numpy as np
import pytest
from osgeo import gdal

from conftest import ROOT, SAMPLE, sample_with_nodata
from conftest import read_band as read
from ktextures_plugin.core.feedback import Feedback
from ktextures_plugin.core.io import classraster
from ktextures_plugin.core.segment import SegmentOptions, segment_raster
from ktextures_plugin.core.segment.windowmap import window_grid

distributed = pytest.importorskip("distributed")
from ktextures_plugin.cli import distributed as kd  # noqa: E402
from ktextures_plugin.cli.segment import main as segment_main  # noqa: E402

BUNDLED = str(ROOT / "models" / "s2_10m_k6.onnx")
# the sample is 512 x 768 px: neither side is a multiple of the 100 px tile nor of the 300 px window
TILE, WINDOW_TILES = 100, 3


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def with_nodata(tmp_path):
    """A copy of the sample with nodata 0 and a nodata block across a tile and a window seam."""
    return sample_with_nodata(tmp_path, slice(280, 330), slice(250, 320))


def assert_same(single, dist, single_path, dist_path):
    a, b = read(single_path), read(dist_path)
    assert a.shape == b.shape and np.array_equal(a, b), f"{int((a != b).sum())} pixels differ"
    assert classraster.read_palette(str(single_path)) == classraster.read_palette(str(dist_path))
    assert single.colors == dist.colors
    assert single.report_rows() == dist.report_rows()          # counts, areas, percents: exactly equal
    assert np.array_equal(single.counts, dist.counts) and dist.valid_pixels == single.valid_pixels


@pytest.mark.parametrize("model_key,nodata", [("bin4", False), ("box4", False), ("box4", True),
                                              ("bundled", True)])
def test_dask_equals_single_process(tmp_path, tiny_models, client, model_key, nodata):
    model = BUNDLED if model_key == "bundled" else tiny_models[model_key]
    image = with_nodata(tmp_path) if nodata else SAMPLE
    single = segment_raster(str(image), model, str(tmp_path / "one.tif"), SegmentOptions(tile_size=TILE))
    dist = kd.segment_dask(str(image), model, str(tmp_path / "dask.tif"), SegmentOptions(tile_size=TILE), client=client,
                           window_tiles=WINDOW_TILES)
    assert len(window_grid(dist.window, TILE, WINDOW_TILES)) == 6   # 2 x 3 windows, the last ones cut
    assert_same(single, dist, tmp_path / "one.tif", tmp_path / "dask.tif")
    assert dist.execution_provider.endswith("2 Dask worker(s)")


def test_dask_honours_palette_class_names_and_simulation(tmp_path, tiny_models, client):
    """One engine: --dask gets the palette, the class names and the simulated image of the single process."""
    names = ["a", "b", "c", "d"]
    opts = SegmentOptions(tile_size=TILE, palette="qualitative", class_names=names, min_segment_px=4)
    single = segment_raster(str(SAMPLE), tiny_models["bin4"], str(tmp_path / "one.tif"),
                            dataclasses.replace(opts, simulation_path=str(tmp_path / "one_sim.tif")))
    dist = kd.segment_dask(str(SAMPLE), tiny_models["bin4"], str(tmp_path / "dask.tif"),
                           dataclasses.replace(opts, simulation_path=str(tmp_path / "dask_sim.tif")), client=client,
                           window_tiles=WINDOW_TILES)
    assert_same(single, dist, tmp_path / "one.tif", tmp_path / "dask.tif")
    assert dist.class_names == names and classraster.read_palette(str(tmp_path / "dask.tif"))[0] == names
    assert dist.colors == classraster.palette_colors(np.full((4, 3), np.nan), "qualitative")
    a, b = read(tmp_path / "one_sim.tif"), read(tmp_path / "dask_sim.tif")
    assert np.array_equal(a, b, equal_nan=True) and np.isfinite(a).any()


def test_dask_smoothing_equals_single_process(tmp_path, client):
    """The smoothing step on Dask windows (each tile read with the model's halo plus one pixel per sweep) gives
    the single process's raster and report."""
    from onnx_fixtures import scores_model
    model = scores_model(tmp_path / "scores.onnx", k=4, box=True)
    opts = SegmentOptions(tile_size=TILE, bands="3,2,1,4", scaling="stretch", smoothing=1.5)
    single = segment_raster(str(SAMPLE), model, str(tmp_path / "one.tif"), opts)
    dist = kd.segment_dask(str(SAMPLE), model, str(tmp_path / "dask.tif"), opts, client=client,
                           window_tiles=WINDOW_TILES)
    assert single.smoothing == dist.smoothing == 1.5
    assert_same(single, dist, tmp_path / "one.tif", tmp_path / "dask.tif")


def test_cli_with_address_and_a_list_of_rasters(tmp_path, client, capsys):
    """A text list of two rasters on one grid (built into a VRT) through the command line with the scheduler's
    address equals the single-process run on the whole sample, report included."""
    parts = []
    for i, (yoff, ys) in enumerate([(0, 400), (400, 368)]):
        p = tmp_path / f"part{i}.tif"
        gdal.Translate(str(p), str(SAMPLE), srcWin=[0, yoff, 512, ys])
        parts.append(str(p))
    lst = tmp_path / "mosaic.txt"
    lst.write_text("\n".join(parts) + "\n")
    one, dsk = tmp_path / "one.tif", tmp_path / "dask.tif"
    assert segment_main([str(SAMPLE), "--out", str(one), "--report", str(tmp_path / "one.csv"), "--quiet",
                         "--tile-size", str(TILE)]) == 0
    assert segment_main([str(lst), "--out", str(dsk), "--report", str(tmp_path / "dask.csv"), "--quiet",
                         "--tile-size", str(TILE), "--dask", client.scheduler.address]) == 0
    assert np.array_equal(read(one), read(dsk))
    assert (tmp_path / "one.csv").read_text() == (tmp_path / "dask.csv").read_text()
    assert classraster.read_palette(str(one)) == classraster.read_palette(str(dsk))
    assert not [f for f in os.listdir(tmp_path) if f.endswith((".vrt", ".partial.tif"))]


def test_killed_worker_gives_the_same_output(tmp_path, client):
    """One worker process is killed after the first window arrives: Dask reruns its tasks on the other worker
    (and on the restarted one) and the output is the same as the single-process run."""
    single = segment_raster(str(SAMPLE), BUNDLED, str(tmp_path / "one.tif"), SegmentOptions(tile_size=TILE))
    victim = sorted(client.scheduler_info()["workers"])[0]
    pid = client.run(os.getpid, workers=[victim])[victim]
    killed = []

    def progress(frac, stage):
        if not killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(victim)

    dist = kd.segment_dask(str(SAMPLE), BUNDLED, str(tmp_path / "dask.tif"), SegmentOptions(tile_size=TILE),
                           Feedback(progress=progress), client=client, window_tiles=1)
    assert killed
    assert_same(single, dist, tmp_path / "one.tif", tmp_path / "dask.tif")
    client.wait_for_workers(2, timeout=60)


def test_interrupt_cancels_and_leaves_no_output(tmp_path, client):
    """Ctrl-C (KeyboardInterrupt) during the run cancels the tasks and leaves neither output nor partial file."""
    def progress(frac, stage):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        kd.segment_dask(str(SAMPLE), BUNDLED, str(tmp_path / "dask.tif"), SegmentOptions(tile_size=TILE),
                        Feedback(progress=progress), client=client, window_tiles=1)
    assert os.listdir(tmp_path) == []


def test_unreachable_scheduler_and_worker_without_model(tmp_path, client, capsys):
    with pytest.raises(kd.DistributedError, match="Cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        kd.connect("tcp://127.0.0.1:9", timeout_s=2)
    missing = str(tmp_path / "only-on-the-client.onnx")
    with pytest.raises(kd.DistributedError, match=r"2 of 2 Dask worker\(s\) cannot run the job.*Model file "
                                                  r"not found.*every worker sees"):
        kd.check_workers(client, missing, str(SAMPLE))


def test_restart_mid_run_fails_cleanly_or_completes(tmp_path, client):
    """``client.restart()`` mid-run (every worker restarted, every task forgotten): either the same output or a
    DistributedError that says no output was written, and then nothing is left in the folder."""
    single = segment_raster(str(SAMPLE), BUNDLED, str(tmp_path / "one.tif"), SegmentOptions(tile_size=TILE))
    restarted = []

    def progress(frac, stage):
        if not restarted:
            restarted.append(True)
            client.restart()

    try:
        dist = kd.segment_dask(str(SAMPLE), BUNDLED, str(tmp_path / "dask.tif"), SegmentOptions(tile_size=TILE),
                               Feedback(progress=progress), client=client, window_tiles=1)
    except kd.DistributedError as exc:
        assert "no output was written" in str(exc)
        assert not [f for f in os.listdir(tmp_path) if "dask" in f]
    else:
        assert_same(single, dist, tmp_path / "one.tif", tmp_path / "dask.tif")
    assert restarted
    client.wait_for_workers(2, timeout=60)
