"""``novelty``: how well DEMUD finds planted anomalies (choice of RANK and of the initial model), and its speed.

Usage (from the repository root; long runs under the shared CPU lock):

    flock /tmp/ktextures-cpu.lock .venv/bin/python bench/novelty.py discovery [--seeds 0 1 ... 9] [--size 2048]
    flock /tmp/ktextures-cpu.lock .venv/bin/python bench/novelty.py speed [--size 8192] [--repeats 3]

``discovery``: for each seed, a copy of the bundled sample (or a ``--size`` mosaic of it, mirrored copies)
gets three different 64 x 64 px patches pasted on random tile-aligned places, plus a second copy of the
first one: a patch of the Amazon scene (reflectance x 10000), a patch of the Slovenia scene (digital numbers)
and a flat block at the sample's per-band median (typical colour, no texture); from the labelled scenes
(docs/development.md §2). The tile features are computed once per planted raster (bundled k = 6 model),
then DEMUD runs for every initial model
(``--inits``: -1 = none, 0 = all tiles, N = N random tiles) and rank (``--ranks``). Reported, as means over the
seeds, with 20 selections and the model truncated to the rank after each (DEMUD's k): ``first`` = share of
runs whose rank-1 tile is planted; ``kinds@5`` / ``kinds@20`` = distinct planted kinds (of 3) among the first
5 / 20 selections; ``twin@2`` = share of runs whose first two selections are the two copies, ``twins@20`` =
share whose 20 selections hold both copies (lower is better for both).

``speed``: ``python -m ktextures_plugin novelty`` on a ``--size`` mosaic (tile 64, 20 selections, default
rank; score raster and selected tiles, no HTML), each repeat in its own subprocess; tiles per second over the
whole command and peak RSS (ru_maxrss of the child); in the same run ``segment`` (default model, tile 512) on
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


def _patches(rng):
    from osgeo import gdal
    gdal.UseExceptions()
    ama = gdal.Open(os.path.join(SHARED, "s2_amazon", "s2_amazon_b2b3b4b8_10m_reflectance.tif")).ReadAsArray()
    slo = gdal.Open(os.path.join(SHARED, "s2_slovenia", "s2_slovenia_ref0_b2b3b4b8_10m.tif")).ReadAsArray()
    sample = gdal.Open(os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif")).ReadAsArray()
    ay, ax = rng.integers(0, ama.shape[1] - T), rng.integers(0, ama.shape[2] - T)
    sy, sx = rng.integers(0, slo.shape[1] - T), rng.integers(0, slo.shape[2] - T)
    amazon = np.clip(np.nan_to_num(ama[:, ay:ay + T, ax:ax + T]) * 10000, 0, 65535).astype(np.uint16)
    flat = np.broadcast_to(np.median(sample, axis=(1, 2)).astype(np.uint16)[:, None, None], (4, T, T))
    return {"amazon": amazon, "slovenia": slo[:, sy:sy + T, sx:sx + T].astype(np.uint16), "flat": flat}


def planted(base: str, dst: str, seed: int):
    """Copy ``base`` to ``dst`` with the planted patches; returns {tile flat index: kind} (``grid`` columns)."""
    from osgeo import gdal
    rng = np.random.default_rng(seed)
    patches = _patches(rng)
    gdal.Translate(dst, base)
    ds = gdal.Open(dst, gdal.GA_Update)
    cols, rows = ds.RasterXSize // T, ds.RasterYSize // T
    spots = rng.choice(cols * rows, 4, replace=False)
    kinds = {}
    for spot, kind in zip(spots, ["amazon", "slovenia", "flat", "amazon"]):
        r, c = divmod(int(spot), cols)
        for b in range(4):
            ds.GetRasterBand(b + 1).WriteArray(np.ascontiguousarray(patches[kind][b]), int(c * T), int(r * T))
        kinds[int(r * (-(-ds.RasterXSize // T)) + c)] = kind
    ds = None
    return kinds


def discovery(args):
    from speed import build_mosaic

    from ktextures_plugin import bundled_model_path
    from ktextures_plugin.core import demud, novelty
    os.makedirs(OUT, exist_ok=True)
    base = (os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif") if not args.size
            else build_mosaic(args.size))
    rows = {}
    for seed in args.seeds:
        dst = os.path.join(OUT, f"novelty_planted_{args.size or 'sample'}_{seed}.tif")
        kinds = planted(base, dst, seed)
        res = novelty.rank_tiles(dst, bundled_model_path(1), n_select=1)
        items, blocks = novelty.design_matrix(res.table)
        idx = res.table.index
        for init in args.inits:
            for rank in args.ranks:
                model = novelty.initial_model(items, rank, init, seed)
                sel = demud.demud(items, 20, model, blocks, max_rank=rank)
                got = [kinds.get(int(idx[j])) for j in sel.order]
                spots = [int(idx[j]) for j in sel.order]
                twins = {k for k, v in kinds.items() if v == "amazon"}
                rows.setdefault((init, rank), []).append(
                    (got[0] is not None, len({g for g in got[:5] if g}), len({g for g in got[:20] if g}),
                     set(spots[:2]) == twins, twins <= set(spots)))
        print(f"seed {seed}: {len(idx)} tiles", file=sys.stderr)
    print("| raster | initial model | rank | runs | first | kinds@5 | kinds@20 | twin@2 | twins@20 |\n"
          "|---|---|---|---|---|---|---|---|---|")
    name = f"mosaic {args.size}" if args.size else "sample 512 x 768"
    for (init, rank), v in sorted(rows.items()):
        a = np.asarray(v, float)
        label = {-1: "none", 0: "all tiles"}.get(init, f"{init} random tiles")
        print(f"| {name} | {label} | {rank} | {len(v)} | {a[:, 0].mean():.2f} | {a[:, 1].mean():.2f} | "
              f"{a[:, 2].mean():.2f} | {a[:, 3].mean():.2f} | {a[:, 4].mean():.2f} |")


def _timed(args_list):
    """Run ``python -m ktextures_plugin ARGS`` in a child process; returns (seconds, peak RSS MB)."""
    code = ("import resource, runpy, sys, time; sys.argv = ['ktextures_plugin'] + sys.argv[1:]; t = time.time()\n"
            "try:\n    runpy.run_module('ktextures_plugin', run_name='__main__')\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\n"
            "print('BENCH', time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
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
    tiles = (-(-args.size // T)) ** 2
    nov = statistics.median(s for s, _ in runs["novelty"])
    seg = statistics.median(s for s, _ in runs["segment"])
    print("| raster | tiles of 64 px | repeats | novelty s (median) | tiles/s | peak RSS MB (max) | segment s (median) "
          "| novelty / segment |\n|---|---|---|---|---|---|---|---|")
    print(f"| mosaic {args.size} x {args.size} | {tiles} | {args.repeats} | {nov:.1f} | {tiles / nov:.0f} | "
          f"{max(m for _, m in runs['novelty']):.0f} | {seg:.1f} | {nov / seg:.1f} |")
    print("per repeat: novelty " + " / ".join(f"{s:.1f}" for s, _ in runs["novelty"]) + "; segment "
          + " / ".join(f"{s:.1f}" for s, _ in runs["segment"]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("discovery")
    d.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    d.add_argument("--size", type=int, default=0, help="mosaic side in px (0 = the sample itself)")
    d.add_argument("--inits", type=int, nargs="+", default=[-1, 0, 64])
    d.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    s = sub.add_parser("speed")
    s.add_argument("--size", type=int, default=8192)
    s.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    discovery(args) if args.what == "discovery" else speed(args)


if __name__ == "__main__":
    main()
