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


def ceiling(scene, sample_seed):
    """Downstream mIoU of the reference of ``scene`` used as the class raster, samples drawn with
    ``sample_seed``."""
    from osgeo import gdal
    img, bands, label, _ = Q.scene_paths(scene)
    ds = gdal.Open(label)
    ref = ds.GetRasterBand(1).ReadAsArray()
    nd = ds.GetRasterBand(1).GetNoDataValue()
    if nd is not None:
        ref = np.where(ref == nd, 0, ref)
    path = os.path.join(Q.OUT, f"ceiling_{scene}.tif")
    Q._write_classes(ds, ref, path)
    s = M.scores(M.confusion_from_rasters(path, label))
    res = draw_samples(path, SampleOptions(50, min_edge_distance_px=3, seed=sample_seed))
    M.downstream_scores(path, label, img, s, [int(v) for v in bands.split(",")], samples=res)
    return s.downstream_miou


def random_pure(scene, sample_seed, n=50):
    """mIoU over the reference classes of the forest on the bands trained on ``n`` labelled pixels per
    reference class of ``scene`` drawn at random with ``sample_seed``, scored on every labelled pixel."""
    from osgeo import gdal
    from sklearn.ensemble import RandomForestClassifier
    img, bands, label, _ = Q.scene_paths(scene)
    ids, lds = gdal.Open(img), gdal.Open(label)
    x = np.stack([ids.GetRasterBand(int(b)).ReadAsArray().astype(np.float32) for b in bands.split(",")])
    ref = lds.GetRasterBand(1).ReadAsArray()
    nd = lds.GetRasterBand(1).GetNoDataValue()
    lab = (ref != 0) if nd is None else (ref != 0) & (ref != nd)
    xs, y = x[:, lab].T, ref[lab]
    rng = np.random.default_rng(sample_seed)
    classes = np.unique(y)
    pick = np.concatenate([rng.choice(np.flatnonzero(y == c), min(n, int((y == c).sum())), replace=False)
                           for c in classes])
    pred = RandomForestClassifier(n_estimators=M.FOREST_TREES, random_state=M.FOREST_SEED).fit(
        xs[pick], y[pick]).predict(xs)
    return float(np.mean([((pred == c) & (y == c)).sum() / ((pred == c) | (y == c)).sum() for c in classes]))


def per_class(scene, sample_seed=1):
    """``[(class, pixels, interior samples, IoU)]`` of the reference of ``scene`` used as the class raster: the
    forest of :func:`ceiling` (its own copy: ``downstream_scores`` returns only the mean)."""
    from osgeo import gdal
    from sklearn.ensemble import RandomForestClassifier
    img, bands, label, _ = Q.scene_paths(scene)
    ceiling(scene, sample_seed)  # writes the class raster
    path = os.path.join(Q.OUT, f"ceiling_{scene}.tif")
    res = draw_samples(path, SampleOptions(50, min_edge_distance_px=3, seed=sample_seed))
    ids, cds = gdal.Open(img), gdal.Open(path)
    x = np.stack([ids.GetRasterBand(int(b)).ReadAsArray().astype(np.float32) for b in bands.split(",")])
    ref = cds.GetRasterBand(1).ReadAsArray()
    rows, cols = [np.array([getattr(p, a) for p in res.samples]) for a in ("row", "col")]
    lab = ref > 0
    pred = RandomForestClassifier(n_estimators=M.FOREST_TREES, random_state=M.FOREST_SEED).fit(
        x[:, rows, cols].T, ref[rows, cols]).predict(x[:, lab].T)
    y = ref[lab]
    return [(int(c), int((y == c).sum()), int((ref[rows, cols] == c).sum()),
             float(((pred == c) & (y == c)).sum() / ((pred == c) | (y == c)).sum())) for c in np.unique(y)]


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
