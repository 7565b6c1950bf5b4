"""The k-means baselines (pixel and context k-means) in the same output format as :mod:`segment`.

Features (docs/method.md §8): the selected bands, and with ``context=True`` also their
Gaussian-smoothed copies at sigma 1, 2 and 4 px (``scipy.ndimage.gaussian_filter``, truncated at 3 sigma,
mode ``nearest``: the same smoothing as the k-textures ``context`` variant), computed window by window with a
halo of ceil(3 * 4) = 12 px, so the result equals smoothing the whole raster. Scaling: ``"zscore"`` (default;
each feature minus its mean, divided by its standard deviation, both from the fitting sample: the strongest
pixel k-means measured in docs/benchmarks.md) or ``"stretch"`` (per-band 2-98 % percentiles, clipped to
[0, 1], as ``segment`` with ``scaling="stretch"``). scikit-learn's ``KMeans`` (k-means++ initialisation,
Lloyd iterations, ``n_init`` = 3 restarts, ``random_state=seed``) is fitted on at most ``max_sample`` valid
pixels (a decimated read; with context, pixels of random windows so that the smoothing is at full
resolution); then every pixel is assigned to its nearest centre window by window (rows of the raster), so
memory grows with the window, not the raster. Clusters are numbered 1..k by increasing mean of their centre
(darkest first). Nodata (GDAL mask band, NaN/Inf, ``extra_nodata``) is written as 0 (and filled with the band
mean before smoothing). Output: Byte/UInt16 GeoTIFF, 0 = nodata, classes 1..k named "cluster i", colour
table = mean true colour of each cluster when the first three bands are red, green, blue (``rgb``), else a
qualitative palette; written to a partial file renamed on success (``classraster.finish``), removed on error
or cancel.

``smoothing`` = beta > 0 adds the Potts/ICM step of :mod:`..segment.smoothing` (8 neighbours,
:data:`..segment.smoothing.DEFAULT_SWEEPS` synchronous sweeps) on the unary costs = squared distance of each
scaled pixel to each centre (:func:`..segment.smoothing.squared_distance_costs`): k-means followed by a Potts
MRF. Row windows are then read with a halo of one row per sweep, so the result equals smoothing the whole
raster at once.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
from osgeo import gdal

from ..errors import ParameterError, RasterError
from ..feedback import Feedback
from ..io import classraster, outputs, raster
from ..segment.bands import parse_bands
from ..segment.smoothing import DEFAULT_SWEEPS, icm_potts, squared_distance_costs

gdal.UseExceptions()

@dataclass
class KMeansResult:
    """What :func:`kmeans_raster` produced.

    Attributes:
        path: the class raster.
        k: number of clusters.
        centers: float64 ``(k, C)`` cluster centres in scaled [0, 1] units, class 1 first.
        counts: int64 ``(k,)`` pixels per class 1..k.
        class_names, colors: k names ("cluster i") and ``"#rrggbb"`` colours written into the file.
        bands: 1-based input bands used; scale_min, scale_max: the stretch applied.
        sample_pixels: pixels the k-means was fitted on; seconds: wall time.
    """

    path: str
    k: int
    centers: np.ndarray
    counts: np.ndarray
    class_names: List[str]
    colors: List[str]
    bands: List[int]
    scale_min: List[float]
    scale_max: List[float]
    sample_pixels: int
    seconds: float


def fit_centers(samples: np.ndarray, k: int, seed: int = 0, n_init: int = 3, max_iter: int = 300) -> np.ndarray:
    """k-means centres of ``samples`` float ``(n, C)``, sorted by increasing mean over channels.

    Returns:
        float64 ``(k, C)``.

    Raises:
        RasterError: fewer distinct samples than k.
    """
    from sklearn.cluster import KMeans

    n_distinct = len(np.unique(samples, axis=0)) if len(samples) <= 2_000_000 else len(samples)
    if n_distinct < k:
        raise RasterError(f"k = {k} clusters asked for but the valid pixels have only {n_distinct} distinct "
                          "value(s); choose a smaller k or a larger extent.")
    km = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=int(seed))
    km.fit(samples.astype(np.float64))
    centers = np.asarray(km.cluster_centers_, np.float64)
    order = np.lexsort(centers.T[::-1])  # tie-break on channels
    order = order[np.argsort(centers[order].mean(axis=1), kind="stable")]
    return centers[order]


def assign(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (squared Euclidean) of each row of ``x`` float ``(n, C)``: int64 ``(n,)``."""
    c = np.asarray(centers, np.float64)
    x = np.asarray(x, np.float64)
    d = (x * x).sum(axis=1)[:, None] - 2.0 * x @ c.T + (c * c).sum(axis=1)[None, :]
    return np.argmin(d, axis=1)


