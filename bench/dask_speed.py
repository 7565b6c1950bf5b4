"""Throughput of ``segment --dask`` with 1 and 2 Dask workers (one thread each) against single-process segment.

Usage (from the repository root; a long CPU job on a shared machine, so under the project's lock):

    flock /tmp/ktextures-cpu.lock .venv/bin/python bench/dask_speed.py [--size 16384] [--repeats 3] [--pin 0]

The mosaic of the bundled sample is built once in ``bench/out/`` (``bench/speed.py``'s ``build_mosaic``). Each
measurement runs in its own process, configurations alternate within each repeat:

- ``single``: ``core.segment.segment_raster`` (onnxruntime's default threads, reader and writer threads);
- ``single1``: the same with one onnxruntime thread, like for like with one Dask worker thread;
- ``dask N``: a ``LocalCluster`` of N worker processes with one thread each (start-up timed separately), then
  ``cli.distributed.segment_dask`` on it (onnxruntime 1 thread per task), windows of 4 x 4 tiles of 512 px;
- ``writer``: the client's share alone: writing the class raster window by window (2048 px windows, the class
  raster's LZW options) from memory, i.e. the throughput of the single writer.

Prints a Markdown table of medians and ratios; paste it into docs/benchmarks.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
OUT = os.path.join(ROOT, "bench", "out")
MODEL = os.path.join(ROOT, "models", "s2_10m_k6.onnx")

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, {root!r})
mode, mosaic, model, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
if mode in ("single", "single1"):
    from ktextures_plugin.core.segment import SegmentOptions, segment_raster
    threads = 1 if mode == "single1" else None
    t = time.perf_counter(); segment_raster(mosaic, model, out, SegmentOptions(threads=threads))
    print(json.dumps({{"job": time.perf_counter() - t}}))
elif mode == "writer":
    import numpy as np
    from osgeo import gdal
    from ktextures_plugin.core.io.classraster import GTIFF_OPTIONS
    src = gdal.Open(out); a = src.ReadAsArray(); n = a.shape[0]
    t = time.perf_counter()
    ds = gdal.GetDriverByName("GTiff").Create(out + ".w.tif", n, n, 1, gdal.GDT_Byte, options=GTIFF_OPTIONS)
    b = ds.GetRasterBand(1)
    for y in range(0, n, 2048):
        for x in range(0, n, 2048):
            b.WriteArray(a[y:y + 2048, x:x + 2048], x, y)
    b = None; ds = None
    print(json.dumps({{"job": time.perf_counter() - t}})); os.remove(out + ".w.tif")
else:
    from distributed import Client, LocalCluster
    from ktextures_plugin.cli.distributed import segment_dask
    t = time.perf_counter()
    cluster = LocalCluster(n_workers=int(mode), threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster); start = time.perf_counter() - t
    t = time.perf_counter(); r = segment_dask(mosaic, model, out, client=client)
    job = time.perf_counter() - t
    client.close(); cluster.close()
    print(json.dumps({{"job": job, "start": start}}))
"""


def run(mode, mosaic, model, out, pin=None):
    subprocess.run(["sync"], check=False)
    time.sleep(1)
    prefix = ["taskset", "-c", pin] if pin else []
    p = subprocess.run(prefix + [sys.executable, "-c", CHILD.format(root=ROOT), mode, mosaic, model, out],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--pin", default=None, metavar="CPUS",
                    help="run every measured process under taskset -c CPUS (e.g. 0: all on one core)")
    args = ap.parse_args()
    from speed import build_mosaic
    mosaic = build_mosaic(args.size)
    out = os.path.join(OUT, f"dask_speed_{args.size}.tif")
    modes = ["single", "single1", "1", "2"]
    res = {m: [] for m in modes + ["writer"]}
    for _ in range(args.repeats):
        for m in modes:
            res[m].append(run(m, mosaic, args.model, out, args.pin))
            print(m, res[m][-1], file=sys.stderr, flush=True)
        res["writer"].append(run("writer", mosaic, args.model, out, args.pin))
    med = {m: statistics.median(r["job"] for r in res[m]) for m in res}
    start = {m: statistics.median(r["start"] for r in res[m]) for m in ("1", "2")}
    mpx = args.size * args.size / 1e6
    print(f"| run ({args.size} x {args.size}) | job (s) | Mpx/s | cluster start (s) | / single |")
    print("|---|---|---|---|---|")
    print(f"| single-process segment | {med['single']:.1f} | {mpx / med['single']:.1f} | - | 1.00 |")
    print(f"| single-process segment, 1 onnxruntime thread | {med['single1']:.1f} | {mpx / med['single1']:.1f} "
          f"| - | {med['single1'] / med['single']:.2f} |")
    for m in ("1", "2"):
        print(f"| --dask, {m} worker(s) x 1 thread | {med[m]:.1f} | {mpx / med[m]:.1f} | {start[m]:.1f} | "
              f"{med[m] / med['single']:.2f} |")
    print(f"| writer alone (LZW, 2048 px windows) | {med['writer']:.1f} | {mpx / med['writer']:.1f} | - | - |")
    print(f"\nengine overhead, --dask 1 worker / single process with 1 thread: {med['1'] / med['single1']:.2f}x")
    print(f"scaling 1 -> 2 workers: {med['1'] / med['2']:.2f}x; per 2048 px window on one worker thread: "
          f"{med['1'] / (-(-args.size // 2048)) ** 2:.2f} s")
    print("per repeat:", json.dumps({m: [round(r['job'], 2) for r in res[m]] for m in res}))


if __name__ == "__main__":
    main()
