"""What an analyst sees: the classes render in their palette colours at least MIN_DELTA_E
(CIEDE2000) apart, the default MIN_SEGMENT_PX sieve and CLASS_NAMES through qgis_process, the PALETTE option."""

import numpy as np
import pytest
from osgeo import gdal, ogr
from scipy import ndimage

from conftest import SAMPLE, qgis_process_for
from ktextures_plugin.core import colour
from ktextures_plugin.core.io import classraster

gdal.UseExceptions()


@pytest.fixture(scope="module")
def qp_env(tmp_path_factory):
    return qgis_process_for(tmp_path_factory.mktemp("qp"))


def _qp(qp, *params):
    return qp.run("ktextures:segment", f"INPUT={SAMPLE}", *params)


def _regions(labels):
    return int(sum(ndimage.label(labels == c)[1] for c in np.unique(labels) if c != 0))


def test_default_sieve_and_class_names_through_qgis_process(qp_env, tmp_path):
    names = ["forest", "field", "meadow", "town", "water", "bare"]
    cp = _qp(qp_env, f"OUTPUT_RASTER={tmp_path / 'd.tif'}", f"OUTPUT_VECTOR={tmp_path / 'd.gpkg'}",
             "CLASS_NAMES=" + ", ".join(names))
    assert cp.returncode == 0, cp.stderr[-2000:]
    cp0 = _qp(qp_env, f"OUTPUT_RASTER={tmp_path / 'z.tif'}", "OUTPUT_VECTOR=", "MIN_SEGMENT_PX=0")
    assert cp0.returncode == 0, cp0.stderr[-2000:]
    # the default run equals the unsieved run sieved at DEFAULT_MIN_SEGMENT_PX (GDAL, 4-connected)
    ds = gdal.Open(str(tmp_path / "z.tif"), gdal.GA_Update)
    band = ds.GetRasterBand(1)
    raw = band.ReadAsArray()
    gdal.SieveFilter(band, band.GetMaskBand(), band, classraster.DEFAULT_MIN_SEGMENT_PX, 4)
    want = band.ReadAsArray()
    ds = None
    got = gdal.Open(str(tmp_path / "d.tif")).ReadAsArray()
    assert classraster.DEFAULT_MIN_SEGMENT_PX > 0 and np.array_equal(got, want)
    vec = ogr.Open(str(tmp_path / "d.gpkg"))  # keep the dataset alive while its layer is used
    lyr = vec.GetLayer(0)
    # the default model is already smooth (its recommended Potts smoothing: about 480 regions unsieved on the
    # sample, 15,828 with the faithful network); the 8 px sieve still removes some of what is left
    assert lyr.GetFeatureCount() == _regions(got) < _regions(raw)
    assert {f["class_name"] for f in lyr} <= set(names)
    assert classraster.read_palette(str(tmp_path / "d.tif"))[0] == names


def test_wrong_class_names_are_refused_before_running(qp_env, tmp_path):
    cp = _qp(qp_env, f"OUTPUT_RASTER={tmp_path / 'x.tif'}", "CLASS_NAMES=a,b,c")
    assert cp.returncode != 0
    assert "CLASS_NAMES" in cp.stderr + cp.stdout and "give 6 different" in cp.stderr + cp.stdout
    assert not (tmp_path / "x.tif").exists()


def test_qualitative_palette(provider, tmp_path):
    import processing
    res = processing.run("ktextures:segment", {"INPUT": str(SAMPLE), "PALETTE": "qualitative",
                                               "OUTPUT_RASTER": str(tmp_path / "q.tif"), "OUTPUT_VECTOR": ""})
    _, cols = classraster.read_palette(res["OUTPUT_RASTER"])
    assert cols == classraster.QUALITATIVE[:6]


def test_render_shows_palette_colours_far_apart(provider, tmp_path):
    """The segmented sample rendered headless with QgsMapRendererParallelJob to a PNG."""
    import processing
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QImage

    res = processing.run("ktextures:segment", {"INPUT": str(SAMPLE), "OUTPUT_RASTER": str(tmp_path / "c.tif"),
                                               "OUTPUT_VECTOR": ""})
    names, cols = classraster.read_palette(res["OUTPUT_RASTER"])
    rgb = [classraster.hex_to_rgb(c) for c in cols]
    assert colour.min_delta_e(rgb) >= classraster.MIN_DELTA_E
    layer = QgsRasterLayer(res["OUTPUT_RASTER"], "classes")  # opened from disk: styled by its .qml / palette
    assert layer.isValid() and layer.renderer().type() == "paletted"
    labels = gdal.Open(res["OUTPUT_RASTER"]).ReadAsArray()
    h, w = labels.shape
    ms = QgsMapSettings()
    ms.setLayers([layer])
    ms.setDestinationCrs(layer.crs())
    ms.setOutputSize(QSize(w, h))
    ms.setExtent(layer.extent())
    ms.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(ms)
    job.start()
    job.waitForFinished()
    png = tmp_path / "render.png"
    assert job.renderedImage().save(str(png), "PNG")
    img = QImage(str(png)).convertToFormat(QImage.Format_RGB888)
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    arr = np.frombuffer(ptr, np.uint8).reshape(h, img.bytesPerLine())[:, :w * 3].reshape(h, w, 3)
    interior = ndimage.minimum_filter(labels, 3) == ndimage.maximum_filter(labels, 3)  # away from edges
    for c in np.unique(labels[interior]):
        px = arr[interior & (labels == c)]
        match = np.all(np.abs(px.astype(int) - np.array(rgb[c - 1])) <= 1, axis=1).mean()
        assert match > 0.99, (names[c - 1], cols[c - 1], match)
