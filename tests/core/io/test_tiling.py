"""core/io/tiling.py: the tile grid covers a window exactly once; a Window's slices, geotransform, bounds and
the window of an extent agree with GDAL."""

import numpy as np
import pytest
from osgeo import gdal

from conftest import SAMPLE
from ktextures_plugin.core.io import tiling


@pytest.mark.parametrize("window,tile,halo", [((0, 0, 512, 768), 100, 0), ((5, 7, 300, 211), 64, 3),
                                              ((0, 0, 50, 50), 512, 8), ((13, 0, 499, 768), 37, 1)])
def test_tiles_cover_window_exactly_once(window, tile, halo):
    x0, y0, xs, ys = window
    hits = np.zeros((768, 512), np.int32)
    tiles = list(tiling.iter_tiles(window, (512, 768), tile, halo))
    assert len(tiles) == tiling.count_tiles(window, tile)
    for t in tiles:
        cx, cy, cw, ch = t.core
        hits[cy:cy + ch, cx:cx + cw] += 1
        rx, ry, rw, rh = t.read
        assert rx >= 0 and ry >= 0 and rx + rw <= 512 and ry + rh <= 768
        # the halo is there wherever the raster has pixels
        assert cx - rx == min(halo, cx) and cy - ry == min(halo, cy)
        assert (rx + rw) - (cx + cw) == min(halo, 512 - (cx + cw))
        assert t.crop == (cx - rx, cy - ry) and t.out == (cx - x0, cy - y0)
    inside = hits[y0:y0 + ys, x0:x0 + xs]
    assert (inside == 1).all()
    assert hits.sum() == xs * ys


def test_window_slices_index_an_array_like_gdal_reads_it():
    w = tiling.Window(3, 5, 4, 2)
    a = np.arange(100).reshape(10, 10)
    assert np.array_equal(a[w.slices()], a[5:7, 3:7])
    assert tuple(w) == (3, 5, 4, 2) and w == (3, 5, 4, 2)


def test_window_transform_bounds_and_from_extent_agree_with_gdal():
    """Window.transform is the geotransform GDAL gives the same window (gdal.Translate srcWin), bounds its
    corners in map units, and from_extent of those bounds gives the window back."""
    ds = gdal.Open(str(SAMPLE))
    w = tiling.Window(37, 101, 150, 64)
    cut = gdal.Translate("/vsimem/test_window.tif", ds, srcWin=list(w))
    try:
        assert w.transform(ds.GetGeoTransform()) == pytest.approx(cut.GetGeoTransform(), abs=1e-6)
        gt = cut.GetGeoTransform()
        x0, x1 = gt[0], gt[0] + cut.RasterXSize * gt[1]
        y0, y1 = gt[3] + cut.RasterYSize * gt[5], gt[3]
    finally:
        cut = None
        gdal.Unlink("/vsimem/test_window.tif")
    assert w.bounds(ds.GetGeoTransform()) == pytest.approx((x0, y0, x1, y1))
    size = (ds.RasterXSize, ds.RasterYSize)
    assert tiling.Window.from_extent(ds.GetGeoTransform(), size, *w.bounds(ds.GetGeoTransform())) == w
    whole = tiling.Window(0, 0, *size)
    assert tiling.Window.from_extent(ds.GetGeoTransform(), size, *whole.bounds(ds.GetGeoTransform())) == whole
