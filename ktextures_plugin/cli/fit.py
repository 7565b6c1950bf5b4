"""``python -m ktextures_plugin fit IMAGE --bands R,G,B,NIR --k K --out MODEL.onnx [...]``: fit a k-textures
model on one raster with PyTorch and export it to the ONNX contract of models/README.md (docs/method.md §6, §7).

Exit codes: 0 success, 2 bad input (one-line message), 3 PyTorch missing, 130 interrupted (no file written).
"""
import sys

from ._args import Parser, add_mask_option, front_end, input_view, int_range

PROG = "python -m ktextures_plugin fit"
NAMES = {"input": "IMAGE", "output": "--out", "bands": "--bands", "nodata": "--nodata"}


class _Parser(Parser):
    """This command's errors read ``error: message`` (one line, exit status 2), like its other errors."""

    def error(self, message):  # noqa: D401
        sys.stderr.write(f"error: {message}\n")
        raise SystemExit(2)


def _add_context_options(p) -> None:
    """The context variant's warm start, anchor and smoothing beta (docs/method.md §3.3)."""
    from ..training.defaults import DEFAULT_ANCHOR, DEFAULT_SMOOTHING_BETA, DEFAULT_WARM_START, WARM_STARTS

    p.add_argument("--warm-start", choices=list(WARM_STARTS), default=DEFAULT_WARM_START,
                   help="context variant: a full-covariance Gaussian mixture on the bands and their sigma-1 copy, on "
                        "the unclipped scale ('gmm', halo 3 px), or k-means on the bands alone ('pixel') or on the "
                        "bands and their sigma 1, 2, 4 copies ('context', halo 12 px), as the starting partition "
                        f"(default {DEFAULT_WARM_START})")
    p.add_argument("--anchor", type=float, default=DEFAULT_ANCHOR,
                   help="context variant: weight of the cross-entropy to the warm-start partition smoothed by the "
                        f"Potts step (default {DEFAULT_ANCHOR:g}; 0 = off)")
    p.add_argument("--smoothing-beta", type=float, default=DEFAULT_SMOOTHING_BETA,
                   help="context variant: Potts weight of the anchor's target and the model's "
                        f"ktextures.smoothing_beta for segment's smoothing step (default {DEFAULT_SMOOTHING_BETA:g})")


