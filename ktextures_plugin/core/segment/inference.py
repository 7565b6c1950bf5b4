"""Inference: onnxruntime sessions, the execution provider, the model's metadata read through a session, and
the classes of one scaled tile, run in row strips of a size that fits the CPU caches.

:mod:`..io.modelinfo` parses the metadata; this module opens the sessions (onnxruntime is imported lazily, through
:func:`..runtime.require_onnxruntime`), so the dependency runs one way: inference -> modelinfo.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from ..errors import ModelError
from ..io.modelinfo import (
    INPUT_NAME,
    K_HALO,
    K_PROVENANCE,
    OUTPUT_CLASS,
    OUTPUT_SCORES,
    OUTPUT_TEXTURES,
    ModelInfo,
    channel_indices,
    check_classes,
    info_from_session,
)
from ..runtime import require_onnxruntime
from .smoothing import DEFAULT_SWEEPS, icm_potts


def choose_providers(available: List[str], prefer_gpu: bool = True) -> List[str]:
    """Execution providers to ask for, best first: CUDA when onnxruntime-gpu offers it, then CPU."""
    chosen = []
    if prefer_gpu and "CUDAExecutionProvider" in available:
        chosen.append("CUDAExecutionProvider")
    chosen.append("CPUExecutionProvider")
    return chosen


# onnxruntime's NCHWc layout transformer blocks convolutions for AVX2/AVX-512 and inserts reorders around the
# element-wise nodes it cannot run blocked. For a per-pixel model (only 1x1 convolutions, halo 0) the reorders
# cost more than they save: ~10-20 % slower on the bench machine; for the context variant (depthwise 1-D blurs
# and 1x1 convolutions) ~1.6x slower; for 3x3 convolutions (the spatial variant) it is ~40 % faster, so it stays
# on there (docs/benchmarks.md, "ELU rewrite" and "Where the time of segment goes").
PER_PIXEL_DISABLED_OPTIMIZERS = ["NchwcTransformer"]


def _metadata(session, key: str):
    """The JSON value of metadata ``key`` of the session's model, or ``None`` (absent or not JSON)."""
    try:
        return json.loads(session.get_modelmeta().custom_metadata_map.get(key, "null"))
    except Exception:  # noqa: BLE001 - metadata is optional here; read_model_info reports contract errors
        return None


def _per_pixel(session) -> bool:
    """True if the model's metadata declares ``ktextures.halo_px`` 0 (a per-pixel network)."""
    return _metadata(session, K_HALO) == 0


def _nchwc_slower(session) -> bool:
    """True for the models onnxruntime's NCHWc layout runs slower: per-pixel networks (:func:`_per_pixel`) and
    the context variant (provenance ``variant`` "context")."""
    prov = _metadata(session, K_PROVENANCE)
    return _per_pixel(session) or (isinstance(prov, dict) and prov.get("variant") == "context")


def open_session(path: str, threads: Optional[int] = None, prefer_gpu: bool = True, for_inference: bool = True,
                 allow_spinning: bool = False):
    """Open an ``onnxruntime.InferenceSession`` on ``path``.

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (default: onnxruntime's choice, one per core).
        prefer_gpu: use the CUDA execution provider when onnxruntime-gpu is installed.

        for_inference: False for a session only used to read metadata and signatures: skips the tuning below.
        allow_spinning: let onnxruntime's pool threads busy-wait between runs (its default). Off by default:
            ``segment`` reads and decodes the next tiles in another thread, which the spinning starves (segment
            ran 12 % faster with 28 % less CPU time without it, docs/benchmarks.md); on, pure back-to-back
            inference with nothing else running is about 1.2x faster.

    For inference, a per-pixel model (``ktextures.halo_px`` 0) or a context-variant model is re-opened with
    onnxruntime's NCHWc layout transformer disabled (:data:`PER_PIXEL_DISABLED_OPTIMIZERS`), which makes it faster
    on CPU (:func:`_nchwc_slower`).

    Returns:
        The session; ``session.get_providers()[0]`` is the execution provider that runs it.

    Raises:
        ImportError: onnxruntime missing (message: how to install it).
        ModelError: file missing or not a loadable ONNX model.
    """
    ort = require_onnxruntime()
    if not path or not os.path.isfile(path):
        raise ModelError(f"Model file not found: '{path}'. Choose an existing .onnx file, or leave the model "
                         "file empty to use a bundled model.")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    providers = choose_providers(ort.get_available_providers(), prefer_gpu)
    try:
        session = ort.InferenceSession(path, sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidProtobuf, ...)
        raise ModelError(f"Cannot load '{path}' as an ONNX model ({exc.__class__.__name__}: "
                         f"{str(exc).splitlines()[0][:300]}). The file is corrupt or not ONNX: "
                         "re-export or re-download it.") from None
    if for_inference and providers[0] == "CPUExecutionProvider" and _nchwc_slower(session):
        try:
            session = ort.InferenceSession(path, sess_options=opts, providers=providers,
                                           disabled_optimizers=PER_PIXEL_DISABLED_OPTIMIZERS)
        except Exception:  # noqa: BLE001 - an onnxruntime without disabled_optimizers: keep the default session
            pass
    return session


