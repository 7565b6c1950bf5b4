"""The bundled feature CNN (models/features_random_cnn.onnx) is the k-textures loss's RandomCNN: the same maps
from onnxruntime as from torch, and re-exporting it gives the same graph outputs (the file is reproducible)."""
import numpy as np
import pytest

from ktextures_plugin.core.novelty.novelty import FEATURES_MODEL
from ktextures_plugin.core.segment.inference import open_session


def test_bundled_features_equal_the_training_random_cnn(tmp_path):
    torch = pytest.importorskip("torch")
    from ktextures_plugin.training.export_features import SEED, WIDTHS, export
    from ktextures_plugin.training.features import RandomCNN

    x = np.random.default_rng(0).random((2, 4, 64, 96), dtype=np.float32)
    want = [f.numpy() for f in RandomCNN(4, WIDTHS, SEED)(torch.from_numpy(x))]
    got = open_session(FEATURES_MODEL).run(None, {"image": x})
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)
    again = open_session(export(str(tmp_path / "f.onnx"))).run(None, {"image": x})
    for g, a in zip(got, again):
        np.testing.assert_allclose(g, a, rtol=1e-5, atol=1e-5)
