"""``python -m ktextures_plugin evaluate LABELS.tif --reference REF.tif [--image IMG.tif [--bands 3,2,1,4]] [--json]
[--reference-nodata 0]``

Scores a class raster against a reference raster on the same grid (``core/evaluate/metrics.py``): ARI, NMI, pixel
accuracy and mIoU after Hungarian (one-to-one) matching, mIoU after majority (many-to-one) matching, per-class
precision, recall and F1 and Cohen's kappa after the Hungarian matching, the sample figures, and with
``--image`` the downstream figures (a random forest trained on the interior samples, scored on the reference).
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
    p.add_argument("--image", default=None,
                   help="the image the classes were made from (same grid): adds downstream_accuracy and "
                        "downstream_miou (a random forest trained on 50 interior samples per class, each labelled "
                        "with its cluster's majority reference class, scored against the reference)")
    p.add_argument("--bands", default=None,
                   help="with --image: 1-based bands the random forest sees, e.g. 3,2,1,4 (default: all)")
    p.add_argument("--json", action="store_true",
                   help="print JSON with keys ari, nmi, accuracy, miou_hungarian, miou_majority, pixels, "
                        "sample_purity, classes_reached, samples_scored, kappa, f1_macro, per_class (reference_class, "
                        "precision, recall, f1, iou per reference class) and, with --image, downstream_accuracy, "
                        "downstream_miou, downstream_samples")
    return p


@front_end(PROG, {"labels": "LABELS", "reference": "--reference", "bands": "--bands", "image": "--image"})
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..core.errors import ParameterError
    from ..core.evaluate import metrics
    from ..core.segment.bands import parse_bands

    ref_nodata = _nodata(args.reference_nodata)
    bands = None
    if args.bands and args.image:
        bands = parse_bands(args.bands, metrics.band_count(args.image))
    elif args.bands:
        raise ParameterError("--bands needs --image (the bands are those of the image for the downstream figures)")
    s = metrics.evaluate_rasters(args.labels, args.reference, ref_nodata=ref_nodata, image_path=args.image,
                                 bands=bands)
    if args.json:
        print(json.dumps(dict(s.as_dict(), per_class=s.per_class())))
    else:
        print("\n".join(metrics.format_scores(s)))
        print("per reference class (Hungarian matching): precision recall F1 IoU")
        for row in s.per_class():
            print(f"  {row['reference_class']:>6} {row['precision']:.4f} {row['recall']:.4f} {row['f1']:.4f} "
                  f"{row['iou']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
