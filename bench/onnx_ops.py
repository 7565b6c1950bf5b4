"""Why the exported graph writes ELU as Min-Exp-Sub-Max, and why per-pixel models run without NCHWc.

Usage (from the repository root, on an otherwise idle machine):

    .venv/bin/python bench/onnx_ops.py [--repeats 5]

1. Throughput of single onnxruntime CPU element-wise ops on a (1, 64, 1, 65536) float32 tensor (64 channels,
   as the mask network's hidden layers), in Mpx/s (pixels of 64 channels per second).
2. A model's inference on 16384-pixel strips (as ``core.segment.inference.infer_classes`` calls it), in Mpx/s: a
   2-step k = 6 fit of the default (faithful, per-pixel) and of the spatial variant, each exported with torch's
   plain ``Elu`` and with the rewrite (``ktextures_plugin.training.onnx_rewrite``), each run with
   onnxruntime's default graph optimisations and with its ``NchwcTransformer`` disabled.

3. ``--int8 [--model M]``: a per-pixel model (default the bundled k = 6) against the same model with its hidden
   (second) convolution
   quantized to int8 by onnxruntime's static quantizer (QDQ, per-channel int8 weights, uint8 activations,
   min-max calibration on the bundled sample): Mpx/s on the same strips, and how many of the sample's pixels
   change class.

Medians over ``--repeats``; 2 intra-op threads. Prints Markdown tables for docs/benchmarks.md.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def _session(model_bytes, disabled=()):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(disabled))


def _rate(run, pixels, repeats, calls):
    run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            run()
        times.append((time.perf_counter() - t) / calls)
    return pixels / statistics.median(times) / 1e6


def op_table(repeats):
    from onnx import TensorProto, helper, numpy_helper
    p = 65536
    x = np.random.default_rng(0).standard_normal((1, 64, 1, p)).astype(np.float32)
    zero = numpy_helper.from_array(np.array(0.0, np.float32), "zero")
    ops = {"Elu": [helper.make_node("Elu", ["x"], ["y"])],
           "Exp": [helper.make_node("Exp", ["x"], ["y"])],
           "Relu": [helper.make_node("Relu", ["x"], ["y"])],
           "Clip (max 0)": [helper.make_node("Clip", ["x", "", "zero"], ["y"])],
           "Sub (scalar)": [helper.make_node("Sub", ["x", "zero"], ["y"])],
           "Max (two tensors)": [helper.make_node("Max", ["x", "x"], ["y"])],
           "Add (two tensors)": [helper.make_node("Add", ["x", "x"], ["y"])]}
    print("| op | Mpx/s (64 channels) |\n|---|---|")
    for name, nodes in ops.items():
        g = helper.make_graph(nodes, "op", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [zero])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        s = _session(m.SerializeToString())
        print(f"| {name} | {_rate(lambda s=s: s.run(None, {'x': x}), p, repeats, 30):.1f} |", flush=True)


def _fitted(variant, d):
    """(plain Elu, rewritten) ONNX bytes of a 2-step k = 6 fit on the bundled sample (speed does not depend on
    how well the weights are trained)."""
    import torch

    from ktextures_plugin.training.export import export_onnx
    from ktextures_plugin.training.train import FitConfig, train_model
    torch.manual_seed(0)
    r = train_model(os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif"), "3,2,1,4",
                    FitConfig(k=6, variant=variant, steps=2, batch_size=2, recal_tiles=4))
    out = []
    for fast in (False, True):
        path = os.path.join(d, f"{variant}_{fast}.onnx")
        export_onnx(r.model, r.textures, path, r.scale_min, r.scale_max, fast_elu=fast)
        out.append(open(path, "rb").read())
    return out


def model_table(repeats):
    x = np.random.default_rng(0).random((1, 4, 8, 2048), dtype=np.float32)   # one 16384-pixel strip
    print("| model | graph | onnxruntime optimisations | Mpx/s |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        for variant, label in [("faithful", "faithful (1x1, width 64, halo 0)"),
                               ("spatial", "spatial (3x3, halo 2)")]:
            for graph, model in zip(("plain Elu", "Min-Exp-Sub-Max"), _fitted(variant, d)):
                for opt, disabled in [("all (default)", ()), ("all but NchwcTransformer", ("NchwcTransformer",))]:
                    s = _session(model, disabled)
                    rate = _rate(lambda s=s: s.run(["class"], {"image": x}), x.shape[2] * x.shape[3], repeats, 60)
                    print(f"| {label} | {graph} | {opt} | {rate:.1f} |", flush=True)


SAMPLE = os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif")
BUNDLED_K6 = os.path.join(ROOT, "models", "s2_10m_k6.onnx")


def _sample_scaled(info):
    """The bundled sample as the model sees it: (1, 4, H, W) float32 in [0, 1] (the model's own scaling)."""
    from osgeo import gdal

    from ktextures_plugin.core.io.raster import apply_scale
    ds = gdal.Open(SAMPLE)
    x = np.stack([ds.GetRasterBand(b).ReadAsArray().astype(np.float32) for b in (3, 2, 1, 4)])
    ds = None
    return apply_scale(x, info.scale_min, info.scale_max)[None]


def int8_table(repeats, model=BUNDLED_K6):
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from ktextures_plugin.core.segment.inference import read_model_info
    info = read_model_info(model)
    hidden = [n.name for n in onnx.load(model).graph.node if n.op_type == "Conv"][1]
    x = _sample_scaled(info)

    class Rows(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"image": x[:, :, r:r + 64]} for r in range(0, x.shape[2], 64)])

        def get_next(self):
            return next(self._it, None)

    strip = np.ascontiguousarray(x.reshape(1, 4, 1, -1)[:, :, :, :16384])
    width = info.provenance.get("mask_width", 64)
    print(f"| {os.path.basename(model)} (width {width}) on 16384-pixel strips | Mpx/s | sample pixels changing "
          "class |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as d:
        q = os.path.join(d, "int8.onnx")
        quantize_static(model, q, Rows(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_quantize=[hidden])
        ref = None
        for label, path in [("float32 (what `segment` runs)", model), ("int8 hidden convolution", q)]:
            s = _session(open(path, "rb").read(), ("NchwcTransformer",))
            classes = s.run(["class"], {"image": x})[0]
            ref = classes if ref is None else ref
            changed = int((classes != ref).sum())
            rate = _rate(lambda s=s: s.run(["class"], {"image": strip}), strip.shape[3], repeats, 60)
            print(f"| {label} | {rate:.1f} | {changed} of {classes.size} ({100 * changed / classes.size:.2f} %) |",
                  flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--int8", action="store_true", help="only the int8 quantization table")
    ap.add_argument("--model", default=BUNDLED_K6, help="the model of the --int8 table")
    args = ap.parse_args()
    if args.int8:
        int8_table(args.repeats, args.model)
        return
    op_table(args.repeats)
    print()
    model_table(args.repeats)


if __name__ == "__main__":
    main()
