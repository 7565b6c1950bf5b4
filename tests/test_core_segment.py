"""Core segmentation without QGIS: tiling invariants, scaling, nodata, colour table, errors, cancel."""
import hashlib
import os

import numpy as np
import pytest
from osgeo import gdal

from conftest import ROOT, SAMPLE, sample_with_nodata, shared
from conftest import read_band as read
from ktextures_plugin.core.errors import Canceled, ModelError, OutputError, RasterError
from ktextures_plugin.core.feedback import Feedback
from ktextures_plugin.core.io import classraster, raster, tiling
from ktextures_plugin.core.segment import SegmentOptions, segment_raster
from ktextures_plugin.core.segment.bands import match_bands
from ktextures_plugin.core.segment.inference import infer_classes, open_session, read_model_info
from onnx_fixtures import binning_model

gdal.UseExceptions()
RGBN = [3, 2, 1, 4]  # the sample is B2,B3,B4,B8 = blue, green, red, nir


def whole_image_classes(model, image=SAMPLE, bands=RGBN):
    """Reference: the model run once on the whole scaled image (no tiling)."""
    info = read_model_info(model)
    ds = gdal.Open(str(image))
    data, valid = raster.read_window(ds, bands, (0, 0, ds.RasterXSize, ds.RasterYSize))
    x = raster.apply_scale(data, info.scale_min, info.scale_max)
    x[:, ~valid] = info.nodata_fill
    cls = open_session(model).run(["class"], {"image": x[None]})[0][0, 0]
    return np.where(valid, cls + 1, 0)


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


@pytest.mark.parametrize("tile", [37, 128, 200, 1024])
@pytest.mark.parametrize("model_key", ["bin4", "box4"])
def test_stitched_equals_whole_image(tmp_path, tiny_models, model_key, tile):
    model = tiny_models[model_key]
    out = tmp_path / "c.tif"
    res = segment_raster(str(SAMPLE), model, str(out), SegmentOptions(bands=RGBN, tile_size=tile))
    got = read(out)
    want = whole_image_classes(model)
    assert got.shape == want.shape
    assert np.array_equal(got, want), f"{(got != want).sum()} pixels differ"
    assert res.counts.sum() == got.size == res.valid_pixels


def test_grid_crs_and_window_preserved(tmp_path, tiny_models):
    out = tmp_path / "w.tif"
    segment_raster(str(SAMPLE), tiny_models["bin4"], str(out), SegmentOptions(bands=RGBN, window=(10, 20, 100, 50)))
    src, dst = gdal.Open(str(SAMPLE)), gdal.Open(str(out))
    gs, gd = src.GetGeoTransform(), dst.GetGeoTransform()
    assert (dst.RasterXSize, dst.RasterYSize) == (100, 50)
    assert gd[1] == gs[1] and gd[5] == gs[5]
    assert gd[0] == pytest.approx(gs[0] + 10 * gs[1]) and gd[3] == pytest.approx(gs[3] + 20 * gs[5])
    assert dst.GetSpatialRef().IsSame(src.GetSpatialRef())
    full = whole_image_classes(tiny_models["bin4"])
    assert np.array_equal(dst.GetRasterBand(1).ReadAsArray(), full[20:70, 10:110])


def test_output_format_colour_table_and_names(tmp_path, tiny_models):
    out = tmp_path / "c.tif"
    res = segment_raster(str(SAMPLE), tiny_models["bin4"], str(out), SegmentOptions(bands=RGBN))
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 0
    assert band.GetColorInterpretation() == gdal.GCI_PaletteIndex
    assert "COMPRESSION=LZW" in gdal.Info(ds) and band.GetBlockSize()[0] < ds.RasterXSize
    ct = band.GetRasterColorTable()
    assert ct.GetColorEntry(0)[3] == 0
    for i, c in enumerate(res.colors, 1):
        assert "#%02x%02x%02x" % ct.GetColorEntry(i)[:3] == c
    rgb = np.array([classraster.hex_to_rgb(c) for c in res.colors], float)
    d = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1) + np.eye(len(rgb)) * 1e9
    assert d.min() >= 30, "class colours must stay distinguishable"
    assert classraster.read_palette(str(out)) == (res.class_names, res.colors)
    info = gdal.Info(ds)
    for n in res.class_names:
        assert n in info  # category names readable by any GDAL client


