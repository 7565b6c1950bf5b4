"""Peak memory and step times of ``segment`` with the sieve and polygons on large rasters.

Usage (from the repository root, under the shared CPU lock):

    flock /tmp/ktextures-cpu.lock .venv/bin/python bench/memory.py [--sizes 4096 8192 20000]

For each size the mosaic of the bundled sample of ``bench/speed.py`` (4-band UInt16, tiled DEFLATE) is built
once in ``bench/out/``; then four runs, each in its own process, of what ``segment`` runs on the command line
(``core.segment.segment_raster``, then ``core.segment.vectorize.polygonize`` for ``--vector``): ``both``
(``--min-segment-px 8 --vector``), ``sieve`` (``--min-segment-px 8``), ``plain`` (segment alone) and ``vector``
(``--vector`` without the sieve), in that order so that the configuration that matters most is measured first.
Peak RSS is the child's ``VmHWM`` (``/proc/self/status`` at its end: the high-water mark of its own address
space since ``exec``, GDAL's C memory included; ``ru_maxrss`` would also count the parent's pages the child
inherited at ``fork``, and the mosaic is built in a process of its own for the same reason); the time of each step
(segment, sieve, polygonize) comes from the first and last progress call of that step. Prints one Markdown row
per run as soon as it ends; paste them into docs/benchmarks.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, ROOT)
from speed import OUT  # noqa: E402

CONFIGS = {"both": (8, True), "sieve": (8, False), "plain": (0, False), "vector": (0, True)}

#: The child: segment (and sieve) then polygonize as ``cli/segment.py`` does; prints step times as JSON.
CHILD = r"""
import json, sys, time
from ktextures_plugin.core.feedback import Feedback
from ktextures_plugin.core.segment import SegmentOptions, segment_raster
from ktextures_plugin.core.segment.vectorize import polygonize
img, model, out, vec, min_px = sys.argv[1:6]
stages = {}
def progress(frac, stage):
    t = time.perf_counter()
    stages.setdefault(stage, [t, t])[1] = t
res = segment_raster(img, model, out, SegmentOptions(bands="3,2,1,4", min_segment_px=int(min_px)),
                     Feedback(progress=progress))
n = polygonize(out, vec, class_names=res.class_names, feedback=Feedback(progress=progress)) if vec else None
hwm = [int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM")]
print(json.dumps({"polygons": n, "hwm_kb": hwm[0], **{s: b - a for s, (a, b) in stages.items()}}), file=sys.stderr)
"""


def run_child(img, model, size, name):
    """``(seconds, peak RSS in MB, return code, step times)`` of one configuration in its own process."""
    min_px, vector = CONFIGS[name]
    out = os.path.join(OUT, f"mem_{size}_{name}.tif")
    vec = os.path.join(OUT, f"mem_{size}_{name}.gpkg") if vector else ""
    for f in (out, vec):
        if f and os.path.exists(f):
            os.remove(f)
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", CHILD, img, model, out, vec, str(min_px)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode()
    if rc:
        sys.stderr.write(err[-2000:])
    lines = [ln for ln in err.splitlines() if ln.startswith("{")]
    steps = json.loads(lines[-1]) if lines else {}
    for f in (out, vec):
        if f and os.path.exists(f):
            os.remove(f)
    return time.perf_counter() - t0, steps.pop("hwm_kb", usage.ru_maxrss) / 1024.0, rc, steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "s2_10m_k6.onnx"))
    args = ap.parse_args()
    print("| size (px) | run | peak RSS (MB) | total (s) | segment (s) | sieve (s) | polygonize (s) | polygons |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for size in args.sizes:
        code = ("import sys; sys.path.insert(0, 'bench'); from speed import build_mosaic; "
                "print(build_mosaic(int(sys.argv[1])))")
        img = subprocess.run([sys.executable, "-c", code, str(size)], cwd=ROOT, check=True, capture_output=True,
                             text=True).stdout.strip().splitlines()[-1]
        for name in args.configs:
            sec, mb, rc, st = run_child(img, args.model, size, name)

            def f(k, st=st):
                return f"{st[k]:.1f}" if k in st else "-"
            print(f"| {size} x {size} | {name}{'' if rc == 0 else f' (rc {rc})'} | {mb:.0f} | {sec:.1f} | "
                  f"{f('segment')} | {f('sieve')} | {f('polygonize')} | {st.get('polygons') or '-'} |", flush=True)


if __name__ == "__main__":
    main()
