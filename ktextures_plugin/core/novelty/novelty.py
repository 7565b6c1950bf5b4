"""Novelty ranking of raster tiles with DEMUD: the places the k textures cannot explain, as a short, diverse list.

Pipeline (docs/novelty.md): the raster is read window by window (``segment``'s reader thread and scaling);
the k-textures model classifies each window and its simulation is built from the model's ``textures`` (the
texture period anchored on the raster grid, as ``segment`` writes it); the tile grid (``tile_size`` px) cuts
the window into tiles; the frozen multi-scale feature CNN of the k-textures loss (``models/features_random_cnn
.onnx``) runs on every tile and on its simulation. Per tile: the mean and standard deviation of every feature
channel (appearance) and, per scale, the mean squared feature difference between tile and simulation (the
k-textures residual); from the pixels, the share beyond the scene's 1st / 99th percentiles per band
(:data:`TAIL_PERCENTILES`) and the largest row- or column-mean line jump per band (the tail blocks,
:func:`tail_features`). The columns are
standardised and weighted (:func:`design_matrix`), and
:func:`ktextures_plugin.core.novelty.demud.demud` selects the tiles. Memory grows with the number of tiles' feature
vectors (about 5.4 kB per tile), not with pixels. Outputs: ``novelty_output``.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ... import MODELS_DIR
from ..errors import Canceled, ModelError, Progress, RasterError
from ..feedback import Feedback
from ..io import raster, tiling
from ..io.modelinfo import INPUT_NAME, OUTPUT_TEXTURES
from ..segment.bands import select_bands
from ..segment.inference import chunk_px_for, infer_classes, open_session, read_model_info, simulate
from ..segment.scaling import range_warnings, resolve_scaling
from ..segment.tileio import prefetch
from .demud import Selection, Subspace, demud

#: the frozen feature CNN (``ktextures_plugin.training.export_features``; models/README.md)
FEATURES_MODEL = f"{MODELS_DIR}/features_random_cnn.onnx"
#: the feature CNN's channel order and the factor its deepest stage downsamples by
FEATURE_CHANNELS = ("red", "green", "blue", "nir")
FEATURE_STRIDE = 16
#: a tile with fewer valid pixels than this fraction is skipped (and counted)
MIN_VALID_FRACTION = 0.5
#: the bounds of the feature CNN's input, in the model's scaled units (0-1 = the model's range)
FEATURE_RANGE = (-2.0, 6.0)
#: the window side in px the raster is read and the feature CNN run in (rounded to half tiles)
WINDOW_PX = 512
#: context in px read around a window for the feature CNN (its receptive field radius is about 46 px)
FEATURE_CONTEXT = 32
#: default most singular vectors DEMUD's model keeps (docs/novelty.md, "Initial model and rank";
#: bench/novelty.py planted)
DEFAULT_RANK = 4
#: default initial model: -2 = the SVD of the typical tiles (the same measurement)
INIT_TILES = -2
#: the share of the tiles, nearest the column medians, that the default initial model is fitted to
TYPICAL_SHARE = 0.9
#: directions of the initial model (at most RANK): the scene's leading direction; DEMUD's model grows from it
INIT_RANK = 1
#: once a tile is selected, the tiles within this many positions (half tiles) of it are not selectable
EXCLUDE_REACH = 3
#: the scene percentiles (per band, %) at or beyond which a pixel counts as extreme in the tail features;
#: 1 / 99 rather than 0.1 / 99.9: an anomaly larger than the tail sets the percentile itself and its share is
#: capped near the tail's share of the scene (docs/novelty.md, "Features"; bench/novelty.py planted)
TAIL_PERCENTILES = (1.0, 99.0)
#: weight of the tail blocks (extreme pixels; line jumps) against the appearance block, and how they are
#: standardised (:func:`design_matrix`; docs/novelty.md, "Standardisation"; bench/novelty.py planted)
TAIL_WEIGHT = 1.0
TAIL_SCALING = "split-z"


@dataclass
class TileTable:
    """Per-tile features of the scored (valid) tiles.

    Attributes:
        grid: ``(columns, rows)`` of tile positions over the raster (:func:`tile_grid`); tile (row, col)
            covers pixels ``[col * stride, col * stride + 2 * stride)`` and likewise for rows.
        index: int64 (m,) flat tile index ``row * columns + col`` of each scored tile.
        appearance: float32 (m, 2 * sum(widths)) mean and std per feature channel, scale by scale.
        residual: float32 (m, sum(widths)) mean squared feature difference tile - simulation, per channel.
        widths: feature channels of each scale (the residual's column blocks).
        class_counts: int64 (m, k) valid pixels of each class in the tile.
        skipped: tiles skipped as mostly nodata (valid fraction below :data:`MIN_VALID_FRACTION`).
        stride: px between neighbouring tile positions (half the tile size).
        tails: float32 (m, 3 * 4): 4 shares (0-1) of the tile's pixels at or below the scene's low tail
            threshold, 4 at or above its high one (:func:`tail_thresholds`), 4 largest line jumps (model
            ranges), bands red, green, blue, NIR (:func:`tail_features`); ``None`` = not computed.
    """

    grid: Tuple[int, int]
    index: np.ndarray
    appearance: np.ndarray
    residual: np.ndarray
    class_counts: np.ndarray
    skipped: int
    widths: Tuple[int, ...] = ()
    stride: int = 32
    tails: Optional[np.ndarray] = None

    def stage_norm(self) -> np.ndarray:
        """float64 (scales,) the mean residual of each scale over all scored tiles (heat map units)."""
        edges = np.cumsum((0,) + tuple(self.widths))
        return np.array([self.residual[:, a:b].mean() for a, b in zip(edges[:-1], edges[1:])], np.float64)


@dataclass
class SelectedTile:
    """One DEMUD selection: ``rank`` (1 = first), tile ``row``/``col``, pixel window ``(xoff, yoff, xs, ys)``,
    ``score`` (squared reconstruction error when selected), ``residual`` (its k-textures part),
    ``initial`` (score before any selection), ``class_counts`` int64 (k,)."""

    rank: int
    row: int
    col: int
    window: Tuple[int, int, int, int]
    score: float
    residual: float
    initial: float
    class_counts: np.ndarray


@dataclass
class NoveltyResult:
    """What :func:`rank_tiles` found: ``scores`` float32 (rows, cols) initial scores (NaN = not scored),
    ``selected`` in rank order, the ``table``, ``selection``, model ``info``, ``bands``, scaling, the
    ``rank`` asked for, the feature ``stage_norm`` (mean residual per scale, for heat maps), ``seconds`` and
    ``warnings``."""

    scores: np.ndarray
    selected: List[SelectedTile]
    table: TileTable
    selection: Selection
    info: object
    bands: List[int]
    scale_min: List[float]
    scale_max: List[float]
    tile_size: int
    rank: int
    seconds: float
    stage_norm: np.ndarray
    warnings: List[str] = field(default_factory=list)


def feature_order(channel_names) -> List[int]:
    """Indices of red, green, blue, NIR among the model's channels (the feature CNN's input order).

    Raises:
        ModelError: the model lacks one of these channels.
    """
    missing = [c for c in FEATURE_CHANNELS if c not in channel_names]
    if missing:
        raise ModelError(f"novelty needs a model with red, green, blue and NIR channels (its feature CNN is "
                         f"the k-textures loss's); this model has {list(channel_names)}, missing {missing}.")
    return [list(channel_names).index(c) for c in FEATURE_CHANNELS]


def heat_map(fsess, x: np.ndarray, sim: np.ndarray, stage_norm: np.ndarray) -> np.ndarray:
    """Where a tile and its simulation differ: per scale, the squared feature difference averaged over
    channels, divided by that scale's mean over all tiles (``stage_norm``), upsampled to pixels
    (nearest) and averaged over scales.

    Args:
        x, sim: float32 (4, T, T); stage_norm: float (scales,).

    Returns:
        float32 (T, T); 1 = a typical difference.
    """
    maps = fsess.run(None, {"image": np.stack([x, sim])})
    t = x.shape[-1]
    out = np.zeros((t, t), np.float64)
    for i, f in enumerate(maps):
        d = ((f[0] - f[1]) ** 2).mean(axis=0) / max(float(stage_norm[i]), 1e-12)
        s = t // d.shape[0]
        out += np.repeat(np.repeat(d, s, axis=0), s, axis=1)
    return (out / len(maps)).astype(np.float32)


def design_matrix(table: TileTable, residual_weight: float = 1.0, tail_weight: float = TAIL_WEIGHT,
                  tail_scaling: str = TAIL_SCALING) -> Tuple[np.ndarray, List[slice]]:
    """The DEMUD item matrix (docs/novelty.md, "Standardisation"): column blocks, each column standardised
    over the scored tiles and each block divided by sqrt(its width), so that every block carries the same
    total variance at weight 1: the appearance block (weight 1), the k-textures residual block
    (``residual_weight``) and, when ``table.tails`` is there and ``tail_weight`` > 0, the tail block
    (``tail_weight``). Standardisation: z-score (a constant column stays 0). ``tail_scaling``: "split-z"
    (the default, :data:`TAIL_SCALING`) = the tail block as two blocks of the same weight, the 8 extreme-pixel
    shares and the 4 line jumps, z-scored; "z" = one block of 12; "robust" / "robust-log" (with or without
    "split-") = :func:`robust_scores` instead of the z-score (measured, not kept: docs/benchmarks.md).

    Args:
        table: the tile features; residual_weight, tail_weight: block weights (>= 0).

    Returns:
        ``(items float32 (m, d), blocks)``: d = 896 + 448 (+ 12); blocks = column slices [appearance,
        residual(, extremes, lines | tails)].
    """
    parts = [(table.appearance, 1.0, "z"), (table.residual, residual_weight, "z")]
    if table.tails is not None and tail_weight > 0 and tail_scaling.startswith("split-"):
        nb = table.tails.shape[1] // 3
        parts += [(table.tails[:, :2 * nb], tail_weight, tail_scaling[6:]),
                  (table.tails[:, 2 * nb:], tail_weight, tail_scaling[6:])]
    elif table.tails is not None and tail_weight > 0:
        parts.append((table.tails, tail_weight, tail_scaling))
    widths = [p[0].shape[1] for p in parts]
    edges = np.cumsum([0] + widths)
    items = np.empty((table.appearance.shape[0], int(edges[-1])), np.float32)   # filled in place
    blocks = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    for block, (src, w, how) in zip(blocks, parts):
        out = items[:, block]
        if how == "z":
            mean, sd = _column_stats(src)
            np.subtract(src, mean.astype(np.float32), out=out)
            out *= (w / np.sqrt(src.shape[1]) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
        else:
            out[...] = robust_scores(src, how) * np.float32(w / np.sqrt(src.shape[1]))
    return items, blocks


def robust_scores(a: np.ndarray, how: str = "robust-log") -> np.ndarray:
    """Robust column standardisation of (m, d) ``a`` -> float32 (m, d): ``(a - median) / scale``, scale =
    1.4826 x the median absolute deviation, or where that is 0 (a column that is 0 in most tiles, as the
    share of extreme pixels) 1.2533 x the mean absolute deviation from the median (both = the standard
    deviation for normal data), a constant column 0. A rare extreme value is thus measured against the
    spread of the common ones, not against a standard deviation it inflates itself. ``how`` = "robust": as
    is; "robust-log": ``sign(z) log(1 + |z|)``, so that one extreme column cannot outweigh all others."""
    x = np.asarray(a, np.float64)
    med = np.median(x, axis=0)
    dev = np.abs(x - med)
    scale = 1.4826 * np.median(dev, axis=0)
    scale = np.where(scale > 0, scale, 1.2533 * dev.mean(axis=0))
    z = (x - med) / np.where(scale > 0, scale, 1.0)
    if how == "robust-log":
        z = np.sign(z) * np.log1p(np.abs(z))
    elif how != "robust":
        raise ValueError(f"tail scaling must be 'robust' or 'robust-log', got {how!r}")
    return z.astype(np.float32)


def _column_stats(a: np.ndarray, chunk: int = 4096) -> Tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations of (m, d) ``a`` in float64, two passes over row chunks (no
    full-size float64 temporary)."""
    mean = a.mean(axis=0, dtype=np.float64)
    ss = np.zeros(a.shape[1])
    for i in range(0, a.shape[0], chunk):
        d = a[i:i + chunk].astype(np.float64) - mean
        ss += np.einsum("ij,ij->j", d, d)
    return mean, np.sqrt(ss / max(a.shape[0], 1))


