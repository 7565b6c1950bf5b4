"""``novelty``: does DEMUD rank a planted anomaly first (choice of the initial model and RANK), and its speed.

Usage (from the repository root; long runs under the shared CPU lock):

    flock /tmp/ktextures-cpu.lock .venv/bin/python bench/novelty.py planted [--scenes sample west naip olinda]
        [--n 20] [--kinds cloud ...] [--configs typical1:4:1:3:1:split-z ...] [--cache [--fresh-tails]]
    flock /tmp/ktextures-cpu.lock .venv/bin/python bench/novelty.py speed [--size 8192] [--repeats 3]

``planted``: per scene (:data:`SCENES`: the bundled sample, and from the labelled scenes the west half of the
same Sentinel-2 scene, a NAIP scene of North Dakota, the Landsat 7 Olinda scene) and per anomaly kind
(:data:`KINDS`: a bright flat cloud-like block, 7000-7300 in every band for Sentinel-2 and 240-255 for 8-bit
data; a dark flat water-like block; a seam of 8 bad lines, saturated and dropped by turns, horizontal or
vertical; a bright textured roof block with a dark edge), ``--n`` placements with long sides of 32-96 px at
positions drawn with a fixed seed and never on a multiple of 16 px. Each placement is one planted copy of the
scene; its tile features are computed once (``rank_tiles``, bundled k = 6 model, tile 64 px every 32 px), then
DEMUD runs for every configuration ``initial model:rank[:residual weight[:reach[:tail weight[:tail
scaling]]]]`` (initial model: ``typical`` = the SVD of the typical tiles at DEMUD's rank, ``typicalR`` = at
rank R (the default ``typical1``), ``all`` tiles, ``none``, ``sample`` = 128 random tiles, ``grid`` = the
non-overlapping tiles, ``trim``; reach = the exclusion around a selected tile, in positions; tail weight 0 =
no tail blocks, the previous default; tail scaling as ``novelty.design_matrix``; missing parts = the core's
defaults). ``--cache`` keeps each placement's tile table in bench/out/novelty_cache and reuses it, with the
tail blocks computed from the whole planted raster by the same core function (``novelty.tail_features``; the
same numbers as the streamed run), so that configurations and tail features can be screened without running
the CNN again; the reported figures come from runs without it. Reported per scene and kind: the share
of placements whose rank-1 tile *shows* the anomaly (shares at least half of the smaller of tile and anomaly),
the share with such a tile in the first 3, the number of placements with two or more of the first 3 tiles
*touching* it (sharing a tenth of that), the share whose first 3 selection scores do not increase, and the
share whose first selection outside the scene's own first 3 (the same configuration on the scene without the
anomaly; tiles overlapping them and not the anomaly are passed over) shows the anomaly.

``speed``: ``python -m ktextures_plugin novelty`` on a ``--size`` mosaic (tile 64, 20 selections, default
rank; score raster and selected tiles, no HTML), each repeat in its own subprocess; tiles per second over the
whole command and peak RSS (``VmHWM`` of the child); in the same run ``segment`` (default model, tile 512) on
the same mosaic, the peer that reads the same pixels and runs the same model. Prints Markdown tables for
docs/benchmarks.md.
"""
import argparse
import os
import statistics
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
OUT = os.path.join(ROOT, "bench", "out")
T = 64


#: the scenes of ``planted``: name -> (path, bands in the model's order, scaling, value range of a cloud)
SCENES = {
    "sample": (os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif"), "3,2,1,4", "model",
               (7000, 7300)),
    "west": (os.path.join(SHARED, "s2_brandenburg_west", "s2_t33uuu_west_b2b3b4b8_10m.tif"), "3,2,1,4", "model",
             (7000, 7300)),
    "naip": (os.path.join(SHARED, "naip_nd", "m_4709963_se_14_1_20180716.tif"), "1,2,3,4", "stretch", (240, 255)),
    "olinda": (os.path.join(SHARED, "landsat7_olinda", "L7_ETMs_olinda_6band_28m5.tif"), "3,2,1,4", "stretch",
               (240, 255)),
}
KINDS = ("cloud", "water", "stripe", "roof")


