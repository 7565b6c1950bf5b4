"""The k-textures ONNX model contract: reading and validating ``metadata_props``.

The contract is written down in ``models/README.md``; this module is its single implementation on the
reading side (the exporter in ``ktextures_plugin.training.export`` writes the same keys). Keys follow
``models/README.md``: our own namespaced ``ktextures.*`` keys, plus the Deepness/GeoDeep
keys ``model_type`` and ``class_names`` so that those tools can open our models and we can read theirs.

Every value in ``metadata_props`` is a JSON-encoded string. This module only parses and checks; it opens no
session (``inference.read_model_info`` opens one and calls :func:`info_from_session`).
"""
from __future__ import annotations

import ast
import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..errors import ModelError

SCHEMA_VERSION = 1

#: Channel names the k-textures models use, in the paper's order (docs/method.md §2).
RGBN = ("red", "green", "blue", "nir")
#: The true-colour channels.
RGB = RGBN[:3]

# metadata_props keys
K_SCHEMA = "ktextures.schema_version"
K_NUM_CLASSES = "ktextures.num_classes"
K_CHANNELS = "ktextures.channel_names"
K_SCALE = "ktextures.input_scale"
K_HALO = "ktextures.halo_px"
K_COLORS = "ktextures.class_colors"
K_TEXTURE_PERIOD = "ktextures.texture_period_px"
K_NODATA_FILL = "ktextures.nodata_fill"
K_GLOBAL = "ktextures.global_labels"
K_OUTPUT_KIND = "ktextures.output_kind"
K_PROVENANCE = "ktextures.provenance"
K_TITLE = "ktextures.title"
#: optional: the Potts beta the model recommends for the smoothing step (segment --smoothing; models/README.md)
K_SMOOTHING_BETA = "ktextures.smoothing_beta"
DEEPNESS_MODEL_TYPE = "model_type"
DEEPNESS_CLASS_NAMES = "class_names"

#: Bounds of the metadata values, checked before anything is allocated from them: k (a class raster holds
#: 0 = nodata and 1..k in one byte), channels, halo and texture side in pixels.
MAX_CLASSES = 255
MAX_CHANNELS = 64
MAX_HALO_PX = 1024
MAX_TEXTURE_PERIOD_PX = 1024

INPUT_NAME = "image"
OUTPUT_CLASS = "class"
OUTPUT_TEXTURES = "textures"
OUTPUT_SCORES = "scores"


@dataclass
class ModelInfo:
    """What the plugin needs to know about a k-textures ONNX model.

    Attributes:
        path: the ``.onnx`` file.
        num_classes: k, the number of hard classes; the model's ``class`` output holds 0..k-1.
        channel_names: names of the input channels in the model's order, e.g. ``["red","green","blue","nir"]``.
        scale_min, scale_max: per-channel raw values mapped to 0 and 1, one float per channel.
            ``None`` when the model carries no scaling (then the caller must use ``stretch``).
        scale_clip: whether the scaled values are clipped to [0, 1] (``"clip"`` of the input scale, default
            true; false for models trained on the unclipped scale, such as the Gaussian-mixture warm start).
        halo_px: receptive-field halo in pixels; tiles overlap by ``2*halo_px`` and are centre-cropped.
        class_names: k names, index = class index 0..k-1.
        class_colors: k ``"#rrggbb"`` colours, or ``None`` (then colours come from the image).
        texture_period_px: side of the square textures in pixels (the ``textures`` output), or 0.
        nodata_fill: value (after scaling) fed to the model for invalid pixels.
        title: a readable name, e.g. "Sentinel-2 10 m, k = 6".
        provenance: free-form dict (data, steps, seed, feature extractor, variant, code version).
        outputs: the graph's output names.
        raw: every ``metadata_props`` entry, undecoded.
    """

    path: str
    num_classes: int
    channel_names: List[str]
    scale_min: Optional[List[float]]
    scale_max: Optional[List[float]]
    halo_px: int = 0
    scale_clip: bool = True
    class_names: List[str] = field(default_factory=list)
    class_colors: Optional[List[str]] = None
    texture_period_px: int = 0
    nodata_fill: float = 0.0
    title: str = ""
    provenance: Dict = field(default_factory=dict)
    outputs: List[str] = field(default_factory=list)
    raw: Dict[str, str] = field(default_factory=dict)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def has_textures(self) -> bool:
        return OUTPUT_TEXTURES in self.outputs and self.texture_period_px > 0


