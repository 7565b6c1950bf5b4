"""The smoothing step of segment (core/segment/smoothing.py on the model's ``scores``): tiled equals whole-raster, the
model's recommended beta, models without ``scores``."""
import numpy as np
import pytest

from conftest import SAMPLE, sample_with_nodata
from conftest import read_band as read
from ktextures_plugin.core.feedback import Feedback
from ktextures_plugin.core.io import raster
from ktextures_plugin.core.segment import SegmentOptions, segment_raster
from ktextures_plugin.core.segment.inference import open_session
from ktextures_plugin.core.segment.smoothing import DEFAULT_SWEEPS, icm_potts
from onnx_fixtures import scores_model

RGBN = [3, 2, 1, 4]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("scores_models")
    return {"pixel": scores_model(d / "s.onnx", k=4), "box": scores_model(d / "b.onnx", k=4, box=True),
            "recommends": scores_model(d / "r.onnx", k=4, smoothing_beta=1.5)}


@pytest.mark.parametrize("model_key,nodata", [("pixel", False), ("box", True)])
def test_tiled_smoothing_equals_one_whole_raster_run(tmp_path, models, model_key, nodata):
    """Tiles of 64 px (8 x 12 of them) read with the model's halo plus one pixel per sweep give exactly the
    labels of one whole-raster run, which equals icm_potts on the whole raster's -scores; the step changes
    pixels (it is not a no-op on the sample)."""
    image = str(sample_with_nodata(tmp_path, slice(280, 330), slice(250, 320)) if nodata else SAMPLE)
    model = models[model_key]
    opts = SegmentOptions(bands=RGBN, scaling="stretch", smoothing=2.0)
    tiled = segment_raster(image, model, str(tmp_path / "t.tif"), SegmentOptions(**{**opts.__dict__, "tile_size": 64}))
    whole = segment_raster(image, model, str(tmp_path / "w.tif"), SegmentOptions(**{**opts.__dict__,
                                                                                    "tile_size": 1024}))
    plain = segment_raster(image, model, str(tmp_path / "p.tif"), SegmentOptions(bands=RGBN, scaling="stretch",
                                                                                 smoothing=0))
    a, b, p = read(tmp_path / "t.tif"), read(tmp_path / "w.tif"), read(tmp_path / "p.tif")
    assert tiled.smoothing == whole.smoothing == 2.0 and plain.smoothing == 0
    assert np.array_equal(a, b), f"{int((a != b).sum())} pixels differ"
    assert (a != p).sum() > 1000 and np.array_equal(a == 0, p == 0)
    # the reference: the model's scores on the whole scaled raster, smoothed at once
    ds = raster.open_raster(image)
    data, valid = raster.read_window(ds, RGBN, (0, 0, ds.RasterXSize, ds.RasterYSize), None)
    ds = None
    raster.scale_in_place(data, tiled.scale_min, tiled.scale_max)
    data[:, ~valid] = 0.0
    scores = open_session(model).run(["scores"], {"image": data[None]})[0][0]
    ref = icm_potts(-scores, 2.0, DEFAULT_SWEEPS, None if valid.all() else valid) + 1
    assert np.array_equal(a[valid], ref[valid])


def test_the_models_recommended_beta_is_the_default(tmp_path, models):
    got = []
    res = segment_raster(str(SAMPLE), models["recommends"], str(tmp_path / "r.tif"), SegmentOptions(bands=RGBN),
                         Feedback(info=got.append))
    assert res.smoothing == 1.5 and any("Potts beta 1.5" in m for m in got)
    off = segment_raster(str(SAMPLE), models["recommends"], str(tmp_path / "o.tif"),
                         SegmentOptions(bands=RGBN, smoothing=0))
    assert off.smoothing == 0 and not np.array_equal(read(tmp_path / "r.tif"), read(tmp_path / "o.tif"))
    assert segment_raster(str(SAMPLE), models["pixel"], str(tmp_path / "n.tif"),
                          SegmentOptions(bands=RGBN)).smoothing == 0


def test_a_model_without_scores_segments_as_before_with_a_warning(tmp_path, tiny_models):
    res = segment_raster(str(SAMPLE), tiny_models["bin4"], str(tmp_path / "s.tif"),
                         SegmentOptions(bands=RGBN, smoothing=3))
    ref = segment_raster(str(SAMPLE), tiny_models["bin4"], str(tmp_path / "r.tif"), SegmentOptions(bands=RGBN))
    assert res.smoothing == 0 and any("no 'scores' output" in w for w in res.warnings)
    assert np.array_equal(read(tmp_path / "s.tif"), read(tmp_path / "r.tif")) and ref.warnings == []


def _plain_icm(costs, beta, sweeps, valid=None):
    """The textbook synchronous ICM: every pixel re-evaluated each sweep (the reference of icm_potts)."""
    from ktextures_plugin.core.segment.smoothing import neighbour_counts
    labels = np.argmin(costs, axis=0)
    for _ in range(sweeps):
        new = np.argmin(costs - np.float32(beta) * neighbour_counts(labels, costs.shape[0], valid), axis=0)
        if valid is not None:
            new = np.where(valid, new, labels)
        labels = new
    return labels


@pytest.mark.parametrize("seed,k,integer", [(0, 2, False), (1, 5, True), (2, 8, False), (3, 3, True)])
def test_icm_potts_equals_the_plain_algorithm(seed, k, integer):
    """The active-set ICM gives exactly the labels of the plain one (every pixel every sweep, no early stop), on
    noisy and on integer costs (many ties: the first class of least energy wins), with and without nodata."""
    rng = np.random.default_rng(seed)
    costs = rng.normal(size=(k, 70, 90)).astype(np.float32)
    if integer:
        costs = np.round(costs * 2).astype(np.float32)
    valid = rng.random((70, 90)) > 0.05
    valid[10:30, 20:40] = False
    for beta in (0.25, 1.0, 4.0):
        for v in (None, valid):
            assert np.array_equal(icm_potts(costs, beta, 10, v), _plain_icm(costs, beta, 10, v))