def initial_model(items: np.ndarray, rank: int, init_tiles: int, seed: int) -> Subspace:
    """DEMUD's starting model, a model of the scene (docs/novelty.md, "Initial model and rank").

    ``init_tiles``: -2 = the rank-``rank`` SVD of the typical tiles, the :data:`TYPICAL_SHARE` of the tiles
    nearest the column medians (the default, :data:`INIT_TILES`); 0 = of all tiles; N > 0 = of N tiles drawn
    at random (``seed``); -1 = none (an empty model around the mean of all tiles).
    """
    if init_tiles == -1:
        return Subspace.empty(items.shape[1], items.mean(axis=0, dtype=np.float64))
    if init_tiles == -2:
        d = _row_distances(items, np.median(items, axis=0))
        return Subspace.fit(items[d <= np.quantile(d, TYPICAL_SHARE)], rank)
    if init_tiles == 0 or init_tiles >= items.shape[0]:
        return Subspace.fit(items, rank)
    if init_tiles < 0:
        raise ValueError(f"the initial model must be -2, -1, 0 or a number of tiles, got {init_tiles}")
    pick = np.sort(np.random.default_rng(seed).choice(items.shape[0], int(init_tiles), replace=False))
    return Subspace.fit(items[pick], rank)


def _row_distances(items: np.ndarray, centre: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """float64 (m,) squared distances of the rows of ``items`` from ``centre``, in row chunks."""
    out = np.empty(items.shape[0])
    for i in range(0, items.shape[0], chunk):
        d = items[i:i + chunk].astype(np.float64) - centre
        out[i:i + chunk] = np.einsum("ij,ij->i", d, d)
    return out


def scale_for_features(data: np.ndarray, smin, smax) -> np.ndarray:
    """In place, float32 (C, H, W): ``(x - min) / (max - min)`` per band as the model scales, but bounded to
    :data:`FEATURE_RANGE` instead of clipped to [0, 1], so that the feature CNN sees how far out of the
    model's range a value is (a cloud at 7000 is not the same as a bright field at 1700). NaN stays NaN."""
    lo = np.asarray(smin, np.float32)[:, None, None]
    data -= lo
    data *= np.float32(1.0) / (np.asarray(smax, np.float32)[:, None, None] - lo)
    np.maximum(data, np.float32(FEATURE_RANGE[0]), out=data)
    np.minimum(data, np.float32(FEATURE_RANGE[1]), out=data)
    return data


def model_input(data: np.ndarray, info) -> np.ndarray:
    """In place, float32 (C, H, W) in feature scaling (:func:`scale_for_features`): the model's input as segment
    gives it, clipped to [0, 1] unless the model segments on the unclipped scale (``info.scale_clip`` False, then
    bounded to :data:`FEATURE_RANGE` only)."""
    if info.scale_clip:
        np.clip(data, 0.0, 1.0, out=data)
    return data


def tile_grid(size: Tuple[int, int], tile_size: int) -> Tuple[int, int]:
    """``(columns, rows)`` of tile positions over a raster of ``size`` ``(width, height)`` px: tiles of
    ``tile_size`` px at a stride of half a tile (docs/novelty.md, "Tiles"), from 0 to the first tile that
    reaches the edge (the last ones may extend past it; that part counts as nodata)."""
    s = tile_size // 2
    return tuple(max(1, -(-(n - tile_size) // s) + 1) for n in size)


def _block_sums(a: np.ndarray, cell: int) -> np.ndarray:
    """(..., H, W) with H, W multiples of ``cell`` -> (..., H / cell, W / cell) sums, float64."""
    *lead, h, w = a.shape
    return a.reshape(*lead, h // cell, cell, w // cell, cell).sum(axis=(-3, -1), dtype=np.float64)


def _tile_sums(blocks: np.ndarray) -> np.ndarray:
    """Half-tile block sums (..., n + 1, m + 1) -> tile sums (..., n, m): a tile is 2 x 2 half-tile blocks."""
    return blocks[..., :-1, :-1] + blocks[..., 1:, :-1] + blocks[..., :-1, 1:] + blocks[..., 1:, 1:]


def pooled_features(maps: Sequence[np.ndarray], origin: Tuple[int, int], shape: Tuple[int, int],
                    tile_size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Appearance and residual features of overlapping tiles, pooled from feature maps of a whole window.

    Args:
        maps: per scale, float32 (2, C, H / c, W / c) feature maps of the window (index 0) and of its
            simulation (1), c = the scale's cell size in px (1, 2, 4, ...; a divisor of half the tile).
        origin: ``(x, y)`` px of the first tile's top-left corner in the window (multiples of 16).
        shape: ``(rows, cols)`` of tiles, at a stride of half the tile.

    Returns:
        ``(appearance float32 (n, 2 * sum(C)), residual float32 (n, sum(C)))``, tiles row by row: per scale,
        the mean and the standard deviation of each channel over the tile, and the mean squared difference
        between the window's and the simulation's maps over the tile.
    """
    s = tile_size // 2
    ny, nx = shape
    app, res = [], []
    for f in maps:
        c = _cell(f, maps[0])
        k = s // c
        y0, x0 = origin[1] // c, origin[0] // c
        reg = f[:, :, y0:y0 + (ny + 1) * k, x0:x0 + (nx + 1) * k]
        fx, fs = reg[0], reg[1]
        n = float((tile_size // c) ** 2)
        m1 = _tile_sums(_block_sums(fx, k)) / n
        m2 = _tile_sums(_block_sums(fx * fx, k)) / n
        d = fx - fs
        app += [m1, np.sqrt(np.maximum(m2 - m1 * m1, 0.0))]
        res.append(_tile_sums(_block_sums(d * d, k)) / n)
    flat = [np.concatenate(b, axis=0).reshape(-1, ny * nx).T.astype(np.float32) for b in (app, res)]
    return flat[0], flat[1]


def tail_thresholds(ds, bands, order, smin, smax, extra_nodata=None) -> Tuple[np.ndarray, np.ndarray]:
    """The scene's extreme-value thresholds for :func:`tail_features`: per band the :data:`TAIL_PERCENTILES`
    of the valid pixels (``raster.percentile_scale``: at most 1e6 pixels, a decimated read), scaled as
    :func:`scale_for_features` scales the pixels.

    Args:
        ds: the open raster; bands: 1-based bands in the model's channel order; order: the feature CNN's
            channel order among them (:func:`feature_order`); smin, smax: the scaling per band.

    Returns:
        ``(low, high)`` float32 (4,) each, red, green, blue, NIR, in model ranges (0-1 = the model's range).
    """
    lo, hi = raster.percentile_scale(ds, bands, lower=TAIL_PERCENTILES[0], upper=TAIL_PERCENTILES[1],
                                     extra_nodata=extra_nodata)
    out = [scale_for_features(np.asarray(v, np.float32)[:, None, None].copy(), smin, smax)[order, 0, 0]
           for v in (lo, hi)]
    return out[0], out[1]


def tail_features(x: np.ndarray, valid: np.ndarray, low: np.ndarray, high: np.ndarray,
                  tile_size: int) -> np.ndarray:
    """Per-tile extreme-value and line-artefact statistics of overlapping tiles, from the pixels themselves.

    Per band: the share of the tile's pixels (of ``tile_size`` ** 2) that are valid and at or below ``low``,
    the share at or above ``high`` (at: an anomaly of integer values larger than the tail sets the percentile
    itself, ties with it count), and the largest **line jump**: the row means over the tile's columns (valid pixels
    only), the largest absolute deviation of one from the mean of its two neighbours (rows inside the tile);
    the same for the column means; the larger of the two. A seam of bad lines gives a large jump, a smooth
    field or a single edge a small one.

    Args:
        x: float32 (B, (ny + 1) * s, (nx + 1) * s) pixels in feature scaling (:func:`scale_for_features`), the
            first tile's top-left corner at (0, 0); s = ``tile_size`` / 2 (tile (r, c) = half-tile blocks
            r, r + 1 x c, c + 1); valid: bool (same height, width); low, high: float (B,) thresholds
            (:func:`tail_thresholds`).

    Returns:
        float32 (ny * nx, 3 * B), tiles row by row: B low shares, B high shares (0-1), B line jumps (model
        ranges).
    """
    s = tile_size // 2
    n = float(tile_size * tile_size)
    low = np.asarray(low, np.float32)[:, None, None]
    high = np.asarray(high, np.float32)[:, None, None]
    below = _tile_sums(_block_sums((x <= low) & valid, s)) / n
    above = _tile_sums(_block_sums((x >= high) & valid, s)) / n
    xv = np.where(valid, x, np.float32(0.0))
    jumps = np.maximum(_line_jumps(xv, valid, s), _line_jumps(xv.transpose(0, 2, 1), valid.T, s).transpose(0, 2, 1))
    out = np.concatenate([below, above, jumps], axis=0)
    return out.reshape(out.shape[0], -1).T.astype(np.float32)


def _line_jumps(xv: np.ndarray, valid: np.ndarray, s: int) -> np.ndarray:
    """(B, H, W) pixels (0 where not ``valid``), H, W multiples of ``s`` -> (B, H / s - 1, W / s - 1): per tile
    the largest |row mean - mean of the rows above and below| over the tile's rows that have both inside the
    tile; row means over the tile's 2 s columns, valid pixels only, rows with under ``s`` valid pixels skipped."""
    b, h, w = xv.shape
    rs = xv.reshape(b, h, w // s, s).sum(axis=-1, dtype=np.float64)
    rc = valid.reshape(h, w // s, s).sum(axis=-1)
    ts, tc = rs[..., :-1] + rs[..., 1:], rc[:, :-1] + rc[:, 1:]        # (B, H, nx), (H, nx)
    ok = tc >= s
    m = ts / np.maximum(tc, 1)
    d = np.zeros_like(m)
    d[:, 1:-1] = np.abs(m[:, 1:-1] - 0.5 * (m[:, :-2] + m[:, 2:])) * (ok[:-2] & ok[1:-1] & ok[2:])
    d = d.reshape(b, h // s, s, -1)
    # tile r = rows r * s + 1 .. r * s + 2 s - 2: block r without its first row, block r + 1 without its last
    return np.maximum(d[:, :-1, 1:].max(axis=2), d[:, 1:, :-1].max(axis=2))


def _cell(f: np.ndarray, full: np.ndarray) -> int:
    """Cell size in px of a feature map ``f`` against the full-resolution map ``full``."""
    return full.shape[-1] // f.shape[-1]


def _pad_window(a: np.ndarray, h: int, w: int, value) -> np.ndarray:
    """Pad (..., H, W) at the bottom and the right to (..., h, w) with ``value`` (scalar or per channel)."""
    ph, pw = h - a.shape[-2], w - a.shape[-1]
    if ph == 0 and pw == 0:
        return a
    out = np.empty(a.shape[:-2] + (h, w), a.dtype)
    out[...] = value
    out[..., :a.shape[-2], :a.shape[-1]] = a
    return out


def _round_up(n: int, m: int) -> int:
    return -(-int(n) // m) * m


class _Window:
    """The tiles whose top-left corner lies in one window's core: the window classified and simulated, the
    feature CNN run once on the window and on its simulation, the tiles' features pooled from the maps."""

    def __init__(self, tile, data, valid, ctx):
        t, s = ctx.tile_size, ctx.tile_size // 2
        rx0, ry0 = tile.read.xoff, tile.read.yoff
        bx, by, bw, bh = tile.core
        c0, r0 = bx // s, by // s
        nx = min(-(-(bx + bw) // s), ctx.grid[0]) - c0
        ny = min(-(-(by + bh) // s), ctx.grid[1]) - r0
        ox, oy = bx - rx0, by - ry0
        xo = data[ctx.order]                        # the feature CNN's input: scaled, not clipped
        x = model_input(data, ctx.info)             # the model's input, as segment gives it
        x[:, ~valid] = ctx.info.nodata_fill
        cls = np.clip(infer_classes(ctx.session, x, ctx.info.halo_px, ctx.chunk_px), 0, ctx.k - 1)
        sim = simulate(ctx.textures, cls, rx0, ry0)[ctx.order]
        fill = xo[:, valid].mean(axis=1) if valid.any() else np.zeros(xo.shape[0], np.float32)
        if not valid.all():   # nodata: the same value in the tile and its simulation (no residual there)
            xo[:, ~valid] = fill[:, None]
            sim[:, ~valid] = fill[:, None]
        h = _round_up(max(x.shape[1], oy + (ny + 1) * s), FEATURE_STRIDE)
        w = _round_up(max(x.shape[2], ox + (nx + 1) * s), FEATURE_STRIDE)
        img = np.stack([_pad_window(a, h, w, fill[:, None, None]) for a in (xo, sim)])
        maps = ctx.fsess.run(None, {"image": img})
        self.appearance, self.residual = pooled_features(maps, (ox, oy), (ny, nx), t)
        region = (slice(oy, oy + (ny + 1) * s), slice(ox, ox + (nx + 1) * s))
        vr = _pad_window(valid, h, w, False)[region]
        self.tails = tail_features(img[0][(slice(None),) + region], vr, ctx.tail_low, ctx.tail_high, t)
        self.valid_fraction = (_tile_sums(_block_sums(vr, s)) / float(t * t)).ravel()
        labels = np.where(vr, _pad_window(cls, h, w, 0)[region], ctx.k)   # k = nodata
        blk = (np.arange(labels.shape[0]) // s)[:, None] * (nx + 1) + (np.arange(labels.shape[1]) // s)[None, :]
        counts = np.bincount((blk * (ctx.k + 1) + labels).ravel(), minlength=(ny + 1) * (nx + 1) * (ctx.k + 1))
        counts = counts.reshape(ny + 1, nx + 1, ctx.k + 1).transpose(2, 0, 1)
        self.counts = np.rint(_tile_sums(counts)).astype(np.int64)[:ctx.k].reshape(ctx.k, -1).T
        rows, cols = np.divmod(np.arange(ny * nx), nx)
        self.index = (r0 + rows) * ctx.grid[0] + (c0 + cols)
        self.keep = self.valid_fraction >= MIN_VALID_FRACTION
        self.any_valid = bool(valid.any())


@dataclass
class _Context:
    session: object
    fsess: object
    info: object
    k: int
    order: List[int]
    textures: np.ndarray
    tile_size: int
    chunk_px: int
    grid: Tuple[int, int]
    tail_low: Optional[np.ndarray] = None    # float32 (4,) tail thresholds (tail_thresholds)
    tail_high: Optional[np.ndarray] = None


def window_halo(tile_size: int, halo_px: int) -> int:
    """Pixels read around each window: half a tile (the tiles that start in the window reach that far past
    it) plus the context of the model and of the feature CNN (at least :data:`FEATURE_CONTEXT`), a multiple
    of 16 so that every tile is aligned with the CNN's coarsest cells."""
    return _round_up(tile_size // 2 + max(int(halo_px), FEATURE_CONTEXT), FEATURE_STRIDE)


def extract_tiles(ds, bands, ctx: _Context, smin, smax, extra_nodata=None, progress: Optional[Progress] = None,
                  is_canceled=None) -> TileTable:
    """Stream the raster window by window into a :class:`TileTable` (features of the valid tiles).

    Raises:
        Canceled: ``is_canceled()`` turned True (polled between windows).
        RasterError: no pixel is valid, or every tile is mostly nodata.
    """
    t = ctx.tile_size
    block = (t // 2) * max(2, WINDOW_PX // (t // 2))
    size = (ds.RasterXSize, ds.RasterYSize)
    tiles = list(tiling.iter_tiles((0, 0) + size, size, block, window_halo(t, ctx.info.halo_px)))
    widths = tuple(int(o.shape[1]) for o in ctx.fsess.get_outputs())
    n_grid = ctx.grid[0] * ctx.grid[1]   # filled window by window: no second copy when done
    app = np.empty((n_grid, 2 * sum(widths)), np.float32)
    res = np.empty((n_grid, sum(widths)), np.float32)
    tails = np.empty((n_grid, 3 * len(ctx.order)), np.float32)
    idx, cnt = [], []
    n, skipped, any_valid = 0, 0, False
    with contextlib.closing(prefetch(ds, bands, iter(tiles), extra_nodata, is_canceled,
                                      prepare=lambda d: scale_for_features(d, smin, smax))) as reader:
        for n_done, (tile, data, valid) in enumerate(reader):
            if is_canceled and is_canceled():
                raise Canceled()
            b = _Window(tile, data, valid, ctx)
            any_valid |= b.any_valid
            skipped += int((~b.keep).sum())
            m = int(b.keep.sum())
            app[n:n + m], res[n:n + m], tails[n:n + m] = b.appearance[b.keep], b.residual[b.keep], b.tails[b.keep]
            n += m
            idx.append(b.index[b.keep])
            cnt.append(b.counts[b.keep])
            if progress:
                progress((n_done + 1) / len(tiles), "features")
    if not any_valid:
        raise RasterError("Every pixel of the input is nodata (mask band, NaN/Inf or {name}): nothing to rank. "
                          "Check {name} or choose another raster.", parameter="nodata")
    if n == 0:
        raise RasterError(f"Every tile is mostly nodata (under {MIN_VALID_FRACTION:.0%} valid pixels; {skipped} "
                          "tiles): nothing to rank. Choose a smaller {name} or a raster with more valid data.",
                          parameter="tile_size")
    if n < n_grid:
        app, res, tails = app[:n].copy(), res[:n].copy(), tails[:n].copy()
    return TileTable(ctx.grid, np.concatenate(idx).astype(np.int64), app, res, np.concatenate(cnt).astype(np.int64),
                     skipped, widths, t // 2, tails)


def _open(input_path, model_path, bands, tile_size, threads, session, features_path):
    """Open and check everything before the long run: model, textures, bands, tile size."""
    session = session or open_session(model_path, threads=threads)
    info = read_model_info(model_path, session)
    if not info.has_textures:
        raise ModelError(f"The model '{info.title}' has no 'textures' output, so it cannot simulate the image "
                         "and novelty cannot measure what the textures miss. Use a model made by 'fit'.")
    order = feature_order(info.channel_names)
    ds = raster.open_raster(input_path)
    band_list = select_bands(ds, info, bands)
    t = int(tile_size)
    if t < 2 * FEATURE_STRIDE or t % (2 * FEATURE_STRIDE):   # half a tile is a whole number of CNN cells
        raise RasterError(f"{{name}} must be a multiple of {2 * FEATURE_STRIDE} pixels, got {t}.",
                          parameter="tile_size")
    if ds.RasterXSize < t or ds.RasterYSize < t:
        raise RasterError(f"The raster ({ds.RasterXSize} x {ds.RasterYSize} px) is smaller than one tile "
                          f"({t} x {t} px). Choose a smaller {{name}} (at least {2 * FEATURE_STRIDE}).",
                          parameter="tile_size")
    textures = session.run([OUTPUT_TEXTURES], {INPUT_NAME: np.zeros((1, info.num_channels, 8, 8), np.float32)})[0]
    fsess = open_session(features_path or FEATURES_MODEL, threads=threads)
    grid = tile_grid((ds.RasterXSize, ds.RasterYSize), t)
    ctx = _Context(session, fsess, info, info.num_classes, order, textures.astype(np.float32), t,
                   chunk_px_for(info), grid)
    return ds, band_list, ctx


def _scaling(ctx, ds, band_list, scaling, extra_nodata, warn):
    """``(scale_min, scale_max, warnings)`` as ``segment`` resolves and checks them."""
    smin, smax = resolve_scaling(ctx.info, ds, band_list, scaling, None, extra_nodata)
    warnings = [] if scaling != "model" else range_warnings(
        raster.sample_windows(ds, band_list, extra_nodata=extra_nodata), smin, smax, ctx.info.channel_names,
        band_list)
    for w in warnings:
        warn(w)
    return smin, smax, warnings


@dataclass(frozen=True)
class NoveltyOptions:
    """How :func:`rank_tiles` ranks, built once by each front end and passed whole.

    Attributes:
        bands: 1-based bands in the model's channel order (as ``segment``); ``None`` = from descriptions.
        tile_size: tile side in pixels (multiple of 16, >= 32); n_select: DEMUD selections.
        rank: the most singular vectors the model keeps (DEMUD's k); init_rank: those of the initial model.
        seed: seeds the random tiles of ``init_tiles`` > 0.
        init_tiles: -2 = the SVD of the typical tiles (:data:`INIT_TILES`), -1 = no initial model, 0 = the SVD
            of all tiles, N > 0 = the SVD of N random tiles (``seed``).
        residual_weight: weight of the k-textures residual block against the appearance block.
        scaling, extra_nodata, threads: as :class:`~ktextures_plugin.core.segment.SegmentOptions`.
        features_path: the feature CNN (default :data:`FEATURES_MODEL`).
    """

    bands: object = None
    tile_size: int = 64
    n_select: int = 20
    rank: int = DEFAULT_RANK
    seed: int = 0
    init_tiles: int = INIT_TILES
    init_rank: int = INIT_RANK
    residual_weight: float = 1.0
    scaling: str = "model"
    extra_nodata: Optional[float] = None
    threads: Optional[int] = None
    features_path: Optional[str] = None


def rank_tiles(input_path: str, model_path: str, opts: NoveltyOptions = NoveltyOptions(),
               feedback: Optional[Feedback] = None, *, session=None) -> NoveltyResult:
    """Rank the tiles of ``input_path`` by novelty with DEMUD (docs/novelty.md). Reads the input only.

    Args:
        input_path: any GDAL raster with the model's bands; model_path: a k-textures ONNX model with a
            ``textures`` output and red, green, blue, NIR channels.
        opts: :class:`NoveltyOptions`.
        feedback: progress (stages "features", "select"), cancel (polled between windows, tile batches and
            selections), one-line messages, and warnings (the raster's values against the model's range, as
            ``segment``; also in the result's ``warnings``).
        session: as ``segment_raster``.

    Returns:
        :class:`NoveltyResult`.

    Raises:
        ModelError, RasterError: as ``segment_raster``, plus a model without textures or RGBN channels, a
            raster smaller than one tile, every tile mostly nodata; ValueError: bad tile size, rank or
            n_select; Canceled: canceled; ImportError: onnxruntime missing.
    """
    t0 = time.perf_counter()
    fb = feedback or Feedback()
    progress, is_canceled, say = fb.progress, fb.is_canceled, fb.info
    if opts.n_select < 1 or opts.rank < 0:
        raise RasterError(f"{{name}} must be >= 1 and the rank >= 0 (got {opts.n_select}, {opts.rank})",
                          parameter="n_select")
    ds, band_list, ctx = _open(input_path, model_path, opts.bands, opts.tile_size, opts.threads, session,
                               opts.features_path)
    try:
        smin, smax, warnings = _scaling(ctx, ds, band_list, opts.scaling, opts.extra_nodata, fb.warning)
        ctx.tail_low, ctx.tail_high = tail_thresholds(ds, band_list, ctx.order, smin, smax, opts.extra_nodata)
        say(f"Model '{ctx.info.title}': k = {ctx.k}; bands {band_list} -> {ctx.info.channel_names}; "
            f"tiles {ctx.tile_size} px, grid {ctx.grid[0]} x {ctx.grid[1]}")
        with raster.gdal_cache_limit():
            table = extract_tiles(ds, band_list, ctx, smin, smax, opts.extra_nodata,
                                  (lambda f, s: progress(0.9 * f, s)) if progress else None, is_canceled)
        wh = (ds.RasterXSize, ds.RasterYSize)
    finally:
        ds = None
    say(f"{table.index.size} tiles scored, {table.skipped} skipped (mostly nodata)")
    items, blocks = design_matrix(table, opts.residual_weight)
    model = initial_model(items, min(opts.rank, int(opts.init_rank)), opts.init_tiles, opts.seed)
    sel = demud(items, opts.n_select, model, blocks, max_rank=opts.rank, is_canceled=is_canceled,
                progress=(lambda f, s: progress(0.9 + 0.1 * f, s)) if progress else None,
                exclude=overlapping(table, EXCLUDE_REACH))
    scores = np.full((ctx.grid[1], ctx.grid[0]), np.nan, np.float32)
    scores.flat[table.index] = sel.initial
    return NoveltyResult(scores, selected_tiles(sel, table, ctx.tile_size, wh), table, sel, ctx.info, band_list,
                         list(smin), list(smax), ctx.tile_size, opts.rank, time.perf_counter() - t0,
                         table.stage_norm(), warnings)


def overlapping(table: TileTable, reach: int = EXCLUDE_REACH):
    """``f(j)`` -> the scored tiles within ``reach`` positions of tile ``j`` in rows and columns (itself
    included; ``reach`` 1 = the tiles that overlap it): once a tile is selected none of them can be, so one
    place is shown once (docs/novelty.md, "Tiles")."""
    cols, rows = table.grid
    pos = np.full(rows * cols, -1, np.int64)
    pos[table.index] = np.arange(table.index.size)
    pos = pos.reshape(rows, cols)

    def near(j: int) -> np.ndarray:
        r, c = divmod(int(table.index[j]), cols)
        block = pos[max(0, r - reach):r + reach + 1, max(0, c - reach):c + reach + 1].ravel()
        return block[block >= 0]
    return near


def selected_tiles(sel: Selection, table: TileTable, t: int, size: Tuple[int, int]) -> List[SelectedTile]:
    """The selections as :class:`SelectedTile` in rank order; windows clipped to the raster ``size``."""
    out = []
    for r, j in enumerate(sel.order):
        row, col = divmod(int(table.index[j]), table.grid[0])
        x0, y0 = col * table.stride, row * table.stride
        win = (x0, y0, min(t, size[0] - x0), min(t, size[1] - y0))
        out.append(SelectedTile(r + 1, row, col, win, float(sel.scores[r]), float(sel.block_scores[r, 1]),
                                float(sel.initial[j]), table.class_counts[j]))
    return out
