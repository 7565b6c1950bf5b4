"""The sieve: GDAL's SieveFilter merges the class raster's small regions into their largest neighbour."""
from __future__ import annotations

from typing import Callable, Optional

from osgeo import gdal

from . import atomic, raster
from .errors import Canceled, Progress

gdal.UseExceptions()


def sieve_in_place(path: str, min_segment_px: int, progress: Optional[Progress] = None,
                   is_canceled: Optional[Callable[[], bool]] = None, eight_connected: bool = False) -> None:
    """GDAL sieve (``gdal.SieveFilter``) of the class raster in place: regions smaller than
    ``min_segment_px`` pixels take the class of their largest neighbour; nodata (0) is masked out.

    Raises:
        Canceled: when ``is_canceled()`` turns True during the sieve.
        OutputError: GDAL could not write the result (a full disk).
    """
    def cb(frac, _msg, _data):
        if progress:
            progress(frac, "sieve")
        return 0 if (is_canceled and is_canceled()) else 1

    out = atomic.Partial(path, path, gdal.Open(path, gdal.GA_Update))
    band = out.ds.GetRasterBand(1)
    try:
        try:
            with raster.line_pass_cache(band):  # GDAL reads line by line: no large block cache
                gdal.SieveFilter(band, band.GetMaskBand(), band, int(min_segment_px),
                                 8 if eight_connected else 4, callback=cb)
        except RuntimeError:  # GDAL's "User terminated" when the callback returned 0
            if is_canceled and is_canceled():
                raise Canceled() from None
            raise
        if is_canceled and is_canceled():
            raise Canceled()
    except BaseException:
        band = None
        out.abandon()
        raise
    band = None
    out.close()  # a write error GDAL reports on close (a full disk) fails the run
