"""Per-class statistics of a class raster: pixel counts and areas (m²), accumulated block by block."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
from osgeo import gdal

from ..io import geo

gdal.UseExceptions()

#: Class ids below this are counted in dense arrays, larger ones one by one (``k`` None).
DENSE_IDS = 65536


class ClassCounter:
    """Pixel counts and areas per class of class-raster blocks, accumulated block by block.

    Serves the class raster that ``segment`` writes (``k`` known: values 0 = nodata and 1..k) and any integer
    class raster that ``sampling`` reads (``k`` None: any class ids >= 1; 0 is nodata).

    Args:
        k: number of classes, or ``None`` for any class ids.
        geotransform, wkt: the class raster's grid (areas: :func:`geo.row_pixel_areas_m2`, m²).
    """

    def __init__(self, k: Optional[int], geotransform, wkt: str) -> None:
        self.k, self.gt, self.wkt = (None if k is None else int(k)), geotransform, wkt
        self.counts = np.zeros((self.k or 0) + 1, np.int64)
        self.areas = np.zeros((self.k or 0) + 1, np.float64)
        self._sparse: Dict[int, Tuple[int, float]] = {}  # ids >= DENSE_IDS when k is None

    def add(self, block: np.ndarray, yoff: int) -> None:
        """Count one (H,W) integer block whose first row is raster row ``yoff`` (ids < 0 must be 0 already)."""
        row_area = geo.row_pixel_areas_m2(self.gt, self.wkt, yoff, block.shape[0])
        if self.k is None:
            self._add_any(block, row_area)
            return
        c = np.bincount(block.ravel(), minlength=self.k + 1)[:self.k + 1]
        self.counts += c
        if np.all(row_area == row_area[0]):  # projected CRS: every pixel has the same area
            self.areas += c * row_area[0]
        else:                                 # geographic CRS: the pixel area changes with the row
            per_row = np.stack([np.bincount(r, minlength=self.k + 1)[:self.k + 1] for r in block])  # (H, k+1)
            self.areas += row_area @ per_row

    def _add_any(self, block: np.ndarray, row_area: np.ndarray) -> None:
        a = block.ravel()
        weights = np.repeat(row_area, block.shape[1])  # each pixel weighted by its row's pixel area
        if a.size and int(a.max()) < DENSE_IDS:
            cnt = np.bincount(a)
            self._grow(len(cnt))
            self.counts[:len(cnt)] += cnt
            self.areas[:len(cnt)] += np.bincount(a, weights=weights, minlength=len(cnt))
            return
        vals, inv, cnt = np.unique(a, return_inverse=True, return_counts=True)
        ar = np.bincount(inv, weights=weights, minlength=len(vals))
        for v, n, s in zip(vals.tolist(), cnt.tolist(), ar.tolist()):
            if v < DENSE_IDS:
                self._grow(v + 1)
                self.counts[v] += n
                self.areas[v] += s
            else:
                p, q = self._sparse.get(v, (0, 0.0))
                self._sparse[v] = (p + n, q + s)

    def _grow(self, n: int) -> None:
        if n > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(n - len(self.counts), np.int64)])
            self.areas = np.concatenate([self.areas, np.zeros(n - len(self.areas), np.float64)])

    def result(self) -> Tuple[np.ndarray, np.ndarray]:
        """``(counts, areas_m2)`` of classes 1..k: int64 (k,), float64 (k,)."""
        return self.counts[1:].copy(), self.areas[1:].copy()

    def by_class(self) -> Tuple[Dict[int, int], Dict[int, float]]:
        """``(pixels, area_m2)`` per class id >= 1 present in the blocks counted."""
        ids = [int(v) for v in np.flatnonzero(self.counts) if v > 0]
        pix = {v: int(self.counts[v]) for v in ids}
        area = {v: float(self.areas[v]) for v in ids}
        for v, (n, s) in sorted(self._sparse.items()):
            pix[v], area[v] = n, s
        return pix, area


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