def test_true_colours_follow_the_image(tmp_path, tiny_models):
    """A class of dark pixels gets a darker colour than a class of bright pixels."""
    out = tmp_path / "c.tif"
    res = segment_raster(str(SAMPLE), tiny_models["bin4"], str(out), SegmentOptions(bands=RGBN))
    present = [i for i in range(4) if res.counts[i] > 1000]
    assert len(present) >= 2, f"fewer than two large classes ({res.counts}): nothing to compare"
    bright = [sum(classraster.hex_to_rgb(res.colors[i])) for i in present]
    # the binning model gives class 1 to the highest mean score, so brightness falls with the class id
    assert bright == sorted(bright, reverse=True)


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


def _with_nodata(tmp_path, dtype=gdal.GDT_UInt16):
    """A copy of the sample with a nodata value declared and a block of nodata pixels."""
    return sample_with_nodata(tmp_path, slice(100, 150), slice(200, 260), dtype)


def test_nodata_mask_band_extra_value_and_nan(tmp_path, tiny_models):
    p = _with_nodata(tmp_path)
    out = tmp_path / "c.tif"
    segment_raster(str(p), tiny_models["bin4"], str(out), SegmentOptions(bands=RGBN, tile_size=128))
    c = read(out)
    assert (c[100:150, 200:260] == 0).all() and (np.delete(c, np.s_[100:150], axis=0) > 0).all()
    # extra nodata value: every pixel whose band value equals it
    ds = gdal.Open(str(SAMPLE))
    blue = ds.GetRasterBand(1).ReadAsArray()
    v = float(np.bincount(blue.ravel()).argmax())
    out2 = tmp_path / "c2.tif"
    segment_raster(str(SAMPLE), tiny_models["bin4"], str(out2), SegmentOptions(bands=RGBN, extra_nodata=v))
    c2 = read(out2)
    hit = np.any([ds.GetRasterBand(b).ReadAsArray() == v for b in RGBN], axis=0)
    assert hit.sum() > 100 and np.array_equal(c2 == 0, hit)
    # NaN in a Float32 raster without a declared nodata value
    pf = tmp_path / "f.tif"
    gdal.Translate(str(pf), str(SAMPLE), outputType=gdal.GDT_Float32)
    dsf = gdal.Open(str(pf), gdal.GA_Update)
    a = dsf.GetRasterBand(3).ReadAsArray()
    a[:10, :] = np.nan
    a[10, 5] = np.inf
    dsf.GetRasterBand(3).WriteArray(a)
    dsf = None
    out3 = tmp_path / "c3.tif"
    segment_raster(str(pf), tiny_models["bin4"], str(out3), SegmentOptions(bands=RGBN))
    c3 = read(out3)
    assert (c3[:10] == 0).all() and c3[10, 5] == 0 and (c3[11:] > 0).all()


def test_simulation_is_the_texture_of_each_class(tmp_path, tiny_models):
    out, sim = tmp_path / "c.tif", tmp_path / "s.tif"
    res = segment_raster(str(SAMPLE), tiny_models["bin4"], str(out),
                         SegmentOptions(bands=RGBN, tile_size=100, simulation_path=str(sim)))
    tex = open_session(tiny_models["bin4"]).run(["textures"], {"image": np.zeros((1, 4, 4, 4), np.float32)})[0]
    c = read(out) - 1
    ds = gdal.Open(str(sim))
    assert ds.RasterCount == 4 and ds.GetRasterBand(1).DataType == gdal.GDT_Float32
    s = ds.ReadAsArray()
    p = tex.shape[-1]
    r, q = np.mgrid[0:768, 0:512]
    for ch in range(4):
        want = tex[c, ch, r % p, q % p] * (res.scale_max[ch] - res.scale_min[ch]) + res.scale_min[ch]
        assert np.allclose(s[ch], want, rtol=1e-5, atol=1e-3)


