"""Polygon count against the share of pixels changed by the sieve (GDAL SieveFilter, 4-connected), for a
range of MIN_SEGMENT_PX values, on the bundled sample and the labelled scenes (docs/development.md §2).
Chooses the default of ``ktextures:segment`` (``classraster.DEFAULT_MIN_SEGMENT_PX``); results in docs/benchmarks.md.

    flock /tmp/ktextures-cpu.lock .venv/bin/python bench/sieve_default.py [--json out.json]
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np
from osgeo import gdal
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from ktextures_plugin import bundled_model_path  # noqa: E402
from ktextures_plugin.core.segment import SegmentOptions, segment_raster  # noqa: E402
from ktextures_plugin.core.segment.sieve import sieve_in_place  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
#: (name, path, scaling); band order blue, green, red, NIR in every file -> BANDS 3,2,1,4.
SCENES = [
    ("sample 512x768", os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif"), "model"),
    ("brandenburg_west", os.path.join(SHARED, "s2_brandenburg_west", "s2_t33uuu_west_b2b3b4b8_10m.tif"), "model"),
    ("slovenia ref4", os.path.join(SHARED, "s2_slovenia", "s2_slovenia_ref4_b2b3b4b8_10m.tif"), "model"),
    ("amazon", os.path.join(SHARED, "s2_amazon", "s2_amazon_b2b3b4b8_10m_reflectance.tif"), "stretch"),
]
THRESHOLDS = [0, 2, 4, 8, 12, 16, 25, 32, 50, 64]


def polygons(labels: np.ndarray) -> int:
    """Number of 4-connected regions of equal class (what gdal.Polygonize writes), nodata 0 excluded."""
    return int(sum(ndimage.label(labels == c)[1] for c in np.unique(labels) if c != 0))


def measure(path: str, scaling: str, tmp: str):
    raw = os.path.join(tmp, "raw.tif")
    segment_raster(path, bundled_model_path(1), raw, SegmentOptions(bands=[3, 2, 1, 4], scaling=scaling))
    base = gdal.Open(raw).ReadAsArray()
    valid = int((base != 0).sum())
    rows = []
    for t in THRESHOLDS:
        cur = os.path.join(tmp, f"s{t}.tif")
        shutil.copy(raw, cur)
        if t:
            sieve_in_place(cur, t)
        lab = gdal.Open(cur).ReadAsArray()
        rows.append({"min_segment_px": t, "polygons": polygons(lab),
                     "changed_pct": 100.0 * float((lab != base).sum()) / valid,
                     "polygons_per_mpx": polygons(lab) / valid * 1e6})
    return base.shape, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    args = ap.parse_args()
    out = {}
    for name, path, scaling in SCENES:
        if not os.path.exists(path):
            print(f"skip {name}: {path} missing")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            shape, rows = measure(path, scaling, tmp)
        out[name] = rows
        print(f"\n{name} ({shape[1]} x {shape[0]} px, model s2_10m_k6, scaling {scaling})")
        print(f"{'MIN_SEGMENT_PX':>14} {'polygons':>9} {'changed %':>10}")
        for r in rows:
            print(f"{r['min_segment_px']:>14} {r['polygons']:>9} {r['changed_pct']:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
