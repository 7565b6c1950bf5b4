"""Per-class statistics of a class raster: pixel counts and areas (m²), accumulated block by block."""
from __future__ import annotations

from typing import Tuple

import numpy as np
from osgeo import gdal

from . import geo

gdal.UseExceptions()


class ClassCounter:
    """Pixel counts and areas per class of class-raster blocks, accumulated block by block.

    Args:
        k: number of classes; block values are 0 (nodata) and 1..k.
        geotransform, wkt: the class raster's grid (areas: :func:`geo.row_pixel_areas_m2`, m²).
    """

    def __init__(self, k: int, geotransform, wkt: str) -> None:
        self.k, self.gt, self.wkt = int(k), geotransform, wkt
        self.counts = np.zeros(self.k + 1, np.int64)
        self.areas = np.zeros(self.k + 1, np.float64)

    def add(self, block: np.ndarray, yoff: int) -> None:
        """Count one (H,W) integer block whose first row is raster row ``yoff``."""
        row_area = geo.row_pixel_areas_m2(self.gt, self.wkt, yoff, block.shape[0])
        c = np.bincount(block.ravel(), minlength=self.k + 1)[:self.k + 1]
        self.counts += c
        if np.all(row_area == row_area[0]):  # projected CRS: every pixel has the same area
            self.areas += c * row_area[0]
        else:                                 # geographic CRS: the pixel area changes with the row
            per_row = np.stack([np.bincount(r, minlength=self.k + 1)[:self.k + 1] for r in block])  # (H, k+1)
            self.areas += row_area @ per_row

    def result(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(counts, areas_m2)`` of classes 1..k: int64 (k,), float64 (k,)."""
        return self.counts[1:].copy(), self.areas[1:].copy()


def class_stats(path: str, k: int, window_rows: int = 512) -> Tuple[np.ndarray, np.ndarray]:
    """``(counts, areas_m2)`` per class 1..k of a class raster, read row block by row block."""
    ds = gdal.Open(path)
    try:
        band = ds.GetRasterBand(1)
        counter = ClassCounter(k, ds.GetGeoTransform(), ds.GetProjection())
        for y in range(0, ds.RasterYSize, window_rows):
            counter.add(band.ReadAsArray(0, y, ds.RasterXSize, min(window_rows, ds.RasterYSize - y)), y)
        return counter.result()
    finally:
        ds = None
