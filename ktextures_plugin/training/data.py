"""Training tiles read through GDAL windows (docs/method.md §2); no torch here.

:class:`TileSampler` draws random ``tile x tile`` windows of a raster with :func:`core.io.raster.read_window`, so
only one tile per read is in memory whatever the raster size; tiles with any nodata pixel are skipped.
Values are scaled per band with the 2-98 % percentiles of :func:`core.io.raster.percentile_scale`.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..core.errors import DamagedFileError
from ..core.io import raster as R
from ..core.segment.bands import parse_bands
from .errors import AllNodataError, BadKError, RasterTooSmallError, TooFewBandsError

N_CHANNELS = 4
#: consecutive rejected (nodata) tiles after which the sampler gives up
MAX_REJECTS = 400


def check_k(k) -> int:
    """k as an int in 2..128 (docs/method.md §3.1: the original supports 2..128).

    Raises:
        BadKError: otherwise.
    """
    if isinstance(k, bool):
        raise BadKError(f"k must be an integer number of classes >= 2, got {k!r}")
    try:
        kk = int(k)
    except (TypeError, ValueError):
        raise BadKError(f"k must be an integer number of classes >= 2, got {k!r}; use e.g. --k 6") from None
    if (isinstance(k, float) and k != kk) or not 2 <= kk <= 128:
        raise BadKError(f"k must be an integer from 2 to 128 (number of classes), got {k!r}; use e.g. --k 6")
    return kk


def check_bands(spec, band_count: int) -> List[int]:
    """1-based band numbers of red, green, blue, NIR.

    Raises:
        TooFewBandsError: the raster has fewer than 4 bands or the list does not hold exactly 4 numbers.
        raster.RasterError: a band number out of range or not an integer.
    """
    if band_count < N_CHANNELS:
        raise TooFewBandsError(
            f"the raster has {band_count} band(s) but k-textures needs 4 (red, green, blue, NIR); "
            "stack them into one raster first (e.g. gdalbuildvrt -separate)")
    bands = parse_bands(spec, band_count)
    if len(bands) != N_CHANNELS:
        raise TooFewBandsError(
            f"give exactly 4 band numbers in the order red, green, blue, NIR (got {len(bands)}: {bands}); "
            "e.g. --bands 3,2,1,4 for a B2,B3,B4,B8 Sentinel-2 stack")
    return bands


class TileSampler:
    """Random training tiles from a raster, scaled to [0, 1].

    Args:
        path: raster readable by GDAL.
        bands: 1-based band numbers (or "3,2,1,4") of red, green, blue, NIR.
        tile: tile side in px (128).
        seed: seeds the numpy Generator that picks tile positions.
        scale: ``(mins, maxs)``; default: per-band 2-98 % percentiles of the raster.
        clip: clip the scaled values to [0, 1] (False for a model that segments on the unclipped scale,
            ``ktextures.input_scale`` "clip" false).
        extra_nodata: value treated as nodata besides the GDAL mask band.

    Raises:
        TooFewBandsError, RasterTooSmallError, AllNodataError (all ``ValueError``), raster.RasterError.
    """

    def __init__(self, path: str, bands, tile: int = 128, seed: int = 0,
                 scale: Optional[Tuple[Sequence[float], Sequence[float]]] = None,
                 extra_nodata: Optional[float] = None, clip: bool = True):
        self.path = str(path)
        self.ds = R.open_raster(self.path)
        self.bands = check_bands(bands, self.ds.RasterCount)
        self.tile = int(tile)
        self.width, self.height = self.ds.RasterXSize, self.ds.RasterYSize
        if self.tile < 16:
            raise RasterTooSmallError(f"tile size must be at least 16 px, got {self.tile}")
        if self.width < self.tile or self.height < self.tile:
            raise RasterTooSmallError(
                f"the raster is {self.width} x {self.height} px, smaller than one {self.tile} x {self.tile} "
                "training tile; use a larger raster (or a smaller training tile)")
        self.extra_nodata = extra_nodata
        self.rng = np.random.default_rng(seed)
        if scale is None:
            try:
                scale = R.percentile_scale(self.ds, self.bands, extra_nodata=extra_nodata)
            except DamagedFileError:
                raise
            except R.RasterError as exc:
                raise AllNodataError(f"{os.path.basename(self.path)}: {exc}") from None
        self.scale_min = [float(v) for v in scale[0]]
        self.scale_max = [float(v) for v in scale[1]]
        self.rejected = 0
        self.clip = bool(clip)

    def read(self, xoff: int, yoff: int) -> Tuple[np.ndarray, bool]:
        """One scaled tile (4,tile,tile) float32 at pixel offset (xoff, yoff) (not clipped to [0, 1] unless
        :attr:`clip`), and whether it is fully valid."""
        data, valid = R.read_window(self.ds, self.bands, (xoff, yoff, self.tile, self.tile), self.extra_nodata)
        return R.apply_scale(data, self.scale_min, self.scale_max, self.clip), bool(valid.all())

    def sample(self, n: int) -> Tuple[np.ndarray, np.ndarray]:
        """n random valid tiles.

        Returns:
            ``(x, offsets)``: x float32 (n,4,tile,tile), in [0, 1] when :attr:`clip`; offsets int64 (n,2) = raster
            (yoff, xoff).

        Raises:
            AllNodataError: after :data:`MAX_REJECTS` consecutive tiles containing nodata.
        """
        xs = np.empty((n, N_CHANNELS, self.tile, self.tile), np.float32)
        offs = np.empty((n, 2), np.int64)
        i = rejects = 0
        while i < n:
            yoff = int(self.rng.integers(0, self.height - self.tile + 1))
            xoff = int(self.rng.integers(0, self.width - self.tile + 1))
            x, ok = self.read(xoff, yoff)
            if not ok:
                rejects += 1
                self.rejected += 1
                if rejects >= MAX_REJECTS:
                    raise AllNodataError(
                        f"{os.path.basename(self.path)}: found no {self.tile} x {self.tile} tile without nodata "
                        f"in {MAX_REJECTS} tries; clip the raster to its valid area, fill the gaps, or use a "
                        "smaller tile size")
                continue
            rejects = 0
            xs[i], offs[i] = x, (yoff, xoff)
            i += 1
        return xs, offs
