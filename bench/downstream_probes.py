"""Two probes of issue 21's downstream figure on whole-scene partitions (docs/benchmarks.md, "Quality IV"):
other ways to draw the samples, and label-free criteria for picking one of several mixture starts.

Usage (from the repository root; the labelled scenes beside the checkout):

    .venv/bin/python bench/downstream_probes.py samples [--methods gmm:s1 km:px] [--seeds 0 1 2]
    .venv/bin/python bench/downstream_probes.py starts [--scenes slovenia amazon ...] [--starts 15]
    .venv/bin/python bench/downstream_probes.py bands [--seeds 0 1 2]

``samples``: ``bench/warm_starts.py``'s partition (``gmm:*`` smoothed by the Potts step at beta 3, ``km:*``
unsmoothed, as the peer), then the downstream mIoU of ``core.evaluate.metrics.downstream_scores`` with four
sets of samples. Every set is drawn by the product's sampler (``sampling.draw_samples``, edge distance 3 px,
seed 1):
- ``evaluate``: 50 per class, exactly as ``evaluate`` draws them;
- ``mahalanobis``: the 50 of 300 interior samples per class nearest their class mean in band space (Mahalanobis
  distance with the class's own covariance);
- ``homogeneous``: 50 at random among those of 400 interior samples whose 3 x 3 band spread (root of the summed
  local variances of the z-scored bands) is in the lower half of their class's;
- ``random``: 50 at random among 400 interior samples.
Prints the mean over ``--seeds`` per scene and set.

``starts``: ``--starts`` mixtures (``gmm:s1`` of ``bench/warm_starts.py``, mixture seeds 0..N-1), each smoothed at
beta 3 and scored (ARI, Hungarian mIoU, downstream mIoU), beside two label-free criteria: the share of each
pixel's 8 neighbours in its own class (raw argmax, averaged over the valid pixels) and the mixture's mean
log-likelihood. Prints every start and the correlation of each criterion with each figure over the starts.

``bands``: the ``gmm:s1`` mixture (mixture seed = each ``--seeds``, beta 3) and its marginal on the four bands
(the same classes; means and covariances restricted to the bands), whose maximum a posteriori class is the class
a band-only reading of the mixture gives each pixel. Downstream mIoU with samples drawn (edge distance 3 px,
seed 1) ``random``: 50 at random of 400 interior samples per class; ``agree``: 50 at random of those of the 400
whose band-only class equals their class; ``masked``: 50 per class from the class raster with the pixels whose
band-only class differs set to nodata. Also the share of valid pixels where the two agree.
"""
import argparse
import dataclasses
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

SCENES = ["amazon", "slovenia", "sample", "brandenburg_west"]
SETS = ("evaluate", "mahalanobis", "homogeneous", "random")


def _bands(scene):
    img, bands, label, _ = Q.scene_paths(scene)
    return img, [int(v) for v in bands.split(",")], label


def _downstream(path, scene, samples):
    img, bands, label = _bands(scene)
    s = M.scores(M.confusion_from_rasters(path, label))
    M.downstream_scores(path, label, img, s, bands, samples=samples)
    return s


def _mahalanobis_rank(data, lab, valid, k):
    """(H, W) rank 0..1 of each pixel's squared Mahalanobis distance to its class mean within its class."""
    rank = np.ones(lab.shape)
    for c in range(k):
        m = valid & (lab == c)
        if m.sum() < 10:
            continue
        x = data[:, m].T.astype(np.float64)
        d = x - x.mean(0)
        dd = np.einsum("pi,ij,pj->p", d, np.linalg.inv(np.cov(x.T) + 1e-6 * np.eye(x.shape[1])), d)
        r = np.empty(len(dd))
        r[np.argsort(dd)] = (np.arange(len(dd)) + 0.5) / len(dd)
        rank[m] = r
    return rank


def _local_spread(data, valid):
    """(H, W) root of the summed 3 x 3 local variances of the z-scored bands."""
    from scipy.ndimage import uniform_filter
    z = (data - data[:, valid].mean(1)[:, None, None]) / data[:, valid].std(1)[:, None, None]
    v = sum(uniform_filter(b * b, 3) - uniform_filter(b, 3) ** 2 for b in z)
    return np.sqrt(np.maximum(v, 0))


