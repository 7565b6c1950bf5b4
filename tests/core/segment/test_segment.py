"""core/segment/segment.py, the engine without QGIS: tiled equals whole-image, grid and CRS kept, output format,
colour table and names, nodata, simulation, band matching, errors, cancel, statistics, extent."""
import hashlib
import os

import numpy as np
import pytest
from osgeo import gdal

from conftest import ROOT, SAMPLE, sample_with_nodata, shared
from conftest import read_band as read
from ktextures_plugin.core.errors import Canceled, ModelError, OutputError, RasterError
from ktextures_plugin.core.feedback import Feedback
from ktextures_plugin.core.io import classraster, raster
from ktextures_plugin.core.segment import SegmentOptions, segment_raster
from ktextures_plugin.core.segment.bands import match_bands
from ktextures_plugin.core.segment.inference import open_session, read_model_info
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
