"""Export the frozen random multi-scale CNN of the k-textures loss (:class:`features.RandomCNN`) to ONNX, so that
``novelty`` computes the same features at segment time without torch (docs/novelty.md, "Features").

    .venv/bin/python -m ktextures_plugin.training.export_features models/features_random_cnn.onnx

The graph: input ``image`` float32 (N, 4, H, W) in [0, 1] (red, green, blue, NIR, scaled as the k-textures
model scales them), H and W multiples of 16; outputs ``f0`` .. ``f4``, the post-ReLU maps of the five stages,
(N, w_i, H / 2^i, W / 2^i) with w = 32, 64, 96, 128, 128. The weights are fixed by the seed (1234, as in
training), so the file is a deterministic product of this code.
"""
from __future__ import annotations

import json
import sys

from ..core.io import atomic

#: the seed and widths of the feature CNN used by ``fit`` (``features.RandomCNN`` defaults)
SEED = 1234
WIDTHS = (32, 64, 96, 128, 128)


def export(path: str, seed: int = SEED, opset: int = 17) -> str:
    """Write the RandomCNN(seed) as ONNX to ``path`` with ``metadata_props`` naming what it is; returns path."""
    import onnx
    import torch

    from .features import RandomCNN

    net = RandomCNN(in_ch=4, widths=WIDTHS, seed=seed)
    x = torch.rand(1, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    names = [f"f{i}" for i in range(len(WIDTHS))]
    axes = {"image": {0: "n", 2: "h", 3: "w"}, **{n: {0: "n", 2: f"h{i}", 3: f"w{i}"} for i, n in enumerate(names)}}
    with atomic.atomic_output(path) as part:  # complete or absent
        torch.onnx.export(net, (x,), part.path, input_names=["image"], output_names=names, dynamic_axes=axes,
                          opset_version=opset, dynamo=False)
        model = onnx.load(part.path)
        meta = {"ktextures.features": json.dumps({"kind": "random_cnn", "seed": seed, "widths": list(WIDTHS),
                                                  "channels": ["red", "green", "blue", "nir"],
                                                  "input": "(N,4,H,W) float32 in [0,1], H,W multiples of 16"})}
        for k, v in meta.items():
            p = model.metadata_props.add()
            p.key, p.value = k, v
        onnx.save(model, part.path)
    return path


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: python -m ktextures_plugin.training.export_features OUT.onnx", file=sys.stderr)
        return 2
    print(export(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
