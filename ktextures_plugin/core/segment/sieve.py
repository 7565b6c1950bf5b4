"""The sieve: GDAL's SieveFilter merges the class raster's small regions into their largest neighbour."""
from __future__ import annotations

from typing import Optional

from osgeo import gdal

from ..errors import ParameterError
from ..feedback import Feedback
from ..io import atomic, raster

gdal.UseExceptions()

#: Largest sieve threshold: GDAL's SieveFilter takes a C int.
MAX_SIEVE_PX = 2 ** 31 - 1


def sieve_in_place(path: str, min_segment_px: int, feedback: Optional[Feedback] = None,
                   eight_connected: bool = False) -> None:
    """GDAL sieve (``gdal.SieveFilter``) of the class raster in place: regions smaller than
    ``min_segment_px`` pixels take the class of their largest neighbour; nodata (0) is masked out.

    Args:
        feedback: progress (stage "sieve") and cancel, polled by GDAL's progress callback.

    Raises:
        ParameterError: ``min_segment_px`` outside 0..:data:`MAX_SIEVE_PX`.
        Canceled: when ``feedback.is_canceled()`` turns True during the sieve.
        KeyboardInterrupt: Ctrl-C during the sieve (GDAL stopped cleanly, no traceback printed).
        OutputError: GDAL could not write the result (a full disk).
    """
    if not 0 <= int(min_segment_px) <= MAX_SIEVE_PX:
        raise ParameterError(f"{{name}} must be between 0 and {MAX_SIEVE_PX} pixels, got {min_segment_px}",
                             parameter="min_segment_px")
    feedback = feedback or Feedback()
    out = atomic.Partial(path, path, gdal.Open(path, gdal.GA_Update))
    band = out.ds.GetRasterBand(1)
    try:
        with raster.line_pass_cache(band):  # GDAL reads line by line: no large block cache
            raster.GdalProgress("sieve", feedback.progress, feedback.is_canceled).run(
                gdal.SieveFilter, band, band.GetMaskBand(), band, int(min_segment_px), 8 if eight_connected else 4)
        feedback.check_canceled()
    except BaseException:
        band = None
        out.abandon()
        raise
    band = None
    out.close()  # a write error GDAL reports on close (a full disk) fails the run
