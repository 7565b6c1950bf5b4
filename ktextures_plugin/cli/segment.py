"""``python -m ktextures_plugin segment IMAGE --model MODEL.onnx --out LABELS.tif [...]``: the main job
without QGIS (same core as ``ktextures:segment``)."""
import os
import sys

from .. import BUNDLED_MODELS, DEFAULT_MODEL, bundled_model_path
from ._args import Parser, add_mask_option, check_outputs, front_end, input_view, int_range

PROG = "python -m ktextures_plugin segment"
#: core keys (core.io.outputs, core.segment) -> the options of this command, for messages
NAMES = {"input": "IMAGE", "model": "--model", "output": "--out", "simulation": "--simulation", "vector": "--vector",
         "report": "--report", "html": "--html", "bands": "--bands", "scaling": "--scaling", "nodata": "--nodata",
         "extent": "--extent", "smoothing": "--smoothing", "min_segment_px": "--min-segment-px",
         "tile_size": "--tile-size"}
#: SegmentOptions field -> the option that sets it (tests/frontends/test_options.py compares it with the
#: QGIS one; ``window`` is for scripts, which give pixel windows)
OPTIONS = {"bands": "--bands", "scaling": "--scaling", "extra_nodata": "--nodata", "extent": "--extent",
           "tile_size": "--tile-size", "min_segment_px": "--min-segment-px", "simulation_path": "--simulation",
           "threads": "--threads", "palette": "--palette", "class_names": "--class-names",
           "smoothing": "--smoothing"}


