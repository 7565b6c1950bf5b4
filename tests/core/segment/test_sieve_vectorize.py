"""core/segment/sieve.py and vectorize.py: the sieve removes small regions, both run with a line-pass GDAL
cache, polygons in every vector format with names and areas."""

import numpy as np
import pytest
from osgeo import gdal

from conftest import SAMPLE
from conftest import read_band as read
from ktextures_plugin.core.feedback import Feedback
from ktextures_plugin.core.io import raster
from ktextures_plugin.core.segment import SegmentOptions, segment_raster

RGBN = [3, 2, 1, 4]  # the sample is B2,B3,B4,B8 = blue, green, red, nir


def test_sieve_removes_small_regions(tmp_path, tiny_models):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    ra = segment_raster(str(SAMPLE), tiny_models["bin4"], str(a), SegmentOptions(bands=RGBN))
    rb = segment_raster(str(SAMPLE), tiny_models["bin4"], str(b), SegmentOptions(bands=RGBN, min_segment_px=20))
    from scipy import ndimage
    cb = read(b)
    for cls in range(1, 5):
        lab, n = ndimage.label(cb == cls)
        if n:
            sizes = np.bincount(lab.ravel())[1:]
            assert sizes.min() >= 20  # 4-connected regions, as the sieve counts them
    assert ra.counts.sum() == rb.counts.sum()
    assert (read(a) != cb).sum() > 0


def test_sieve_and_polygonize_run_with_a_line_pass_cache(tmp_path, tiny_models):
    """GDAL's sieve and polygonize read line by line: during each, GDAL's block cache is two rows of blocks
    of the class raster (at least 16 MB), not the run's 128 MB; the cache limit is restored after each."""
    from ktextures_plugin.core.segment.vectorize import polygonize

    before = gdal.GetCacheMax()
    seen = {}

    def progress(_frac, stage):
        seen.setdefault(stage, set()).add(gdal.GetCacheMax())

    out = tmp_path / "c.tif"
    segment_raster(str(SAMPLE), tiny_models["bin4"], str(out), SegmentOptions(bands=RGBN, min_segment_px=20),
                   Feedback(progress=progress))
    polygonize(str(out), str(tmp_path / "p.gpkg"), feedback=Feedback(progress=progress))
    assert gdal.GetCacheMax() == before
    ds = gdal.Open(str(out))
    want = raster.line_pass_cache_bytes(ds.GetRasterBand(1))
    assert want == raster.LINE_PASS_CACHE_MIN < raster.GDAL_CACHE_BYTES
    assert seen["sieve"] == {want} and seen["polygonize"] == {want}
    assert seen["segment"] == {min(before, raster.GDAL_CACHE_BYTES)}
    wide = gdal.GetDriverByName("GTiff").Create("/vsimem/wide.tif", 50000, 512, 1, gdal.GDT_UInt16,
                                                options=["TILED=YES", "SPARSE_OK=TRUE"])
    assert raster.line_pass_cache_bytes(wide.GetRasterBand(1)) == 2 * 50000 * 256 * 2  # two rows of tiles
    wide = None
    gdal.Unlink("/vsimem/wide.tif")


@pytest.mark.parametrize("ext", [".gpkg", ".shp", ".geojson"])
def test_polygonize_formats_names_and_areas(tmp_path, tiny_models, ext):
    """Polygons in any OGR format: names from the SQL CASE (quotes survive), areas = pixels x 100 m2,
    sidecar files in place, nothing partial left behind."""
    from osgeo import ogr

    from ktextures_plugin.core.segment.vectorize import polygonize

    out = tmp_path / "c.tif"
    segment_raster(str(SAMPLE), tiny_models["bin4"], str(out), SegmentOptions(bands=RGBN, window=(0, 0, 200, 150)))
    names = ["farmer's field", "forest", 'water "lake"', "urban"]
    dest = tmp_path / f"polys{ext}"
    n = polygonize(str(out), str(dest), class_names=names)
    cls = read(out)
    ds = ogr.Open(str(dest))
    lyr = ds.GetLayer(0)
    assert lyr.GetFeatureCount() == n > 0
    area = {}
    for f in lyr:
        cid = f.GetField("class_id")
        assert f.GetField("class_name") == names[cid - 1]
        area[cid] = area.get(cid, 0.0) + f.GetField("area_m2")
    ds = None
    for cid in range(1, 5):
        assert area.get(cid, 0.0) == pytest.approx((cls == cid).sum() * 100.0, rel=1e-9, abs=1e-6)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert not [p for p in left if "partial" in p], left
    if ext == ".shp":
        assert {"polys.shp", "polys.dbf", "polys.shx", "polys.prj"} <= set(left)
