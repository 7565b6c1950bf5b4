"""core.kmeans: output format (as segment), determinism, nodata, windowed prediction, colours, errors."""
import os

import numpy as np
import pytest
from osgeo import gdal

from conftest import SAMPLE
from ktextures_plugin.core.errors import Canceled, RasterError
from ktextures_plugin.core.feedback import Feedback
from ktextures_plugin.core.io import classraster, raster
from ktextures_plugin.core.kmeans import KMeansOptions, kmeans

gdal.UseExceptions()


def _arr(path, band=1):
    ds = gdal.Open(str(path))  # keep the dataset alive while its band is read (GDAL 3.6 bindings)
    return ds.GetRasterBand(band).ReadAsArray()


@pytest.fixture(scope="module")
def km6(tmp_path_factory):
    out = tmp_path_factory.mktemp("km6") / "k6.tif"
    res = kmeans.kmeans_raster(str(SAMPLE), str(out), KMeansOptions(6, bands="3,2,1,4", seed=3, scaling="stretch"))
    return res


def test_output_format_like_segment(km6):
    src, ds = gdal.Open(str(SAMPLE)), gdal.Open(km6.path)
    assert (ds.RasterXSize, ds.RasterYSize) == (src.RasterXSize, src.RasterYSize)
    assert ds.GetGeoTransform() == src.GetGeoTransform()
    b = ds.GetRasterBand(1)
    assert b.DataType == gdal.GDT_Byte and b.GetNoDataValue() == 0
    assert b.GetRasterColorInterpretation() == gdal.GCI_PaletteIndex
    a = b.ReadAsArray()
    assert set(np.unique(a).tolist()) == set(range(1, 7))  # sample has no nodata; every cluster used
    names, colors = classraster.read_palette(km6.path)
    assert names == [f"cluster {i}" for i in range(1, 7)] == km6.class_names
    assert colors == km6.colors and len(set(colors)) == 6
    assert np.array_equal(np.bincount(a.ravel(), minlength=7)[1:], km6.counts)
    assert km6.bands == [3, 2, 1, 4]
    leftovers = [f for f in os.listdir(os.path.dirname(km6.path)) if "partial" in f]
    assert leftovers == []


def test_clusters_are_nearest_centres_and_sorted(km6):
    """Every pixel's class is its nearest centre in stretched units; classes are ordered darkest first."""
    ds = raster.open_raster(str(SAMPLE))
    data, valid = raster.read_window(ds, km6.bands, (0, 0, ds.RasterXSize, ds.RasterYSize))
    x = raster.apply_scale(data, km6.scale_min, km6.scale_max).reshape(4, -1).T
    d = ((x[:, None, :] - km6.centers[None]) ** 2).sum(-1)
    labels = _arr(km6.path).ravel()
    best = d.min(axis=1)
    chosen = d[np.arange(len(labels)), labels - 1]
    assert np.allclose(chosen, best, atol=1e-9)
    assert np.all(np.diff(km6.centers.mean(axis=1)) >= 0)
    # the scaling is segment's 2-98 % stretch
    assert (km6.scale_min, km6.scale_max) == raster.percentile_scale(ds, km6.bands)


def test_colours_are_mean_true_colour(km6):
    ds = raster.open_raster(str(SAMPLE))
    data, _ = raster.read_window(ds, [3, 2, 1], (0, 0, ds.RasterXSize, ds.RasterYSize))
    x = raster.apply_scale(data, km6.scale_min[:3], km6.scale_max[:3]).reshape(3, -1)
    labels = _arr(km6.path).ravel()
    mean = np.stack([x[:, labels == c].mean(axis=1) for c in range(1, 7)])
    want = classraster.true_colors(mean)  # float32 sums in kmeans vs float64 here: within CIEDE2000 1
    from ktextures_plugin.core.colour import delta_e_rgb
    assert all(delta_e_rgb(classraster.hex_to_rgb(a), classraster.hex_to_rgb(b)) < 1.0
               for a, b in zip(km6.colors, want))


def test_deterministic_for_a_seed_and_window_independent(km6, tmp_path):
    again = kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "a.tif"), KMeansOptions(6, bands="3,2,1,4", seed=3,
                                 window_pixels=5000, scaling="stretch"))  # ~10 rows per window
    assert np.array_equal(_arr(again.path), _arr(km6.path))
    assert np.allclose(again.centers, km6.centers)
    other = kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "b.tif"),
        KMeansOptions(6, bands="3,2,1,4", seed=4, n_init=1))
    assert other.centers.shape == (6, 4)


def test_nodata_respected(tmp_path):
    src = gdal.Open(str(SAMPLE))
    path = tmp_path / "holes.tif"
    ds = gdal.GetDriverByName("GTiff").CreateCopy(str(path), src)
    hole = np.zeros((100, 120), np.uint16)
    for b in range(1, 5):
        band = ds.GetRasterBand(b)
        band.SetNoDataValue(0)
        band.WriteArray(hole, 30, 40)
    ds = None
    res = kmeans.kmeans_raster(str(path), str(tmp_path / "k.tif"), KMeansOptions(4, bands="3,2,1,4", seed=0))
    a = _arr(res.path)
    assert np.all(a[40:140, 30:150] == 0)
    inside = np.ones(a.shape, bool)
    inside[40:140, 30:150] = False
    assert np.all(a[inside] >= 1) and a.max() == 4
    assert res.counts.sum() == inside.sum()
    # the extra nodata value works too: treat one real reflectance value as nodata
    v = float(_arr(SAMPLE)[0, 0])
    res2 = kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "k2.tif"),
        KMeansOptions(4, bands="3,2,1,4", extra_nodata=v))
    a2 = _arr(res2.path)
    hit = np.zeros(a2.shape, bool)
    for i in range(1, 5):
        hit |= _arr(SAMPLE, i) == v
    assert hit.any() and np.all(a2[hit] == 0) and np.all(a2[~hit] > 0)