def _subset(pool, score, pick, rng):
    """``pool`` with, per class, the samples ``pick(values, rng)`` chooses (indices into the class's samples)."""
    by = {}
    for s in pool.samples:
        by.setdefault(s.class_id, []).append(s)
    keep = []
    for ss in by.values():
        keep += [ss[i] for i in pick(np.array([score[s.row, s.col] for s in ss]), rng)]
    return dataclasses.replace(pool, samples=keep)


def sample_sets(scene, method, seed):
    """Downstream mIoU of each of :data:`SETS` on ``method``'s partition of ``scene``."""
    ds, valid, lab, costs = W.partition(scene, method, seed, 0.0 if method.startswith("km") else 3.0)
    path = os.path.join(Q.OUT, f"probe_{scene}_{method.replace(':', '_')}_s{seed}.tif")
    Q._write_classes(ds, np.where(valid, lab + 1, 0), path)
    _, bands, _ = _bands(scene)
    data = ds.ReadAsArray()[[b - 1 for b in bands]].astype(np.float32)
    opts = lambda n: SampleOptions(n, min_edge_distance_px=3, seed=1)  # noqa: E731
    pool300, pool400 = draw_samples(path, opts(300)), draw_samples(path, opts(400))
    rng = np.random.default_rng(1)
    rank, spread = _mahalanobis_rank(data, lab, valid, costs.shape[0]), _local_spread(data, valid)
    sets = {
        "evaluate": draw_samples(path, opts(50)),
        "mahalanobis": _subset(pool300, rank, lambda v, r: np.argsort(v)[:50], rng),
        "homogeneous": _subset(pool400, spread,
                               lambda v, r: r.permutation(np.flatnonzero(v <= np.median(v)))[:50], rng),
        "random": _subset(pool400, spread, lambda v, r: r.permutation(len(v))[:50], rng),
    }
    return [_downstream(path, scene, sets[name]).downstream_miou for name in SETS]


def _agreement(lab, valid, k):
    from ktextures_plugin.core.segment.smoothing import neighbour_counts
    own = np.take_along_axis(neighbour_counts(lab, k, valid), lab[None], 0)[0]
    return float(own[valid].mean() / 8)


class _Features:
    """The z-scored bands and sigma-1 copies of ``scene`` (``bench/warm_starts.py``'s ``s1``), computed once."""

    def __init__(self, scene):
        from ktextures_plugin.core.kmeans.kmeans import context_features
        _, _, label = _bands(scene)
        self.ds, data, self.valid = W._read(scene)
        f = context_features(data, self.valid, W.FEATURES["s1"])
        px = f[:, self.valid].T.astype(np.float64)
        mu, sd = px.mean(0), px.std(0)
        self.z = (px - mu) / sd
        self.zf = ((f - mu[:, None, None]) / sd[:, None, None]).astype(np.float32)
        self.k, self.bands = Q.n_classes(label), data.shape[0]

    def mixture(self, seed):
        """``(GaussianMixture, costs (k, H, W) float32, labels (H, W) at beta 3)`` of mixture seed ``seed``."""
        from sklearn.mixture import GaussianMixture

        from ktextures_plugin.core.segment.smoothing import icm_potts
        z, zf = self.z, self.zf
        rng = np.random.default_rng(seed)
        sub = z if len(z) <= W.FIT_PIXELS else z[rng.choice(len(z), W.FIT_PIXELS, replace=False)]
        g = GaussianMixture(self.k, covariance_type="full", reg_covar=1e-3, init_params="k-means++",
                            random_state=seed).fit(sub)
        lp = g._estimate_weighted_log_prob(zf.reshape(zf.shape[0], -1).T.astype(np.float64))
        costs = (-lp).T.reshape(self.k, *zf.shape[1:]).astype(np.float32)
        costs -= costs.min(0, keepdims=True)
        return g, costs, icm_potts(costs, 3.0, valid=self.valid)


