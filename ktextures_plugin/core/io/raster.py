"""GDAL raster access shared by segmentation, training, k-means and sampling: windows, validity, scaling.

Arrays are band-first, ``(C, H, W)``; a window is ``(xoff, yoff, xsize, ysize)`` in pixels of the raster.
Validity = the GDAL mask band of every selected band is
non-zero (honours the nodata value, alpha bands and .msk files) AND every selected value is finite AND no
selected value equals the optional extra nodata value.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from typing import List, Optional, Sequence, Tuple

import numpy as np
from osgeo import gdal

from ..errors import Canceled, RasterError, gdal_read_error
from .tiling import Window

gdal.UseExceptions()

def open_raster(path: str) -> gdal.Dataset:
    """Open ``path`` read-only with GDAL.

    Raises:
        DamagedFileError: GDAL recognises the format but cannot read its header (a truncated or corrupt file).
        RasterError: when GDAL cannot open it otherwise (missing, not a raster).
    """
    try:
        ds = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as exc:
        damaged = gdal_read_error(exc, str(path))
        raise damaged or RasterError(f"GDAL cannot open '{path}': {exc}") from None
    if ds is None:
        raise RasterError(f"GDAL cannot open '{path}'")
    return ds


def read_window(ds: gdal.Dataset, bands: Sequence[int], window: Window,
                extra_nodata: Optional[float] = None,
                buf_size: Optional[Tuple[int, int]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Read ``bands`` over ``window``.

    Args:
        ds: an open dataset.
        bands: 1-based band numbers, in the order wanted.
        window: ``(xoff, yoff, xsize, ysize)`` in pixels.
        extra_nodata: a value treated as nodata beside the mask band and NaN/Inf.
        buf_size: ``(buf_xsize, buf_ysize)`` for a decimated (nearest-neighbour) read.

    Returns:
        ``(data, valid)``: data float32 ``(C, h, w)`` with the raw values; valid bool ``(h, w)``.

    Raises:
        DamagedFileError: GDAL failed reading a block (a truncated or corrupt file).
    """
    try:
        return _read_window(ds, bands, window, extra_nodata, buf_size)
    except RuntimeError as exc:
        damaged = gdal_read_error(exc, ds.GetDescription())
        if damaged is None:
            raise
        raise damaged from None


def _read_window(ds, bands, window, extra_nodata, buf_size):
    xoff, yoff, xs, ys = (int(v) for v in window)
    bx, by = buf_size if buf_size else (xs, ys)
    data = np.empty((len(bands), by, bx), np.float32)
    valid = np.ones((by, bx), bool)
    for i, b in enumerate(bands):
        band = ds.GetRasterBand(int(b))
        data[i] = band.ReadAsArray(xoff, yoff, xs, ys, buf_xsize=bx, buf_ysize=by)
        if band.GetMaskFlags() != gdal.GMF_ALL_VALID:
            valid &= band.GetMaskBand().ReadAsArray(xoff, yoff, xs, ys, buf_xsize=bx, buf_ysize=by) > 0
    if any(gdal.GetDataTypeName(ds.GetRasterBand(int(b)).DataType).startswith(("Float", "CFloat"))
           for b in bands):  # integer bands cannot hold NaN or Inf
        valid &= np.isfinite(data).all(axis=0)
    if extra_nodata is not None:
        valid &= ~(data == np.float32(extra_nodata)).any(axis=0)
    return data, valid


def sample_pixels(ds: gdal.Dataset, bands: Sequence[int], window: Optional[Window] = None,
                  max_pixels: int = 1_000_000, extra_nodata: Optional[float] = None) -> np.ndarray:
    """Valid pixel values from a decimated read of ``window`` (whole raster by default).

    Memory is bounded by ``max_pixels`` whatever the raster size (GDAL reads a nearest-neighbour
    subsample, from overviews when the file has them).

    Returns:
        float32 ``(C, n)``, n <= max_pixels.
    """
    if window is None:
        window = (0, 0, ds.RasterXSize, ds.RasterYSize)
    _, _, xs, ys = window
    f = max(1.0, float(np.sqrt(xs * ys / float(max_pixels))))
    buf = (max(1, int(xs / f)), max(1, int(ys / f)))
    data, valid = read_window(ds, bands, window, extra_nodata, buf_size=buf)
    return data[:, valid]