def test_band_matching_from_descriptions(tmp_path):
    ds = gdal.Open(str(SAMPLE))
    assert match_bands(ds, ["red", "green", "blue", "nir"]) == RGBN
    p = tmp_path / "nodesc.tif"
    gdal.Translate(str(p), str(SAMPLE))
    d2 = gdal.Open(str(p), gdal.GA_Update)
    for b in range(1, 5):
        d2.GetRasterBand(b).SetDescription("")
    d2 = None
    with pytest.raises(RasterError, match="Set the band list to the band numbers") as ei:
        match_bands(gdal.Open(str(p)), ["red", "green", "blue", "nir"])
    # the core names the input, each front end words it with its own parameter or option
    assert ei.value.parameter == "bands"
    assert "Set BANDS to the band numbers" in ei.value.message({"bands": "BANDS"})
    assert "Set --bands to the band numbers" in ei.value.message({"bands": "--bands"})


def test_errors_name_the_problem(tmp_path, tiny_models):
    m = tiny_models["bin4"]
    out = str(tmp_path / "o.tif")
    three = tmp_path / "three.tif"
    gdal.Translate(str(three), str(SAMPLE), bandList=[1, 2, 3])
    with pytest.raises(RasterError, match="3 band.*needs 4"):
        segment_raster(str(three), m, out)
    with pytest.raises(RasterError, match=r"out of range.*1\.\.4"):
        segment_raster(str(SAMPLE), m, out, SegmentOptions(bands="3,2,1,9"))
    with pytest.raises(RasterError, match="needs 4 bands but 3"):
        segment_raster(str(SAMPLE), m, out, SegmentOptions(bands=[3, 2, 1]))
    with pytest.raises(ModelError, match="not found"):
        segment_raster(str(SAMPLE), str(tmp_path / "missing.onnx"), out)
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf" * 10)
    with pytest.raises(ModelError, match="corrupt or not ONNX"):
        segment_raster(str(SAMPLE), str(bad), out)
    plain = binning_model(tmp_path / "plain.onnx", metadata=False)
    with pytest.raises(ModelError, match="no k-textures metadata"):
        segment_raster(str(SAMPLE), plain, out)
    allnd = tmp_path / "allnd.tif"
    gdal.Translate(str(allnd), str(SAMPLE), noData=0, scaleParams=[[0, 65535, 0, 0]], outputType=gdal.GDT_UInt16)
    with pytest.raises(RasterError, match="Every pixel .* nodata"):
        segment_raster(str(allnd), m, out, SegmentOptions(bands=RGBN))
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OutputError, match="does not exist"):
        segment_raster(str(SAMPLE), m, str(afile / "o.tif"), SegmentOptions(bands=RGBN))
    assert not os.path.exists(out)


def test_cancel_leaves_nothing_and_input_is_untouched(tmp_path, tiny_models, sample_copy):
    before = hashlib.sha256(sample_copy.read_bytes()).hexdigest()
    calls = []

    def is_canceled():
        calls.append(1)
        return len(calls) > 3

    out = tmp_path / "out" / "c.tif"
    out.parent.mkdir()
    with pytest.raises(Canceled):
        segment_raster(str(sample_copy), tiny_models["bin4"], str(out),
                       SegmentOptions(bands=RGBN, tile_size=64, simulation_path=str(tmp_path / "out" / "s.tif")),
                       Feedback(is_canceled=is_canceled))
    assert len(calls) <= 5, "cancel must stop between tiles, promptly"
    assert os.listdir(out.parent) == []
    segment_raster(str(sample_copy), tiny_models["bin4"], str(out), SegmentOptions(bands=RGBN, min_segment_px=8))
    assert hashlib.sha256(sample_copy.read_bytes()).hexdigest() == before
    assert not [f for f in os.listdir(out.parent) if "partial" in f]


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


