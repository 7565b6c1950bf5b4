"""core/io/raster.py: the 2-98 % percentile scale of the bundled sample and the in-place scaling to [0, 1]."""

import numpy as np
import pytest
from osgeo import gdal

from conftest import SAMPLE
from ktextures_plugin.core.io import raster

RGBN = [3, 2, 1, 4]  # the sample is B2,B3,B4,B8 = blue, green, red, nir


def test_percentile_scale_and_apply_scale():
    ds = gdal.Open(str(SAMPLE))
    lo, hi = raster.percentile_scale(ds, RGBN)
    data, _ = raster.read_window(ds, RGBN, (0, 0, 512, 768))
    assert np.allclose(lo, np.percentile(data.reshape(4, -1), 2, axis=1))
    assert np.allclose(hi, np.percentile(data.reshape(4, -1), 98, axis=1))
    x = raster.apply_scale(data, lo, hi)
    assert x.dtype == np.float32 and x.min() == 0 and x.max() == 1
    frac_low = (x == 0).mean(axis=(1, 2))
    assert np.all(frac_low > 0.005) and np.all(frac_low < 0.05)


def test_scale_in_place_maps_to_unit_range_and_keeps_nan():
    ds = gdal.Open(str(SAMPLE))
    data, _ = raster.read_window(ds, RGBN, (0, 0, 64, 48))
    data[1, 5, 7] = np.nan
    lo, hi = [300.0, 400.0, 500.0, 600.0], [1500.0, 1600.0, 1700.0, 2500.0]
    want = np.clip((data.astype(np.float64) - np.array(lo)[:, None, None])
                   / (np.array(hi) - np.array(lo))[:, None, None], 0, 1)
    copy = data.copy()
    got = raster.scale_in_place(copy, lo, hi)
    assert got is copy and got.dtype == np.float32
    assert np.isnan(got[1, 5, 7]) and np.isnan(got).sum() == 1
    assert np.allclose(got, want, atol=1e-6, equal_nan=True)
    assert np.array_equal(raster.apply_scale(data, lo, hi), got, equal_nan=True)
    assert np.isnan(data[1, 5, 7]) and np.nanmax(data) > 1  # apply_scale left its input alone
    with pytest.raises(TypeError, match="float32"):
        raster.scale_in_place(data.astype(np.float64), lo, hi)
