"""core/segment/inference.py: inference in row strips equals one call, the strip size of a model, sessions
that do not spin."""

import numpy as np
import pytest
from osgeo import gdal

from conftest import ROOT, SAMPLE
from ktextures_plugin.core.io import raster
from ktextures_plugin.core.segment.inference import infer_classes, open_session, read_model_info

RGBN = [3, 2, 1, 4]  # the sample is B2,B3,B4,B8 = blue, green, red, nir


@pytest.mark.parametrize("chunk_px", [1, 700, 5000, 10 ** 7])
@pytest.mark.parametrize("model_key", ["bin4", "box4", "bundled"])
def test_strip_inference_equals_one_call(tiny_models, model_key, chunk_px):
    """infer_classes in row strips (with the model's halo) gives exactly the classes of one call."""
    model = (str(ROOT / "models" / "s2_10m_k6.onnx") if model_key == "bundled"
             else tiny_models[model_key])
    info = read_model_info(model)
    ds = gdal.Open(str(SAMPLE))
    data, _ = raster.read_window(ds, RGBN, (40, 30, 301, 257))
    x = raster.apply_scale(data, info.scale_min, info.scale_max)
    session = open_session(model)
    want = session.run(["class"], {"image": x[None]})[0][0, 0]
    got = infer_classes(session, x, info.halo_px, chunk_px=chunk_px)
    assert got.shape == want.shape == (257, 301)
    assert np.array_equal(got, want), f"{(got != want).sum()} pixels differ"


def test_strip_size_follows_the_mask_width(tiny_models):
    """Per-pixel models that record their mask width run on strips of INFER_CHUNK_VALUES // width pixels;
    context models on strips that grow with their halo; anything else on INFER_CHUNK_PX."""
    import dataclasses

    from ktextures_plugin.core.segment.inference import (
        CONTEXT_CHUNK_PX,
        INFER_CHUNK_PX,
        INFER_CHUNK_VALUES,
        chunk_px_for,
    )
    ctx = read_model_info(str(ROOT / "models" / "s2_10m_k6.onnx"))          # a context-variant model
    assert ctx.halo_px == 3 and chunk_px_for(ctx) == 2 * INFER_CHUNK_PX          # narrow halo: cache-sized
    assert chunk_px_for(dataclasses.replace(ctx, halo_px=12)) == CONTEXT_CHUNK_PX  # wide halo: thick strips
    assert chunk_px_for(dataclasses.replace(ctx, halo_px=24)) == 2 * CONTEXT_CHUNK_PX
    info = dataclasses.replace(ctx, halo_px=0, provenance=dict(ctx.provenance, variant="faithful", mask_width=16))
    width = info.provenance["mask_width"]
    assert chunk_px_for(info) == INFER_CHUNK_VALUES // width > INFER_CHUNK_PX
    assert chunk_px_for(dataclasses.replace(info, provenance=dict(info.provenance, mask_width=64))) == INFER_CHUNK_PX
    assert chunk_px_for(dataclasses.replace(info, provenance={})) == INFER_CHUNK_PX
    assert chunk_px_for(dataclasses.replace(info, halo_px=2)) == INFER_CHUNK_PX
    assert chunk_px_for(read_model_info(tiny_models["bin4"])) == INFER_CHUNK_PX


def test_sessions_do_not_spin_unless_asked():
    model = str(ROOT / "models" / "s2_10m_k6.onnx")
    key = "session.intra_op.allow_spinning"
    assert open_session(model).get_session_options().get_session_config_entry(key) == "0"
    assert open_session(model, allow_spinning=True).get_session_options().get_session_config_entry(key) == "1"


def test_context_models_run_without_the_nchwc_layout(tiny_models):
    """The context variant is opened without onnxruntime's NCHWc layout (faster, docs/benchmarks.md) and gives the
    sample the classes of onnxruntime's default optimisations; other models with a halo keep the layout."""
    import onnxruntime as ort

    from ktextures_plugin.core.segment.inference import _nchwc_slower

    model = str(ROOT / "models" / "s2_10m_k6.onnx")
    session = open_session(model)
    assert _nchwc_slower(session)
    assert not _nchwc_slower(open_session(tiny_models["box4"]))
    info = read_model_info(model, session)
    data, _ = raster.read_window(gdal.Open(str(SAMPLE)), RGBN, (0, 0, 512, 400))
    x = raster.apply_scale(data, info.scale_min, info.scale_max, info.scale_clip)[None]
    default = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    want_cls, want_scores = default.run(["class", "scores"], {"image": x})
    got_cls, got_scores = session.run(["class", "scores"], {"image": x})
    assert np.array_equal(got_cls, want_cls), f"{(got_cls != want_cls).sum()} pixels differ"
    # float32 rounding of another summation order: log densities reach thousands far from every class
    np.testing.assert_allclose(got_scores, want_scores, rtol=2e-4, atol=1e-4)