#: GDAL block cache during a run (segment, kmeans), bytes. GDAL's default is 5 % of RAM, and that cache
#: fills with the output's dirty blocks, so peak memory would grow with the raster up to that size.
GDAL_CACHE_BYTES = 128 * 1024 * 1024


@contextlib.contextmanager
def gdal_cache_limit(limit: Optional[int] = None):
    """Lower GDAL's block cache to ``limit`` bytes (default :data:`GDAL_CACHE_BYTES`; never raise it) for the
    duration of the block."""
    limit = GDAL_CACHE_BYTES if limit is None else limit
    old = gdal.GetCacheMax()
    gdal.SetCacheMax(min(old, limit))
    try:
        yield
    finally:
        gdal.SetCacheMax(old)


@contextlib.contextmanager
def line_pass_cache(band: gdal.Band):
    """GDAL's block cache lowered to :func:`line_pass_cache_bytes` of ``band`` for the duration of the block,
    and the memory the lowering freed handed back to the system (:func:`release_free_memory`)."""
    with gdal_cache_limit(line_pass_cache_bytes(band)):
        release_free_memory()
        yield


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim(0)``; nothing elsewhere).

    Freed GDAL blocks and numpy buffers below glibc's mmap threshold stay in the process's resident memory
    until trimmed, and peak RSS then adds them to the next step's own memory.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # a C library without malloc_trim (musl)
        pass


#: Smallest GDAL block cache during a line-by-line pass (:func:`line_pass_cache_bytes`), bytes.
LINE_PASS_CACHE_MIN = 16 * 1024 * 1024


def line_pass_cache_bytes(band: gdal.Band) -> int:
    """GDAL block cache, in bytes, for a pass that reads (and rewrites) ``band`` line by line, as GDAL's
    ``SieveFilter`` and ``Polygonize`` do: two rows of blocks (the band and its nodata mask band, which reads
    the same blocks), at least :data:`LINE_PASS_CACHE_MIN`, at most :data:`GDAL_CACHE_BYTES`. A larger cache
    only holds blocks the pass will not read again, and GDAL's C memory of the pass comes on top of it.
    """
    _, block_rows = band.GetBlockSize()
    row_bytes = band.XSize * block_rows * gdal.GetDataTypeSize(band.DataType) // 8
    return int(min(GDAL_CACHE_BYTES, max(LINE_PASS_CACHE_MIN, 2 * row_bytes)))


def sample_windows(ds: gdal.Dataset, bands: Sequence[int], window: Optional[Window] = None,
                   grid: int = 8, size: int = 32, extra_nodata: Optional[float] = None) -> np.ndarray:
    """Valid pixel values from ``grid`` x ``grid`` small windows (``size`` px square) spread evenly over
    ``window``: a quick probe (value range, any valid pixel) that decompresses only the blocks it touches,
    unlike a decimated read of a compressed raster without overviews, which decodes every block.

    Returns:
        float32 ``(C, n)``, n <= grid * grid * size * size.
    """
    if window is None:
        window = (0, 0, ds.RasterXSize, ds.RasterYSize)
    x0, y0, xs, ys = window
    wx, wy = min(size, xs), min(size, ys)
    xs_ = np.unique(np.linspace(x0, x0 + xs - wx, grid).astype(int))
    ys_ = np.unique(np.linspace(y0, y0 + ys - wy, grid).astype(int))
    parts = []
    for y in ys_:
        for x in xs_:
            data, valid = read_window(ds, bands, (int(x), int(y), wx, wy), extra_nodata)
            parts.append(data[:, valid])
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(bands), 0), np.float32)


