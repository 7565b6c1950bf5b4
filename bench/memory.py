"""Peak memory and time of ``segment`` with the sieve and polygons on large rasters.

Usage (from the repository root, under the shared CPU lock):

    flock /tmp/ktextures-cpu.lock .venv/bin/python bench/memory.py [--sizes 4096 8192 20000]

For each size the mosaic of the bundled sample of ``bench/speed.py`` (4-band UInt16, tiled DEFLATE) is built
once in ``bench/out/``; then three runs, each in its own process (peak RSS = that process's ``ru_maxrss``
from ``os.wait4``): ``segment`` alone, ``segment --min-segment-px 8`` (the GDAL sieve), and GDAL polygonize of
that sieved class raster (``core.vectorize.polygonize``, the step ``segment --vector`` runs after it).
Prints one Markdown row per size; paste them into docs/benchmarks.md.
"""
import argparse
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, ROOT)
from speed import OUT, build_mosaic  # noqa: E402


def measured(cmd):
    """``(seconds, peak RSS in MB, return code)`` of one subprocess."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.stderr.write(p.stderr.read().decode()[-2000:])
    return time.perf_counter() - t0, usage.ru_maxrss / 1024.0, p.returncode


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    args = ap.parse_args()
    py = sys.executable
    print("| size (px) | segment: s / peak MB | + sieve 8 px: s / peak MB | polygonize: s / peak MB | polygons |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        img = build_mosaic(size)
        plain, sieved, vec = (os.path.join(OUT, f"mem_{size}_{n}") for n in ("c.tif", "s.tif", "p.gpkg"))
        seg = [py, "-m", "ktextures_plugin", "segment", img, "--bands", "3,2,1,4", "--quiet"]
        a = measured(seg + ["--out", plain])
        b = measured(seg + ["--out", sieved, "--min-segment-px", "8"])
        code = ("import sys; from ktextures_plugin.core.vectorize import polygonize; "
                "print(polygonize(sys.argv[1], sys.argv[2]), file=sys.stderr)")
        if os.path.exists(vec):
            os.remove(vec)
        t0 = time.perf_counter()
        p = subprocess.Popen([py, "-c", code, sieved, vec], cwd=ROOT, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(p.pid, 0)
        n = p.stderr.read().decode().strip().splitlines()[-1:] or ["?"]
        c = (time.perf_counter() - t0, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status))
        print(f"| {size} x {size} | {a[0]:.1f} / {a[1]:.0f} | {b[0]:.1f} / {b[1]:.0f} | {c[0]:.1f} / {c[1]:.0f} "
              f"| {n[0]} |", flush=True)
        for f in (plain, sieved):
            if os.path.exists(f):
                os.remove(f)


if __name__ == "__main__":
    main()
