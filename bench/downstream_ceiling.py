"""The downstream figure of a perfect partition: the reference itself as the class raster (issue 21's
``downstream_miou``, docs/benchmarks.md "Quality IV").

Usage (from the repository root; the labelled scenes beside the checkout):

    .venv/bin/python bench/downstream_ceiling.py [--scenes slovenia amazon sample brandenburg_west]
                                                 [--sample-seeds 1 2 3 4 5]

For each scene the reference label raster is written as a class raster (its labelled pixels, classes = the
reference classes, 0 = nodata) and scored by ``core.evaluate.metrics.downstream_scores`` exactly as a segment's
class raster is: interior samples of the product's sampler (``sampling.draw_samples``, 50 per class, edge
distance 3 px, seed = each ``--sample-seeds``; ``evaluate`` uses seed 1), each labelled with its class's majority
reference class (here: itself), a scikit-learn random forest (100 trees, seed 0) on the bands at those points,
scored on every labelled pixel. A partition that equals the reference scores this; a method can beat it only
where its samples happen to teach the band-only forest better than pure samples of the true classes do.

On a scene with a dense reference (Slovenia: 9945 of 10100 pixels labelled) this is the downstream figure of a
perfect partition. On a sparse one (Amazon: 2366 px in training polygons) the samples come from the polygons'
interiors only, so it is the figure of a partition perfect on the polygons and empty elsewhere.
Beside it, the same forest trained on 50 labelled pixels per reference class drawn at random (no edge distance;
seed = each sample seed) and scored on the same pixels, which include those 50 x k: what the band-only forest
does with pure samples that are not held to the interiors.
Prints, per scene, the downstream mIoU per sample seed and their mean, for both. ``--per-class`` prints instead,
for sample seed 1, each reference class's pixels, interior samples and downstream IoU of the reference row.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import quality as Q  # noqa: E402, N812

from ktextures_plugin.core.evaluate import metrics as M  # noqa: E402, N812
from ktextures_plugin.core.sample.sampling import SampleOptions, draw_samples  # noqa: E402


def reference_raster(scene):
    """``(path, ref (H, W))``: the reference of ``scene`` written as a class raster (0 = unlabelled)."""
    from osgeo import gdal
    _, _, label, _ = Q.scene_paths(scene)
    ds = gdal.Open(label)
    ref = ds.GetRasterBand(1).ReadAsArray()
    nd = ds.GetRasterBand(1).GetNoDataValue()
    if nd is not None:
        ref = np.where(ref == nd, 0, ref)
    path = os.path.join(Q.OUT, f"ceiling_{scene}.tif")
    Q._write_classes(ds, ref, path)
    return path, ref


def ceiling(scene, sample_seed):
    """Downstream mIoU of the reference of ``scene`` used as the class raster, samples drawn with
    ``sample_seed``."""
    img, bands, label, _ = Q.scene_paths(scene)
    path, _ = reference_raster(scene)
    s = M.scores(M.confusion_from_rasters(path, label))
    res = draw_samples(path, SampleOptions(50, min_edge_distance_px=3, seed=sample_seed))
    M.downstream_scores(path, label, img, s, [int(v) for v in bands.split(",")], samples=res)
    return s.downstream_miou


def _bands(scene):
    """The scene's bands (C, H, W) float32, in ``bench/quality.py``'s order."""
    from osgeo import gdal
    img, bands, _, _ = Q.scene_paths(scene)
    ds = gdal.Open(img)
    return np.stack([ds.GetRasterBand(int(b)).ReadAsArray().astype(np.float32) for b in bands.split(",")])


def _forest_iou(x, ref, rows, cols):
    """Per reference class ``(class, pixels, training points, IoU)`` of the forest of ``downstream_scores``
    (its own copy: that returns only the mean) trained on the bands ``x`` at ``(rows, cols)`` with the
    reference labels there, scored on every labelled pixel."""
    from sklearn.ensemble import RandomForestClassifier
    lab = ref > 0
    y, yt = ref[lab], ref[rows, cols]
    pred = RandomForestClassifier(n_estimators=M.FOREST_TREES, random_state=M.FOREST_SEED).fit(
        x[:, rows, cols].T, yt).predict(x[:, lab].T)
    return [(int(c), int((y == c).sum()), int((yt == c).sum()),
             float(((pred == c) & (y == c)).sum() / ((pred == c) | (y == c)).sum())) for c in np.unique(y)]


def random_pure(scene, sample_seed, n=50):
    """mIoU over the reference classes of the forest on the bands trained on ``n`` labelled pixels per
    reference class of ``scene`` drawn at random with ``sample_seed``, scored on every labelled pixel."""
    _, ref = reference_raster(scene)
    rng = np.random.default_rng(sample_seed)
    flat = ref.ravel()
    pick = np.concatenate([rng.choice(np.flatnonzero(flat == c), min(n, int((flat == c).sum())), replace=False)
                           for c in np.unique(flat[flat > 0])])
    rows, cols = np.unravel_index(pick, ref.shape)
    return float(np.mean([v for *_, v in _forest_iou(_bands(scene), ref, rows, cols)]))


def per_class(scene, sample_seed=1):
    """``[(class, pixels, interior samples, IoU)]`` of the reference of ``scene`` used as the class raster, with
    the interior samples of :func:`ceiling`."""
    path, ref = reference_raster(scene)
    res = draw_samples(path, SampleOptions(50, min_edge_distance_px=3, seed=sample_seed))
    rows, cols = [np.array([getattr(p, a) for p in res.samples]) for a in ("row", "col")]
    return _forest_iou(_bands(scene), ref, rows, cols)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", default=["slovenia", "amazon", "sample", "brandenburg_west"],
                   choices=list(Q.SCENES))
    p.add_argument("--sample-seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--per-class", action="store_true")
    a = p.parse_args()
    os.makedirs(Q.OUT, exist_ok=True)
    if a.per_class:
        for scene in a.scenes:
            print(scene, "class / pixels / interior samples / IoU:",
                  "; ".join(f"{c} / {n} / {m} / {v:.3f}" for c, n, m, v in per_class(scene)), flush=True)
        return
    for scene in a.scenes:
        r = [ceiling(scene, s) for s in a.sample_seeds]
        print(f"{scene}: reference as class raster, downstream mIoU "
              f"{' '.join(f'{v:.3f}' for v in r)}  mean {np.mean(r):.3f}", flush=True)
        r = [random_pure(scene, s) for s in a.sample_seeds]
        print(f"{scene}: 50 random labelled pixels per class, mIoU "
              f"{' '.join(f'{v:.3f}' for v in r)}  mean {np.mean(r):.3f}", flush=True)


if __name__ == "__main__":
    main()