def percentile_scale(ds: gdal.Dataset, bands: Sequence[int], window: Optional[Window] = None,
                     lower: float = 2.0, upper: float = 98.0, max_pixels: int = 1_000_000,
                     extra_nodata: Optional[float] = None) -> Tuple[List[float], List[float]]:
    """Per-band ``lower``-``upper`` % percentiles over valid pixels (docs/method.md §2).

    Computed from at most ``max_pixels`` pixels (a decimated read), never the whole raster.

    Returns:
        ``(mins, maxs)``: one float per band, ``max > min`` guaranteed.

    Raises:
        RasterError: when no pixel is valid.
    """
    px = sample_pixels(ds, bands, window, max_pixels, extra_nodata)
    if px.shape[1] == 0:
        raise RasterError("Every pixel is nodata (mask band, NaN or the extra nodata value): nothing to scale. "
                          "Check the nodata settings or choose another extent.")
    lo = np.percentile(px, lower, axis=1)
    hi = np.percentile(px, upper, axis=1)
    hi = np.where(hi > lo, hi, lo + np.maximum(np.abs(lo) * 1e-6, 1e-6))
    return [float(v) for v in lo], [float(v) for v in hi]


def apply_scale(data: np.ndarray, mins: Sequence[float], maxs: Sequence[float], clip: bool = True) -> np.ndarray:
    """Map raw values to [0, 1] per channel: ``clip((x - min) / (max - min), 0, 1)`` (``clip`` False: not
    clipped, the tails keep their spread).

    Args:
        data: ``(C, H, W)`` or ``(N, C, H, W)``, any real dtype.

    Returns:
        float32, same shape (a new array: ``data`` is not modified; see :func:`scale_in_place`).
    """
    return scale_in_place(data.astype(np.float32), mins, maxs, clip)


def scale_in_place(data: np.ndarray, mins: Sequence[float], maxs: Sequence[float], clip: bool = True) -> np.ndarray:
    """:func:`apply_scale` overwriting ``data``, a float32 ``(C, H, W)`` or ``(N, C, H, W)`` array; returns it.

    NaN stays NaN. ``np.maximum``/``np.minimum`` instead of ``np.clip``: the same result, and SIMD-vectorised
    in NumPy 1.24 where ``np.clip`` on float32 is not (3x faster on a 512 px tile).
    """
    if data.dtype != np.float32:
        raise TypeError(f"scale_in_place needs float32 data, got {data.dtype}")
    lo = np.asarray(mins, np.float32)
    span = np.asarray(maxs, np.float32) - lo
    shape = (-1, 1, 1) if data.ndim == 3 else (1, -1, 1, 1)
    data -= lo.reshape(shape)
    data *= (np.float32(1.0) / span).reshape(shape)
    if clip:
        np.maximum(data, np.float32(0.0), out=data)
        np.minimum(data, np.float32(1.0), out=data)
    return data


def alpha_bands(ds: gdal.Dataset) -> List[int]:
    """1-based bands whose colour interpretation is Alpha: GDAL makes such a band the mask of every band of
    the dataset (``GMF_ALPHA | GMF_PER_DATASET``, GDAL RFC 15), so its zeros become nodata everywhere."""
    return [b for b in range(1, ds.RasterCount + 1)
            if ds.GetRasterBand(b).GetColorInterpretation() == gdal.GCI_AlphaBand]


def alpha_mask_warnings(path: str, option: str, max_pixels: int = 1_000_000) -> List[str]:
    """One warning per band of ``path`` tagged Alpha, naming the band and the pixels its mask makes nodata
    (counted on a nearest-neighbour read of at most ``max_pixels``, scaled to the raster: "about" when
    decimated), and ``option``, the front end's way to ignore mask bands. Nothing when no band is tagged.

    Raises:
        RasterError: GDAL cannot open ``path`` (:func:`open_raster`).
    """
    ds = open_raster(path)
    out = []
    for b in alpha_bands(ds):
        other = next((i for i in range(1, ds.RasterCount + 1) if i != b), b)
        band = ds.GetRasterBand(other)
        if not band.GetMaskFlags() & gdal.GMF_ALPHA:
            continue
        w, h = ds.RasterXSize, ds.RasterYSize
        f = max(1.0, float(np.sqrt(w * h / float(max_pixels))))
        bx, by = max(1, int(w / f)), max(1, int(h / f))
        try:
            mask = band.GetMaskBand().ReadAsArray(0, 0, w, h, buf_xsize=bx, buf_ysize=by)
        except RuntimeError as exc:
            raise gdal_read_error(exc, path) or exc from None
        n = int(round(float((mask == 0).sum()) * (w * h) / float(bx * by)))
        if n == 0:
            continue
        about = "about " if (bx, by) != (w, h) else ""
        desc = ds.GetRasterBand(b).GetDescription()
        name = f"band {b}" + (f" ('{desc}')" if desc else "")
        out.append(f"{name} is tagged Alpha (colour interpretation), so GDAL takes it as the mask of every band: "
                   f"{about}{n} of {w * h} pixels ({100.0 * n / (w * h):.1f} %) are nodata because of it. If it is "
                   f"a data band (e.g. NIR), use {option} to read every pixel.")
    return out


