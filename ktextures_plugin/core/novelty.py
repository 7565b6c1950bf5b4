"""Novelty ranking of raster tiles with DEMUD: the places the k textures cannot explain, as a short, diverse list.

Pipeline (docs/novelty.md): the raster is read window by window (``segment``'s reader thread and scaling);
the k-textures model classifies each window and its simulation is built from the model's ``textures`` (the
texture period anchored on the raster grid, as ``segment`` writes it); the tile grid (``tile_size`` px) cuts
the window into tiles; the frozen multi-scale feature CNN of the k-textures loss (``models/features_random_cnn
.onnx``) runs on every tile and on its simulation. Per tile: the mean and standard deviation of every feature
channel (appearance) and, per scale, the mean squared feature difference between tile and simulation (the
k-textures residual). The columns are standardised and weighted (:func:`design_matrix`), and
:func:`ktextures_plugin.core.demud.demud` selects the tiles. Memory grows with the number of tiles' feature
vectors (about 5.4 kB per tile), not with pixels. Outputs: ``novelty_output``.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

from .. import MODELS_DIR
from . import raster, tiling
from .bands import select_bands
from .demud import Selection, Subspace, demud
from .errors import Canceled, ModelError, Progress, RasterError
from .inference import chunk_px_for, infer_classes, open_session, read_model_info, simulate
from .modelinfo import INPUT_NAME, OUTPUT_TEXTURES
from .scaling import range_warnings, resolve_scaling
from .tileio import prefetch

#: the frozen feature CNN (``ktextures_plugin.training.export_features``; models/README.md)
FEATURES_MODEL = f"{MODELS_DIR}/features_random_cnn.onnx"
#: the feature CNN's channel order and the factor its deepest stage downsamples by
FEATURE_CHANNELS = ("red", "green", "blue", "nir")
FEATURE_STRIDE = 16
#: a tile with fewer valid pixels than this fraction is skipped (and counted)
MIN_VALID_FRACTION = 0.5
#: tiles per feature-CNN call (each tile also runs as its simulation)
FEATURE_BATCH = 8
#: default most singular vectors DEMUD's model keeps (docs/novelty.md, "Rank and initial model";
#: bench/novelty.py discovery)
DEFAULT_RANK = 4
#: default initial model: -1 = none (the same measurement)
INIT_TILES = -1


@dataclass
class TileTable:
    """Per-tile features of the scored (valid) tiles.

    Attributes:
        grid: ``(columns, rows)`` of the tile grid over the raster.
        index: int64 (m,) flat tile index ``row * columns + col`` of each scored tile.
        appearance: float32 (m, 2 * sum(widths)) mean and std per feature channel, scale by scale.
        residual: float32 (m, sum(widths)) mean squared feature difference tile - simulation, per channel.
        widths: feature channels of each scale (the residual's column blocks).
        class_counts: int64 (m, k) valid pixels of each class in the tile.
        skipped: tiles skipped as mostly nodata (valid fraction below :data:`MIN_VALID_FRACTION`).
    """

    grid: Tuple[int, int]
    index: np.ndarray
    appearance: np.ndarray
    residual: np.ndarray
    class_counts: np.ndarray
    skipped: int
    widths: Tuple[int, ...] = ()

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


def tile_features(fsess, x: np.ndarray, sim: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Appearance and residual features of tiles (docs/novelty.md, "Features").

    Args:
        fsess: onnxruntime session on :data:`FEATURES_MODEL`.
        x, sim: float32 (N, 4, T, T) tiles and their simulations, red, green, blue, NIR in [0, 1].

    Returns:
        ``(appearance float32 (N, 2 * sum(widths)), residual float32 (N, sum(widths)))``: per scale, the
        mean and the standard deviation of each channel over the tile; the mean squared difference of each
        channel between tile and simulation.
    """
    n = x.shape[0]
    maps = fsess.run(None, {"image": np.concatenate([x, sim])})
    app, res = [], []
    for f in maps:
        fx, fs = f[:n], f[n:]
        app += [fx.mean(axis=(2, 3)), fx.std(axis=(2, 3))]
        d = fx - fs
        res.append(np.einsum("nchw,nchw->nc", d, d) / float(d.shape[2] * d.shape[3]))
    return np.concatenate(app, axis=1).astype(np.float32), np.concatenate(res, axis=1).astype(np.float32)


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


def design_matrix(table: TileTable, residual_weight: float = 1.0) -> Tuple[np.ndarray, List[slice]]:
    """The DEMUD item matrix: every column standardised over the scored tiles (z-score; a constant column
    stays 0), the appearance block divided by sqrt(its width) and the residual block multiplied by
    ``residual_weight`` / sqrt(its width), so both blocks carry the same total variance (at weight 1).

    Returns:
        ``(items float32 (m, d), [appearance slice, residual slice])``.
    """
    da, dr = table.appearance.shape[1], table.residual.shape[1]
    items = np.empty((table.appearance.shape[0], da + dr), np.float32)   # filled in place: no float64 copy
    for block, src, w in ((slice(0, da), table.appearance, 1.0 / np.sqrt(da)),
                          (slice(da, da + dr), table.residual, residual_weight / np.sqrt(dr))):
        mean, sd = _column_stats(src)
        out = items[:, block]
        np.subtract(src, mean.astype(np.float32), out=out)
        out *= (w / np.where(sd > 0, sd, 1.0)).astype(np.float32)
    return items, [slice(0, da), slice(da, da + dr)]


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
    """DEMUD's starting model: ``init_tiles`` 0 = the rank-``rank`` SVD of all tiles; > 0 = of that many
    tiles drawn at random (``seed``); -1 = none (an empty model around the mean of all tiles)."""
    if init_tiles < 0:
        return Subspace.empty(items.shape[1], items.mean(axis=0, dtype=np.float64))
    if init_tiles == 0 or init_tiles >= items.shape[0]:
        return Subspace.fit(items, rank)
    pick = np.sort(np.random.default_rng(seed).choice(items.shape[0], int(init_tiles), replace=False))
    return Subspace.fit(items[pick], rank)


def _split_tiles(a: np.ndarray, t: int) -> np.ndarray:
    """(..., H, W) with H, W multiples of ``t`` -> (rows * cols, ..., t, t), tiles row by row."""
    lead = a.shape[:-2]
    ny, nx = a.shape[-2] // t, a.shape[-1] // t
    b = a.reshape(lead + (ny, t, nx, t))
    nd = len(lead)
    b = b.transpose((nd, nd + 2) + tuple(range(nd)) + (nd + 1, nd + 3))
    return b.reshape((ny * nx,) + lead + (t, t))


def _pad_to(a: np.ndarray, t: int, value) -> np.ndarray:
    h, w = a.shape[-2:]
    ph, pw = -(-h // t) * t - h, -(-w // t) * t - w
    if ph == 0 and pw == 0:
        return a
    return np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, ph), (0, pw)], constant_values=value)