def _anomaly(kind, size, data, cloud, rng):
    """``(dy, dx, values (B, h, w))`` of one planted anomaly of ``kind`` and long side ``size`` px, in the
    scene's units; ``data`` (B, H, W) the scene (its percentiles set the colours), values are cast later."""
    nb = data.shape[0]
    flat = data.reshape(nb, -1)
    if kind == "cloud":   # bright, flat, cloud-like: the same range in every band
        return rng.uniform(*cloud, (nb, size, size))
    if kind == "water":   # dark and flat; NIR darker still (the band of lowest median taken as NIR-like)
        lo = np.percentile(flat, 0.5, axis=1)
        v = np.broadcast_to((0.6 * lo)[:, None, None], (nb, size, size)).copy()
        return v * rng.uniform(0.97, 1.03, v.shape)
    if kind == "stripe":  # a seam of bad lines: 8 lines alternating between saturated and dropped values
        hi, lo = np.percentile(flat, 99.9, axis=1), np.percentile(flat, 0.1, axis=1)
        v = np.where((np.arange(8) % 2 == 0)[None, :, None], 1.3 * hi[:, None, None], 0.5 * lo[:, None, None])
        v = np.broadcast_to(v, (nb, 8, size)).copy()
        return v if rng.random() < 0.5 else v.transpose(0, 2, 1).copy()
    if kind == "roof":    # a bright roof block with texture and a dark (shadow) edge on two sides
        h = int(rng.integers(max(32, int(0.6 * size)), size + 1))
        hi, dark = np.percentile(flat, 99.9, axis=1), np.percentile(flat, 2, axis=1)
        v = (1.15 * hi)[:, None, None] * rng.uniform(0.93, 1.07, (nb, h, size))
        v[:, -2:, :] = dark[:, None, None]
        v[:, :, -2:] = dark[:, None, None]
        return v
    raise ValueError(kind)


def placements(scene, kind, n, seed):
    """``n`` anomalies of ``kind`` for ``scene``: ``[(x, y, values (B, h, w))]``, sizes 32-96 px, positions
    uniform with a fixed seed and never on a multiple of 16 px (no tile grid)."""
    from osgeo import gdal
    gdal.UseExceptions()
    path, _, _, cloud = SCENES[scene]
    data = gdal.Open(path).ReadAsArray().astype(np.float64)
    rng = np.random.default_rng([seed, KINDS.index(kind), sorted(SCENES).index(scene)])
    out = []
    for _ in range(n):
        v = _anomaly(kind, int(rng.integers(32, 97)), data, cloud, rng)
        h, w = v.shape[1:]
        while True:
            x, y = int(rng.integers(0, data.shape[2] - w + 1)), int(rng.integers(0, data.shape[1] - h + 1))
            if x % 16 and y % 16:
                break
        out.append((x, y, v))
    return out


def plant(path, dst, x, y, values):
    """Copy ``path`` to ``dst`` (GeoTIFF) with ``values`` (B, h, w) written at column ``x``, row ``y``."""
    from osgeo import gdal
    gdal.Translate(dst, path)
    ds = gdal.Open(dst, gdal.GA_Update)
    dt = gdal.GetDataTypeName(ds.GetRasterBand(1).DataType)
    top = {"Byte": 255, "UInt16": 65535}.get(dt, np.inf)
    for b in range(values.shape[0]):
        ds.GetRasterBand(b + 1).WriteArray(np.ascontiguousarray(np.clip(np.rint(values[b]), 1, top)), x, y)
    ds = None
    return dst


def overlap(win, rect):
    """Pixels shared by the tile window ``(x, y, w, h)`` and the anomaly ``rect`` ``(x, y, w, h)``."""
    ox = min(win[0] + win[2], rect[0] + rect[2]) - max(win[0], rect[0])
    oy = min(win[1] + win[3], rect[1] + rect[3]) - max(win[1], rect[1])
    return max(ox, 0) * max(oy, 0)


def judge(wins, rect):
    """``(hit@1, hit@3, tiles of the anomaly in the first 3)``: a tile *shows* the anomaly when they share
    at least half of the smaller of the two, and *touches* it when they share at least a tenth of it."""
    need = min(rect[2] * rect[3], wins[0][2] * wins[0][3]) if wins else 0
    shows = [overlap(w, rect) >= 0.5 * need for w in wins[:3]]
    touch = [overlap(w, rect) >= 0.1 * need for w in wins[:3]]
    return bool(shows and shows[0]), any(shows), sum(touch)