def build_parser():
    from ..core.io.classraster import PALETTES
    p = Parser(prog=PROG,
                                description="Segment a raster into k texture classes with a k-textures ONNX model.")
    p.add_argument("image", help="input raster (any GDAL format)")
    p.add_argument("--model", default=None,
                   help=f"ONNX model file (default: bundled '{BUNDLED_MODELS[DEFAULT_MODEL][1]}')")
    p.add_argument("--out", required=True, help="class raster to write (GeoTIFF; 0 = nodata, classes 1..k)")
    p.add_argument("--bands", default=None,
                   help="1-based bands in the model's channel order, e.g. 3,2,1,4 (default: from band descriptions)")
    p.add_argument("--scaling", choices=["model", "stretch"], default="model")
    p.add_argument("--nodata", type=float, default=None, help="extra value treated as nodata")
    p.add_argument("--vector", default=None, help="also polygonize into this file (GeoPackage by default)")
    p.add_argument("--min-segment-px", type=int_range(0, 2 ** 31 - 1), default=0,
                   help="GDAL sieve threshold in pixels (0 = off)")
    p.add_argument("--tile-size", type=int_range(32, 8192), default=512, help="tile side in pixels (default 512)")
    p.add_argument("--simulation", default=None, help="also write the simulated image (Float32 GeoTIFF)")
    p.add_argument("--extent", type=_extent, default=None, metavar="XMIN,YMIN,XMAX,YMAX",
                   help="segment only the pixels covering this extent (map units of the raster's CRS)")
    p.add_argument("--palette", choices=PALETTES, default=PALETTES[0],
                   help="class colours: 'true colour' (the mean colour of each class, or the model's own) or "
                        "'qualitative' (Tableau 10)")
    p.add_argument("--class-names", default=None,
                   help="k comma-separated class names in class order 1..k (default: the model's)")
    p.add_argument("--smoothing", type=_beta, default=None, metavar="BETA",
                   help="Potts smoothing of the model's class scores (beta per disagreeing neighbour; 0 = off; "
                        "default: the model's recommendation, else 0); needs a model with a 'scores' output")
    p.add_argument("--report", default=None, help="also write the per-class area table (CSV)")
    p.add_argument("--html", default=None,
                   help="also write the HTML report (class colours, true-colour images, textures, area chart)")
    p.add_argument("--threads", type=int_range(1), default=None, help="onnxruntime intra-op threads")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_mask_option(p)
    p.add_argument("--dask", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run on Dask: the scheduler at ADDRESS (tcp://host:8786), or without ADDRESS a local "
                        "cluster of one worker per core; IMAGE may then also be a .txt list of rasters on one grid")
    p.add_argument("--dask-workers", type=int, default=None,
                   help="workers of the local Dask cluster (default: one per CPU core)")
    return p


def _extent(text: str):
    import argparse
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[0] >= values[2] or values[1] >= values[3]:
        raise argparse.ArgumentTypeError(f"give XMIN,YMIN,XMAX,YMAX with XMIN < XMAX and YMIN < YMAX, got {text!r}")
    return values


def _beta(text: str) -> float:
    import argparse
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (0 = off), got {text!r}")
    return value


def segment_options(args):
    """The :class:`~ktextures_plugin.core.segment.SegmentOptions` of the parsed command line (:data:`OPTIONS`)."""
    from ..core.segment import SegmentOptions
    return SegmentOptions(bands=args.bands, scaling=args.scaling, extra_nodata=args.nodata, extent=args.extent,
                          tile_size=args.tile_size, min_segment_px=args.min_segment_px,
                          simulation_path=args.simulation, threads=args.threads, palette=args.palette,
                          class_names=args.class_names, smoothing=args.smoothing)


@front_end(PROG, NAMES)
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..core.feedback import Feedback
    from ..core.segment import segment_raster
    from ..core.segment.vectorize import polygonize

    model = args.model or bundled_model_path(DEFAULT_MODEL)
    from .distributed import is_list
    if args.dask is None and is_list(args.image):
        from ..core.errors import RasterError
        raise RasterError(f"'{args.image}' is a list of rasters; segment reads a list only with --dask (add "
                          f"--dask for a local cluster), or mosaic it first: gdalbuildvrt -input_file_list "
                          f"{args.image} mosaic.vrt")
    bad = check_outputs(PROG, NAMES, _outputs(args), {"input": _inputs(args), "model": model})
    if bad is not None:
        return bad
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=100, unit="%", desc="segment", file=sys.stderr,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

    def progress(frac, stage):
        pct = round(100 * frac)
        if bar is not None and (pct != bar.n or stage != bar.desc):
            bar.set_description_str(stage, refresh=False)
            bar.n = pct
            bar.refresh()

    feedback = Feedback(progress=progress, info=(lambda m: print(m, file=sys.stderr)) if not args.quiet else None,
                        warning=lambda m: print(f"warning: {m}", file=sys.stderr))
    try:
        if args.dask is not None:
            return _dask(args, model, feedback, bar)
        with input_view(args.image, args.ignore_mask_bands) as image:
            res = segment_raster(image, model, args.out, segment_options(args), feedback)
        if args.vector:  # a failure removes the raster too (front_end: one all-or-nothing run)
            n = polygonize(args.out, args.vector, class_names=res.class_names, feedback=feedback)
            print(f"{n} polygons -> {args.vector}", file=sys.stderr)
    finally:  # errors and Ctrl-C: one line on stderr (front_end)
        if bar is not None:
            bar.close()
    return _report(args, res)


def _inputs(args):
    """The input as the output check sees it: with ``--dask``, a ``.txt`` list is every raster it lists."""
    if args.dask is not None:
        from .distributed import is_list, listed_rasters
        if is_list(args.image) and os.path.isfile(args.image):
            return [args.image] + listed_rasters(args.image)
    return args.image


def _outputs(args) -> dict:
    """core key -> (path, kind) of every output option, for the output-path check."""
    from ..core.io import outputs
    return {"output": (args.out, outputs.CLASS_RASTER), "simulation": (args.simulation, outputs.FLOAT_RASTER),
            "vector": (args.vector, outputs.VECTOR), "report": (args.report, outputs.TABLE),
            "html": (args.html, outputs.HTML)}


def _report(args, res) -> int:
    """Print the per-class table and a summary line; write the CSV report when ``--report`` is given and the
    HTML report when ``--html`` is given."""
    _write_reports(args, res)  # a report that cannot be written (full disk): front_end says so, and the run's
    # outputs go with it (the non-zero status makes __main__'s all-or-nothing run discard them)
    from ..core.segment.vectorize import format_report
    rows = res.report_rows()
    print(format_report(rows))
    print(f"{args.out}: k = {res.info.num_classes}, {res.valid_pixels} pixels classified in {res.seconds:.2f} s "
          f"({res.execution_provider})")
    return 0


def _write_reports(args, res) -> None:
    """``--report`` (CSV) and ``--html``, when given."""
    from ..core.segment.vectorize import write_report
    if args.report:
        write_report(args.report, res.report_rows())
    if args.html:
        from ..core.segment.html_report import from_segment, write_html_report
        from ..core.segment.inference import open_session
        session = open_session(res.info.path, threads=args.threads) if res.info.has_textures else None
        params = {k: v for k, v in vars(args).items() if v is not None and v is not False}
        write_html_report(args.html, from_segment(res, args.image, session=session, parameters=params))
        print(f"HTML report -> {args.html}", file=sys.stderr)


def _dask(args, model, feedback, bar) -> int:
    """``--dask``: the same job on a Dask cluster (cli/distributed.py); same outputs and report."""
    from ..core.segment.vectorize import polygonize
    from .distributed import segment_dask

    if args.ignore_mask_bands:  # the in-memory view of the input does not reach the workers' processes
        print("error: --ignore-mask-bands is not available with --dask; run without --dask", file=sys.stderr)
        return 2

    try:
        res = segment_dask(args.image, model, args.out, segment_options(args), feedback, address=args.dask or None,
                           n_workers=args.dask_workers)
        if args.vector:  # from the final raster: no seams to dissolve
            n = polygonize(args.out, args.vector, class_names=res.class_names, feedback=feedback)
            print(f"{n} polygons -> {args.vector}", file=sys.stderr)
    finally:  # errors and Ctrl-C (the Dask tasks are cancelled): one line on stderr (front_end)
        if bar is not None:
            bar.close()
    return _report(args, res)