def read_model_info(path: str, session=None) -> ModelInfo:
    """Read and validate the metadata of a k-textures ONNX file (:func:`..io.modelinfo.info_from_session`).

    Args:
        path: the ``.onnx`` file.
        session: an existing ``onnxruntime.InferenceSession`` on ``path`` (avoids loading it twice).

    Raises:
        ModelError: file missing, not an ONNX model (corrupt), no k-textures metadata, or an input that is
            not (N,C,H,W) float32 with C = the number of declared channels, or no ``class`` output.
        ImportError: onnxruntime is not installed (:func:`..runtime.require_onnxruntime`).
    """
    if session is None:
        session = open_session(path, for_inference=False)
    info = info_from_session(session, path)
    probe_graph(session, info)
    return info


def probe_side(info: ModelInfo) -> int:
    """Side in pixels of the probe tile of :func:`probe_graph`: twice the halo plus 16, a multiple of 16."""
    return 16 * ((2 * info.halo_px + 31) // 16)


def probe_graph(session, info: ModelInfo) -> None:
    """Run the graph once on a small tile of the shape its metadata declares, ``(1, C, S, S)`` float32 with
    S = :func:`probe_side`, and check that the ``class`` output is ``(1, 1, S, S)`` (models/README.md): a graph
    that wants other channels than its metadata lists, or whose output is not the input's size, is refused
    here with the model named, before any tile is read or output allocated.

    Raises:
        ModelError: naming the model, the shape fed and what the graph did.
    """
    side = probe_side(info)
    shape = (1, info.num_channels, side, side)
    quiet = require_onnxruntime().RunOptions()
    quiet.log_severity_level = 4  # the error goes into the message, not onnxruntime's log on stderr
    try:
        out = session.run([OUTPUT_CLASS], {INPUT_NAME: np.full(shape, 0.5, np.float32)}, quiet)[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types (InvalidArgument, Fail, ...)
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{info.path}: the graph does not run on a {shape} float32 input, the shape its metadata "
                         f"declares ({info.num_channels} channels: {', '.join(info.channel_names)}): {detail}. "
                         "The graph and its metadata do not match: fix the metadata or re-export the model.",
                         parameter="model") from None
    if tuple(out.shape) != (1, 1, side, side):
        raise ModelError(f"{info.path}: the '{OUTPUT_CLASS}' output is {tuple(out.shape)} for a {side} x {side} "
                         f"input, but the contract (models/README.md) is (N, 1, H, W) with the input's height and "
                         "width. Re-export the model.", parameter="model")


def model_textures(session, info: ModelInfo) -> np.ndarray:
    """The model's textures, float32 ``(k, C, p, p)`` in scaled units, from its ``textures`` output run on an
    8 x 8 zero probe (the textures do not depend on the image; models/README.md). The caller checks
    ``info.has_textures``."""
    probe = np.zeros((1, info.num_channels, 8, 8), np.float32)
    return np.asarray(session.run([OUTPUT_TEXTURES], {INPUT_NAME: probe})[0], np.float32)


#: Pixels per onnxruntime call. A 1x1 network's 64-channel intermediates for a whole 512 px tile (64 MB) do
#: not fit in the CPU caches; strips of ~16k pixels do (docs/benchmarks.md, "Measurements behind constants").
INFER_CHUNK_PX = 16384
#: ... that is about this many hidden values per call; a per-pixel model whose provenance gives its
#: ``mask_width`` runs on strips of ``INFER_CHUNK_VALUES // mask_width`` pixels (65536 at width 16: fewer
#: calls, each still cache-sized).
INFER_CHUNK_VALUES = 64 * INFER_CHUNK_PX


#: ... and a context-variant model runs on strips of about this many pixels per 12 px of halo (at least
#: 2 x :data:`INFER_CHUNK_PX`): each strip re-reads 2 x halo rows, so thin strips of a wide-halo model spend their
#: time on halo rows, while thick strips of a narrow-halo model overflow the caches (halo 12: 131072 px, 2.4x
#: faster than 16384; halo 3: 32768 px, 1.5x faster than 131072; docs/benchmarks.md, "Measurements behind
#: constants").
CONTEXT_CHUNK_PX = 8 * INFER_CHUNK_PX


def chunk_px_for(info: ModelInfo) -> int:
    """Pixels per onnxruntime call for this model: :data:`CONTEXT_CHUNK_PX` per 12 px of halo (at least
    ``2 * INFER_CHUNK_PX``) for the context variant,
    ``INFER_CHUNK_VALUES // mask_width`` for a per-pixel model that records its ``mask_width`` in its
    provenance (between 16384 and 262144), else :data:`INFER_CHUNK_PX`."""
    prov = info.provenance if isinstance(info.provenance, dict) else {}
    if prov.get("variant") == "context":
        return max(2 * INFER_CHUNK_PX, CONTEXT_CHUNK_PX * info.halo_px // 12)
    width = prov.get("mask_width")
    if info.halo_px != 0 or not isinstance(width, int) or width < 1:
        return INFER_CHUNK_PX
    return int(min(max(INFER_CHUNK_VALUES // width, INFER_CHUNK_PX), 16 * INFER_CHUNK_PX))


def infer_classes(session, x: np.ndarray, halo_px: int, chunk_px: int = INFER_CHUNK_PX) -> np.ndarray:
    """Run the model's ``class`` output on one scaled tile, in row strips of about ``chunk_px`` pixels.

    Each strip is read with ``halo_px`` extra rows on both sides (clipped to the tile) and cropped back, so
    the result equals one call on the whole tile for any model whose receptive field radius is <= its
    ``halo_px`` (models/README.md); with ``halo_px`` 0 (a per-pixel network) the strips do not overlap.

    Args:
        session: an onnxruntime session on a k-textures model.
        x: (C,H,W) float32, scaled to the model's [0, 1] range.
        halo_px: the model's halo in pixels.
        chunk_px: target pixels per call (excluding halo rows).

    Returns:
        (H,W) integer class indices 0..k-1 as the model returns them.
    """
    return infer_output(session, x, halo_px, chunk_px, OUTPUT_CLASS)[0]


def infer_output(session, x: np.ndarray, halo_px: int, chunk_px: int = INFER_CHUNK_PX,
                 name: str = OUTPUT_CLASS) -> np.ndarray:
    """The model's output ``name`` (``class`` or ``scores``) on one scaled tile ``x`` (C,H,W) float32, in row
    strips as :func:`infer_classes` runs them; returns the ``(n, H, W)`` output of the single image (n = 1 for
    ``class``, k for ``scores``)."""
    c, h, w = x.shape
    rows = max(1, int(chunk_px) // max(1, w), 4 * int(halo_px))
    if rows >= h:
        return session.run([name], {INPUT_NAME: x[None]})[0][0]
    out = None
    for r in range(0, h, rows):
        a, b = max(0, r - halo_px), min(h, r + rows + halo_px)
        part = session.run([name], {INPUT_NAME: np.ascontiguousarray(x[None, :, a:b])})[0][0]
        if out is None:
            out = np.empty((part.shape[0], h, w), part.dtype)
        out[:, r:min(h, r + rows)] = part[:, r - a:r - a + min(rows, h - r)]
    return out


#: Class mean colours (the true-colour palette) are averaged over every 4th pixel in each direction.
COLOR_STRIDE = 4


@dataclass(frozen=True)
class TileModel:
    """What classifying one tile needs from the model (small and picklable, for Dask tasks too).

    Attributes:
        info: the model's metadata (k, halo, nodata fill, channel names).
        chunk_px: pixels per onnxruntime call (:func:`chunk_px_for`).
        rgb_idx: the model channels of red, green and blue, -1 where the model has none.
        smoothing: Potts weight beta of the smoothing step (:func:`.smoothing.icm_potts` on the costs
            ``-scores``); 0 = off (the ``class`` output is used).
        sweeps: ICM sweeps of the smoothing step (0 when it is off).
    """

    info: ModelInfo
    chunk_px: int
    rgb_idx: Tuple[int, int, int]
    smoothing: float = 0.0
    sweeps: int = 0

    @classmethod
    def of(cls, info: ModelInfo, smoothing: float = 0.0) -> "TileModel":
        """The tile model of ``info``, with its strip size and true-colour channels; ``smoothing`` > 0 turns the
        smoothing step on (the model must have a ``scores`` output)."""
        rgb = tuple(channel_indices(info.channel_names) or (-1, -1, -1))
        beta = float(smoothing) if smoothing and OUTPUT_SCORES in info.outputs else 0.0
        return cls(info=info, chunk_px=chunk_px_for(info), rgb_idx=rgb, smoothing=beta,
                   sweeps=DEFAULT_SWEEPS if beta > 0 else 0)

    @property
    def read_halo(self) -> int:
        """Pixels read around each tile core: the model's halo plus one per ICM sweep, so that the tiled result
        equals the whole-raster one (:mod:`.smoothing`)."""
        return self.info.halo_px + self.sweeps

    @property
    def label_dtype(self):
        """numpy dtype of the class raster: uint8 up to k = 254, else uint16."""
        return np.uint8 if self.info.num_classes <= 254 else np.uint16


@dataclass
class TileClasses:
    """The classes of one tile's core and its share of the run's statistics.

    Attributes:
        labels: uint8/uint16 ``(th, tw)``: 0 = nodata, 1..k.
        cls: class indices 0..k-1 ``(th, tw)`` as the model returned them, or ``None`` when no pixel is valid.
        valid: bool ``(th, tw)``: the core's valid pixels.
        n_valid: number of valid pixels of the core.
        color_n: int64 ``(k,)`` sampled pixels per class (every :data:`COLOR_STRIDE`-th pixel).
        color_sum: float64 ``(k, 3)`` sum of their scaled red, green, blue values.
    """

    labels: np.ndarray
    cls: Optional[np.ndarray]
    valid: np.ndarray
    n_valid: int
    color_n: np.ndarray
    color_sum: np.ndarray


def classify_tile(session, model: TileModel, tile, data: np.ndarray, valid: np.ndarray) -> TileClasses:
    """Classify one tile: the model on the scaled read window, cropped to the core, nodata kept as 0
    (:func:`infer_tile`, then :func:`finish_tile`).

    Args:
        session: an onnxruntime session on the model.
        model: :class:`TileModel`.
        tile: a ``tiling.Tile``.
        data: float32 ``(C, h, w)`` of ``tile.read``, scaled to [0, 1]; invalid pixels are overwritten with the
            model's ``nodata_fill``.
        valid: bool ``(h, w)``.

    Raises:
        ModelError: the model returned a class outside ``0..k-1``, or ``scores`` for another number of classes.
    """
    return finish_tile(model, tile, data, valid, infer_tile(session, model, tile, data, valid))


def infer_tile(session, model: TileModel, tile, data: np.ndarray, valid: np.ndarray) -> Optional[np.ndarray]:
    """The onnxruntime part of :func:`classify_tile`: ``None`` when the core has no valid pixel, else the
    ``class`` output (H, W) of the read window, or with smoothing on the costs ``-scores`` (k, H, W) float32.
    Fills the invalid pixels of ``data`` with the model's ``nodata_fill``.

    Raises:
        ModelError: a class outside ``0..k-1``, or ``scores`` with another number of classes than k.
    """
    if not valid[tile.core_in_read.slices()].any():
        return None
    if not valid.all():
        data[:, ~valid] = model.info.nodata_fill
    if model.smoothing <= 0:
        cls = infer_classes(session, data, model.info.halo_px, model.chunk_px)
        check_classes(cls, model.info)  # a model outside the contract never writes a wrong class
        return cls
    costs = np.asarray(infer_output(session, data, model.info.halo_px, model.chunk_px, OUTPUT_SCORES), np.float32)
    if costs.shape[0] != model.info.num_classes:
        raise ModelError(f"{model.info.path}: the '{OUTPUT_SCORES}' output has {costs.shape[0]} classes but the "
                         f"metadata says k = {model.info.num_classes}. Fix the metadata or re-export the model.")
    return np.negative(costs, out=costs)


def finish_tile(model: TileModel, tile, data: np.ndarray, valid: np.ndarray, raw: Optional[np.ndarray]) -> TileClasses:
    """The numpy part of :func:`classify_tile` on the output of :func:`infer_tile`: the smoothing step when on
    (:func:`.smoothing.icm_potts` on the whole read window), then the core's labels, counts and colour sums. Runs
    in any thread (it only reads ``data``)."""
    k = model.info.num_classes
    core = tile.core_in_read.slices()
    cvalid = valid[core]
    tc = TileClasses(np.zeros(cvalid.shape, model.label_dtype), None, cvalid, 0,
                     np.zeros(k, np.int64), np.zeros((k, 3), np.float64))
    if raw is None:
        return tc
    full = bool(valid.all())
    tc.n_valid = cvalid.size if full else int(cvalid.sum())
    tc.cls = _smoothed_core(model, tile, raw, valid, full) if raw.ndim == 3 else raw[core]
    if full:  # no boolean indexing on tiles without nodata (most of them)
        np.add(tc.cls, 1, out=tc.labels, casting="unsafe")
    else:
        tc.labels[cvalid] = tc.cls[cvalid] + 1
    if min(model.rgb_idx) >= 0:
        _add_colors(tc, data[(slice(None),) + core], model.rgb_idx)
    return tc


def _smoothed_core(model: TileModel, tile, costs: np.ndarray, valid: np.ndarray, full: bool) -> np.ndarray:
    """The core's classes by :func:`.smoothing.icm_potts` on the costs of the core plus ``model.sweeps`` pixels
    around it (what the core's labels depend on; the model's own halo band is left out)."""
    cx, cy, tw, th = tile.core_in_read
    s = model.sweeps
    ya, yb = max(0, cy - s), min(costs.shape[1], cy + th + s)
    xa, xb = max(0, cx - s), min(costs.shape[2], cx + tw + s)
    sub = np.ascontiguousarray(costs[:, ya:yb, xa:xb])
    cls = icm_potts(sub, model.smoothing, s, None if full else valid[ya:yb, xa:xb])
    return cls[cy - ya:cy - ya + th, cx - xa:cx - xa + tw]


def _add_colors(tc: TileClasses, x: np.ndarray, rgb_idx) -> None:
    """Class colour sums of the core ``x`` (C, th, tw) from every :data:`COLOR_STRIDE`-th pixel."""
    sub = (slice(None, None, COLOR_STRIDE), slice(None, None, COLOR_STRIDE))
    sub_valid = tc.valid[sub]
    sel = tc.cls[sub][sub_valid]
    k = len(tc.color_n)
    tc.color_n += np.bincount(sel, minlength=k)
    for j, ci in enumerate(rgb_idx):
        tc.color_sum[:, j] += np.bincount(sel, weights=x[ci][sub][sub_valid], minlength=k)


def simulate(textures: np.ndarray, classes: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The k-textures simulation of a window: ``textures[class, :, row mod P, col mod P]`` with raster rows
    and columns (models/README.md), so the textures are anchored on the raster grid.

    Args:
        textures: float32 (k, C, P, P) in scaled units; classes: integer (h, w) 0..k-1; x0, y0: the window's
            first raster column and row.

    Returns:
        float32 (C, h, w), scaled units.
    """
    h, w = classes.shape
    p = textures.shape[-1]
    rows = (np.arange(y0, y0 + h) % p)[:, None]
    cols = (np.arange(x0, x0 + w) % p)[None, :]
    return np.ascontiguousarray(textures[classes, :, rows, cols].transpose(2, 0, 1))