def _decode(value: str):
    """JSON first, then a Python literal (Deepness writes int-keyed dicts), then the plain string."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        pass
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _names_from_mapping(value, k: int, what: str, path: str) -> List[str]:
    if isinstance(value, dict):
        try:
            items = {int(key): str(v) for key, v in value.items()}
        except ValueError as exc:
            raise ModelError(f"{path}: '{what}' keys must be class indices 0..{k - 1}: {exc}") from None
        if sorted(items) != list(range(k)):
            raise ModelError(f"{path}: '{what}' must name classes 0..{k - 1} exactly, got keys {sorted(items)}")
        return [items[i] for i in range(k)]
    if isinstance(value, (list, tuple)) and len(value) == k:
        return [str(v) for v in value]
    raise ModelError(f"{path}: '{what}' must be a dict or a list of {k} entries, got {value!r}")


def _integer(value, key: str, path: str, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi`` (a whole float such as 6.0 too), else a :class:`ModelError` naming
    the key and the bounds."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ModelError(f"{path}: '{key}' must be an integer in {lo}..{hi}, got {value!r}. Fix the model's "
                         "metadata (models/README.md) or re-export it.", parameter="model")
    return value


def _number(value, key: str, path: str) -> float:
    """``value`` as a finite float, else a :class:`ModelError` naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ModelError(f"{path}: '{key}' must be a finite number, got {value!r}. Fix the model's metadata "
                         "(models/README.md) or re-export it.", parameter="model")
    return float(value)


def parse_metadata(meta: Dict[str, str], path: str = "model", outputs: Sequence[str] = ()) -> ModelInfo:
    """Build a :class:`ModelInfo` from ``metadata_props`` (str -> JSON str).

    Raises:
        ModelError: when k or the channel list is missing or inconsistent; the message says which key.
    """
    dec = {key: _decode(v) for key, v in meta.items()}
    if K_NUM_CLASSES not in dec:
        if DEEPNESS_CLASS_NAMES in dec:
            names = dec[DEEPNESS_CLASS_NAMES]
            k = len(names) if isinstance(names, (dict, list)) else 0
        else:
            raise ModelError(
                f"{path} has no k-textures metadata (no '{K_NUM_CLASSES}' in metadata_props). "
                "Export the model with 'python -m ktextures_plugin fit' or add the keys listed in models/README.md.")
    else:
        k = dec[K_NUM_CLASSES]
    k = _integer(k, K_NUM_CLASSES, path, 2, MAX_CLASSES)
    channels = dec.get(K_CHANNELS)
    if not isinstance(channels, list) or not channels or len(channels) > MAX_CHANNELS:
        raise ModelError(f"{path}: '{K_CHANNELS}' must list the input channels in order (1..{MAX_CHANNELS}), "
                         f"e.g. {list(RGBN)}", parameter="model")
    channels = [str(c).lower() for c in channels]
    scale_min = scale_max = None
    scale_clip = True
    scale = dec.get(K_SCALE)
    if scale is not None:
        if not (isinstance(scale, dict) and len(scale.get("min", [])) == len(channels)
                and len(scale.get("max", [])) == len(channels)):
            raise ModelError(f"{path}: '{K_SCALE}' must be {{\"min\": [...], \"max\": [...]}} "
                             f"with one value per channel ({len(channels)})")
        scale_min = [_number(v, K_SCALE, path) for v in scale["min"]]
        scale_max = [_number(v, K_SCALE, path) for v in scale["max"]]
        if any(hi <= lo for lo, hi in zip(scale_min, scale_max)):
            raise ModelError(f"{path}: '{K_SCALE}' needs max > min for every channel")
        if not isinstance(scale.get("clip", True), bool):
            raise ModelError(f"{path}: '{K_SCALE}' \"clip\" must be true or false")
        scale_clip = scale.get("clip", True)
    if DEEPNESS_CLASS_NAMES in dec:
        class_names = _names_from_mapping(dec[DEEPNESS_CLASS_NAMES], k, DEEPNESS_CLASS_NAMES, path)
    else:
        class_names = [f"texture {i + 1}" for i in range(k)]
    colors = dec.get(K_COLORS)
    if colors is not None:
        colors = _names_from_mapping(colors, k, K_COLORS, path)
    halo = _integer(dec.get(K_HALO, 0), K_HALO, path, 0, MAX_HALO_PX)
    prov = dec.get(K_PROVENANCE, {})
    return ModelInfo(
        path=path, num_classes=k, channel_names=channels, scale_min=scale_min, scale_max=scale_max,
        halo_px=halo, scale_clip=scale_clip, class_names=class_names, class_colors=colors,
        texture_period_px=_integer(dec.get(K_TEXTURE_PERIOD, 0) or 0, K_TEXTURE_PERIOD, path, 0,
                                   MAX_TEXTURE_PERIOD_PX),
        nodata_fill=_number(dec.get(K_NODATA_FILL, 0.0), K_NODATA_FILL, path),
        title=str(dec.get(K_TITLE, "") or os.path.splitext(os.path.basename(path))[0]),
        provenance=prov if isinstance(prov, dict) else {"note": prov},
        outputs=list(outputs), raw=dict(meta))