def test_small_gdal_cache_flushes_blocks_early(tmp_path, tiny_models, monkeypatch):
    """With a cache far smaller than the output, GDAL writes blocks while tiles are still coming; the
    colour table and class names must still land in the file (regression: GeoTIFF refused the palette)."""
    from ktextures_plugin.core.segment import segment as seg
    ref = tmp_path / "ref.tif"
    segment_raster(str(SAMPLE), tiny_models["bin4"], str(ref), SegmentOptions(bands=RGBN))
    monkeypatch.setattr(seg, "GDAL_CACHE_BYTES", 64 * 1024)
    out = tmp_path / "small_cache.tif"
    res = segment_raster(str(SAMPLE), tiny_models["bin4"], str(out), SegmentOptions(bands=RGBN, tile_size=64))
    assert gdal.GetCacheMax() > 64 * 1024, "the cache limit is restored after the run"
    assert np.array_equal(read(out), read(ref))
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert band.GetColorInterpretation() == gdal.GCI_PaletteIndex
    assert "#%02x%02x%02x" % band.GetRasterColorTable().GetColorEntry(1)[:3] == res.colors[0]
    assert classraster.read_palette(str(out)) == (res.class_names, res.colors)


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


@pytest.mark.parametrize("chunk_px", [1, 700, 5000, 10 ** 7])
@pytest.mark.parametrize("model_key", ["bin4", "box4", "bundled"])
def test_strip_inference_equals_one_call(tiny_models, model_key, chunk_px):
    """infer_classes in row strips (with the model's halo) gives exactly the classes of one call."""
    model = (str(ROOT / "models" / "s2_10m_k6.onnx") if model_key == "bundled"
             else tiny_models[model_key])
    info = read_model_info(model)
    ds = gdal.Open(str(SAMPLE))
    data, _ = raster.read_window(ds, RGBN, (40, 30, 301, 257))
    x = raster.apply_scale(data, info.scale_min, info.scale_max)
    session = open_session(model)
    want = session.run(["class"], {"image": x[None]})[0][0, 0]
    got = infer_classes(session, x, info.halo_px, chunk_px=chunk_px)
    assert got.shape == want.shape == (257, 301)
    assert np.array_equal(got, want), f"{(got != want).sum()} pixels differ"


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


def test_warns_when_the_raster_is_in_other_units_than_the_model(tmp_path):
    """The bundled Sentinel-2 DN model on a reflectance (0-1) raster: a warning naming the fix; the same
    model on the sample (its own units): none; with scaling 'stretch': none."""
    import subprocess
    import sys

    model = str(ROOT / "models" / "s2_10m_k6.onnx")
    refl = str(shared("s2_amazon/s2_amazon_b2b3b4b8_10m_reflectance.tif"))
    got = []
    res = segment_raster(refl, model, str(tmp_path / "a.tif"), SegmentOptions(bands=RGBN), Feedback(warning=got.append))
    assert len(res.warnings) == 1 and got == res.warnings
    assert "stretch" in got[0] and all(f"'{c}' (band {b})" in got[0]
                                       for c, b in (("red", 3), ("green", 2), ("blue", 1), ("nir", 4)))
    assert segment_raster(str(SAMPLE), model, str(tmp_path / "b.tif"), SegmentOptions(bands=RGBN)).warnings == []
    assert segment_raster(refl, model, str(tmp_path / "c.tif"),
                          SegmentOptions(bands=RGBN, scaling="stretch")).warnings == []
    cp = subprocess.run([sys.executable, "-m", "ktextures_plugin", "segment", refl, "--model", model, "--bands",
                         "3,2,1,4", "--out", str(tmp_path / "d.tif"), "--quiet"], capture_output=True, text=True,
                        cwd=ROOT)
    assert cp.returncode == 0 and cp.stderr.count("warning: The raster's values do not match") == 1


