"""``python -m ktextures_plugin evaluate LABELS.tif --reference REF.tif [--json] [--reference-nodata 0]``

Scores a class raster against a reference raster on the same grid (``core/metrics.py``): ARI, NMI, pixel
accuracy and mIoU after Hungarian (one-to-one) matching, mIoU after majority (many-to-one) matching.
Exit status: 0 on success, 2 on bad input (one-line message on stderr).
"""
from __future__ import annotations

import json
import sys

from ._args import Parser, front_end

PROG = "python -m ktextures_plugin evaluate"


def _nodata(text: str):
    if text.strip().lower() in ("none", ""):
        return None
    from ..core.errors import ParameterError
    try:
        return float(text)
    except ValueError:
        raise ParameterError(f"--reference-nodata must be a number or 'none', got {text!r}") from None


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Score a class raster (0 = nodata) against a reference raster on the "
                                      "same grid, over pixels labelled in the reference.")
    p.add_argument("labels", help="class raster to score (output of segment or kmeans)")
    p.add_argument("--reference", required=True, help="reference label raster on the same grid")
    p.add_argument("--reference-nodata", default="0",
                   help="reference value meaning 'unlabelled' (default 0; 'none' = every value is a class)")
    p.add_argument("--json", action="store_true",
                   help="print JSON with keys ari, nmi, accuracy, miou_hungarian, miou_majority, pixels, "
                        "sample_purity, classes_reached, samples_scored")
    return p


@front_end(PROG, {"labels": "LABELS", "reference": "--reference"})
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..core import metrics

    s = metrics.evaluate_rasters(args.labels, args.reference, ref_nodata=_nodata(args.reference_nodata))
    if args.json:
        print(json.dumps(s.as_dict()))
    else:
        print("\n".join(metrics.format_scores(s)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