def info_from_session(session, path: str) -> ModelInfo:
    """Read and validate the metadata and the signature of a k-textures model through an open session.

    Args:
        session: an ``onnxruntime.InferenceSession`` on the model (``inference.open_session``).
        path: the ``.onnx`` file, for the messages.

    Raises:
        ModelError: no k-textures metadata, or an input that is not (N,C,H,W) float32 with C = the number of
            declared channels, or no ``class`` output.
    """
    meta = session.get_modelmeta().custom_metadata_map
    outputs = [o.name for o in session.get_outputs()]
    info = parse_metadata(meta, path, outputs)
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelError(f"{path}: a k-textures model has exactly one input ('{INPUT_NAME}'), found {len(inputs)}")
    shape = inputs[0].shape
    if len(shape) != 4 or inputs[0].type != "tensor(float)":
        raise ModelError(f"{path}: the input must be float32 (N,C,H,W), found {inputs[0].type} {shape}")
    if isinstance(shape[1], int) and shape[1] != info.num_channels:
        raise ModelError(f"{path}: the input has {shape[1]} channels but '{K_CHANNELS}' lists "
                         f"{info.num_channels}")
    if OUTPUT_CLASS not in outputs:
        raise ModelError(f"{path}: no '{OUTPUT_CLASS}' output (outputs: {outputs}); see models/README.md")
    check_class_outputs(session, info)
    return info


#: onnxruntime type names of the integer tensors a ``class`` output may have.
INTEGER_TYPES = {f"tensor({t})" for t in ("int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64")}


def check_class_outputs(session, info: ModelInfo) -> None:
    """The graph's side of the contract (models/README.md): the ``class`` output is an integer tensor, and
    the number of classes the graph declares (the channel dimension of a ``scores`` output, when static)
    equals the metadata's k. :func:`check_classes` checks each inferred tile too.

    Raises:
        ModelError: naming the output, what was found and the fix.
    """
    outs = {o.name: o for o in session.get_outputs()}
    cls = outs[OUTPUT_CLASS]
    if cls.type not in INTEGER_TYPES:
        raise ModelError(f"{info.path}: the '{OUTPUT_CLASS}' output is {cls.type}, but class indices must be an "
                         "integer tensor (int64). Re-export the model with an integer class output.")
    scores = outs.get(OUTPUT_SCORES)
    if scores is not None and len(scores.shape) == 4 and isinstance(scores.shape[1], int) \
            and scores.shape[1] != info.num_classes:
        raise ModelError(f"{info.path}: the graph scores {scores.shape[1]} classes but '{K_NUM_CLASSES}' says "
                         f"{info.num_classes}. Fix the metadata or re-export the model.")


def check_classes(cls, info: ModelInfo) -> None:
    """Refuse class indices outside ``0..k-1`` returned by the model (metadata k smaller than the graph's).

    Raises:
        ModelError: with the largest index found and the fix.
    """
    if cls.size and (int(cls.max()) >= info.num_classes or int(cls.min()) < 0):
        raise ModelError(f"{info.path}: the model returned class {int(cls.max()) + 1} (index {int(cls.max())}) but "
                         f"its metadata '{K_NUM_CLASSES}' says k = {info.num_classes}: the metadata does not match "
                         "the graph. Fix the metadata or re-export the model.")


def to_metadata_props(num_classes: int, channel_names: Sequence[str], scale_min: Sequence[float],
                      scale_max: Sequence[float], *, halo_px: int = 0, class_names: Sequence[str] = (),
                      class_colors: Sequence[str] = (), texture_period_px: int = 0, title: str = "",
                      provenance: Optional[Dict] = None, scale_clip: bool = True) -> Dict[str, str]:
    """The ``metadata_props`` dict (str -> JSON str) for a k-textures model; the writer's side of the contract."""
    k = int(num_classes)
    names = list(class_names) or [f"texture {i + 1}" for i in range(k)]
    meta = {
        DEEPNESS_MODEL_TYPE: "Segmentor",
        DEEPNESS_CLASS_NAMES: {str(i): n for i, n in enumerate(names)},
        K_SCHEMA: SCHEMA_VERSION,
        K_NUM_CLASSES: k,
        K_OUTPUT_KIND: "labels",
        K_GLOBAL: True,
        K_CHANNELS: [str(c) for c in channel_names],
        K_SCALE: {"min": [float(v) for v in scale_min], "max": [float(v) for v in scale_max], "clip": bool(scale_clip)},
        K_HALO: int(halo_px),
        K_TEXTURE_PERIOD: int(texture_period_px),
        K_NODATA_FILL: 0.0,
        K_TITLE: title,
        K_PROVENANCE: dict(provenance or {}),
    }
    if class_colors:
        meta[K_COLORS] = {str(i): c for i, c in enumerate(class_colors)}
    return {key: json.dumps(v) for key, v in meta.items()}


def channel_indices(channel_names: Sequence[str], wanted: Sequence[str] = RGB) -> Optional[List[int]]:
    """0-based indices of the channels ``wanted`` (default red, green, blue) in ``channel_names``, in the order of
    ``wanted``; None when any of them is missing."""
    names = list(channel_names)
    if not set(wanted) <= set(names):
        return None
    return [names.index(n) for n in wanted]
