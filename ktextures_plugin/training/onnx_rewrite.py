"""Rewrite an exported k-textures graph into an equivalent one that onnxruntime runs faster on a CPU.

onnxruntime's CPU ``Elu`` kernel is scalar (Eigen, no MLAS kernel) and about ten times slower than ``Exp`` or
``Relu``, so the two ELUs of the per-pixel mask network (docs/method.md §3.1) took about half of ``segment``'s
inference time (figures: docs/benchmarks.md, "ELU rewrite"). Every ``Elu`` with ``alpha`` in (0, 1] is replaced by

    ELU(h) = Max(h, alpha * (Exp(Min(h, 0)) - 1))

which is exact in real arithmetic: for h > 0 the second term is 0 < h; for h <= 0, ``alpha*(e^h - 1) >= h``
(since ``e^h >= 1 + h`` and ``alpha <= 1``). In float32 the two forms differ by at most a few ulps, so a class
flips only where the mask score sits on a bin edge (``tests/training/test_training.py`` checks the parity).

Command line (rewrites each file in place, atomically; a file without ``Elu`` is left untouched)::

    python -m ktextures_plugin.training.onnx_rewrite models/*.onnx

Only the ``onnx`` package and numpy are needed (not torch).
"""
from __future__ import annotations

import os
import sys
from typing import List, Sequence

from ..core.io import atomic


def rewrite_elu(proto) -> int:
    """Replace, in place, each ``Elu`` node (0 < alpha <= 1) of ``proto.graph`` by Min-Exp-Sub(-Mul)-Max.

    Args:
        proto: an ``onnx.ModelProto``.

    Returns:
        The number of ``Elu`` nodes replaced (0: nothing changed).
    """
    import numpy as np
    from onnx import helper, numpy_helper

    g = proto.graph
    names = {i.name for i in g.initializer} | {o for n in g.node for o in n.output}
    new_nodes: List = []
    count = 0
    consts = {}

    def const(value: float) -> str:
        if value not in consts:
            name = f"elu_rewrite_const_{len(consts)}"
            while name in names:
                name += "_"
            g.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
            names.add(name)
            consts[value] = name
        return consts[value]

    for node in g.node:
        alpha = next((a.f for a in node.attribute if a.name == "alpha"), 1.0)
        if node.op_type != "Elu" or node.domain not in ("", "ai.onnx") or not 0.0 < alpha <= 1.0:
            new_nodes.append(node)
            continue
        h, y = node.input[0], node.output[0]
        p = f"{node.name or 'elu'}_{count}_"
        neg = p + "exp_minus_1"
        new_nodes += [helper.make_node("Clip", [h, "", const(0.0)], [p + "min0"], name=p + "min0"),
                      helper.make_node("Exp", [p + "min0"], [p + "exp"], name=p + "exp"),
                      helper.make_node("Sub", [p + "exp", const(1.0)], [neg], name=p + "sub1")]
        if alpha != 1.0:
            new_nodes.append(helper.make_node("Mul", [neg, const(alpha)], [p + "scaled"], name=p + "alpha"))
            neg = p + "scaled"
        new_nodes.append(helper.make_node("Max", [h, neg], [y], name=p + "max"))
        count += 1
    if count:
        del g.node[:]
        g.node.extend(new_nodes)
    return count


def load_model(path: str):
    """``onnx.load`` of ``path`` with every failure as a :class:`~ktextures_plugin.core.errors.ModelError`
    naming the file: missing, empty, not an ONNX protobuf (text, pickle, truncated), no graph, or external data
    outside the model's folder (which the onnx package refuses to read).

    Returns:
        The ``onnx.ModelProto``.
    """
    import onnx

    from ..core.errors import ModelError

    if not os.path.isfile(path):
        raise ModelError(f"Model file not found: '{path}'. Give an existing .onnx file.", parameter="model")
    if os.path.getsize(path) == 0:
        raise ModelError(f"'{path}' is empty (0 bytes), not an ONNX model: re-export or re-download it.",
                         parameter="model")
    try:
        proto = onnx.load(path)
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError, onnx ValidationError, OSError, ...
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"Cannot read '{path}' as an ONNX model ({type(exc).__name__}: {detail}). The file is "
                         "corrupt, not ONNX, or its external data lies outside its folder: re-export or "
                         "re-download it.", parameter="model") from None
    if not proto.graph.node:
        raise ModelError(f"'{path}' holds no ONNX graph (no nodes): it is not a model; re-export or re-download "
                         "it.", parameter="model")
    return proto


def rewrite_file(path: str) -> int:
    """Apply :func:`rewrite_elu` to the ONNX file ``path`` in place (temp file, check, rename).

    Returns:
        The number of ``Elu`` nodes replaced (0: the file was not touched).

    Raises:
        ModelError: the file is missing, empty, not ONNX or unreadable (:func:`load_model`), or the rewritten
            graph fails ``onnx.checker`` (the original file is kept).
    """
    import onnx

    from ..core.errors import ModelError

    proto = load_model(path)
    n = rewrite_elu(proto)
    if not n:
        return 0
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # noqa: BLE001 - onnx.checker.ValidationError
        raise ModelError(f"'{path}': the rewritten graph fails the ONNX checker ({str(exc).splitlines()[0][:300]}); "
                         "the file was left as it was.", parameter="model") from None
    with atomic.atomic_output(path) as part:
        onnx.save(proto, part.path)
    return n


def main(argv: Sequence[str] = ()) -> int:
    paths = list(argv) or sys.argv[1:]
    if not paths:
        print("usage: python -m ktextures_plugin.training.onnx_rewrite MODEL.onnx [...]", file=sys.stderr)
        return 2
    from ..core.errors import CoreError

    status = 0
    for p in paths:
        try:
            print(f"{p}: {rewrite_file(p)} Elu node(s) rewritten")
        except CoreError as exc:  # one line per bad file, the others are still rewritten
            print(f"error: {exc}", file=sys.stderr)
            status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