@contextlib.contextmanager
def without_mask_bands(path: str, ignore: bool = True):
    """The path to read ``path`` through with its Alpha bands taken as data (``ignore``; else ``path``
    itself): an in-memory VRT (``/vsimem``) whose Alpha bands have colour interpretation Undefined, so that
    GDAL derives no mask from them (nodata values and .msk masks still apply). The input is not modified;
    the VRT is deleted when the block ends.

    Raises:
        RasterError: GDAL cannot open ``path``.
    """
    if not ignore:
        yield path
        return
    ds = open_raster(path)
    if not alpha_bands(ds):
        yield path
        return
    vrt = f"/vsimem/ktextures-nomask-{id(ds)}-{os.path.basename(str(path))}.vrt"
    view = gdal.Translate(vrt, ds, format="VRT")
    for b in alpha_bands(view):
        view.GetRasterBand(b).SetColorInterpretation(gdal.GCI_Undefined)
    view = None
    try:
        yield vrt
    finally:
        gdal.Unlink(vrt)


class GdalProgress:
    """The progress callback of a long GDAL call (``SieveFilter``, ``Polygonize``), and :meth:`run` to make
    the call so that neither a cancel nor Ctrl-C ever raises inside GDAL.

    A Python exception inside a GDAL callback (Ctrl-C lands there, since the callback is the only Python code
    that runs) is printed with its traceback by the GDAL bindings. :meth:`run` therefore turns SIGINT into a
    flag for the duration of the call (in the main thread; elsewhere Python delivers no signal), the callback
    returns 0 so that GDAL stops, and :meth:`run` then raises the real signal: ``KeyboardInterrupt``, or
    :class:`~..errors.Canceled` when ``is_canceled()`` turned True.

    Args:
        stage: the stage name given to ``progress``.
        progress: ``progress(fraction, stage)`` or None; ``scale`` multiplies GDAL's fraction.
        is_canceled: polled at every callback, or None.
    """

    def __init__(self, stage: str, progress=None, is_canceled=None, scale: float = 1.0):
        self.stage, self.progress, self.is_canceled, self.scale = stage, progress, is_canceled, scale
        self.stopped: Optional[BaseException] = None

    def __call__(self, frac, _msg=None, _data=None) -> int:
        if self.stopped is None:
            if self.progress:
                self.progress(frac * self.scale, self.stage)
            if self.is_canceled and self.is_canceled():
                self.stopped = Canceled()
        return 0 if self.stopped is not None else 1

    def _on_sigint(self, _signum, _frame) -> None:
        self.stopped = KeyboardInterrupt()

    def run(self, gdal_function, *args, **kwargs):
        """``gdal_function(*args, callback=self, **kwargs)`` with Ctrl-C deferred to the callback.

        Raises:
            KeyboardInterrupt: Ctrl-C during the call (GDAL stopped cleanly, nothing printed).
            Canceled: ``is_canceled()`` turned True.
            RuntimeError: any other GDAL error.
        """
        main = threading.current_thread() is threading.main_thread()
        old = signal.signal(signal.SIGINT, self._on_sigint) if main else None
        try:
            result = gdal_function(*args, callback=self, **kwargs)
        except RuntimeError:  # GDAL's "User terminated" when the callback returned 0
            if self.stopped is None:
                raise
            result = None
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
        if self.stopped is not None:
            raise self.stopped
        return result
