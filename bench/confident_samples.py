"""Downstream mIoU when the interior samples are drawn only where the Gaussian-mixture partition is confident: a
lead for the downstream figure of issue 21 (docs/benchmarks.md, "Quality III").

Usage (from the repository root; the labelled scenes beside the checkout):

    .venv/bin/python bench/confident_samples.py [--scenes amazon slovenia sample brandenburg_west]
                                                [--seeds 0 1 2 3 4] [--thresholds 0 0.9 0.99]

For each scene and seed: the ``gmm:s1`` partition of ``bench/warm_starts.py`` (full-covariance mixture on the bands
and their sigma-1 copy, Potts beta 3); each pixel's confidence = the mixture posterior of its smoothed class. The
samples (``sampling.draw_samples``, 50 per class, edge distance 3 px, seed 1, as ``evaluate``) are drawn from the
class raster with the pixels below the threshold set to nodata; the random forest they train is scored on the
whole class raster's labelled pixels (``metrics.downstream_scores``). Threshold 0 = the usual downstream figure.
Prints the mean downstream mIoU over the seeds per threshold.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import quality as Q  # noqa: E402, N812
import warm_starts as W  # noqa: E402, N812

from ktextures_plugin.core.evaluate import metrics as M  # noqa: E402, N812
from ktextures_plugin.core.sample.sampling import SampleOptions, draw_samples  # noqa: E402


def _partition(scene, seed):
    """``(dataset, valid, labels 0..k-1, confidence)`` of the gmm:s1 partition of ``bench/warm_starts.py``, Potts
    beta 3; confidence = the mixture posterior of each pixel's smoothed class."""
    ds, valid, lab, costs = W.partition(scene, "gmm:s1", seed, 3.0)
    p = np.exp(costs.min(0, keepdims=True) - costs)
    p /= p.sum(0)
    return ds, valid, lab, np.take_along_axis(p, lab[None], 0)[0]


def run(scene, seed, thresholds):
    img, bands, label, _ = Q.scene_paths(scene)
    ds, valid, lab, conf = _partition(scene, seed)
    full = os.path.join(Q.OUT, f"confident_{scene}_s{seed}.tif")
    Q._write_classes(ds, np.where(valid, lab + 1, 0), full)
    out = {}
    for t in thresholds:
        masked = os.path.join(Q.OUT, f"confident_{scene}_s{seed}_t{t:g}.tif")
        Q._write_classes(ds, np.where(valid & (conf >= t), lab + 1, 0), masked)
        s = M.scores(M.confusion_from_rasters(full, label))
        res = draw_samples(masked, SampleOptions(50, min_edge_distance_px=3, seed=1))
        M.downstream_scores(full, label, img, s, [int(v) for v in bands.split(",")], samples=res)
        out[t] = s.downstream_miou
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", default=["amazon", "slovenia", "sample", "brandenburg_west"],
                   choices=list(Q.SCENES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--thresholds", nargs="+", type=float, default=[0.0, 0.9, 0.99])
    a = p.parse_args()
    os.makedirs(Q.OUT, exist_ok=True)
    for scene in a.scenes:
        rows = [run(scene, seed, a.thresholds) for seed in a.seeds]
        print(scene, "  ".join(f"threshold {t:g}: {np.mean([r[t] for r in rows]):.3f}" for t in a.thresholds),
              flush=True)


if __name__ == "__main__":
    main()
