"""Candidate warm-start partitions on the labelled scenes, without a network: how the choices of the default
``fit --warm-start gmm`` were made (docs/benchmarks.md, "Quality III").

Usage (from the repository root; the labelled scenes beside the checkout, docs/development.md §2):

    .venv/bin/python bench/warm_starts.py [--scenes slovenia amazon sample brandenburg_west]
                                          [--methods gmm:s1 gmm:ctx km:px ...] [--seeds 0 1 2 3 4] [--betas 0 3]

Each method clusters the whole scene in this process, then the Potts step of segment
(``core.segment.smoothing.icm_potts``, beta ``--betas``, 10 sweeps; 0 = the plain argmin) smooths its per-class
costs, and the class raster is scored like ``bench/quality.py`` (``quality.score``: ARI, Hungarian mIoU, the
downstream figures). A method is ``KIND:FEATURES``:

- FEATURES: ``px`` = the four bands (R, G, B, NIR, ``bench/quality.py``'s bands), ``s1`` = the bands and their
  Gaussian-smoothed copy at sigma 1 px, ``s12`` = sigma 1 and 2, ``ctx`` = sigma 1, 2 and 4 (SciPy
  ``gaussian_filter``, mode nearest, truncated at 3 sigma); every valid pixel z-scored with the scene's mean and
  standard deviation, the raw values unclipped;
- KIND: ``km`` = scikit-learn ``KMeans(k, n_init=3)``, costs = squared distance to the centres; ``gmm`` =
  ``GaussianMixture(k, covariance_type="full", reg_covar=1e-3, init_params="k-means++")``, costs = minus the
  weighted log density; ``gmmt`` / ``gmmd`` = tied / diagonal covariances; ``gmmN`` (e.g. ``gmm3``) = ``n_init=N``
  (the mixture of highest likelihood of N starts); an ``e`` last (``gmme``) drops the mixture weights from the
  costs (equal priors, as GRASS ``i.maxlik`` classifies); ``cgmm`` = EM started from the consensus of 10
  mixtures (``_consensus``). A ``c`` or ``w`` after the kind (``gmmc``, ``gmmw``) clips each band to its
  2-98 % (``c``, as segment's default scale) or 0.1-99.9 % (``w``) percentiles first.

Both fit on 50 000 pixels drawn at random (seed = the run's seed) from the valid pixels. Prints one line per
scene, method and beta: mean and (population) standard deviation over the seeds, and the per-seed ARI.
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import quality as Q  # noqa: E402, N812

from ktextures_plugin.core.io import raster  # noqa: E402
from ktextures_plugin.core.kmeans.kmeans import context_features  # noqa: E402
from ktextures_plugin.core.segment.smoothing import icm_potts, squared_distance_costs  # noqa: E402

FEATURES = {"px": (), "s1": (1.0,), "s12": (1.0, 2.0), "ctx": (1.0, 2.0, 4.0)}
FIT_PIXELS = 50_000


def _read(scene):
    img, bands, label, _ = Q.scene_paths(scene)
    ds = raster.open_raster(img)
    data, valid = raster.read_window(ds, [int(v) for v in bands.split(",")], (0, 0, ds.RasterXSize, ds.RasterYSize))
    return ds, data.astype(np.float32), valid


def _clip(data, valid, kind):
    """Each band clipped to its 2-98 % (``...c``) or 0.1-99.9 % (``...w``) percentiles; the kind without the flag."""
    if not kind.endswith(("c", "w")):
        return data, kind
    lo, hi = (2, 98) if kind.endswith("c") else (0.1, 99.9)
    for i in range(len(data)):
        a, b = np.percentile(data[i][valid], [lo, hi])
        data[i] = np.clip(data[i], a, b)
    return data, kind[:-1]


def _consensus(sub, k, seed, starts=10, probe=2000):
    """A full mixture started from the consensus of ``starts`` mixtures: their co-association on ``probe``
    pixels of ``sub`` (P, F), cut into k groups by average linkage (SciPy), each group's mean, covariance and
    share the start of one more EM fit on ``sub``."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist
    from sklearn.mixture import GaussianMixture
    rng = np.random.default_rng(seed)
    pr = sub[rng.choice(len(sub), min(probe, len(sub)), replace=False)]
    labs = np.stack([GaussianMixture(k, covariance_type="full", reg_covar=1e-3, init_params="k-means++",
                                     random_state=seed * 1000 + i).fit(sub).predict(pr) for i in range(starts)], 1)
    grp = fcluster(linkage(pdist(labs, "hamming"), "average"), k, "maxclust") - 1
    ids = [g for g in np.unique(grp) if (grp == g).sum() > pr.shape[1]]
    means = np.stack([pr[grp == g].mean(0) for g in ids])
    covs = np.stack([np.cov(pr[grp == g].T) + 1e-3 * np.eye(pr.shape[1]) for g in ids])
    w = np.array([(grp == g).mean() for g in ids])
    return GaussianMixture(len(ids), covariance_type="full", reg_covar=1e-3, weights_init=w / w.sum(),
                           means_init=means, precisions_init=np.linalg.inv(covs), random_state=seed).fit(sub)


