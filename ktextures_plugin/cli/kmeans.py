"""``python -m ktextures_plugin kmeans IMAGE --bands R,G,B,NIR --k K --out LABELS.tif [--seed S] [--context]
[--smoothing BETA]``

The k-means baselines (``core/kmeans/kmeans.py``): pixel k-means on z-scored bands (default), optionally with
Gaussian context features (``--context``) and a Potts MRF on the distances (``--smoothing``), in the same
class-raster format as ``segment``.
Exit status: 0 on success, 2 on bad input (one-line message on stderr).
"""
from __future__ import annotations

import json
import sys

from ._args import Parser, add_mask_option, fail, front_end, input_view, int_range

PROG = "python -m ktextures_plugin kmeans"
NAMES = {"input": "IMAGE", "output": "--out", "bands": "--bands", "nodata": "--nodata", "k": "--k"}
#: KMeansOptions field -> the option that sets it (tests/frontends/test_options.py compares it with the
#: dataclass; ``rgb`` and ``window_pixels`` are for scripts)
OPTIONS = {"k": "--k", "bands": "--bands", "seed": "--seed", "extra_nodata": "--nodata", "max_sample": "--sample",
           "n_init": "--n-init", "scaling": "--scaling", "context": "--context", "smoothing": "--smoothing"}


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="k-means baseline: z-scored bands (or a 2-98 %% stretch), optionally with "
                                      "Gaussian-smoothed copies (--context), k-means++ with restarts fitted on a "
                                      "sample, class raster like 'segment'.")
    p.add_argument("image", help="input raster (any GDAL format)")
    p.add_argument("--bands", required=True,
                   help="1-based band numbers, comma-separated, in R,G,B,NIR order (e.g. 3,2,1,4); the first "
                        "three give the class colours")
    p.add_argument("--k", type=int_range(2, 65535), required=True, help="number of clusters (>= 2)")
    p.add_argument("--out", required=True, help="output class raster (.tif)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same output")
    p.add_argument("--nodata", type=float, default=None, help="extra raw value treated as nodata")
    p.add_argument("--sample", type=int_range(2), default=200_000, help="most pixels to fit on (default 200000)")
    p.add_argument("--scaling", choices=["zscore", "stretch"], default="zscore",
                   help="feature scaling: zscore (default; mean 0, sd 1 per feature) or stretch (2-98 %% of each band "
                        "to 0..1, clipped)")
    p.add_argument("--context", action="store_true",
                   help="also cluster on Gaussian-smoothed copies of the bands (sigma 1, 2, 4 px)")
    p.add_argument("--n-init", type=int_range(1), default=3, help="k-means restarts (default 3)")
    p.add_argument("--smoothing", type=float, default=0.0, metavar="BETA",
                   help="Potts MRF on the squared distances to the centres: beta per disagreeing 8-neighbour, "
                        "10 synchronous ICM sweeps (default 0 = off)")
    add_mask_option(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    return p


def kmeans_options(args):
    """The :class:`~ktextures_plugin.core.kmeans.KMeansOptions` of the parsed command line (:data:`OPTIONS`)."""
    from ..core.kmeans import KMeansOptions
    return KMeansOptions(args.k, bands=args.bands, seed=args.seed, extra_nodata=args.nodata, max_sample=args.sample,
                         n_init=args.n_init, scaling=args.scaling, context=args.context, smoothing=args.smoothing)


@front_end(PROG, NAMES)
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..core.kmeans import kmeans

    if args.k < 2:
        return fail(PROG, f"--k must be at least 2, got {args.k}")
    if args.n_init < 1:
        return fail(PROG, f"--n-init must be at least 1, got {args.n_init}")
    if not args.smoothing >= 0:
        return fail(PROG, f"--smoothing must be >= 0 (0 = off), got {args.smoothing}")
    if args.sample < args.k:
        return fail(PROG, f"--sample must be at least --k ({args.k}), got {args.sample}")
    with input_view(args.image, args.ignore_mask_bands) as image:
        res = kmeans.kmeans_raster(image, args.out, kmeans_options(args))
    summary = {"path": res.path, "k": res.k, "bands": res.bands, "seed": args.seed,
               "scaling": args.scaling, "context": args.context, "smoothing": args.smoothing,
               "counts": [int(v) for v in res.counts], "colors": res.colors,
               "sample_pixels": res.sample_pixels, "seconds": round(res.seconds, 3)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {res.path}: k = {res.k}, bands {res.bands}, seed {args.seed}, "
              f"{int(res.counts.sum())} classified pixels, {res.seconds:.2f} s")
        for i, (n, c) in enumerate(zip(res.counts, res.colors), 1):
            print(f"  cluster {i:<3} {c}  {int(n)} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
