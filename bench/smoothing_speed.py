"""Side-by-side speed of ``segment`` on the 8192 x 8192 mosaic of ``bench/speed.py``: another checkout of the code
(``--before DIR``, e.g. an earlier commit unpacked with ``git archive``) with smoothing off, this checkout with
smoothing off, and this checkout at each ``--smoothing`` beta (through a copy of the model exposing its logits
as ``scores``, ``bench/speed.py``'s ``with_scores``), interleaved in every repeat, each run in its own
subprocess through ``bench/speed.py``'s ``timed`` (wall time, peak RSS).

    flock /tmp/ktextures-cpu.lock .venv/bin/python bench/smoothing_speed.py --before /tmp/before --repeats 3

Prints a Markdown table: every run, the median and the ratio of the medians to this checkout's smoothing-off run.
"""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import speed  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default=None, help="another checkout to time with smoothing off")
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoothing", type=float, nargs="+", default=[1.0])
    ap.add_argument("--model", default=os.path.join(speed.ROOT, "models", "s2_10m_k6.onnx"))
    args = ap.parse_args()
    os.makedirs(speed.OUT, exist_ok=True)
    src = speed.build_mosaic(args.size)
    scores = speed.with_scores(args.model)
    out = os.path.join(speed.OUT, f"labels_{args.size}.tif")
    seg = ["-m", "ktextures_plugin", "segment", src, "--out", out, "--tile-size", "512", "--quiet"]
    runs = {}
    if args.before:
        runs["before, smoothing off"] = ([speed.PY, "-c", "import runpy, sys; sys.path.insert(0, sys.argv[1]); "
                                          "sys.argv = ['ktextures_plugin'] + sys.argv[2:]; "
                                          "runpy.run_module('ktextures_plugin', run_name='__main__')",
                                          args.before] + seg[2:] + ["--model", args.model])
    runs["this, smoothing off"] = [speed.PY] + seg + ["--model", args.model]
    for b in args.smoothing:
        runs[f"this, smoothing {b:g}"] = [speed.PY] + seg + ["--model", scores, "--smoothing", str(b)]
    times = {name: [] for name in runs}
    rss = {name: 0.0 for name in runs}
    for rep in range(args.repeats):
        for name, cmd in runs.items():
            w, r, _ = speed.timed(cmd)
            times[name].append(w)
            rss[name] = max(rss[name], r)
            print(f"  repeat {rep} {name}: {w:.1f} s, {r:.0f} MB", file=sys.stderr, flush=True)
    ref = statistics.median(times["this, smoothing off"])
    print(f"| code, {args.size} x {args.size} | runs (s) | median (s) | peak RSS (MB) | ratio |\n|---|---|---|---|---|")
    for name in runs:
        med = statistics.median(times[name])
        print(f"| {name} | {', '.join('%.1f' % t for t in times[name])} | {med:.1f} | {rss[name]:.0f} | "
              f"{med / ref:.2f} |", flush=True)


if __name__ == "__main__":
    main()