def starts(scene, n):
    """Rows ``(start, agreement, log-likelihood, ARI, Hungarian mIoU, downstream mIoU)`` of ``n`` mixtures."""
    fs = _Features(scene)
    rows = []
    for s in range(n):
        g, costs, lab = fs.mixture(s)
        path = os.path.join(Q.OUT, f"probe_start_{scene}_{s}.tif")
        Q._write_classes(fs.ds, np.where(fs.valid, lab + 1, 0), path)
        r = _downstream(path, scene, None)
        rows.append((s, _agreement(np.argmin(costs, 0), fs.valid, fs.k), float(g.score(fs.z)), r.ari,
                     r.miou_hungarian, r.downstream_miou))
        print(f"{scene} start {s}: agreement {rows[-1][1]:.4f} log-likelihood {rows[-1][2]:.3f} ARI {r.ari:.3f} "
              f"mIoU {r.miou_hungarian:.3f} downstream {r.downstream_miou:.3f}", flush=True)
    return np.array(rows)


def _mixture(scene, seed):
    """``(dataset, valid, labels (H, W) at beta 3, band-only MAP classes (H, W))`` of the gmm:s1 mixture."""
    from scipy.stats import multivariate_normal
    fs = _Features(scene)
    g, _, lab = fs.mixture(seed)
    c = fs.bands
    zb = fs.zf[:c].reshape(c, -1).T.astype(np.float64)
    band_lp = np.stack([np.log(g.weights_[j])
                        + multivariate_normal(g.means_[j, :c], g.covariances_[j, :c, :c]).logpdf(zb)
                        for j in range(fs.k)], 1)
    return fs.ds, fs.valid, lab, band_lp.argmax(1).reshape(lab.shape)


def band_agreement(scene, seed):
    """Downstream mIoU of the ``random``, ``agree`` and ``masked`` samples (module docstring) and the share of
    valid pixels whose band-only class equals their class."""
    ds, valid, lab, band = _mixture(scene, seed)
    agree = band == lab
    path = os.path.join(Q.OUT, f"probe_bands_{scene}_s{seed}.tif")
    Q._write_classes(ds, np.where(valid, lab + 1, 0), path)
    pool = draw_samples(path, SampleOptions(400, min_edge_distance_px=3, seed=1))
    rng = np.random.default_rng(1)
    out = [_downstream(path, scene, _subset(pool, score, lambda v, r: r.permutation(np.flatnonzero(v == 0))[:50],
                                            rng)).downstream_miou
           for score in (np.zeros(lab.shape), (~agree).astype(float))]
    masked = os.path.join(Q.OUT, f"probe_bands_{scene}_s{seed}_masked.tif")
    Q._write_classes(ds, np.where(valid & agree, lab + 1, 0), masked)
    out.append(_downstream(path, scene, draw_samples(masked, SampleOptions(50, min_edge_distance_px=3, seed=1)))
               .downstream_miou)
    return out + [float(agree[valid].mean())]


def _corr(rows, i):
    """Correlations of column ``i`` of :func:`starts`' rows with ARI, Hungarian mIoU and downstream mIoU."""
    return " / ".join(f"{np.corrcoef(rows[:, i], rows[:, j])[0, 1]:.2f}" for j in (3, 4, 5))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("probe", choices=["samples", "starts", "bands"])
    p.add_argument("--scenes", nargs="+", default=SCENES, choices=list(Q.SCENES))
    p.add_argument("--methods", nargs="+", default=["gmm:s1", "km:px"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--starts", type=int, default=15)
    a = p.parse_args()
    os.makedirs(Q.OUT, exist_ok=True)
    for scene in a.scenes:
        if a.probe == "bands":
            r = np.array([band_agreement(scene, s) for s in a.seeds]).mean(0)
            print(f"{scene}: random {r[0]:.3f}  agree {r[1]:.3f}  masked {r[2]:.3f}  agreeing pixels {r[3]:.3f}",
                  flush=True)
            continue
        if a.probe == "samples":
            for method in a.methods:
                r = np.array([sample_sets(scene, method, s) for s in a.seeds]).mean(0)
                print(f"{scene} {method}: " + "  ".join(f"{n} {v:.3f}" for n, v in zip(SETS, r)), flush=True)
            continue
        rows = starts(scene, a.starts)
        print(f"{scene}: correlation with ARI / mIoU / downstream: agreement {_corr(rows, 1)}, "
              f"log-likelihood {_corr(rows, 2)}", flush=True)


if __name__ == "__main__":
    main()
