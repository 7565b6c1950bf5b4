"""The sieve: GDAL's SieveFilter merges the class raster's small regions into their largest neighbour."""
from __future__ import annotations

from typing import Optional

from osgeo import gdal

from . import atomic, raster
from .feedback import Feedback

gdal.UseExceptions()


def sieve_in_place(path: str, min_segment_px: int, feedback: Optional[Feedback] = None,
                   eight_connected: bool = False) -> None:
    """GDAL sieve (``gdal.SieveFilter``) of the class raster in place: regions smaller than
    ``min_segment_px`` pixels take the class of their largest neighbour; nodata (0) is masked out.

    Args:
        feedback: progress (stage "sieve") and cancel, polled by GDAL's progress callback.

    Raises:
        Canceled: when ``feedback.is_canceled()`` turns True during the sieve.
        OutputError: GDAL could not write the result (a full disk).
    """
    feedback = feedback or Feedback()
    out = atomic.Partial(path, path, gdal.Open(path, gdal.GA_Update))
    band = out.ds.GetRasterBand(1)
    try:
        # GDAL reads line by line: no large block cache
        with feedback.gdal_canceled(), raster.line_pass_cache(band):
            gdal.SieveFilter(band, band.GetMaskBand(), band, int(min_segment_px),
                             8 if eight_connected else 4, callback=feedback.gdal_callback("sieve"))
        feedback.check_canceled()
    except BaseException:
        band = None
        out.abandon()
        raise
    band = None
    out.close()  # a write error GDAL reports on close (a full disk) fails the run
