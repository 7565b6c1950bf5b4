"""The bundled models: present, valid k-textures ONNX, titled as the MODEL list says, real products of
the training code (provenance), and they segment the bundled sample into k used classes."""
import os
import re

import pytest

from conftest import SAMPLE
from ktextures_plugin import BUNDLED_MODELS, bundled_model_path
from ktextures_plugin.core.io.modelinfo import RGBN
from ktextures_plugin.core.segment import segment_raster
from ktextures_plugin.core.segment.inference import read_model_info


@pytest.mark.parametrize("index", range(len(BUNDLED_MODELS)))
def test_bundled_model_matches_its_entry(index, tmp_path):
    path = bundled_model_path(index)
    assert os.path.exists(path), f"{path} missing"
    info = read_model_info(path)
    fname, title = BUNDLED_MODELS[index]
    assert info.title == title
    assert info.num_classes == int(re.search(r"k = (\d+)", title).group(1))
    assert info.channel_names == list(RGBN) and info.scale_min and info.has_textures
    for key in ("steps", "seed", "features", "variant", "code_version", "data"):
        assert key in info.provenance, key
    res = segment_raster(str(SAMPLE), path, str(tmp_path / "c.tif"))
    frac = res.counts / res.counts.sum()
    assert (frac > 0).sum() >= info.num_classes - 1, frac  # classes are used ...
    assert frac.max() < 0.7, frac  # ... and none swallows the image
    assert res.bands == [3, 2, 1, 4]


@pytest.mark.parametrize("index", range(len(BUNDLED_MODELS)))
def test_bundled_model_is_in_the_fast_elu_form(index):
    """The bundled files were rewritten by training/onnx_rewrite.py: no scalar Elu kernel at segment time."""
    onnx = pytest.importorskip("onnx")
    ops = [n.op_type for n in onnx.load(bundled_model_path(index)).graph.node]
    n_elu = 1 if read_model_info(bundled_model_path(index)).provenance.get("variant") == "context" else 2
    assert "Elu" not in ops and ops.count("Exp") == n_elu, ops


@pytest.mark.parametrize("index", range(len(BUNDLED_MODELS)))
def test_bundled_models_are_fits_of_the_default(index):
    """The bundled models are refitted whenever fit's default variant changes."""
    from ktextures_plugin.training.defaults import DEFAULT_VARIANT
    assert read_model_info(bundled_model_path(index)).provenance["variant"] == DEFAULT_VARIANT