@pytest.mark.parametrize("crs", ["projected", "geographic"])
def test_counts_and_areas_counted_while_writing_equal_a_reread(tmp_path, tiny_models, crs):
    """Without a sieve, segment counts classes and areas as it writes the tiles; the figures equal a re-read
    of the written class raster (``class_stats``), also in a geographic CRS where the pixel area changes with
    the row, and they leave nodata pixels out."""
    from ktextures_plugin.core.segment.classstats import class_stats
    src = _with_nodata(tmp_path)
    if crs == "geographic":
        geo_src = str(tmp_path / "geo.tif")
        gdal.Translate(geo_src, str(src), outputSRS="EPSG:4326", outputBounds=[13.0, 52.6, 13.05, 52.5])
        src = geo_src
    src = str(src)
    out = tmp_path / "c.tif"
    res = segment_raster(src, tiny_models["bin4"], str(out), SegmentOptions(bands=RGBN, tile_size=200))
    counts, areas = class_stats(str(out), 4)
    assert np.array_equal(res.counts, counts) and res.counts.sum() == (read(out) > 0).sum() < read(out).size
    assert np.allclose(res.areas_m2, areas, rtol=1e-12)
    per_px = areas[counts > 0] / counts[counts > 0]
    if crs == "geographic":
        assert per_px.std() > 0                 # rows at other latitudes: classes differ in mean pixel area
    else:
        assert np.allclose(per_px, 100.0)       # 10 m pixels


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


def test_strip_size_follows_the_mask_width(tiny_models):
    """Per-pixel models that record their mask width run on strips of INFER_CHUNK_VALUES // width pixels;
    anything else on INFER_CHUNK_PX."""
    import dataclasses

    from ktextures_plugin.core.segment.inference import (
        CONTEXT_CHUNK_PX,
        INFER_CHUNK_PX,
        INFER_CHUNK_VALUES,
        chunk_px_for,
    )
    ctx = read_model_info(str(ROOT / "models" / "s2_10m_k6.onnx"))          # a context-variant model
    assert chunk_px_for(ctx) == CONTEXT_CHUNK_PX
    info = dataclasses.replace(ctx, halo_px=0, provenance=dict(ctx.provenance, variant="faithful", mask_width=16))
    width = info.provenance["mask_width"]
    assert chunk_px_for(info) == INFER_CHUNK_VALUES // width > INFER_CHUNK_PX
    assert chunk_px_for(dataclasses.replace(info, provenance=dict(info.provenance, mask_width=64))) == INFER_CHUNK_PX
    assert chunk_px_for(dataclasses.replace(info, provenance={})) == INFER_CHUNK_PX
    assert chunk_px_for(dataclasses.replace(info, halo_px=2)) == INFER_CHUNK_PX
    assert chunk_px_for(read_model_info(tiny_models["bin4"])) == INFER_CHUNK_PX


def test_sessions_do_not_spin_unless_asked():
    model = str(ROOT / "models" / "s2_10m_k6.onnx")
    key = "session.intra_op.allow_spinning"
    assert open_session(model).get_session_options().get_session_config_entry(key) == "0"
    assert open_session(model, allow_spinning=True).get_session_options().get_session_config_entry(key) == "1"


