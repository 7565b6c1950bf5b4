"""Speed and memory of ``segment`` on large rasters, against the I/O floor, pure inference and k-means.

Usage (from the repository root, on an otherwise idle machine):

    .venv/bin/python bench/speed.py [--sizes 8192 16384] [--repeats 3] [--model models/s2_10m_k6.onnx]

For each size, a mosaic of the bundled sample (4-band UInt16, tiled DEFLATE GeoTIFF) is built once in
``bench/out/``; then, each measurement in its own subprocess (peak RSS = that process's ``ru_maxrss``):

- ``segment``: ``python -m ktextures_plugin segment`` to a class raster (no polygons);
- I/O floor: read the model's 4 bands and write a one-band Byte GeoTIFF (the class raster's creation options)
  window by window, no computation; the written values are class-like (``band >> 8``, a handful of values);
- inference: the model alone on the same number of pixels, tiles already in memory, called as ``segment``
  calls it (``core.segment.inference.infer_classes``, row strips of ``chunk_px_for``), but with onnxruntime's
  spinning thread pool, its fastest setting for back-to-back runs (``segment`` turns spinning off);
- ``kmeans``: ``python -m ktextures_plugin kmeans`` (k = the model's k) on the same raster;
- polygonize: GDAL polygonize of the class raster (separately).

``--smoothing BETA [BETA ...]`` measures only ``segment``, once per beta in each repeat, side by side (alternating
in the same run; ``0`` = off), and prints the medians and each beta's ratio to the first. A model without a
``scores`` output is measured through a copy in ``bench/out/`` whose ``scores`` output is the input of its
``class`` ArgMax (the per-class logits; models/README.md), which is what the smoothing step reads.

``--grass`` measures only ``segment`` (the model's default smoothing) and GRASS GIS ``i.cluster`` + ``i.maxlik``
(k = the model's k; ``bench/quality.py``'s ``grass_cluster``: import into a temporary location, ``i.cluster``,
``i.maxlik``, export of the class raster, all in the timed subprocess), alternating in the same run, and prints
the medians and the ratio segment / GRASS.

Prints a Markdown table (medians over ``--repeats``) and ratios; paste it into docs/benchmarks.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
SAMPLE = os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif")
PY = sys.executable


def build_mosaic(size: int) -> str:
    """A size x size mosaic of the sample (mirrored copies so that edges match), tiled DEFLATE GeoTIFF."""
    from osgeo import gdal
    gdal.UseExceptions()
    path = os.path.join(OUT, f"mosaic_{size}.tif")
    if os.path.exists(path):
        return path
    os.makedirs(OUT, exist_ok=True)
    src = gdal.Open(SAMPLE)
    w, h = src.RasterXSize, src.RasterYSize
    gt = src.GetGeoTransform()
    drv = gdal.GetDriverByName("GTiff")
    tmp = path + ".partial.tif"
    ds = drv.Create(tmp, size, size, 4, gdal.GDT_UInt16,
                    options=["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER", "NUM_THREADS=2"])
    ds.SetGeoTransform(gt)
    ds.SetProjection(src.GetProjection())
    base = src.ReadAsArray()  # (4, h, w), 3 MB
    import numpy as np
    for y in range(0, size, h):
        row_blocks = []
        for x in range(0, size, w):
            blk = base[:, :, ::-1] if (x // w) % 2 else base
            blk = blk[:, ::-1, :] if (y // h) % 2 else blk
            row_blocks.append(blk)
        row = np.concatenate(row_blocks, axis=2)[:, :, :size]
        ds.WriteArray(row[:, :min(h, size - y)], 0, y)
    for b, d in enumerate(["B02 blue", "B03 green", "B04 red", "B08 nir"], 1):
        ds.GetRasterBand(b).SetDescription(d)
    ds = None
    os.replace(tmp, path)
    return path


IO_FLOOR = r"""
import sys, time, numpy as np
from osgeo import gdal
gdal.UseExceptions()
src, dst, tile = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, sys.argv[4])
from ktextures_plugin.core.io.classraster import GTIFF_OPTIONS
t = time.perf_counter()
ds = gdal.Open(src)
out = gdal.GetDriverByName("GTiff").Create(dst, ds.RasterXSize, ds.RasterYSize, 1, gdal.GDT_Byte,
      options=GTIFF_OPTIONS)
out.SetGeoTransform(ds.GetGeoTransform()); out.SetProjection(ds.GetProjection())
ob = out.GetRasterBand(1)
for y in range(0, ds.RasterYSize, tile):
    for x in range(0, ds.RasterXSize, tile):
        w, h = min(tile, ds.RasterXSize - x), min(tile, ds.RasterYSize - y)
        a = [ds.GetRasterBand(b).ReadAsArray(x, y, w, h) for b in (3, 2, 1, 4)]
        ob.WriteArray((a[0] >> 8).astype(np.uint8), x, y)
