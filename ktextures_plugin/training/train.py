"""The k-textures training loop and the :func:`fit` API (docs/method.md §6).

One step: draw ``batch_size`` random valid tiles (N,4,T,T) from the raster (GDAL windows), compute the k
textures (k,4,P,P) once, the masks (N,k,T,T), the simulation (N,4,T,T) = sum_i mask_i * T_i (textures
anchored on the raster grid with period P), the balanced feature loss, and an Adam step (lr 1e-3,
eps 1e-7) with per-parameter gradient-norm clipping at 1.0 (Keras ``clipnorm``).

After the last step: BatchNorm recalibration of the mask network over ``recal_tiles`` tiles (docs/method.md §6),
textures computed as trained (generator BN in training mode on its fixed noise), export to ONNX through a
temporary file (no model file is written when training is canceled or fails).

Defaults were chosen by measurement on the 512 x 768 Sentinel-2 sample (2 CPU cores); see
models/README.md "Bundled models" for the numbers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from . import data as D
from .defaults import (  # noqa: F401
    DEFAULT_ANCHOR,
    DEFAULT_BATCH,
    DEFAULT_BINNING,
    DEFAULT_CONTINUITY,
    DEFAULT_MASK_WIDTH,
    DEFAULT_RETRIES,
    DEFAULT_SMOOTHING_BETA,
    DEFAULT_STEPS,
    DEFAULT_VARIANT,
    DEFAULT_WARM_START,
    EARLY_STOP_DELTA,
    EARLY_STOP_PATIENCE,
    EARLY_STOP_WINDOW,
    VARIANTS,
    WARM_STARTS,
    context_sigmas,
)
from .errors import FitCanceled, FitInputError
from .features import FeatureLoss, FeatureSpecError
from .model import FAITHFUL_SLOPE, KTextures, anneal_slope, continuity_loss, recalibrate_bn

#: schedule of the ramp of docs/method.md §3.1: "faithful" = S 5000 throughout; "anneal" = S from
#: ``slope_start`` to 5000 over the first 60 % of the steps; "ste" = exact one-hot forward, ramp gradient with slope
#: ``ste_slope`` backward.
BINNINGS = ("faithful", "anneal", "ste")

#: A class holding less than this fraction of the recalibration tiles' pixels counts as unused.
EMPTY_CLASS_FRACTION = 0.001


@dataclass
class FitConfig:
    """Every knob of a fit, the options of :func:`fit`; the defaults are the measured choices (models/README.md).

    ``k`` (2..128); ``steps`` optimisation steps, each of ``batch_size`` random tiles of ``tile_size`` px; ``seed``
    seeds tile positions, initial weights and texture noise (same seed, same model on CPU); ``variant``
    ``"faithful"`` (per-pixel, halo 0), ``"spatial"`` (3x3 mask network, halo 2 px) or ``"context"``
    (docs/method.md §3.3, halo 3 px with the default "gmm" warm start, 12 px with the k-means ones); ``features``
    the loss feature extractors (``"random"``, ``"ae"``, ``"vgg16:PATH"``, several joined with ``+``); ``binning``
    ``"faithful"`` (slope 5000 throughout), ``"anneal"`` or ``"ste"`` (:data:`BINNINGS`); ``threads`` torch
    intra-op threads (default :func:`default_threads`, restored afterwards); ``extra_nodata`` a value treated as
    nodata beside the GDAL mask band; the rest as commented below.
    """

    k: int
    steps: int = DEFAULT_STEPS
    seed: int = 0
    variant: str = DEFAULT_VARIANT
    features: str = "random"
    tile_size: int = 128
    batch_size: int = DEFAULT_BATCH
    binning: str = DEFAULT_BINNING
    slope_start: float = 20.0
    ste_slope: float = 0.0            # 0 -> 4k (ramp width a quarter of a bin)
    lr: float = 1e-3
    recal_tiles: int = 64
    progress_every: int = 5
    threads: Optional[int] = None
    extra_nodata: Optional[float] = None
    texture_period: int = 128
    train_mask: bool = True           # False = ablation: mask net frozen at its random init
    mask_width: int = DEFAULT_MASK_WIDTH  # hidden width of the faithful mask net (the paper's: 64, docs/method.md §3.1)
    context_hidden: int = 16          # context variant: width of the residual 1x1 MLP (0 = linear head only)
    context_warm: float = 0.3         # context variant: share of the steps that train the textures only
    context_lr: float = 1e-3          # context variant: Adam learning rate of the mask network
    continuity: float = DEFAULT_CONTINUITY  # weight of the spatial-continuity term (context and spatial variants)
    warm_tiles: int = 64              # context variant: tiles whose pixels seed the k-means warm start
    warm_start: str = DEFAULT_WARM_START  # context variant: Gaussian mixture ("gmm"), k-means ("pixel", "context")
    anchor: float = DEFAULT_ANCHOR    # context variant: weight of the cross-entropy to the smoothed warm start
    smoothing_beta: float = DEFAULT_SMOOTHING_BETA  # Potts weight of the anchor target and of the exported model
    early_stop_window: int = EARLY_STOP_WINDOW  # steps per window of the early stopping (0 = run every step)


@dataclass
class FitResult:
    model: KTextures
    textures: torch.Tensor
    scale_min: List[float]
    scale_max: List[float]
    losses: List[float] = field(default_factory=list)
    class_fractions: List[float] = field(default_factory=list)
    seconds: float = 0.0
    steps_done: int = 0
    bands: List[int] = field(default_factory=list)
    loss_fn: Optional[FeatureLoss] = None
    feature_prep: Dict[str, float] = field(default_factory=dict)


def _git_version() -> str:
    from .. import __version__
    code = f"ktextures {__version__}"
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except Exception:  # noqa: BLE001 - no git, not a checkout: the version is informative only
        sha = ""
    return f"{code} (git {sha})" if sha else code


def default_threads() -> int:
    """torch threads for training: half the logical CPUs (about the physical cores), 1..8.

    Measured on the 2-vCPU build machine: 1 and 2 threads give the same speed when the machine is idle,
    and 2 threads are 2.3x slower than 1 when another process competes for the CPUs (OpenMP threads spin).
    """
    return max(1, min((os.cpu_count() or 2) // 2, 8))


def _clip_per_parameter(params, max_norm: float) -> None:
    """Keras ``clipnorm``: rescale each gradient tensor separately to L2 norm <= max_norm."""
    for p in params:
        if p.grad is not None:
            n = torch.linalg.vector_norm(p.grad)
            if n > max_norm:
                p.grad.mul_(max_norm / (n + 1e-12))


Progress = Callable[[int, int, float], None]


def _check_config(cfg: FitConfig) -> int:
    """Validate the knobs of ``cfg`` before any work; returns k.

    Raises:
        FitInputError: naming the bad value.
    """
    k = D.check_k(cfg.k)
    if cfg.variant not in VARIANTS:
        raise FitInputError(f"variant must be one of {', '.join(VARIANTS)}, got {cfg.variant!r}")
    if cfg.binning not in BINNINGS:
        raise FitInputError(f"binning must be one of {BINNINGS}, got {cfg.binning!r}")
    if int(cfg.mask_width) < 1:
        raise FitInputError(f"mask width must be >= 1, got {cfg.mask_width}")
    if int(cfg.steps) < 0 or int(cfg.batch_size) < 1:
        raise FitInputError(f"steps must be >= 0 and batch size >= 1, got {cfg.steps} and {cfg.batch_size}")
    if cfg.warm_start not in WARM_STARTS:
        raise FitInputError(f"warm start must be one of {', '.join(WARM_STARTS)}, got {cfg.warm_start!r}")
    if cfg.anchor < 0 or cfg.smoothing_beta < 0:
        raise FitInputError(f"anchor and smoothing beta must be >= 0, got {cfg.anchor} and {cfg.smoothing_beta}")
    return k


def _feature_loss(spec: str) -> FeatureLoss:
    try:
        return FeatureLoss(spec)
    except FeatureSpecError as exc:
        raise FitInputError(str(exc)) from None


def _build_model(k: int, cfg: FitConfig, sampler, is_canceled) -> KTextures:
    """The untrained model in training mode (the context variant warm-started, the mask net frozen for the
    ``train_mask=False`` ablation)."""
    model = KTextures(k, D.N_CHANNELS, cfg.variant, period=cfg.texture_period, seed=cfg.seed,
                      mask_width=int(cfg.mask_width), context_hidden=int(cfg.context_hidden),
                      straight_through=(cfg.binning == "ste"), context_sigmas=context_sigmas(cfg.warm_start),
                      context_quadratic=cfg.warm_start == "gmm")
    model.train()
    if cfg.variant == "context":
        warm_start_context(model, sampler, cfg, is_canceled)
    if not cfg.train_mask:
        for p in model.mask_net.parameters():
            p.requires_grad_(False)
    return model


def unclipped(cfg: FitConfig) -> bool:
    """Whether the model trains and segments on the unclipped percentile scale (the "gmm" warm start: the
    mixture's tails are data, not outliers to clip; ``ktextures.input_scale`` "clip" false)."""
    return cfg.variant == "context" and cfg.warm_start == "gmm"


def _optimizer(model: KTextures, cfg: FitConfig):
    """Adam (eps 1e-7, docs/method.md §6) with two parameter groups: the textures (group 0, ``cfg.lr``) and
    the mask network (group 1, ``mask_lr``). Returns ``(optimizer, trainable params, mask_lr)``."""
    params = [p for p in model.parameters() if p.requires_grad]
    mask_ids = {id(p) for p in model.mask_net.parameters()}
    mask_lr = cfg.context_lr if cfg.variant == "context" else cfg.lr
    groups = [{"params": [p for p in params if id(p) not in mask_ids], "lr": cfg.lr},
              {"params": [p for p in params if id(p) in mask_ids], "lr": mask_lr}]
    opt = torch.optim.Adam([g for g in groups if g["params"]], lr=cfg.lr, eps=1e-7)
    return opt, params, mask_lr


def _slope_schedule(cfg: FitConfig, k: int) -> Callable[[int], float]:
    """Ramp slope at each step for ``cfg.binning`` (:data:`BINNINGS`)."""
    steps, ste_slope = int(cfg.steps), cfg.ste_slope or 4.0 * k
    if cfg.binning == "anneal":
        return lambda step: anneal_slope(step, steps, cfg.slope_start)
    if cfg.binning == "ste":
        return lambda step: ste_slope
    return lambda step: FAITHFUL_SLOPE


class _Anchor:
    """The anchor term (docs/method.md §3.3): cross-entropy of the class logits (N,k,H,W) against the partition of
    the warm-start network (a frozen copy) on the same tiles, smoothed by the Potts step
    (``core.segment.smoothing.icm_potts`` on its negative logits, beta ``cfg.smoothing_beta``)."""

    def __init__(self, model: KTextures, cfg: FitConfig):
        import copy
        self.weight = float(cfg.anchor) if model.variant == "context" else 0.0
        self.beta = float(cfg.smoothing_beta)
        self.net = copy.deepcopy(model.mask_net).eval() if self.weight > 0 else None

    def __call__(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        from ..core.segment.smoothing import icm_potts
        with torch.no_grad():
            costs = -self.net(x).numpy()
            target = torch.from_numpy(np.stack([icm_potts(c, self.beta) for c in costs]))
        return self.weight * torch.nn.functional.cross_entropy(logits, target)


class _EarlyStop:
    """Stops the mask training once the mean loss of a window of ``window`` steps has not improved by
    :data:`EARLY_STOP_DELTA` (relative) on the best window for :data:`EARLY_STOP_PATIENCE` windows in a row."""

    def __init__(self, window: int):
        self.window, self.best, self.bad, self.seen = int(window), float("inf"), 0, []

    def stop(self, loss: float) -> bool:
        if self.window <= 0:
            return False
        self.seen.append(loss)
        if len(self.seen) < self.window:
            return False
        mean, self.seen = float(np.mean(self.seen)), []
        if mean < self.best * (1.0 - EARLY_STOP_DELTA):
            self.best, self.bad = mean, 0
        else:
            self.bad += 1
        return self.bad >= EARLY_STOP_PATIENCE


def _step_loss(model: KTextures, loss_fn: FeatureLoss, x, ob, cfg: FitConfig, anchor: Optional[_Anchor],
               first: bool) -> torch.Tensor:
    """The loss of one batch: the k-textures feature loss, the continuity term and the anchor."""
    sim, _, logits = model.simulate_with_logits(x, torch.from_numpy(ob))
    if first:
        loss_fn.calibrate(x, sim.detach())
    loss, _ = loss_fn(x, sim)
    if cfg.continuity > 0 and logits is not None:
        loss = loss + cfg.continuity * continuity_loss(logits, getattr(model.mask_net, "temperature", 1.0))
    if anchor is not None and anchor.weight > 0 and logits is not None:
        loss = loss + anchor(x, logits)
    return loss


def _train_steps(model: KTextures, loss_fn: FeatureLoss, sampler, cfg: FitConfig, k: int,
                 progress: Optional[Progress], is_canceled) -> List[float]:
    """The optimisation loop (docs/method.md §6); returns the loss of every step run (fewer than ``cfg.steps`` when
    the early stopping cut the mask training).

    Raises:
        FitCanceled: when ``is_canceled()`` returns True (polled every step).
    """
    opt, params, mask_lr = _optimizer(model, cfg)
    steps = int(cfg.steps)
    warm_steps = int(round(cfg.context_warm * steps)) if cfg.variant == "context" else 0
    slope_at = _slope_schedule(cfg, k)
    every = max(1, cfg.progress_every)
    anchor = _Anchor(model, cfg) if cfg.variant == "context" else None
    early = _EarlyStop(cfg.early_stop_window)
    losses: List[float] = []
    for step in range(steps):
        if is_canceled is not None and is_canceled():
            raise FitCanceled(f"fit canceled at step {step} of {steps}; no model written")
        xb, ob = sampler.sample(int(cfg.batch_size))
        model.slope = slope_at(step)
        for g in opt.param_groups[1:]:           # the mask network waits while the textures warm up
            g["lr"] = 0.0 if step < warm_steps else mask_lr
        loss = _step_loss(model, loss_fn, torch.from_numpy(xb), ob, cfg, anchor, step == 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _clip_per_parameter(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None and ((step + 1) % every == 0 or step + 1 == steps):
            progress(step + 1, steps, float(np.mean(losses[-every:])))
        if step >= warm_steps and early.stop(losses[-1]):
            if progress is not None:
                progress(steps, steps, float(np.mean(losses[-every:])))
            break
    if is_canceled is not None and is_canceled():
        raise FitCanceled(f"fit canceled after {steps} steps; no model written")
    return losses


@torch.no_grad()
def _finish(model: KTextures, sampler, cfg: FitConfig, k: int):
    """BatchNorm recalibration over ``cfg.recal_tiles`` fresh tiles (docs/method.md §6), then the model in eval
    mode. Returns ``(textures (k,C,P,P) as trained, class fractions over those tiles)``."""
    model.slope = FAITHFUL_SLOPE
    recal = []
    n_recal = max(int(cfg.recal_tiles), 1)
    while sum(len(b) for b in recal) < n_recal:
        xb, _ = sampler.sample(min(8, n_recal - sum(len(b) for b in recal)))
        recal.append(torch.from_numpy(xb))
    recalibrate_bn(model, recal)
    model.eval()
    counts = np.zeros(k, np.int64)
    for xb in recal:
        counts += np.bincount(model.classify(xb).numpy().ravel(), minlength=k)
    model.textures.train()                      # textures as trained: BN on the fixed noise (docs/method.md §4)
    textures = model.texture_stack().detach().clone()
    model.textures.eval()
    return textures, (counts / max(1, counts.sum())).tolist()


def train_model(image_path: str, bands, cfg: FitConfig, progress: Optional[Progress] = None,
                is_canceled: Optional[Callable[[], bool]] = None) -> FitResult:
    """Train a :class:`KTextures` on ``image_path`` (no export). See :func:`fit` for the arguments.

    Raises:
        FitInputError subclasses on bad input, FitCanceled when ``is_canceled()`` returns True.
    """
    k = _check_config(cfg)
    loss_fn = _feature_loss(cfg.features)
    sampler = D.TileSampler(image_path, bands, cfg.tile_size, seed=cfg.seed, extra_nodata=cfg.extra_nodata,
                            clip=not unclipped(cfg))
    torch.manual_seed(int(cfg.seed))
    ae_mse = loss_fn.prepare(lambda n: sampler.sample(n)[0], is_canceled)
    model = _build_model(k, cfg, sampler, is_canceled)
    t0 = time.time()
    losses = _train_steps(model, loss_fn, sampler, cfg, k, progress, is_canceled)
    textures, fractions = _finish(model, sampler, cfg, k)
    return FitResult(model=model, textures=textures, scale_min=sampler.scale_min, scale_max=sampler.scale_max,
                     losses=losses, class_fractions=fractions, seconds=time.time() - t0,
                     steps_done=len(losses), bands=list(sampler.bands), loss_fn=loss_fn, feature_prep=ae_mse)


@torch.no_grad()
def warm_start_context(model: KTextures, sampler, cfg: FitConfig, is_canceled=None) -> None:
    """Initialise a context mask network at a k-means or Gaussian-mixture partition of the training raster
    (docs/method.md §3.3).

    The fixed Gaussian context features (N,F,T,T) of ``cfg.warm_tiles`` random tiles are cropped by the halo
    (where the edge padding of a tile edge would differ from the raster) and z-scored; k-means
    (:func:`core.kmeans.kmeans.fit_centers`: k-means++, 3 restarts, seed ``cfg.seed``) on at most 200 000 pixels
    clusters the bands alone (``cfg.warm_start`` "pixel": the centres' smoothed-feature coordinates are 0, so the
    head starts as pixel k-means) or all F features ("context"); the head then assigns each pixel to its nearest
    centre (:meth:`ContextMaskNet.init_from_kmeans`). "gmm" (the default): a full-covariance Gaussian mixture on
    the features of pixels drawn over the whole raster, unclipped (:func:`_raster_features`, :func:`_gmm_start`).
    """
    from ..core.kmeans.kmeans import fit_centers

    net = model.mask_net
    if cfg.warm_start == "gmm":
        _gmm_start(net, *_raster_features(net, sampler, cfg), int(cfg.seed))
        return
    n = max(1, int(cfg.warm_tiles))
    xb, _ = sampler.sample(n)
    if is_canceled is not None and is_canceled():
        raise FitCanceled("fit canceled before training; no model written")
    f = net.context(torch.from_numpy(xb))
    r = min(net.halo_px, (f.shape[-1] - 1) // 4)
    if r > 0:
        f = f[:, :, r:-r, r:-r]
    px = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]).double().numpy()
    rng = np.random.default_rng(int(cfg.seed))
    if len(px) > 200_000:
        px = px[rng.choice(len(px), 200_000, replace=False)]
    z, mu, sd = _zscored(px)
    if cfg.warm_start == "pixel":
        c = net.context.in_ch
        centers = np.zeros((model.k, z.shape[1]))
        centers[:, :c] = fit_centers(z[:, :c], model.k, seed=int(cfg.seed), n_init=3)
    else:
        centers = fit_centers(z, model.k, seed=int(cfg.seed), n_init=3)
    net.init_from_kmeans(torch.from_numpy(mu).float(), torch.from_numpy(sd).float(),
                         torch.from_numpy(centers).float())


#: gmm warm start: pixels whose features are drawn over the raster, pixels of the mixture fit and its
#: covariance regularisation (z units squared)
WARM_PIXELS = 200_000
GMM_PIXELS = 50_000
GMM_REG_COVAR = 1e-3


def _raster_features(net, sampler, cfg: FitConfig):
    """``(z (P,F) float64, mu (F,), sd (F,))``: the network's context features (the bands and their smoothed
    copies, on the unclipped percentile scale) of at most :data:`WARM_PIXELS` valid pixels drawn over the whole
    raster (``core.kmeans.kmeans.context_sample``: every pixel of a raster of up to 4 x that many, else random
    windows read with their halo), z-scored with their own mean and standard deviation."""
    from ..core.kmeans.kmeans import context_sample

    sig = net.context.sigmas
    raw = context_sample(sampler.ds, sampler.bands, sig, WARM_PIXELS, int(cfg.seed), cfg.extra_nodata)
    lo = np.tile(np.asarray(sampler.scale_min, np.float64), 1 + len(sig))
    span = np.tile(np.asarray(sampler.scale_max, np.float64), 1 + len(sig)) - lo
    return _zscored((raw.T.astype(np.float64) - lo) / span)


def _zscored(px: np.ndarray):
    """``(z, mu, sd)`` of pixels ``px`` (P,F) float64: z-scored with their own mean and standard deviation (a
    feature of spread under 1e-6 is only centred)."""
    mu, sd = px.mean(0), px.std(0)
    sd[sd < 1e-6] = 1.0
    return (px - mu) / sd, mu, sd


def _gmm_start(net, z: np.ndarray, mu: np.ndarray, sd: np.ndarray, seed: int) -> None:
    """The "gmm" warm start: scikit-learn ``GaussianMixture(k, covariance_type="full")`` (k-means++ start, seed
    ``seed``, regularisation :data:`GMM_REG_COVAR`) on at most :data:`GMM_PIXELS` of the z-scored features ``z``
    (P,F), written exactly into the network's quadratic branch (:meth:`ContextMaskNet.init_from_gmm`): the
    untrained network's argmax is the mixture's maximum a posteriori class (docs/method.md §3.3)."""
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(seed)
    fit_px = z if len(z) <= GMM_PIXELS else z[rng.choice(len(z), GMM_PIXELS, replace=False)]
    gmm = GaussianMixture(net.k, covariance_type="full", reg_covar=GMM_REG_COVAR, init_params="k-means++",
                          random_state=seed).fit(fit_px)
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64)).float()  # noqa: E731
    net.init_from_gmm(t(mu), t(sd), t(gmm.weights_), t(gmm.means_), t(gmm.precisions_cholesky_))


def unused_classes(class_fractions: Sequence[float]) -> int:
    """How many of the k classes hold under :data:`EMPTY_CLASS_FRACTION` of the pixels."""
    return sum(1 for f in class_fractions if f < EMPTY_CLASS_FRACTION)


def unused_class_warning(class_fractions: Sequence[float]) -> Optional[str]:
    """A message naming the fix when some of the k classes are (almost) unused, else None.

    The faithful binning can leave a bin of the score empty (docs/benchmarks.md: seeds on the Amazon scene use
    3 of 4 classes), so the model segments into fewer classes than the user asked for.

    Args:
        class_fractions: k shares of the pixels per class, summing to 1 (``FitResult.class_fractions``).
    """
    k = len(class_fractions)
    unused = [i + 1 for i, f in enumerate(class_fractions) if f < EMPTY_CLASS_FRACTION]
    if not unused:
        return None
    names = ", ".join(f"texture {i}" for i in unused)
    return (f"Only {k - len(unused)} of the {k} classes occur on the training tiles ({names}: under "
            f"{100 * EMPTY_CLASS_FRACTION:g} % of the pixels), so this model will segment into fewer classes than "
            "asked. Fit again with another seed (or let fit do it: --retries, in QGIS 'Refits'), or with a "
            "smaller k.")


@dataclass
class FitReport:
    """What :func:`fit` returns.

    Attributes:
        path: the ``.onnx`` written.
        k: number of classes.
        steps: optimisation steps of the kept fit.
        seconds: wall time, training and export (s).
        steps_per_s: training steps per second of the kept fit.
        final_loss: mean loss over the last 10 % of the steps.
        class_fractions: k shares of the pixels per class over the recalibration tiles (sum 1).
        scale_min, scale_max: per-channel raw values mapped to 0 and 1 (2-98 % percentiles).
        halo_px: receptive-field halo of the exported model (px).
        title: ``ktextures.title`` of the model.
        provenance: ``ktextures.provenance`` of the model (data, bands, seed, variant, ...).
        seeds_tried: every seed fitted (more than one with ``retries``).
        warnings: messages for the user (see :func:`unused_class_warning`).
    """

    path: str
    k: int
    steps: int
    seconds: float
    steps_per_s: float
    final_loss: float
    class_fractions: List[float]
    scale_min: List[float]
    scale_max: List[float]
    halo_px: int
    title: str
    provenance: Dict
    seeds_tried: List[int]
    warnings: List[str] = field(default_factory=list)


@contextlib.contextmanager
def _torch_threads(threads: Optional[int]):
    """torch intra-op threads (default :func:`default_threads`) and flush-denormal mode for the block; both
    restored afterwards. Flushing denormals made steps about 2x faster where the CPU supports it."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(threads) if threads else default_threads())
    flushed = torch.set_flush_denormal(True)    # False when the CPU cannot
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        if flushed:
            torch.set_flush_denormal(False)


def _train_with_retries(image_path: str, bands, cfg: FitConfig, retries: int, progress: Optional[Progress],
                        is_canceled, log: Optional[Callable[[str], None]]):
    """Train, then refit with seed + 1, seed + 2, ... while a class stays unused, at most ``retries`` times.

    Returns ``(kept FitResult, its FitConfig, seeds tried)``: the first fit using all k classes, else the one
    with the fewest unused classes (the earliest on a tie).
    """
    res = train_model(image_path, bands, cfg, progress, is_canceled)
    kept, tried = cfg, [cfg.seed]
    for attempt in range(1, int(retries) + 1):
        if unused_classes(res.class_fractions) == 0:
            break
        retry = dataclasses.replace(cfg, seed=int(cfg.seed) + attempt)
        if log is not None:
            log(f"{unused_classes(res.class_fractions)} of the {cfg.k} classes unused at seed {tried[-1]}: "
                f"fitting again with seed {retry.seed} (retry {attempt} of {int(retries)})")
        offset = attempt * cfg.steps
        shifted = (None if progress is None else
                   lambda s, total, loss, o=offset: progress(o + s, o + total, loss))
        alt = train_model(image_path, bands, retry, shifted, is_canceled)
        tried.append(retry.seed)
        if unused_classes(alt.class_fractions) < unused_classes(res.class_fractions):
            res, kept = alt, retry
    return res, kept, tried


def _provenance(image_path: str, res: FitResult, cfg: FitConfig, tried: List[int]) -> Dict:
    """``ktextures.provenance`` of the exported model (models/README.md)."""
    tail = res.losses[-max(1, len(res.losses) // 10):] or [float("nan")]
    prov = {
        "data": os.path.basename(str(image_path)), "bands": res.bands, "steps": cfg.steps,
        "steps_done": int(res.steps_done),
        "seed": cfg.seed, "seeds_tried": tried, "features": cfg.features, "variant": cfg.variant,
        "binning": cfg.binning,
        "batch_size": cfg.batch_size, "tile_size": cfg.tile_size, "recal_tiles": cfg.recal_tiles,
        "mask_width": int(cfg.mask_width),
        "continuity": float(cfg.continuity),
        "code_version": _git_version(), "torch": torch.__version__,
        "train_seconds": round(res.seconds, 1), "final_loss": round(float(np.mean(tail)), 5),
        "class_fractions": [round(v, 4) for v in res.class_fractions],
    }
    if cfg.variant == "context":
        prov.update(context_sigmas=list(res.model.mask_net.context.sigmas), context_hidden=int(cfg.context_hidden),
                    context_warm=float(cfg.context_warm), context_lr=float(cfg.context_lr),
                    warm_start=cfg.warm_start, anchor=float(cfg.anchor), smoothing_beta=float(cfg.smoothing_beta),
                    early_stop_window=int(cfg.early_stop_window))
    for name, mse in res.feature_prep.items():
        prov[f"{name}_reconstruction_mse"] = round(float(mse), 6)
    return prov


def _fit_warnings(res: FitResult, cfg: FitConfig, tried: List[int]) -> List[str]:
    warnings = [w for w in [unused_class_warning(res.class_fractions)] if w]
    if warnings and len(tried) > 1:
        warnings = [f"{warnings[0]} (seeds tried: {', '.join(str(v) for v in tried)}; the fit of seed {cfg.seed} "
                    "was kept)"]
    return warnings


def fit(image_path: str, bands, out_path: str, cfg: FitConfig, *, progress: Optional[Progress] = None,
        is_canceled: Optional[Callable[[], bool]] = None, title: str = "", retries: int = DEFAULT_RETRIES,
        log: Optional[Callable[[str], None]] = None) -> FitReport:
    """Fit a k-textures model on one raster and export it as a k-textures ONNX file (docs/method.md §6, §7).

    Args:
        image_path: raster readable by GDAL (any size: tiles are read through windows).
        bands: 1-based band numbers of red, green, blue, NIR, e.g. ``"3,2,1,4"`` or ``[3, 2, 1, 4]``.
        out_path: the ``.onnx`` to write (written via a temporary file, renamed on success only).
        cfg: the :class:`FitConfig` (k, steps, seed, variant, features, tile and batch size, binning, threads,
            extra nodata value, ...), built once by each front end.
        progress: called as ``progress(step, total, loss)`` every few steps (loss = mean over those steps).
        is_canceled: polled every step; when True, :class:`FitCanceled` is raised and no file is written.
        title: ``ktextures.title`` (default "k-textures, k = K, <file name>").
        retries: refits with seed + 1, seed + 2, ... while a class stays unused (:func:`_train_with_retries`);
            ``provenance["seed"]`` is the kept fit's seed; each retry reports its steps through ``progress``
            again (``total`` grows by ``steps``).
        log: called with a one-line message when a retry starts.

    Returns a :class:`FitReport`.

    Raises:
        FitInputError (a ``ValueError``; subclasses TooFewBandsError, BadKError, RasterTooSmallError,
        AllNodataError) on bad input; FitCanceled on cancel; ``core.io.outputs.OutputPathError`` (before any work)
        when ``out_path`` is the input, a folder, not ``.onnx``, or in a missing or read-only folder.
    """
    from ..core.io import outputs
    from .export import export_onnx

    outputs.check_outputs({"output": (out_path, outputs.MODEL)}, {"input": image_path})
    if int(retries) < 0:
        raise FitInputError(f"retries must be >= 0, got {retries}")
    t0 = time.time()
    with _torch_threads(cfg.threads):
        res, cfg, tried = _train_with_retries(image_path, bands, cfg, retries, progress, is_canceled, log)
        prov = _provenance(image_path, res, cfg, tried)
        if is_canceled is not None and is_canceled():
            raise FitCanceled("fit canceled before export; no model written")
        prov["wall_seconds"] = round(time.time() - t0, 1)
        info = export_onnx(res.model, res.textures, out_path, res.scale_min, res.scale_max,
                           title=title or f"k-textures, k = {cfg.k}, {os.path.basename(str(image_path))}",
                           provenance=prov, smoothing_beta=cfg.smoothing_beta if cfg.variant == "context" else None,
                           scale_clip=not unclipped(cfg))
    return FitReport(path=str(out_path), k=int(cfg.k), steps=int(res.steps_done), seconds=time.time() - t0,
                     steps_per_s=res.steps_done / max(res.seconds, 1e-9), final_loss=prov["final_loss"],
                     class_fractions=res.class_fractions, scale_min=res.scale_min, scale_max=res.scale_max,
                     halo_px=info.halo_px, title=info.title, provenance=prov, seeds_tried=tried,
                     warnings=_fit_warnings(res, cfg, tried))