#: Gaussian scales (px) of ``kmeans --context`` (the same as the k-textures ``context`` variant).
CONTEXT_SIGMAS = (1.0, 2.0, 4.0)
#: Gaussian kernels are truncated at this many standard deviations (SciPy's ``truncate``).
GAUSS_TRUNCATE = 3.0
SCALINGS = ("zscore", "stretch")


def context_halo(sigmas: Sequence[float]) -> int:
    """Halo in pixels that makes windowed smoothing exact: SciPy's kernel radius int(3 sigma + 0.5)."""
    return max((int(GAUSS_TRUNCATE * float(s) + 0.5) for s in sigmas), default=0)


def context_features(data: np.ndarray, valid: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """The bands and their Gaussian-smoothed copies.

    Args:
        data: float32 ``(C, H, W)`` band values (any units); invalid pixels are filled with the band's mean
            over valid pixels (0 when none) before smoothing.
        valid: bool ``(H, W)``.
        sigmas: Gaussian standard deviations in pixels.

    Returns:
        float32 ``(C * (1 + len(sigmas)), H, W)``: ``[x, G_sigma1 x, ...]``.
    """
    from scipy import ndimage

    x = np.array(data, np.float32)
    if not valid.all():
        for c in range(len(x)):
            x[c][~valid] = float(x[c][valid].mean()) if valid.any() else 0.0
    out = [x]
    for sg in sigmas:
        out.append(np.stack([ndimage.gaussian_filter(b, float(sg), mode="nearest", truncate=GAUSS_TRUNCATE)
                             for b in x]))
    return np.concatenate(out, axis=0)


def context_sample(ds, bands, sigmas, max_sample: int, seed: int, extra_nodata, win: int = 128) -> np.ndarray:
    """Valid context-feature pixels ``(F, n)``, n <= max_sample: from the whole raster when it has at most
    4 * ``max_sample`` pixels, else from random ``win``-px windows (each read with its halo)."""
    halo = context_halo(sigmas)
    w, h = ds.RasterXSize, ds.RasterYSize
    rng = np.random.default_rng(int(seed))
    if w * h <= 4 * max_sample:  # a small raster: every pixel is a candidate
        f, valid = _features_window(ds, bands, (0, 0, w, h), sigmas, halo, extra_nodata)
        px = f[:, valid]
        return px[:, rng.choice(px.shape[1], max_sample, replace=False)] if px.shape[1] > max_sample else px
    n_win = int(min(max(1, max_sample // (win * win) + 1), max(1, (w * h) // (win * win) + 1)))
    parts, got = [], 0
    for _ in range(4 * n_win):
        if got >= max_sample or len(parts) >= n_win:
            break
        x0 = int(rng.integers(0, max(1, w - win + 1)))
        y0 = int(rng.integers(0, max(1, h - win + 1)))
        f, valid = _features_window(ds, bands, (x0, y0, min(win, w), min(win, h)), sigmas, halo, extra_nodata)
        parts.append(f[:, valid])
        got += int(valid.sum())
    px = np.concatenate(parts, axis=1) if parts else np.zeros((len(bands) * (1 + len(sigmas)), 0), np.float32)
    if px.shape[1] > max_sample:
        px = px[:, rng.choice(px.shape[1], max_sample, replace=False)]
    return px


def _features_window(ds, bands, window, sigmas, halo, extra_nodata):
    """Context features ``(F, h, w)`` and validity ``(h, w)`` of ``window``, read with ``halo`` px around it."""
    x0, y0, xs, ys = window
    a, b = max(0, x0 - halo), max(0, y0 - halo)
    c, d = min(ds.RasterXSize, x0 + xs + halo), min(ds.RasterYSize, y0 + ys + halo)
    data, valid = raster.read_window(ds, bands, (a, b, c - a, d - b), extra_nodata)
    f = context_features(data, valid, sigmas) if sigmas else data
    crop = (slice(y0 - b, y0 - b + ys), slice(x0 - a, x0 - a + xs))
    return f[:, crop[0], crop[1]], valid[crop]


@dataclass(frozen=True)
class KMeansOptions:
    """How :func:`kmeans_raster` clusters, built once by each front end and passed whole.

    Attributes:
        k: number of clusters, 2..65535.
        bands: 1-based bands (``"3,2,1,4"`` or a list); ``None`` = all bands in file order.
        seed: ``random_state`` of the k-means; the same seed gives the same output.
        extra_nodata: a raw value treated as nodata beside the mask band and NaN/Inf.
        max_sample: most pixels the k-means is fitted on.
        n_init: k-means restarts (k-means++ each); the best inertia is kept.
        rgb: indices into ``bands`` of the red, green, blue channels for the class colours (default: the
            first three bands, i.e. bands given in R,G,B,NIR order); ``None`` = qualitative palette.
        window_pixels: pixels per prediction window (whole rows).
        scaling: ``"zscore"`` (default) or ``"stretch"`` (module docstring).
        context: add Gaussian-smoothed copies of the bands (sigma :data:`CONTEXT_SIGMAS` px) as features.
        smoothing: Potts beta per disagreeing 8-neighbour, in squared scaled-feature units (0 = off; module
            docstring).
    """

    k: int
    bands: object = None
    seed: int = 0
    extra_nodata: Optional[float] = None
    max_sample: int = 200_000
    n_init: int = 3
    rgb: Optional[Sequence[int]] = (0, 1, 2)
    window_pixels: int = 1_000_000
    scaling: str = "zscore"
    context: bool = False
    smoothing: float = 0.0


def kmeans_raster(input_path: str, output_path: str, opts: KMeansOptions,
                  feedback: Optional[Feedback] = None) -> KMeansResult:
    """Cluster the pixels of ``input_path`` into ``opts.k`` classes and write the class raster ``output_path``.

    Args:
        input_path: any GDAL raster; read only.
        output_path: class raster destination (GeoTIFF, or another GDAL format by extension).
        opts: the :class:`KMeansOptions`.
        feedback: progress (stages "fit", "predict"), cancel (polled between windows) and information lines.

    Raises:
        RasterError: bad band list, every pixel nodata, fewer distinct pixels than k.
        OutputError: the destination cannot be written (``outputs.OutputPathError``: checked before any work).
        ValueError: unknown ``scaling``, or a negative ``smoothing``.
        Canceled: canceled; nothing is left behind.
    """
    o = opts
    if o.scaling not in SCALINGS:
        raise ParameterError(f"scaling must be one of {SCALINGS}, got {o.scaling!r}")
    if not float(o.smoothing) >= 0:
        raise ParameterError(f"smoothing must be >= 0 (0 = off), got {o.smoothing}")
    outputs.check_outputs({"output": (output_path, outputs.CLASS_RASTER)}, {"input": input_path})
    job = _Job(k=int(o.k), bands=o.bands, seed=o.seed, extra_nodata=o.extra_nodata, max_sample=o.max_sample,
               n_init=o.n_init, rgb=o.rgb, window_pixels=o.window_pixels, scaling=o.scaling,
               sigmas=CONTEXT_SIGMAS if o.context else (), feedback=feedback or Feedback(),
               smoothing=float(o.smoothing))
    with raster.gdal_cache_limit():  # GDAL's default block cache (5 % of RAM) would fill with the output's blocks
        return _kmeans_raster(input_path, output_path, job)


@dataclass
class _Job:
    """The options of one :func:`kmeans_raster` run (same names); ``bands`` becomes the band list."""

    k: int
    bands: object
    seed: int
    extra_nodata: Optional[float]
    max_sample: int
    n_init: int
    rgb: Optional[Sequence[int]]
    window_pixels: int
    scaling: str
    sigmas: Sequence[float]
    feedback: Feedback
    smoothing: float = 0.0


class _Scaler:
    """Feature scaling of the k-means: z-score per feature, or the 2-98 % stretch of the bands (and of the
    smoothed copies, with the same per-band bounds). ``display`` maps the band values to [0, 1] for colours."""

    def __init__(self, ds, band_list, sample: np.ndarray, scaling: str, n_sigmas: int, extra_nodata):
        self.smin, self.smax = raster.percentile_scale(ds, band_list, extra_nodata=extra_nodata)
        self.c = len(band_list)
        if scaling == "zscore":
            self.mu = sample.astype(np.float64).mean(axis=1)
            sd = sample.astype(np.float64).std(axis=1)
            self.sd = np.where(sd > 0, sd, 1.0)
        else:
            lo, hi = np.asarray(self.smin, np.float64), np.asarray(self.smax, np.float64)
            self.mu, self.sd = np.tile(lo, 1 + n_sigmas), np.tile(hi - lo, 1 + n_sigmas)
        self.clip = scaling == "stretch"

    def __call__(self, px: np.ndarray) -> np.ndarray:
        """``(F, n)`` raw features -> ``(n, F)`` scaled float64."""
        z = (px.T.astype(np.float64) - self.mu) / self.sd
        return np.clip(z, 0.0, 1.0) if self.clip else z

    def display(self, px: np.ndarray) -> np.ndarray:
        """``(F, n)`` raw features -> ``(n, C)`` band values stretched to [0, 1] (for the class colours)."""
        return raster.apply_scale(px[:self.c, :, None], self.smin, self.smax)[:, :, 0].T


ALL_NODATA = "Every pixel of the input is nodata (mask band, NaN/Inf or {name}): nothing to cluster."


def _kmeans_raster(input_path: str, output_path: str, job: _Job) -> KMeansResult:
    t0 = time.perf_counter()
    k = job.k
    if not 2 <= k <= 65535:
        raise RasterError(f"k must be between 2 and 65535, got {k}", parameter="k")
    ds = raster.open_raster(input_path)
    try:
        job.bands = (list(range(1, ds.RasterCount + 1)) if job.bands in (None, "", [])
                     else parse_bands(job.bands, ds.RasterCount))
        if job.rgb is not None and (len(job.rgb) != 3 or max(job.rgb) >= len(job.bands)):
            job.rgb = None
        if job.sigmas:
            sample = context_sample(ds, job.bands, job.sigmas, job.max_sample, job.seed, job.extra_nodata)
        else:
            sample = raster.sample_pixels(ds, job.bands, max_pixels=job.max_sample, extra_nodata=job.extra_nodata)
        if sample.shape[1] == 0:
            raise RasterError(ALL_NODATA, parameter="nodata")
        scaler = _Scaler(ds, job.bands, sample, job.scaling, len(job.sigmas), job.extra_nodata)
        x = scaler(sample)
        say = job.feedback.info
        say(f"Bands {job.bands}; features: bands"
            + (f" + Gaussian sigma {list(job.sigmas)} px" if job.sigmas else "") + f"; scaling '{job.scaling}'")
        say(f"Fitting k-means (k = {k}, seed {job.seed}, {job.n_init} restarts) on {len(x)} sampled pixels")
        if job.smoothing > 0:
            say(f"Smoothing: Potts beta {job.smoothing:g}, {DEFAULT_SWEEPS} ICM sweeps on the squared distances")
        centers = fit_centers(x, k, seed=job.seed, n_init=job.n_init)
        job.feedback.progress(0.1, "fit")
        counts, names, colors = _predict(ds, output_path, job, centers, scaler)
    finally:
        ds = None
    return KMeansResult(path=output_path, k=k, centers=centers, counts=counts, class_names=names,
                        colors=colors, bands=job.bands, scale_min=scaler.smin, scale_max=scaler.smax,
                        sample_pixels=int(len(x)), seconds=time.perf_counter() - t0)


def _predict(ds, output_path: str, job: _Job, centers: np.ndarray, scaler: _Scaler):
    """Assign every pixel to its nearest centre, row window by row window, into a partial class raster;
    returns ``(counts, names, colors)``."""
    k, w, h = job.k, ds.RasterXSize, ds.RasterYSize
    rows = max(1, int(job.window_pixels) // max(1, w))
    dtype = np.uint8 if k <= 254 else np.uint16
    counts = np.zeros(k, np.int64)
    color_sum = np.zeros((k, 3), np.float64)
    with classraster.partial_output(output_path) as po:
        # no local reference to the dataset: the context manager must be able to close it
        out_band = po.create_on_grid(ds, (0, 0, w, h), 1, classraster.class_datatype(k),
                                     classraster.NODATA).GetRasterBand(1)
        for y in range(0, h, rows):
            job.feedback.check_canceled()
            n = min(rows, h - y)
            feats, valid, cls = _classify_rows(ds, job, (y, n), centers, scaler)
            labels = np.zeros((n, w), dtype)
            if valid.any():
                px = feats[:, valid]
                labels[valid] = (cls + 1).astype(dtype)
                counts += np.bincount(cls, minlength=k)
                if job.rgb is not None:
                    disp = scaler.display(px)
                    for j, ci in enumerate(job.rgb):
                        color_sum[:, j] += np.bincount(cls, weights=disp[:, ci], minlength=k)
            out_band.WriteArray(labels, 0, y)
            job.feedback.progress(0.1 + 0.9 * (y + n) / h, "predict")
        out_band = None
        names, colors = _names_and_colors(job, counts, color_sum)
        po.close()
        classraster.write_palette_to_file(po.path, names, colors)
    return counts, names, colors


def _classify_rows(ds, job: _Job, rows, centers: np.ndarray, scaler: _Scaler):
    """``(features (F, n, W), valid (n, W), classes of the valid pixels (m,) int)`` of the rows ``(y, n)``: the
    nearest centre, or with smoothing the ICM labels of the squared distances computed on the rows read with a
    halo of :data:`..segment.smoothing.DEFAULT_SWEEPS` rows (the whole width is read, so no column halo is needed)."""
    y, n = rows
    w, halo = ds.RasterXSize, context_halo(job.sigmas)
    if job.smoothing <= 0:
        feats, valid = _features_window(ds, job.bands, (0, y, w, n), job.sigmas, halo, job.extra_nodata)
        return feats, valid, (assign(scaler(feats[:, valid]), centers) if valid.any() else None)
    y0, y1 = max(0, y - DEFAULT_SWEEPS), min(ds.RasterYSize, y + n + DEFAULT_SWEEPS)
    feats, valid = _features_window(ds, job.bands, (0, y0, w, y1 - y0), job.sigmas, halo, job.extra_nodata)
    z = np.zeros((feats.shape[0],) + valid.shape, np.float32)
    z[:, valid] = scaler(feats[:, valid]).T
    cls = icm_potts(squared_distance_costs(z, centers), job.smoothing, DEFAULT_SWEEPS, valid)
    core = slice(y - y0, y - y0 + n)
    feats, valid = feats[:, core], valid[core]
    return feats, valid, (cls[core][valid] if valid.any() else None)


def _names_and_colors(job: _Job, counts: np.ndarray, color_sum: np.ndarray):
    """Cluster names and colours (mean true colour, else Tableau 10); refuses an all-nodata raster."""
    if counts.sum() == 0:
        raise RasterError(ALL_NODATA, parameter="nodata")
    names = [f"cluster {i}" for i in range(1, job.k + 1)]
    if job.rgb is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            colors = classraster.true_colors(color_sum / counts[:, None])
    else:
        colors = [classraster.QUALITATIVE[i % len(classraster.QUALITATIVE)] for i in range(job.k)]
    return names, colors
