"""Tiny ONNX graphs for plumbing tests (built with onnx.helper; no training involved).

``binning_model``: per-pixel, class = k-1-clip(floor(k * mean(channels)), 0, k-1), like the faithful
k-textures head on a fixed score; ``box_model``: the same on a 3x3 box-filtered score (receptive-field
halo 1 px), to test overlap and centre-crop. Both also output constant ``textures`` (k,C,P,P).
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ktextures_plugin.core.io.modelinfo import to_metadata_props

RGBN = ["red", "green", "blue", "nir"]


def _model(path, k, channels, box, scale_min, scale_max, textures, title, with_textures=True,
           metadata=True, class_colors=()):
    c = len(channels)
    nodes, inits = [], []
    nodes.append(helper.make_node("ReduceMean", ["image"], ["score0"], axes=[1], keepdims=1))
    if box:
        w = np.full((1, 1, 3, 3), 1 / 9.0, np.float32)
        inits.append(numpy_helper.from_array(w, "boxw"))
        nodes.append(helper.make_node("Conv", ["score0", "boxw"], ["score"], pads=[1, 1, 1, 1]))
    else:
        nodes.append(helper.make_node("Identity", ["score0"], ["score"]))
    inits += [numpy_helper.from_array(np.array(k, np.float32), "kf"),
              numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
              numpy_helper.from_array(np.array(k - 1, np.float32), "km1")]
    nodes += [helper.make_node("Mul", ["score", "kf"], ["ks"]),
              helper.make_node("Floor", ["ks"], ["fl"]),
              helper.make_node("Clip", ["fl", "zero", "km1"], ["bin"]),
              helper.make_node("Sub", ["km1", "bin"], ["clsf"]),
              helper.make_node("Cast", ["clsf"], ["class"], to=TensorProto.INT64)]
    outputs = [helper.make_tensor_value_info("class", TensorProto.INT64, ["N", 1, "H", "W"])]
    if with_textures:
        inits.append(numpy_helper.from_array(textures.astype(np.float32), "tex"))
        nodes.append(helper.make_node("Identity", ["tex"], ["textures"]))
        outputs.append(helper.make_tensor_value_info("textures", TensorProto.FLOAT, list(textures.shape)))
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info(
        "image", TensorProto.FLOAT, ["N", c, "H", "W"])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        props = to_metadata_props(k, channels, scale_min, scale_max, halo_px=1 if box else 0,
                                  texture_period_px=textures.shape[-1] if with_textures else 0,
                                  title=title, provenance={"note": "test fixture"}, class_colors=class_colors)
        for key, v in props.items():
            model.metadata_props.add(key=key, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def binning_model(path, k=4, channels=RGBN, scale_min=(0, 0, 0, 0), scale_max=(3000, 3000, 3000, 5000),
                  period=16, **kw):
    rng = np.random.default_rng(0)
    tex = rng.random((k, len(channels), period, period)).astype(np.float32)
    return _model(path, k, list(channels), False, scale_min, scale_max, tex, f"test binning k = {k}", **kw)


def box_model(path, k=4, channels=RGBN, scale_min=(0, 0, 0, 0), scale_max=(3000, 3000, 3000, 5000), **kw):
    tex = np.zeros((k, len(channels), 8, 8), np.float32)
    return _model(path, k, list(channels), True, scale_min, scale_max, tex, f"test box k = {k}", **kw)


def scores_model(path, k=4, channels=RGBN, scale_min=(0, 0, 0, 0), scale_max=(3000, 3000, 3000, 5000), box=False,
                 smoothing_beta=None):
    """A model with a ``scores`` output (N, k, H, W): score_c = -(k * mean(channels) - (c + 0.5))^2 (on a 3x3
    box-filtered mean with ``box``, halo 1 px), and ``class`` = its argmax; ``smoothing_beta`` is written as
    ``ktextures.smoothing_beta`` when given."""
    from ktextures_plugin.core.io.modelinfo import K_SMOOTHING_BETA

    c = len(channels)
    inits = [numpy_helper.from_array(np.array(k, np.float32), "kf"),
             numpy_helper.from_array((np.arange(k, dtype=np.float32) + 0.5).reshape(1, k, 1, 1), "centres")]
    nodes = [helper.make_node("ReduceMean", ["image"], ["m0"], axes=[1], keepdims=1)]
    if box:
        inits.append(numpy_helper.from_array(np.full((1, 1, 3, 3), 1 / 9.0, np.float32), "boxw"))
        nodes.append(helper.make_node("Conv", ["m0", "boxw"], ["m"], pads=[1, 1, 1, 1]))
    else:
        nodes.append(helper.make_node("Identity", ["m0"], ["m"]))
    nodes += [helper.make_node("Mul", ["m", "kf"], ["km"]),
              helper.make_node("Sub", ["km", "centres"], ["d"]),
              helper.make_node("Mul", ["d", "d"], ["d2"]),
              helper.make_node("Neg", ["d2"], ["scores"]),
              helper.make_node("ArgMax", ["scores"], ["class"], axis=1, keepdims=1)]
    outputs = [helper.make_tensor_value_info("class", TensorProto.INT64, ["N", 1, "H", "W"]),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", k, "H", "W"])]
    graph = helper.make_graph(nodes, "tiny_scores", [helper.make_tensor_value_info(
        "image", TensorProto.FLOAT, ["N", c, "H", "W"])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = to_metadata_props(k, list(channels), scale_min, scale_max, halo_px=1 if box else 0,
                              title=f"test scores k = {k}", provenance={"note": "test fixture"})
    if smoothing_beta is not None:
        props[K_SMOOTHING_BETA] = str(float(smoothing_beta))
    for key, v in props.items():
        model.metadata_props.add(key=key, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)