CONFIGS_DEFAULT = ["typical1:4:1:3:1:split-z", "typical1:4:1:3:0", "typical1:4:1:3:0.7:split-z",
                   "typical1:4:1:3:1:z", "typical1:4:1:3:1:robust-log", "typical1:4:1:3:1.5:robust-log",
                   "typical1:4:1:3:1:split-robust-log"]


def _model(items, how, rank, seed, table=None):
    from ktextures_plugin.core.novelty import demud, novelty
    if how == "grid":   # the SVD of the non-overlapping tiles (even rows and columns of positions)
        r, c = np.divmod(table.index, table.grid[0])
        return demud.Subspace.fit(items[(r % 2 == 0) & (c % 2 == 0)], rank)
    if how == "mean":   # rank 0: the mean of all tiles, weighted as all of them (the first update barely moves it)
        m = demud.Subspace.empty(items.shape[1], items.mean(axis=0, dtype=np.float64))
        m.n = items.shape[0]
        return m
    if how.startswith("typical") and how[7:]:   # typicalR: the typical tiles' SVD at rank R < DEMUD's k
        return novelty.initial_model(items, int(how[7:]), -2, seed)
    if how == "trim":   # the SVD of all tiles, fitted again without the tenth it explains worst
        first = demud.Subspace.fit(items, rank)
        err = first.errors(items)
        return demud.Subspace.fit(items[err <= np.percentile(err, 90)], rank)
    return novelty.initial_model(items, rank, {"none": -1, "all": 0, "sample": 128, "typical": -2}[how], seed)


def _select(table, cfg, seed, wh, tile, designs):
    """DEMUD with configuration ``cfg`` on a tile table: ``(windows of 8 selections, selection scores)``."""
    from ktextures_plugin.core.novelty import demud, novelty
    parts = cfg.split(":")
    how, rank, weight, reach, tw, ts = parts + ["1", "1", str(novelty.TAIL_WEIGHT), novelty.TAIL_SCALING][
        len(parts) - 2:]
    if (weight, tw, ts) not in designs:
        designs[(weight, tw, ts)] = novelty.design_matrix(table, float(weight), float(tw), ts)
    items, blocks = designs[(weight, tw, ts)]
    sel = demud.demud(items, 8, _model(items, how, int(rank), seed, table), blocks, max_rank=int(rank),
                      exclude=novelty.overlapping(table, int(reach)))
    return [s.window for s in novelty.selected_tiles(sel, table, tile, wh)], sel.scores


def _table(path, bands, scaling, args, model, key):
    """The tile table of ``path`` (``rank_tiles``), or with ``--cache`` the one stored under ``key`` by an
    earlier run (bench/out/novelty_cache; delete it when the CNN features change) with its tail block
    computed again from ``path`` (:func:`_tails`, the same numbers as ``rank_tiles`` gives)."""
    import dataclasses

    from ktextures_plugin.core.novelty import novelty
    f = os.path.join(OUT, "novelty_cache", key + ".npz")
    if args.cache and os.path.exists(f):
        z = np.load(f, allow_pickle=True)
        kw = {k: z[k] for k in z.files if k != "tails"}
        kw["grid"], kw["widths"] = tuple(int(v) for v in kw["grid"]), tuple(int(v) for v in kw["widths"])
        kw["skipped"], kw["stride"] = int(kw["skipped"]), int(kw["stride"])
        table = novelty.TileTable(**kw)
        ft = f[:-4] + "_tails.npy"
        if os.path.exists(ft) and not args.fresh_tails:
            table.tails = np.load(ft)
        else:
            table.tails = _tails(path, bands, scaling, model, table)
            np.save(ft, table.tails)
        return table
    table = novelty.rank_tiles(path, model, novelty.NoveltyOptions(bands=bands, scaling=scaling, n_select=1,
                                                                   tile_size=args.tile)).table
    if args.cache:
        os.makedirs(os.path.dirname(f), exist_ok=True)
        np.savez(f, **{k.name: np.asarray(getattr(table, k.name)) for k in dataclasses.fields(table)
                       if getattr(table, k.name) is not None})
    return table


