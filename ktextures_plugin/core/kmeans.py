"""Per-pixel k-means baseline (issue 4) in the same output format as :mod:`segment`.

Method: the selected bands are scaled like ``segment`` with ``scaling="stretch"`` (per-band 2-98 %
percentiles from a decimated read, ``raster.percentile_scale`` + ``raster.apply_scale``, values clipped
to [0, 1]); scikit-learn's ``KMeans`` (k-means++ initialisation, Lloyd iterations, ``n_init`` restarts,
``random_state=seed``) is fitted on a decimated sample of valid pixels (``raster.sample_pixels``, at most
``max_sample`` pixels); then every pixel is assigned to its nearest centre window by window (rows of the
raster), so memory grows with the window, not the raster. Clusters are numbered 1..k by increasing mean
scaled value of their centre (darkest first), so the numbering does not depend on k-means' internal order.
Nodata (GDAL mask band, NaN/Inf, ``extra_nodata``) is written as 0. Output: Byte/UInt16 GeoTIFF, 0 = nodata,
classes 1..k named "cluster i", colour table = mean true colour of each cluster when the first three
bands are red, green, blue (``rgb``), else a qualitative palette; written to a partial file renamed on
success (``classraster.finish``), removed on error or cancel.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
from osgeo import gdal

from . import classraster, outputs, raster
from .raster import RasterError

gdal.UseExceptions()

Progress = Callable[[float, str], None]


class Canceled(Exception):
    """The run was canceled through ``is_canceled``; no output was left behind."""


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


def kmeans_raster(input_path: str, output_path: str, k: int, *, bands=None, seed: int = 0,
                  extra_nodata: Optional[float] = None, max_sample: int = 200_000, n_init: int = 3,
                  rgb: Optional[Sequence[int]] = (0, 1, 2), window_pixels: int = 1_000_000,
                  progress: Optional[Progress] = None, is_canceled: Optional[Callable[[], bool]] = None,
                  log: Optional[Callable[[str], None]] = None) -> KMeansResult:
    """Cluster the pixels of ``input_path`` into ``k`` classes and write the class raster ``output_path``.

    Args:
        input_path: any GDAL raster; read only.
        output_path: class raster destination (GeoTIFF, or another GDAL format by extension).
        k: number of clusters, 2..65535.
        bands: 1-based bands (``"3,2,1,4"`` or a list); ``None`` = all bands in file order.
        seed: ``random_state`` of the k-means; the same seed gives the same output.
        extra_nodata: a raw value treated as nodata beside the mask band and NaN/Inf.
        max_sample: most pixels of the decimated sample the k-means is fitted on.
        rgb: indices into ``bands`` of the red, green, blue channels for the class colours (default: the
            first three bands, i.e. bands given in R,G,B,NIR order); ``None`` = qualitative palette.
        window_pixels: pixels per prediction window (whole rows).
        progress: ``progress(fraction, stage)``; is_canceled: polled between windows.

    Raises:
        RasterError: bad band list, every pixel nodata, fewer distinct pixels than k.
        OutputError: the destination cannot be written (``outputs.OutputPathError``: checked before any work).
        Canceled: canceled; nothing is left behind.
    """
    outputs.check_outputs({"output": (output_path, outputs.CLASS_RASTER)}, {"input": input_path})
    with raster.gdal_cache_limit():  # GDAL's default block cache (5 % of RAM) would fill with the output's blocks
        return _kmeans_raster(input_path, output_path, k, bands, seed, extra_nodata, max_sample, n_init, rgb,
                              window_pixels, progress, is_canceled, log)


def _kmeans_raster(input_path, output_path, k, bands, seed, extra_nodata, max_sample, n_init, rgb, window_pixels,
                   progress, is_canceled, log) -> KMeansResult:
    t0 = time.perf_counter()
    say = log or (lambda _m: None)
    k = int(k)
    if not 2 <= k <= 65535:
        raise RasterError(f"k must be between 2 and 65535, got {k}")
    ds = raster.open_raster(input_path)
    try:
        band_list = (list(range(1, ds.RasterCount + 1)) if bands in (None, "", [])
                     else raster.parse_bands(bands, ds.RasterCount))
        c = len(band_list)
        if rgb is not None and (len(rgb) != 3 or max(rgb) >= c):
            rgb = None
        smin, smax = raster.percentile_scale(ds, band_list, extra_nodata=extra_nodata)
        say(f"Bands {band_list}; 2-98 % stretch: min {smin}, max {smax}")
        sample = raster.sample_pixels(ds, band_list, max_pixels=max_sample, extra_nodata=extra_nodata)
        x = raster.apply_scale(sample[:, :, None], smin, smax)[:, :, 0].T  # (n, C)
        say(f"Fitting k-means (k = {k}, seed {seed}) on {len(x)} sampled pixels")
        centers = fit_centers(x, k, seed=seed, n_init=n_init)
        if progress:
            progress(0.1, "fit")

        w, h = ds.RasterXSize, ds.RasterYSize
        rows = max(1, int(window_pixels) // max(1, w))
        dtype = np.uint8 if k <= 254 else np.uint16
        counts = np.zeros(k, np.int64)
        color_sum = np.zeros((k, 3), np.float64)
        with classraster.partial_output(output_path) as po:
            # no local reference to the dataset: the context manager must be able to close it
            out_band = po.create_on_grid(ds, (0, 0, w, h), 1, classraster.class_datatype(k),
                                         classraster.NODATA).GetRasterBand(1)
            for y in range(0, h, rows):
                if is_canceled and is_canceled():
                    raise Canceled()
                n = min(rows, h - y)
                data, valid = raster.read_window(ds, band_list, (0, y, w, n), extra_nodata)
                labels = np.zeros((n, w), dtype)
                if valid.any():
                    px = raster.apply_scale(data, smin, smax)[:, valid].T  # (m, C)
                    cls = assign(px, centers)
                    labels[valid] = (cls + 1).astype(dtype)
                    counts += np.bincount(cls, minlength=k)
                    if rgb is not None:
                        for j, ci in enumerate(rgb):
                            color_sum[:, j] += np.bincount(cls, weights=px[:, ci], minlength=k)
                out_band.WriteArray(labels, 0, y)
                if progress:
                    progress(0.1 + 0.9 * (y + n) / h, "predict")
            if counts.sum() == 0:
                raise RasterError("Every pixel of the input is nodata (mask band, NaN/Inf or the nodata "
                                  "value): nothing to cluster.")
            names = [f"cluster {i}" for i in range(1, k + 1)]
            if rgb is not None:
                with np.errstate(invalid="ignore", divide="ignore"):
                    colors = classraster.true_colors(color_sum / counts[:, None])
            else:
                colors = [classraster.QUALITATIVE[i % len(classraster.QUALITATIVE)] for i in range(k)]
            out_band = None
            po.close()
            classraster.write_palette_to_file(po.path, names, colors)
    finally:
        ds = None
    return KMeansResult(path=output_path, k=k, centers=centers, counts=counts, class_names=names,
                        colors=colors, bands=band_list, scale_min=smin, scale_max=smax,
                        sample_pixels=int(len(x)), seconds=time.perf_counter() - t0)