def test_errors_leave_nothing(tmp_path):
    with pytest.raises(RasterError, match="out of range"):
        kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "x.tif"), KMeansOptions(3, bands="3,2,1,9"))
    with pytest.raises(RasterError, match="k must be"):
        kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "x.tif"), KMeansOptions(1, bands="3,2,1,4"))
    with pytest.raises(Canceled):
        kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "x.tif"), KMeansOptions(3, bands="3,2,1,4"),
                             feedback=Feedback(is_canceled=lambda: True))
    assert os.listdir(tmp_path) == []


def test_default_is_zscored_bands_nearest_centre():
    """The default k-means clusters z-scored bands (mean 0, sd 1 over the fitting sample)."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        res = kmeans.kmeans_raster(str(SAMPLE), os.path.join(d, "z.tif"), KMeansOptions(5, bands="3,2,1,4", seed=0))
        labels = _arr(res.path).ravel()
    ds = raster.open_raster(str(SAMPLE))
    data, _ = raster.read_window(ds, [3, 2, 1, 4], (0, 0, ds.RasterXSize, ds.RasterYSize))
    px = data.reshape(4, -1).T.astype(np.float64)
    sample = raster.sample_pixels(ds, [3, 2, 1, 4], max_pixels=200_000).T.astype(np.float64)
    z = (px - sample.mean(0)) / sample.std(0)
    d2 = ((z[:, None, :] - res.centers[None]) ** 2).sum(-1)
    assert np.allclose(d2[np.arange(len(labels)), labels - 1], d2.min(axis=1), atol=1e-4)
    assert abs(res.centers.mean()) < 2.0 and res.centers.shape == (5, 4)


def test_context_features_windowed_equal_whole_raster(tmp_path):
    """kmeans --context: smoothing window by window (with the halo) equals smoothing the whole raster, so the
    class raster does not depend on the window size; its features are the bands and 3 smoothed copies."""
    a = kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "a.tif"),
        KMeansOptions(6, bands="3,2,1,4", seed=2, context=True))
    b = kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "b.tif"),
        KMeansOptions(6, bands="3,2,1,4", seed=2, context=True,
                             window_pixels=7000))  # 13 rows per window: every window needs its 12-px halo
    assert a.centers.shape == (6, 16)
    assert np.array_equal(_arr(a.path), _arr(b.path))
    ds = raster.open_raster(str(SAMPLE))
    data, valid = raster.read_window(ds, [3, 2, 1, 4], (0, 0, ds.RasterXSize, ds.RasterYSize))
    whole = kmeans.context_features(data, valid, kmeans.CONTEXT_SIGMAS)
    part, _ = kmeans._features_window(ds, [3, 2, 1, 4], (0, 100, ds.RasterXSize, 13), kmeans.CONTEXT_SIGMAS,
                                      kmeans.context_halo(kmeans.CONTEXT_SIGMAS), None)
    assert np.allclose(part, whole[:, 100:113], atol=1e-3)
    # context changes the partition (the smoothed copies matter)
    assert not np.array_equal(_arr(a.path), _arr(kmeans.kmeans_raster(
        str(SAMPLE), str(tmp_path / "c.tif"), KMeansOptions(6, bands="3,2,1,4", seed=2)).path))


def test_kmeans_smoothing_is_the_potts_peer_and_window_exact(tmp_path):
    """kmeans --smoothing BETA: k-means then 10 synchronous ICM sweeps of the 8-neighbour Potts model on the
    squared distances of the z-scored pixels to the centres, computed whole-raster here; row windows of 7 rows
    (each read with a 10-row halo) give the same raster, and the step changes pixels."""
    from ktextures_plugin.cli.kmeans import main
    from ktextures_plugin.core.segment.smoothing import icm_potts, squared_distance_costs
    a = kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "a.tif"),
        KMeansOptions(6, bands="3,2,1,4", seed=1, smoothing=2.0))
    b = kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "b.tif"),
        KMeansOptions(6, bands="3,2,1,4", seed=1, smoothing=2.0,
                             window_pixels=3600))
    plain = kmeans.kmeans_raster(str(SAMPLE), str(tmp_path / "p.tif"), KMeansOptions(6, bands="3,2,1,4", seed=1))
    assert np.array_equal(a.centers, plain.centers) and np.array_equal(_arr(a.path), _arr(b.path))
    ds = raster.open_raster(str(SAMPLE))
    data, _ = raster.read_window(ds, [3, 2, 1, 4], (0, 0, ds.RasterXSize, ds.RasterYSize))
    sample = raster.sample_pixels(ds, [3, 2, 1, 4], max_pixels=200_000).astype(np.float64)
    z = ((data.reshape(4, -1).T - sample.mean(1)) / sample.std(1)).T.reshape(data.shape).astype(np.float32)
    ref = icm_potts(squared_distance_costs(z, a.centers), 2.0, 10) + 1
    assert np.array_equal(_arr(a.path), ref)
    assert (_arr(a.path) != _arr(plain.path)).mean() > 0.01
    assert main([str(SAMPLE), "--bands", "3,2,1,4", "--k", "6", "--seed", "1", "--smoothing", "2",
                 "--out", str(tmp_path / "c.tif")]) == 0
    assert np.array_equal(_arr(tmp_path / "c.tif"), ref)