def _tails(path, bands, scaling, model, table):
    """The tail block of ``table`` computed from the whole raster ``path`` at once (the scenes are small):
    ``novelty.tail_features`` on the raster scaled as ``rank_tiles`` scales it, padded with nodata to the
    tile grid; float32 (m, 12)."""
    from ktextures_plugin.core.io import raster
    from ktextures_plugin.core.novelty import novelty
    from ktextures_plugin.core.segment.bands import select_bands
    from ktextures_plugin.core.segment.inference import read_model_info
    from ktextures_plugin.core.segment.scaling import resolve_scaling
    info = read_model_info(model)
    ds = raster.open_raster(path)
    bl = select_bands(ds, info, [int(b) for b in bands.split(",")])
    smin, smax = resolve_scaling(info, ds, bl, scaling, None, None)
    order = novelty.feature_order(info.channel_names)
    lo, hi = novelty.tail_thresholds(ds, bl, order, smin, smax)
    data, valid = raster.read_window(ds, bl, (0, 0, ds.RasterXSize, ds.RasterYSize))
    x = novelty.scale_for_features(data.astype(np.float32), smin, smax)[order]
    s = table.stride
    h, w = (table.grid[1] + 1) * s, (table.grid[0] + 1) * s
    xp, vp = np.zeros((x.shape[0], h, w), np.float32), np.zeros((h, w), bool)
    xp[:, :x.shape[1], :x.shape[2]], vp[:x.shape[1], :x.shape[2]] = x[:, :h, :w], valid[:h, :w]
    return novelty.tail_features(xp, vp, lo, hi, 2 * s)[table.index]


def _own(path, bands, scaling, args, model, scene):
    """The first 3 selections of each configuration on the scene without a planted anomaly."""
    from osgeo import gdal
    table = _table(path, bands, scaling, args, model, f"{scene}_own_t{args.tile}")
    wh = (gdal.Open(path).RasterXSize, gdal.Open(path).RasterYSize)
    designs = {}
    return {cfg: _select(table, cfg, args.seed, wh, args.tile, designs)[0][:3] for cfg in args.configs}


def run_planted(args):
    from osgeo import gdal

    from ktextures_plugin import bundled_model_path
    os.makedirs(OUT, exist_ok=True)
    model = bundled_model_path(1)
    tally = {}
    for scene in args.scenes:
        path, bands, scaling, _ = SCENES[scene]
        own = _own(path, bands, scaling, args, model, scene)
        for kind in args.kinds:
            for i, (x, y, v) in enumerate(placements(scene, kind, args.n, args.seed)):
                dst = plant(path, os.path.join(OUT, f"novelty_planted_{os.getpid()}.tif"), x, y, v)
                rect = (x, y, v.shape[2], v.shape[1])
                table = _table(dst, bands, scaling, args, model, f"{scene}_{kind}_{i}_s{args.seed}_t{args.tile}")
                designs = {}
                wh = (gdal.Open(dst).RasterXSize, gdal.Open(dst).RasterYSize)
                for cfg in args.configs:
                    wins, scores = _select(table, cfg, args.seed, wh, args.tile, designs)
                    mono = bool(np.all(np.diff(scores[:3]) <= 1e-9))
                    new = [w for w in wins if not any(overlap(w, o) > 0 and overlap(w, rect) == 0 for o in own[cfg])]
                    tally.setdefault((scene, kind, cfg), []).append(judge(wins, rect) + (mono, judge(new, rect)[0]))
                print(f"{scene} {kind} {i}: {rect} " + " ".join(
                    f"{c}={int(tally[(scene, kind, c)][-1][0])}" for c in args.configs), file=sys.stderr, flush=True)
    _report(tally, args.configs)