def test_band_writer_writes_in_order_and_reports_gdal_errors():
    """The class raster's writer thread: blocks land where asked; a GDAL error (here a window outside the
    raster) is raised by close() or the next write(); abort() raises nothing."""
    from ktextures_plugin.core.segment.tileio import BandWriter
    gdal.UseExceptions()
    ds = gdal.GetDriverByName("MEM").Create("", 20, 10, 1, gdal.GDT_Byte)
    w = BandWriter(ds.GetRasterBand(1), depth=1)
    for i in range(4):
        w.write(np.full((10, 5), i + 1, np.uint8), 5 * i, 0)
    w.close()
    assert np.array_equal(ds.GetRasterBand(1).ReadAsArray()[0], np.repeat([1, 2, 3, 4], 5))
    w = BandWriter(ds.GetRasterBand(1))
    w.write(np.zeros((10, 10), np.uint8), 15, 5)   # outside the 20 x 10 raster
    with pytest.raises(ValueError, match="off edge"):
        w.close()
    w = BandWriter(ds.GetRasterBand(1))
    w.write(np.zeros((10, 10), np.uint8), 15, 5)
    w.abort()                                      # drops or swallows, never raises
    assert ds.GetRasterBand(1).ReadAsArray()[0, 0] == 1


def test_core_errors_name_no_front_end_and_carry_the_input(tmp_path, tiny_models):
    """Core messages name the offending input in words; the QGIS and CLI front ends fill in their own names."""
    from ktextures_plugin.cli.segment import main as cli_main
    out = str(tmp_path / "o.tif")
    allnd = tmp_path / "allnd.tif"
    gdal.Translate(str(allnd), str(SAMPLE), noData=0, scaleParams=[[0, 65535, 0, 0]], outputType=gdal.GDT_UInt16)
    with pytest.raises(RasterError) as ei:
        segment_raster(str(allnd), tiny_models["bin4"], out, SegmentOptions(bands=RGBN))
    assert ei.value.parameter == "nodata" and "NODATA" not in str(ei.value) and "--" not in str(ei.value)
    assert "Check NODATA" in ei.value.message({"nodata": "NODATA"})
    with pytest.raises(RasterError) as ei:
        segment_raster(str(SAMPLE), tiny_models["bin4"], out, SegmentOptions(bands=RGBN, extent=(0.0, 0.0, 1.0, 1.0)))
    assert ei.value.parameter == "extent" and "does not overlap" in str(ei.value)
    import onnx
    m = onnx.load(binning_model(tmp_path / "scaled.onnx"))
    keep = [(p.key, p.value) for p in m.metadata_props if p.key != "ktextures.input_scale"]
    del m.metadata_props[:]
    for key, value in keep:
        m.metadata_props.add(key=key, value=value)
    plain = str(tmp_path / "noscale.onnx")
    onnx.save(m, plain)
    with pytest.raises(RasterError) as ei:
        segment_raster(str(SAMPLE), plain, out, SegmentOptions(bands=RGBN))
    assert ei.value.parameter == "scaling" and "SCALING" not in str(ei.value)
    assert "set --scaling to 'stretch'" in ei.value.message({"scaling": "--scaling"})
    assert cli_main([str(allnd), "--model", tiny_models["bin4"], "--out", out, "--bands", "3,2,1,4", "--quiet"]) == 2


def test_extent_in_map_units_equals_the_pixel_window(tmp_path, tiny_models):
    """segment_raster(extent=...) (the QGIS EXTENT, in the raster's CRS) covers the pixels of that extent."""
    ds = gdal.Open(str(SAMPLE))
    gt = ds.GetGeoTransform()
    ds = None
    x0, y0, xs, ys = 10, 20, 100, 50
    extent = (gt[0] + x0 * gt[1], gt[3] + (y0 + ys) * gt[5], gt[0] + (x0 + xs) * gt[1], gt[3] + y0 * gt[5])
    a = segment_raster(str(SAMPLE), tiny_models["bin4"], str(tmp_path / "w.tif"),
                       SegmentOptions(bands=RGBN, window=(x0, y0, xs, ys)))
    b = segment_raster(str(SAMPLE), tiny_models["bin4"], str(tmp_path / "e.tif"),
                       SegmentOptions(bands=RGBN, extent=extent))
    assert b.window == a.window == (x0, y0, xs, ys)
    assert np.array_equal(read(tmp_path / "w.tif"), read(tmp_path / "e.tif"))


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