ob = None; out = None; ds = None
print(time.perf_counter() - t)
"""

INFERENCE = r"""
import sys, time, numpy as np
model, pixels, tile = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, sys.argv[4])
from ktextures_plugin.core.segment.inference import chunk_px_for, infer_classes, open_session, read_model_info
s = open_session(model, allow_spinning=True)   # the fastest pure inference (segment itself runs without spinning)
info = read_model_info(model, s)
halo, chunk = info.halo_px, chunk_px_for(info)
x = np.random.default_rng(0).random((4, tile, tile), dtype=np.float32)
n = -(-pixels // (tile * tile))
infer_classes(s, x, halo, chunk)
t = time.perf_counter()
for _ in range(n):
    infer_classes(s, x, halo, chunk)
print(time.perf_counter() - t)
"""

POLYGONIZE = r"""
import sys, time
sys.path.insert(0, sys.argv[3])
from ktextures_plugin.core.segment.vectorize import polygonize
t = time.perf_counter()
n = polygonize(sys.argv[1], sys.argv[2])
print(time.perf_counter() - t, n)
"""


def timed(cmd):
    """Run ``cmd``; return (wall seconds, peak RSS MB of the child, stdout).

    Dirty pages of the previous measurement's output are flushed first (``os.sync`` and a 2 s pause), so that
    their write-back does not land in this measurement.
    """
    os.sync()
    time.sleep(2)
    wrapper = ("import resource, subprocess, sys, time, json; t=time.perf_counter(); "
               "p=subprocess.run(sys.argv[1:], capture_output=True, text=True); w=time.perf_counter()-t; "
               "print(json.dumps({'wall': w, 'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss/1024, "
               "'rc': p.returncode, 'out': p.stdout[-2000:], 'err': p.stderr[-2000:]}))")
    cp = subprocess.run([PY, "-c", wrapper, *cmd], capture_output=True, text=True, cwd=ROOT)
    r = json.loads(cp.stdout)
    if r["rc"] != 0:
        raise RuntimeError(f"{cmd} failed: {r['err']}")
    return r["wall"], r["rss"], r["out"]


HEADER = ("| raster | segment (s) | Mpx/s | peak RSS segment (MB) | I/O floor (s) | inference (s) | "
          "segment / (I/O + inference) | k-means (s) | k-means / segment | k-means peak RSS (MB) | "
          "polygonize (s, polygons) |\n|---|---|---|---|---|---|---|---|---|---|---|")


def row(size, med, rss, poly):
    seg = med["segment"]
    km = med.get("kmeans")
    return (f"| {size} x {size} | {seg:.1f} | {size * size / 1e6 / seg:.1f} | {rss['segment']:.0f} | "
            f"{med['io']:.1f} | {med['infer']:.1f} | {seg / (med['io'] + med['infer']):.2f} | "
            f"{'%.1f' % km if km else '-'} | {'%.2f' % (km / seg) if km else '-'} | "
            f"{'%.0f' % rss['kmeans'] if km else '-'} | "
            f"{'%.1f (%d)' % poly if poly else '-'} |")


def with_scores(model: str) -> str:
    """``model`` itself when it has a ``scores`` output, else a copy in ``bench/out/`` exposing the input of its
    ``class`` ArgMax as ``scores`` (N, k, H, W) float32."""
    import onnx
    m = onnx.load(model)
    if any(o.name == "scores" for o in m.graph.output):
        return model
    argmax = next(n for n in m.graph.node if "class" in n.output and n.op_type == "ArgMax")
    m.graph.node.append(onnx.helper.make_node("Identity", [argmax.input[0]], ["scores"]))
    m.graph.output.append(onnx.helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT,
                                                             ["N", None, "H", "W"]))
    path = os.path.join(OUT, os.path.basename(model).replace(".onnx", "_scores.onnx"))
    onnx.save(m, path)
    return path


def smoothing_runs(args) -> None:
    """``--smoothing``: segment at each beta, alternating, ``--repeats`` times; medians and ratios."""
    model = with_scores(args.model)
    print("| raster | smoothing beta | segment (s), median of %d | peak RSS (MB) | ratio to beta %g |\n"
          "|---|---|---|---|---|" % (args.repeats, args.smoothing[0]))
    for size in args.sizes:
        src = build_mosaic(size)
        labels = os.path.join(OUT, f"labels_{size}.tif")
        times = {b: [] for b in args.smoothing}
        rss = {b: 0.0 for b in args.smoothing}
        for rep in range(args.repeats):
            for b in args.smoothing:
                w, r, _ = timed([PY, "-m", "ktextures_plugin", "segment", src, "--model", model, "--out", labels,
                                 "--tile-size", str(args.tile), "--quiet", "--smoothing", str(b)])
                times[b].append(w)
                rss[b] = max(rss[b], r)
                print(f"  size {size} repeat {rep} beta {b:g}: {w:.1f} s", file=sys.stderr)
        ref = statistics.median(times[args.smoothing[0]])
        for b in args.smoothing:
            med = statistics.median(times[b])
            print(f"| {size} x {size} | {b:g} | {med:.1f} ({', '.join('%.1f' % t for t in times[b])}) | "
                  f"{rss[b]:.0f} | {med / ref:.2f} |", flush=True)


GRASS_RUN = ("import sys; sys.path.insert(0, sys.argv[4]); from quality import grass_cluster; "
             "grass_cluster(sys.argv[1], '3,2,1,4', int(sys.argv[2]), sys.argv[3])")


def grass_runs(args) -> None:
    """``--grass``: segment (default smoothing) and GRASS i.cluster + i.maxlik, alternating, ``--repeats`` times."""
    from ktextures_plugin.core.segment.inference import read_model_info
    k = read_model_info(args.model).num_classes
    print("| raster | run | runs (s) | median (s) | peak RSS (MB) |\n|---|---|---|---|---|")
    for size in args.sizes:
        src = build_mosaic(size)
        times, rss = {"segment": [], "grass": []}, {"segment": 0.0, "grass": 0.0}
        for rep in range(args.repeats):
            runs = {"segment": [PY, "-m", "ktextures_plugin", "segment", src, "--model", args.model, "--out",
                                os.path.join(OUT, f"labels_{size}.tif"), "--tile-size", str(args.tile), "--quiet"],
                    "grass": [PY, "-c", GRASS_RUN, src, str(k), os.path.join(OUT, f"grass_{size}.tif"),
                              os.path.join(ROOT, "bench")]}
            for name, cmd in runs.items():
                w, r, _ = timed(cmd)
                times[name].append(w)
                rss[name] = max(rss[name], r)
                print(f"  size {size} repeat {rep} {name}: {w:.1f} s", file=sys.stderr)
        med = {name: statistics.median(v) for name, v in times.items()}
        for name, v in times.items():
            print(f"| {size} x {size} | {name} | {', '.join('%.1f' % t for t in v)} | {med[name]:.1f} | "
                  f"{rss[name]:.0f} |", flush=True)
        print(f"segment / GRASS at {size}: {med['segment'] / med['grass']:.2f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "s2_10m_k6.onnx"))
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--skip-kmeans", action="store_true")
    ap.add_argument("--polygonize-max", type=int, default=8192,
                    help="polygonize the class raster only for sizes up to this (the unsieved mosaic has "
                         "millions of polygons)")
    ap.add_argument("--markdown", default=os.path.join(OUT, "speed.md"))
    ap.add_argument("--smoothing", type=float, nargs="+", default=None,
                    help="measure only segment at these smoothing betas, side by side (0 = off)")
    ap.add_argument("--grass", action="store_true",
                    help="measure only segment and GRASS i.cluster + i.maxlik, side by side")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    os.makedirs(OUT, exist_ok=True)
    if args.smoothing:
        smoothing_runs(args)
        return
    if args.grass:
        grass_runs(args)
        return
    from ktextures_plugin.core.segment.inference import read_model_info
    k = read_model_info(args.model).num_classes
    os.makedirs(OUT, exist_ok=True)
    md = open(args.markdown, "w")
    md.write(HEADER + "\n")
    print(HEADER)
    for size in args.sizes:
        t = time.perf_counter()
        src = build_mosaic(size)
        print(f"mosaic {size}: {src} ({time.perf_counter() - t:.0f} s to build)", file=sys.stderr)
        labels = os.path.join(OUT, f"labels_{size}.tif")
        res = {"segment": [], "io": [], "infer": [], "kmeans": []}
        rss = {"segment": 0.0, "kmeans": 0.0}
        for rep in range(args.repeats):
            w, r, _ = timed([PY, "-m", "ktextures_plugin", "segment", src, "--model", args.model, "--out", labels,
                             "--tile-size", str(args.tile), "--quiet"])
            res["segment"].append(w)
            rss["segment"] = max(rss["segment"], r)
            _, _, out = timed([PY, "-c", IO_FLOOR, src, os.path.join(OUT, "io.tif"), str(args.tile), ROOT])
            res["io"].append(float(out.split()[0]))
            _, _, out = timed([PY, "-c", INFERENCE, args.model, str(size * size), str(args.tile), ROOT])
            res["infer"].append(float(out.split()[0]))
            if not args.skip_kmeans:
                w, r, _ = timed([PY, "-m", "ktextures_plugin", "kmeans", src, "--bands", "3,2,1,4", "--k", str(k),
                                 "--out", os.path.join(OUT, f"kmeans_{size}.tif")])
                res["kmeans"].append(w)
                rss["kmeans"] = r
            print(f"  size {size} repeat {rep}: " + ", ".join(f"{kk} {v[-1]:.1f}s" for kk, v in res.items() if v),
                  file=sys.stderr)
        poly = None
        if size <= args.polygonize_max:
            _, _, out = timed([PY, "-c", POLYGONIZE, labels, os.path.join(OUT, f"poly_{size}.gpkg"), ROOT])
            poly = (float(out.split()[0]), int(out.split()[1]))
        med = {kk: statistics.median(v) for kk, v in res.items() if v}
        line = row(size, med, rss, poly)
        print(line, flush=True)
        md.write(line + "\n")
        md.flush()


if __name__ == "__main__":
    main()