def build_parser():
    from ..training.defaults import (
        DEFAULT_BATCH,
        DEFAULT_BINNING,
        DEFAULT_CONTINUITY,
        DEFAULT_MASK_WIDTH,
        DEFAULT_RETRIES,
        DEFAULT_STEPS,
        DEFAULT_VARIANT,
        VARIANTS,
    )
    from ..training.train import BINNINGS

    p = _Parser(prog=PROG,
                                description="Fit a k-textures model (k hard texture classes) on a raster and "
                                            "export it as ONNX.")
    p.add_argument("image", help="training raster (any GDAL format, any size: read tile by tile)")
    p.add_argument("--bands", required=True,
                   help="1-based band numbers of IMAGE in the order red,green,blue,NIR, e.g. 3,2,1,4")
    p.add_argument("--k", type=int_range(2, 128), required=True, help="number of classes (2..128)")
    p.add_argument("--out", required=True, help="ONNX model to write")
    p.add_argument("--steps", type=int_range(0), default=DEFAULT_STEPS,
                   help=f"training steps, at most (default {DEFAULT_STEPS}; the mask training stops early when the "
                        "loss stops improving; 0 = the context variant's warm start alone, textures "
                        "untrained)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0; same seed = same model)")
    p.add_argument("--retries", type=int_range(0, 10), default=DEFAULT_RETRIES,
                   help="when a class stays unused, fit again with the next seed up to this many times and keep "
                        f"the fit that uses the most classes (default {DEFAULT_RETRIES}; see docs/benchmarks.md)")
    p.add_argument("--variant", choices=list(VARIANTS), default=DEFAULT_VARIANT,
                   help="mask network (docs/method.md): faithful = the paper's per-pixel 1x1 net (halo 0); spatial = "
                        "3x3 net (halo 2 px); context = bands + Gaussian context (see --warm-start), "
                        f"warm-started at a Gaussian-mixture or k-means partition (default {DEFAULT_VARIANT})")
    p.add_argument("--continuity", type=float, default=DEFAULT_CONTINUITY,
                   help="weight of the spatial-continuity term on the class probabilities (context and spatial "
                        f"variants; default {DEFAULT_CONTINUITY:g})")
    _add_context_options(p)
    p.add_argument("--features", default="random",
                   help="loss features: 'random' (seeded random CNN), 'ae' or 'ae:STEPS' (a 4-band "
                        "auto-encoder trained on this raster first), 'vgg16:PATH' (torchvision VGG16 "
                        "state_dict), or several joined with '+' (default random)")
    p.add_argument("--mask-width", type=int_range(1, 256), default=DEFAULT_MASK_WIDTH,
                   help=f"hidden width of the faithful per-pixel mask network (default {DEFAULT_MASK_WIDTH}, "
                        "measured in docs/benchmarks.md; the paper's is 64, about 13x the multiply-adds per "
                        "pixel when segmenting)")
    p.add_argument("--binning", choices=list(BINNINGS), default=DEFAULT_BINNING,
                   help=f"hard-bin gradient scheme (default {DEFAULT_BINNING}; faithful = slope 5000 throughout)")
    p.add_argument("--batch-size", type=int_range(1), default=DEFAULT_BATCH,
                   help=f"tiles per step (default {DEFAULT_BATCH})")
    p.add_argument("--tile-size", type=int_range(16, 4096), default=128, help="training tile side in px (default 128)")
    p.add_argument("--nodata", type=float, default=None, help="extra value treated as nodata")
    p.add_argument("--title", default="", help="readable model title stored in the metadata")
    p.add_argument("--threads", type=int_range(1), default=None,
                   help="torch threads (default: half the logical CPUs, 1..8)")
    add_mask_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def fit_config(args):
    """The :class:`~ktextures_plugin.training.train.FitConfig` of the parsed command line (imports torch)."""
    from ..training import FitConfig
    return FitConfig(k=args.k, steps=args.steps, seed=args.seed, variant=args.variant, features=args.features,
                     tile_size=args.tile_size, batch_size=args.batch_size, binning=args.binning, threads=args.threads,
                     extra_nodata=args.nodata, mask_width=args.mask_width, continuity=args.continuity,
                     warm_start=args.warm_start, anchor=args.anchor, smoothing_beta=args.smoothing_beta)


@front_end(None, NAMES)
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..core.io import outputs
    outputs.check_outputs({"output": (args.out, outputs.MODEL)}, {"input": args.image})
    from ..core.errors import CoreError
    from ..training import fit

    state = {"bar": None}
    progress = _progress(state, args.quiet)
    try:
        with input_view(args.image, args.ignore_mask_bands) as image:
            res = fit(image, args.bands, args.out, fit_config(args), progress=progress, title=args.title,
                      retries=args.retries, log=lambda m: print(f"note: {m}", file=sys.stderr))
    except CoreError as exc:  # the message comes from front_end; this adds the option to change
        msg = str(exc.args[0]) if exc.args else ""
        if msg.endswith("smaller training tile)"):
            exc.args = (msg[:-1] + f", e.g. --tile-size {max(16, args.tile_size // 2)})",)
        raise
    finally:
        _close(state["bar"])
    fr = ", ".join(f"{100 * v:.1f}" for v in res.class_fractions)
    print(f"{res.path}: k = {res.k}, {res.steps} steps in {res.seconds:.1f} s "
          f"({res.steps_per_s:.2f} steps/s), final loss {res.final_loss:.4f}, halo {res.halo_px} px")
    print(f"class shares on {res.provenance['recal_tiles']} tiles (%): {fr}")
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def _progress(state, quiet: bool):
    """``progress(step, total, loss)`` for ``fit``: a tqdm bar on stderr, created on the first call and kept in
    ``state["bar"]`` (nothing when ``quiet`` or without tqdm)."""
    def progress(step, total, loss):
        if quiet:
            return
        bar = state["bar"]
        if bar is None:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            bar = state["bar"] = tqdm(
                total=total, unit="step", desc="fit", file=sys.stderr, dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {elapsed}<{remaining}, {rate_fmt}{postfix}")
        if bar.total != total:  # a retry (--retries) adds its steps
            bar.total = total
        bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        bar.update(step - bar.n)
    return progress


def _close(bar):
    if bar is not None:
        bar.close()