def _costs(kind, zf, sub, k, seed):
    """(k, H, W) float32 per-class costs of the clustering ``kind`` fitted on ``sub`` (P, F)."""
    if kind == "km":
        from sklearn.cluster import KMeans
        return squared_distance_costs(zf, KMeans(k, n_init=3, random_state=seed).fit(sub).cluster_centers_)
    if kind == "cgmm":
        return _mixture_costs(_consensus(sub, k, seed), zf, equal=False)
    from sklearn.mixture import GaussianMixture
    equal = kind.endswith("e")
    kind = kind.rstrip("e")
    cov = {"t": "tied", "d": "diag"}.get(kind[3:4], "full")
    n_init = int(kind[3:].lstrip("td") or 1)
    g = GaussianMixture(k, covariance_type=cov, reg_covar=1e-3, init_params="k-means++", random_state=seed,
                        n_init=n_init).fit(sub)
    return _mixture_costs(g, zf, equal)


def _mixture_costs(g, zf, equal):
    """(n_components, H, W) float32: minus the (weighted, unless ``equal``) log density of ``g`` at ``zf``."""
    x = zf.reshape(zf.shape[0], -1).T.astype(np.float64)
    lp = g._estimate_log_prob(x) if equal else g._estimate_weighted_log_prob(x)    # (P, k)
    costs = (-lp).T.reshape(g.n_components, *zf.shape[1:]).astype(np.float32)
    return costs - costs.min(0, keepdims=True)


def partition(scene, method, seed, beta):
    """``(dataset, valid (H, W), labels (H, W) 0..k-1, costs (k, H, W) float32)`` of ``method`` on ``scene``,
    smoothed by the Potts step at ``beta`` (0 = the argmin of the costs)."""
    _, _, label, _ = Q.scene_paths(scene)
    ds, data, valid = _read(scene)
    kind, _, feats = method.partition(":")
    data, kind = _clip(data, valid, kind)
    f = context_features(data, valid, FEATURES[feats or "px"])
    px = f[:, valid].T.astype(np.float64)
    mu, sd = px.mean(0), px.std(0)
    sd[sd < 1e-12] = 1.0
    z = (px - mu) / sd
    zf = ((f - mu[:, None, None]) / sd[:, None, None]).astype(np.float32)
    rng = np.random.default_rng(seed)
    sub = z if len(z) <= FIT_PIXELS else z[rng.choice(len(z), FIT_PIXELS, replace=False)]
    costs = _costs(kind, zf, sub, Q.n_classes(label), seed)
    labels = icm_potts(costs, beta, valid=valid) if beta > 0 else np.argmin(costs, 0)
    return ds, valid, labels, costs


def run(scene, method, seed, beta, out_dir):
    """Every figure of ``quality.score`` for one method, seed and beta on ``scene``."""
    img, bands, label, _ = Q.scene_paths(scene)
    ds, valid, labels, _ = partition(scene, method, seed, beta)
    path = os.path.join(out_dir, f"warm_{scene}_{method.replace(':', '_')}_s{seed}_b{beta:g}.tif")
    Q._write_classes(ds, np.where(valid, labels + 1, 0), path)
    return Q.score(path, label, img, bands)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", nargs="+", default=["slovenia", "amazon", "sample", "brandenburg_west"],
                   choices=list(Q.SCENES))
    p.add_argument("--methods", nargs="+", default=["km:ctx", "gmm:ctx", "gmm:s1"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--betas", nargs="+", type=float, default=[3.0])
    a = p.parse_args()
    os.makedirs(Q.OUT, exist_ok=True)
    for scene in a.scenes:
        for method in a.methods:
            for beta in a.betas:
                r = np.array([[s["ari"], s["miou_hungarian"], s["downstream_miou"]]
                              for s in (run(scene, method, seed, beta, Q.OUT) for seed in a.seeds)])
                m, d = r.mean(0), r.std(0)
                print(f"{scene:17s} {method:9s} beta {beta:<3g} ARI {m[0]:.3f} ± {d[0]:.3f}  mIoU {m[1]:.3f} ± "
                      f"{d[1]:.3f}  downstream {m[2]:.3f} ± {d[2]:.3f}  per-seed ARI {np.round(r[:, 0], 3).tolist()}",
                      flush=True)


if __name__ == "__main__":
    main()
