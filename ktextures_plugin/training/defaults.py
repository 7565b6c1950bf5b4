"""The defaults of ``fit``, in one torch-free module (the QGIS glue and the CLI read them without importing
torch). Each was chosen by measurement; docs/benchmarks.md ("Quality", "How the defaults were chosen") has
the figures and the commands.
"""

#: Mask networks (docs/method.md): the paper's per-pixel scalar network, a 3x3 conv network, and the
#: context network (bands + Gaussian context, k logits, warm-started at a Gaussian-mixture or k-means partition).
VARIANTS = ("faithful", "spatial", "context")
#: context: measured against faithful and against the k-means peers in docs/benchmarks.md ("Quality").
DEFAULT_VARIANT = "context"
#: at most; early stopping may end the mask training sooner (docs/method.md §3.3). 300 keeps a 768 x 768 fit
#: under 5 minutes on 2 cores.
DEFAULT_STEPS = 300
DEFAULT_BATCH = 8
DEFAULT_BINNING = "faithful"
#: Hidden width of the faithful per-pixel mask network (the paper's is 64).
DEFAULT_MASK_WIDTH = 16
#: Refits with the next seed when a class stays unused (0 = off).
DEFAULT_RETRIES = 0
#: Weight of the spatial-continuity term on the class probabilities (context and spatial variants);
#: measured against 0 and 2 in docs/benchmarks.md.
DEFAULT_CONTINUITY = 5.0
#: Warm start of the context variant: "gmm" = a full-covariance Gaussian mixture on the unclipped bands and their
#: sigma-1 copy, written exactly into the network (the default: docs/benchmarks.md "Quality III"), "pixel" =
#: k-means on the z-scored bands alone (the head ignores the smoothed copies at first), "context" = k-means on the
#: bands and their sigma 1, 2, 4 copies (the default of "Quality II").
WARM_STARTS = ("pixel", "context", "gmm")
DEFAULT_WARM_START = "gmm"
#: Gaussian scales (px) of the context variant's smoothed copies of the bands, per warm start: the mixture
#: models the bands and one sigma-1 copy (halo 3 px; docs/benchmarks.md "Quality III"), the k-means starts the
#: bands and three copies (halo 12 px).
GMM_SIGMAS = (1.0,)
KMEANS_SIGMAS = (1.0, 2.0, 4.0)


def context_sigmas(warm_start: str):
    """The Gaussian scales (px) of the context variant for ``warm_start``: :data:`GMM_SIGMAS` for "gmm", else
    :data:`KMEANS_SIGMAS`."""
    return GMM_SIGMAS if warm_start == "gmm" else KMEANS_SIGMAS


#: Weight of the anchor term: cross-entropy of the class logits against the warm-start partition smoothed by the
#: Potts step (0 = off). 1 with the gmm warm start: without it the refinement lost the mixture's partition on Amazon
#: (ARI 0.993 -> 0.948), with it 0.989 (docs/benchmarks.md "Quality III").
DEFAULT_ANCHOR = 1.0
#: Potts weight for the scores of the exported model (``ktextures.smoothing_beta``; segment's smoothing step)
#: and for the anchor's target partition, per disagreeing 8-neighbour, in the units of the warm start's logits
#: (log density for "gmm", squared z-score distance for the k-means starts).
DEFAULT_SMOOTHING_BETA = 3.0
#: Early stopping: the mask-training steps are cut once the mean loss of a window of this many steps has not
#: improved by EARLY_STOP_DELTA (relative) for EARLY_STOP_PATIENCE windows in a row (0 = never).
EARLY_STOP_WINDOW = 25
EARLY_STOP_PATIENCE = 3
EARLY_STOP_DELTA = 0.005