def _report(tally, configs):
    print("| initial model : rank : residual weight : reach | scene | kind | placements | rank 1 | in first 3 | "
          "two of it in first 3 | scores non-increasing | first after the scene's own |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for cfg in configs:
        rows = [(s, k, v) for (s, k, c), v in tally.items() if c == cfg] + [
            ("all", "all", [r for (s, k, c), v in tally.items() if c == cfg for r in v])]
        for scene, kind, v in rows:
            a = np.asarray(v, float)
            print(f"| {cfg} | {scene} | {kind} | {len(v)} | {a[:, 0].mean():.2f} | {a[:, 1].mean():.2f} | "
                  f"{int((a[:, 2] >= 2).sum())} | {a[:, 3].mean():.2f} | {a[:, 4].mean():.2f} |")


def _timed(args_list):
    """Run ``python -m ktextures_plugin ARGS`` in a child process; returns (seconds, peak RSS MB).

    Peak RSS is the child's ``VmHWM`` (``/proc/self/status``: the high-water mark of its own address space);
    ``ru_maxrss`` would also count the parent's resident pages at the spawn (Linux keeps the old address
    space's high-water mark across ``exec``), as bench/memory.py found."""
    code = ("import runpy, sys, time; sys.argv = ['ktextures_plugin'] + sys.argv[1:]; t = time.time()\n"
            "try:\n    runpy.run_module('ktextures_plugin', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]\n"
            "print('BENCH', time.time() - t, hwm, file=sys.stderr)")
    cp = subprocess.run([sys.executable, "-c", code] + args_list, cwd=ROOT, capture_output=True, text=True)
    line = [ln for ln in cp.stderr.splitlines() if ln.startswith("BENCH")]
    if cp.returncode != 0 or not line:
        raise SystemExit(cp.stderr[-2000:])
    _, s, kb = line[-1].split()
    return float(s), int(kb) / 1024


def speed(args):
    from speed import build_mosaic
    src = build_mosaic(args.size)
    os.makedirs(OUT, exist_ok=True)
    runs = {"novelty": [], "segment": []}
    for _ in range(args.repeats):
        runs["novelty"].append(_timed(["novelty", src, "--score", os.path.join(OUT, "novelty_score.tif"),
                                       "--selected", os.path.join(OUT, "novelty_selected.gpkg"), "--quiet"]))
        runs["segment"].append(_timed(["segment", src, "--out", os.path.join(OUT, "novelty_peer_classes.tif"),
                                       "--quiet"]))
    from ktextures_plugin.core.novelty.novelty import tile_grid
    cols, rows = tile_grid((args.size, args.size), T)
    tiles = cols * rows
    nov = statistics.median(s for s, _ in runs["novelty"])
    seg = statistics.median(s for s, _ in runs["segment"])
    print("| raster | tiles of 64 px every 32 px | repeats | novelty s (median) | tiles/s | peak RSS MB (max) "
          "| segment s (median) | novelty / segment |\n|---|---|---|---|---|---|---|---|")
    print(f"| mosaic {args.size} x {args.size} | {tiles} | {args.repeats} | {nov:.1f} | {tiles / nov:.0f} | "
          f"{max(m for _, m in runs['novelty']):.0f} | {seg:.1f} | {nov / seg:.1f} |")
    print("per repeat: novelty " + " / ".join(f"{s:.1f}" for s, _ in runs["novelty"]) + "; segment "
          + " / ".join(f"{s:.1f}" for s, _ in runs["segment"]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("planted")
    d.add_argument("--scenes", nargs="+", default=["sample", "west", "naip"], choices=sorted(SCENES))
    d.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    d.add_argument("--n", type=int, default=20, help="placements per scene and kind")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--tile", type=int, default=T, help="tile size in px (default 64)")
    d.add_argument("--cache", action="store_true", help="keep the tile tables in bench/out/novelty_cache and "
                   "reuse them (screening DEMUD configurations on the same features)")
    d.add_argument("--fresh-tails", action="store_true", help="with --cache: compute the tail block again")
    d.add_argument("--configs", nargs="+", default=CONFIGS_DEFAULT,
                   help="initial model:rank[:residual weight[:reach[:tail weight[:tail scaling]]]] (missing: "
                        "the core's defaults; tail weight 0 = no tail block); initial model = typical | "
                        "typicalR (initial rank R) | mean | none | all | sample (128 tiles) | grid | trim")
    s = sub.add_parser("speed")
    s.add_argument("--size", type=int, default=8192)
    s.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    run_planted(args) if args.what == "planted" else speed(args)


if __name__ == "__main__":
    main()
