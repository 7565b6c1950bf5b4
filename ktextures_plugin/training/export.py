"""Export a trained :class:`~.model.KTextures` to the k-textures ONNX contract (models/README.md, docs/method.md §7).

Graph: input ``image`` float32 (N,C,H,W) with N, H, W dynamic (channels scaled to [0, 1]);
outputs ``class`` int64 (N,1,H,W), ``textures`` float32 (k,C,P,P), a constant, and for the spatial and context
variants ``scores`` float32 (N,k,H,W), the class logits (larger = more likely; ``class`` is their argmax), with
the Potts weight for them in the metadata ``ktextures.smoothing_beta`` (segment's smoothing step). The mask network runs
with BatchNorm in inference mode (running statistics; recalibrated by the trainer, docs/method.md §6). The faithful
class is ``k-1 - clamp(floor(k*s), 0, k-1)`` (the argmax of the masks of docs/method.md §3.1); the spatial class
is the argmax
of the k logits.

The file is written to a hidden partial file beside ``out`` first (:func:`core.io.atomic.atomic_output`), validated
(onnx checker + :func:`core.segment.inference.read_model_info`) and only then renamed onto ``out``.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from typing import Dict, Optional, Sequence

import torch
from torch import nn

from ..core.io import atomic, modelinfo
from ..core.segment import inference
from . import onnx_rewrite
from .model import KTextures, bin_index

OPSET = 17


class _ExportGraph(nn.Module):
    """image (N,C,H,W) -> (class (N,1,H,W) int64, textures (k,C,P,P) float32[, scores (N,k,H,W) float32])."""

    def __init__(self, model: KTextures, textures: torch.Tensor):
        super().__init__()
        net = model.mask_net
        self.mask_net = net.folded_copy() if hasattr(net, "folded_copy") else net
        self.k = model.k
        self.variant = model.variant
        self.register_buffer("tex", textures.detach().clone().float())

    @property
    def has_scores(self) -> bool:
        return self.variant != "faithful"

    def forward(self, image: torch.Tensor):
        out = self.mask_net(image)
        if self.variant == "faithful":
            return bin_index(out, self.k), self.tex
        return torch.argmax(out, dim=1, keepdim=True), self.tex, out


def _to_onnx_bytes(graph: nn.Module, in_ch: int) -> bytes:
    dummy = torch.rand(1, in_ch, 32, 32)
    buf = io.BytesIO()
    names = [modelinfo.OUTPUT_CLASS, modelinfo.OUTPUT_TEXTURES]
    axes = {modelinfo.INPUT_NAME: {0: "N", 2: "H", 3: "W"}, modelinfo.OUTPUT_CLASS: {0: "N", 2: "H", 3: "W"}}
    if graph.has_scores:
        names.append(modelinfo.OUTPUT_SCORES)
        axes[modelinfo.OUTPUT_SCORES] = {0: "N", 2: "H", 3: "W"}
    kwargs = dict(input_names=[modelinfo.INPUT_NAME], output_names=names, dynamic_axes=axes,
                  opset_version=OPSET, do_constant_folding=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(graph, (dummy,), buf, dynamo=False, **kwargs)
        except TypeError:  # very old torch without the dynamo switch
            torch.onnx.export(graph, (dummy,), buf, **kwargs)
    return buf.getvalue()


def _textures_as_output(proto) -> None:
    """Make sure ``textures`` is produced by a node (some runtimes reject an initializer used as output)."""
    import onnx
    from onnx import helper

    g = proto.graph
    produced = {o for n in g.node for o in n.output}
    name = modelinfo.OUTPUT_TEXTURES
    if name in produced:
        return
    init_names = {i.name for i in g.initializer}
    if name in init_names:
        for init in g.initializer:
            if init.name == name:
                init.name = name + "_const"
        g.node.append(helper.make_node("Identity", [name + "_const"], [name], name="textures_identity"))
    onnx.checker.check_model(proto)


def export_onnx(model: KTextures, textures: torch.Tensor, out_path: str, scale_min: Sequence[float],
                scale_max: Sequence[float], *, title: str = "", provenance: Optional[Dict] = None,
                channel_names: Sequence[str] = modelinfo.RGBN, class_names: Sequence[str] = (),
                fast_elu: bool = True, smoothing_beta: Optional[float] = None,
                scale_clip: bool = True) -> modelinfo.ModelInfo:
    """Write ``model`` as a k-textures ONNX file and return its validated :class:`ModelInfo`.

    Args:
        model: trained model (switched to eval mode here).
        textures: (k,C,P,P) float32 in [0, 1], the textures to ship (as trained, docs/method.md §4).
        out_path: destination ``.onnx``; replaced atomically only after validation.
        scale_min, scale_max: per-channel raw values mapped to 0 and 1 (2-98 % percentiles).
        title: ``ktextures.title``.
        provenance: free-form dict stored in ``ktextures.provenance``.
        fast_elu: replace each ``Elu`` by the equivalent Min-Exp-Sub-Max (:mod:`.onnx_rewrite`; about 2x faster
            inference with onnxruntime on CPU). False keeps torch's plain ``Elu`` nodes.
        smoothing_beta: written as ``ktextures.smoothing_beta`` (models with a ``scores`` output only).
        scale_clip: ``ktextures.input_scale`` "clip": whether segment clips the scaled input to [0, 1].

    Raises:
        modelinfo.ModelError: the written file does not pass ``read_model_info`` (a bug; nothing is left behind).
    """
    import onnx

    model.eval()
    graph = _ExportGraph(model, textures).eval()
    proto = onnx.load_from_string(_to_onnx_bytes(graph, model.in_ch))
    _textures_as_output(proto)
    if fast_elu:
        onnx_rewrite.rewrite_elu(proto)
    meta = modelinfo.to_metadata_props(
        model.k, list(channel_names), scale_min, scale_max, halo_px=model.halo_px, class_names=class_names,
        texture_period_px=int(textures.shape[-1]), title=title, provenance=provenance or {},
        scale_clip=scale_clip)
    if smoothing_beta is not None and graph.has_scores:
        meta[modelinfo.K_SMOOTHING_BETA] = json.dumps(float(smoothing_beta))
    del proto.metadata_props[:]
    for key, val in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, val
    proto.producer_name = "ktextures_plugin.training"
    onnx.checker.check_model(proto)
    out_path = str(out_path)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    with atomic.atomic_output(out_path) as part:
        onnx.save(proto, part.path)
        info = inference.read_model_info(part.path)
    info.path = out_path
    return info