def fill_invalid(x: np.ndarray, sim: np.ndarray, valid: np.ndarray) -> None:
    """In place, per tile: nodata pixels of ``x`` take the tile's mean valid value per channel and those of
    ``sim`` the same value, so that they add nothing to the residual. x, sim (N, C, T, T); valid (N, T, T)."""
    if valid.all():
        return
    m = valid[:, None].astype(np.float32)
    mean = (x * m).sum(axis=(2, 3)) / np.maximum(m.sum(axis=(2, 3)), 1.0)  # (N, C)
    fill = np.broadcast_to(mean[:, :, None, None], x.shape)
    inv = np.broadcast_to(~valid[:, None], x.shape)
    x[inv] = fill[inv]
    sim[inv] = fill[inv]


class _Block:
    """The tiles of one window: classified, simulated, cut and filtered (valid fraction)."""

    def __init__(self, tile, data, valid, ctx):
        cx, cy = tile.crop
        bx, by, bw, bh = tile.core
        t = ctx.tile_size
        x = data
        x[:, ~valid] = ctx.info.nodata_fill
        cls = infer_classes(ctx.session, x, ctx.info.halo_px, ctx.chunk_px)[cy:cy + bh, cx:cx + bw]
        cls = np.clip(cls, 0, ctx.k - 1)
        xc = x[ctx.order, cy:cy + bh, cx:cx + bw]
        sim = simulate(ctx.textures, cls, bx, by)[ctx.order]
        vc = _pad_to(valid[cy:cy + bh, cx:cx + bw], t, False)
        self.valid = _split_tiles(vc, t)                                   # (n, T, T)
        self.x = _split_tiles(_pad_to(xc, t, 0.0), t)                      # (n, 4, T, T)
        self.sim = _split_tiles(_pad_to(sim, t, 0.0), t)
        labels = np.where(vc, _pad_to(cls, t, 0), ctx.k)                   # k = nodata
        tl = _split_tiles(labels, t).reshape(self.valid.shape[0], -1)
        n = tl.shape[0]
        counts = np.bincount((tl + np.arange(n)[:, None] * (ctx.k + 1)).ravel(), minlength=n * (ctx.k + 1))
        self.counts = counts.reshape(n, ctx.k + 1)[:, :ctx.k]
        nx = vc.shape[1] // t
        rows, cols = np.divmod(np.arange(n), nx)
        self.index = (by // t + rows) * ctx.grid[0] + (bx // t + cols)
        self.keep = self.valid.reshape(n, -1).mean(axis=1) >= MIN_VALID_FRACTION
        self.any_valid = bool(vc.any())


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


def extract_tiles(ds, bands, ctx: _Context, smin, smax, extra_nodata=None, progress: Optional[Progress] = None,
                  is_canceled=None) -> TileTable:
    """Stream the raster window by window into a :class:`TileTable` (features of the valid tiles).

    Raises:
        Canceled: ``is_canceled()`` turned True (polled between windows and between tile batches).
        RasterError: no pixel is valid, or every tile is mostly nodata.
    """
    t = ctx.tile_size
    block = t * max(1, 512 // t)
    size = (ds.RasterXSize, ds.RasterYSize)
    tiles = list(tiling.iter_tiles((0, 0) + size, size, block, ctx.info.halo_px))
    widths = tuple(int(o.shape[1]) for o in ctx.fsess.get_outputs())
    n_grid = ctx.grid[0] * ctx.grid[1]   # filled row by row: no second copy when done
    app = np.empty((n_grid, 2 * sum(widths)), np.float32)
    res = np.empty((n_grid, sum(widths)), np.float32)
    idx, cnt = [], []
    n, skipped, any_valid = 0, 0, False
    with contextlib.closing(prefetch(ds, bands, iter(tiles), extra_nodata, is_canceled,
                                      prepare=lambda d: raster.scale_in_place(d, smin, smax))) as reader:
        for n_done, (tile, data, valid) in enumerate(reader):
            b = _Block(tile, data, valid, ctx)
            any_valid |= b.any_valid
            skipped += int((~b.keep).sum())
            keep = np.flatnonzero(b.keep)
            for a in range(0, keep.size, FEATURE_BATCH):
                if is_canceled and is_canceled():
                    raise Canceled()
                sel = keep[a:a + FEATURE_BATCH]
                xs, ss = b.x[sel], b.sim[sel]
                fill_invalid(xs, ss, b.valid[sel])
                app[n:n + sel.size], res[n:n + sel.size] = tile_features(ctx.fsess, xs, ss)
                n += sel.size
            idx.append(b.index[keep])
            cnt.append(b.counts[keep])
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
        app, res = app[:n].copy(), res[:n].copy()
    return TileTable(ctx.grid, np.concatenate(idx).astype(np.int64), app, res, np.concatenate(cnt).astype(np.int64),
                     skipped, widths)


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
    if t < 2 * FEATURE_STRIDE or t % FEATURE_STRIDE:
        raise RasterError(f"{{name}} must be a multiple of {FEATURE_STRIDE} pixels and at least "
                          f"{2 * FEATURE_STRIDE}, got {t}.", parameter="tile_size")
    if ds.RasterXSize < t or ds.RasterYSize < t:
        raise RasterError(f"The raster ({ds.RasterXSize} x {ds.RasterYSize} px) is smaller than one tile "
                          f"({t} x {t} px). Choose a smaller {{name}} (at least {2 * FEATURE_STRIDE}).",
                          parameter="tile_size")
    textures = session.run([OUTPUT_TEXTURES], {INPUT_NAME: np.zeros((1, info.num_channels, 8, 8), np.float32)})[0]
    fsess = open_session(features_path or FEATURES_MODEL, threads=threads)
    grid = (-(-ds.RasterXSize // t), -(-ds.RasterYSize // t))
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


def rank_tiles(input_path: str, model_path: str, *, bands=None, tile_size: int = 64, n_select: int = 20,
               rank: int = DEFAULT_RANK, seed: int = 0, init_tiles: int = INIT_TILES, residual_weight: float = 1.0,
               scaling: str = "model", extra_nodata: Optional[float] = None, threads: Optional[int] = None,
               progress: Optional[Progress] = None, is_canceled=None, log=None, session=None,
               features_path: Optional[str] = None, warn=None) -> NoveltyResult:
    """Rank the tiles of ``input_path`` by novelty with DEMUD (docs/novelty.md). Reads the input only.

    Args:
        input_path: any GDAL raster with the model's bands; model_path: a k-textures ONNX model with a
            ``textures`` output and red, green, blue, NIR channels.
        bands: 1-based bands in the model's channel order (as ``segment``); ``None`` = from descriptions.
        tile_size: tile side in pixels (multiple of 16, >= 32); n_select: DEMUD selections.
        rank: the most singular vectors the model keeps (DEMUD's k; also the rank of an initial model).
        init_tiles: -1 = no initial model (:data:`INIT_TILES`), 0 = the SVD of all tiles, N > 0 = the SVD
            of N random tiles (``seed``).
        residual_weight: weight of the k-textures residual block against the appearance block.
        scaling, extra_nodata, threads, session: as ``segment_raster``.
        progress: ``progress(fraction, stage)``, stages "features", "select"; is_canceled: polled between
            windows, tile batches and selections; log: one-line messages; warn: receives warnings (the
            raster's values against the model's range, as ``segment``), also in ``warnings``.

    Returns:
        :class:`NoveltyResult`.

    Raises:
        ModelError, RasterError: as ``segment_raster``, plus a model without textures or RGBN channels, a
            raster smaller than one tile, every tile mostly nodata; ValueError: bad tile size, rank or
            n_select; Canceled: canceled; ImportError: onnxruntime missing.
    """
    t0 = time.perf_counter()
    say = log or (lambda _m: None)
    if n_select < 1 or rank < 0:
        raise RasterError(f"{{name}} must be >= 1 and the rank >= 0 (got {n_select}, {rank})", parameter="n_select")
    ds, band_list, ctx = _open(input_path, model_path, bands, tile_size, threads, session, features_path)
    try:
        smin, smax, warnings = _scaling(ctx, ds, band_list, scaling, extra_nodata, warn or (
            lambda m: say("Warning: " + m)))
        say(f"Model '{ctx.info.title}': k = {ctx.k}; bands {band_list} -> {ctx.info.channel_names}; "
            f"tiles {ctx.tile_size} px, grid {ctx.grid[0]} x {ctx.grid[1]}")
        with raster.gdal_cache_limit():
            table = extract_tiles(ds, band_list, ctx, smin, smax, extra_nodata,
                                  (lambda f, s: progress(0.9 * f, s)) if progress else None, is_canceled)
        wh = (ds.RasterXSize, ds.RasterYSize)
    finally:
        ds = None
    say(f"{table.index.size} tiles scored, {table.skipped} skipped (mostly nodata)")
    items, blocks = design_matrix(table, residual_weight)
    model = initial_model(items, rank, init_tiles, seed)
    try:
        sel = demud(items, n_select, model, blocks, max_rank=rank, is_canceled=is_canceled,
                    progress=(lambda f, s: progress(0.9 + 0.1 * f, s)) if progress else None)
    except InterruptedError:
        raise Canceled() from None
    scores = np.full((ctx.grid[1], ctx.grid[0]), np.nan, np.float32)
    scores.flat[table.index] = sel.initial
    return NoveltyResult(scores, _selected_tiles(sel, table, ctx.tile_size, wh), table, sel, ctx.info, band_list,
                         list(smin), list(smax), ctx.tile_size, rank, time.perf_counter() - t0,
                         table.stage_norm(), warnings)


def _selected_tiles(sel: Selection, table: TileTable, t: int, size: Tuple[int, int]) -> List[SelectedTile]:
    out = []
    for r, j in enumerate(sel.order):
        row, col = divmod(int(table.index[j]), table.grid[0])
        x0, y0 = col * t, row * t
        win = (x0, y0, min(t, size[0] - x0), min(t, size[1] - y0))
        out.append(SelectedTile(r + 1, row, col, win, float(sel.scores[r]), float(sel.block_scores[r, 1]),
                                float(sel.initial[j]), table.class_counts[j]))
    return out
