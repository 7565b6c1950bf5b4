"""``python -m ktextures_plugin novelty IMAGE --score SCORE.tif [--selected TILES.gpkg] [--html PAGE.html] [...]``

DEMUD novelty ranking of the raster's tiles (``core/novelty/novelty.py``, docs/novelty.md), the same core as
``ktextures:novelty``. Exit status: 0 on success, 2 on bad input (one-line message on stderr).
"""
from __future__ import annotations

import json
import sys

from .. import BUNDLED_MODELS, DEFAULT_MODEL, bundled_model_path
from ._args import Parser, add_mask_option, check_outputs, fail, front_end, input_view, int_range

PROG = "python -m ktextures_plugin novelty"


#: core keys (core.io.outputs) -> CLI options, for messages
NAMES = {"input": "IMAGE", "model": "--model", "score": "--score", "selected": "--selected", "html": "--html",
         "bands": "--bands", "scaling": "--scaling", "nodata": "--nodata", "tile_size": "--tile-size",
         "n_select": "--n-select"}
#: NoveltyOptions field -> the option that sets it (tests/frontends/test_options.py compares it with the QGIS one;
#: ``init_rank``, ``residual_weight`` and ``features_path`` are for scripts and the benchmark)
OPTIONS = {"bands": "--bands", "tile_size": "--tile-size", "n_select": "--n-select", "rank": "--rank", "seed": "--seed",
           "init_tiles": "--init-tiles", "scaling": "--scaling", "extra_nodata": "--nodata", "threads": "--threads"}

def build_parser() -> Parser:
    from ..core.novelty.novelty import DEFAULT_RANK, INIT_TILES
    p = Parser(prog=PROG, description="Rank the raster's tiles by what the k textures and the tiles already "
                                      "shown cannot explain (DEMUD), with a visual explanation.")
    p.add_argument("image", help="input raster (any GDAL format); read only")
    p.add_argument("--model", default=None,
                   help=f"k-textures ONNX model with textures (default: bundled '{BUNDLED_MODELS[DEFAULT_MODEL][1]}')")
    p.add_argument("--bands", default=None,
                   help="1-based bands in the model's channel order, e.g. 3,2,1,4 (default: from band descriptions)")
    p.add_argument("--scaling", choices=["model", "stretch"], default="model")
    p.add_argument("--nodata", type=float, default=None, help="extra value treated as nodata")
    p.add_argument("--tile-size", type=int, default=64,
                   help="tile side in pixels, a multiple of 32; tiles every half tile (default 64)")
    p.add_argument("--n-select", type=int, default=20, help="tiles to select (default 20)")
    p.add_argument("--rank", type=int, default=DEFAULT_RANK,
                   help=f"most singular vectors the model keeps (DEMUD's k; default {DEFAULT_RANK})")
    p.add_argument("--init-tiles", type=int, default=INIT_TILES,
                   help="initial model: -2 = SVD of the typical tiles (default), -1 = none, 0 = SVD of all tiles, "
                        "N = SVD of N random tiles")
    p.add_argument("--seed", type=int, default=0, help="random seed of --init-tiles N (default 0)")
    p.add_argument("--score", required=True, help="score raster to write (one pixel per tile, GeoTIFF)")
    p.add_argument("--selected", default=None, help="selected tiles as polygons (GeoPackage by default)")
    p.add_argument("--html", default=None, help="explanation page (HTML: tile, simulation, difference)")
    add_mask_option(p)
    p.add_argument("--threads", type=int_range(1), default=None, help="onnxruntime intra-op threads (>= 1)")
    p.add_argument("--json", action="store_true", help="print the selected tiles as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _progress_bar(quiet: bool):
    if quiet:
        return None, None
    from tqdm import tqdm
    bar = tqdm(total=100, unit="%", desc="features", file=sys.stderr,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}")

    def progress(frac, stage):
        pct = round(100 * frac)
        if pct != bar.n or stage != bar.desc:
            bar.set_description_str(stage, refresh=False)
            bar.n = pct
            bar.refresh()
    return bar, progress


def novelty_options(args):
    """The :class:`~ktextures_plugin.core.novelty.NoveltyOptions` of the parsed command line (:data:`OPTIONS`)."""
    from ..core.novelty import NoveltyOptions
    return NoveltyOptions(bands=args.bands, tile_size=args.tile_size, n_select=args.n_select, rank=args.rank,
                          seed=args.seed, init_tiles=args.init_tiles, scaling=args.scaling, extra_nodata=args.nodata,
                          threads=args.threads)


@front_end(PROG, NAMES)
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..core.feedback import Feedback
    from ..core.novelty import rank_tiles
    from ..core.novelty.novelty_output import dominant_classes, write_html, write_score_raster, write_selected

    for opt, v, lo in (("--n-select", args.n_select, 1), ("--rank", args.rank, 1)):
        if v < lo:
            return fail(PROG, f"{opt} must be at least {lo}, got {v}")
    model = args.model or bundled_model_path(DEFAULT_MODEL)
    from ..core.io import outputs
    bad = check_outputs(PROG, NAMES, {"score": (args.score, outputs.FLOAT_RASTER),
                                      "selected": (args.selected, outputs.VECTOR), "html": (args.html, outputs.TABLE)},
                        {"input": args.image, "model": model})
    if bad is not None:
        return bad
    bar, progress = _progress_bar(args.quiet)
    try:
        with input_view(args.image, args.ignore_mask_bands) as image:
            res = rank_tiles(image, model, novelty_options(args), Feedback(
                progress=progress, warning=lambda m: print(f"warning: {m}", file=sys.stderr)))
        write_score_raster(args.score, res, args.image)
        if args.selected:
            write_selected(args.selected, res, args.image)
        if args.html:
            write_html(args.html, res, args.image, model, args.nodata, threads=args.threads)
    finally:
        if bar is not None:
            bar.close()
    rows = [{"rank": s.rank, "row": s.row, "col": s.col, "window": list(s.window),
             "selection_score": round(s.score, 6), "initial_score": round(s.initial, 6),
             "residual": round(s.residual, 6), "classes": dominant_classes(s.class_counts, res.info.class_names)}
            for s in res.selected]
    if args.json:
        print(json.dumps({"selected": rows, "tiles": int(res.table.index.size), "skipped": res.table.skipped,
                          "tile_size": res.tile_size, "stride": res.table.stride, "seconds": round(res.seconds, 3)}))
    else:
        print(f"{res.table.index.size} tiles of {res.tile_size} px every {res.table.stride} px scored, "
              f"{res.table.skipped} skipped (mostly nodata), {res.seconds:.1f} s; score raster -> {args.score}")
        print("  rank  tile (px)        selection score  initial score  residual  classes")
        for r in rows:
            x, y = r["window"][:2]
            print(f"  {r['rank']:>4}  x {x:>5}, y {y:>5}  {r['selection_score']:>15.4g}  {r['initial_score']:>13.4g}"
                  f"  {r['residual']:>8.4g}  {r['classes']}")
        print("  selection score: error when selected (it orders the list); initial score: error under the "
              "initial model of the scene, before any selection (docs/novelty.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
