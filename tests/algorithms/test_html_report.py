"""The HTML report of ktextures:segment (OUTPUT_HTML; the CLI's --html: tests/cli/test_html_report_cli.py), on the
bundled sample: the file exists, parses, names every class, its images decode to non-empty PNGs, the percentages
sum to 100, and the output is an HTML output (so it shows in the Processing Results Viewer)."""
import base64
import re
import uuid
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import SAMPLE
from html_pages import check_report, parse_page

gdal.UseExceptions()


def test_segment_html_report(provider, tmp_path):
    """The default bundled model (with textures) on the sample: one chip and one texture per class + chart."""
    import processing
    from qgis.core import QgsApplication
    alg = QgsApplication.processingRegistry().algorithmById("ktextures:segment")
    # declared as a file (QGIS 3.22's batch dialog fails on HTML outputs); the Results Viewer lists it anyway
    assert alg.outputDefinition("OUTPUT_HTML").type() == "outputFile"
    from processing.core.ProcessingResults import resultsList
    names = ["forest", "field", "water", "town", "meadow", "bare"]
    out = tmp_path / "report.html"
    res = processing.run("ktextures:segment", {"INPUT": str(SAMPLE), "OUTPUT_RASTER": str(tmp_path / "c.tif"),
                                               "OUTPUT_VECTOR": "", "CLASS_NAMES": ",".join(names),
                                               "OUTPUT_HTML": str(out)})
    assert res["OUTPUT_HTML"] == str(out) and out.exists()
    assert resultsList.getResults()[-1].filename == str(out)
    page = check_report(out, names)
    assert len(page.images) == 2 * len(names) + 1
    text = out.read_text(encoding="utf-8")
    assert "MIN_SEGMENT_PX" in text and "Sentinel-2" in text
    counts = np.bincount(gdal.Open(str(tmp_path / "c.tif")).ReadAsArray().ravel(), minlength=7)[1:]
    assert [int(r[5].replace(",", "")) for r in page.rows] == counts.tolist()


def test_segment_html_refuses_input(provider, tmp_path):
    """OUTPUT_HTML goes through the output-path check: it may not be the input, and must be .html."""
    import processing
    from qgis.core import QgsProcessingException
    with pytest.raises(QgsProcessingException, match="OUTPUT_HTML"):
        processing.run("ktextures:segment", {"INPUT": str(SAMPLE), "OUTPUT_RASTER": str(tmp_path / "c.tif"),
                                             "OUTPUT_VECTOR": "", "OUTPUT_HTML": str(SAMPLE)})
    assert not (tmp_path / "c.tif").exists()


def test_simulation_opens_in_true_colour(provider, tmp_path):
    """The simulated image has a default style (.qml): multiband colour on the bands described red, green,
    blue, each stretched between its 2 and 98 % cumulative cut."""
    import processing
    from qgis.core import QgsRasterLayer
    sim = tmp_path / "s.tif"
    processing.run("ktextures:segment", {"INPUT": str(SAMPLE), "OUTPUT_RASTER": str(tmp_path / "c.tif"),
                                         "OUTPUT_VECTOR": "", "OUTPUT_SIMULATION": str(sim)})
    assert (tmp_path / "s.qml").exists()
    ds = gdal.Open(str(sim))
    desc = [ds.GetRasterBand(i + 1).GetDescription() for i in range(ds.RasterCount)]
    ds = None
    layer = QgsRasterLayer(str(sim), "sim", "gdal")
    r = layer.renderer()
    assert r.type() == "multibandcolor"
    bands = (r.redBand(), r.greenBand(), r.blueBand())
    assert [desc[b - 1] for b in bands] == ["red", "green", "blue"]
    enh = (r.redContrastEnhancement(), r.greenContrastEnhancement(), r.blueContrastEnhancement())
    for band, ce in zip(bands, enh):
        lo, hi = layer.dataProvider().cumulativeCut(band, 0.02, 0.98, layer.extent(), 250000)
        assert (ce.minimumValue(), ce.maximumValue()) == pytest.approx((lo, hi), rel=1e-4)
        assert lo < hi


def test_log_area_table_keeps_columns(provider, tmp_path):
    """The per-class table goes to the log as console text (monospace) with no-break spaces, so an HTML log
    does not collapse its columns: every line has the same width and the numbers end in one column."""
    import processing
    from qgis.core import QgsProcessingFeedback

    class Recorder(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.console = []

        def pushConsoleInfo(self, info):  # noqa: N802
            self.console.append(info)

    fb = Recorder()
    processing.run("ktextures:segment", {"INPUT": str(SAMPLE), "OUTPUT_RASTER": str(tmp_path / "c.tif"),
                                         "OUTPUT_VECTOR": ""}, feedback=fb)
    table = [t for t in fb.console if "area" in t]
    assert len(table) == 1
    lines = table[0].split("\n")
    assert len(lines) == 7 and " " not in table[0]
    assert len({len(line) for line in lines}) == 1
    assert all(re.search(r"\d\.\d\d$", line) for line in lines[1:])


def _png_array(src):
    m = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", src)
    name = f"/vsimem/{uuid.uuid4().hex}.png"
    gdal.FileFromMemBuffer(name, base64.b64decode(m.group(1)))
    try:
        ds = gdal.Open(name)
        a = ds.ReadAsArray()
        ds = None
    finally:
        gdal.Unlink(name)
    return a


def test_report_of_temporary_outputs(provider):
    """With temporary outputs (the dialog's default) the report names the layer, not a /tmp path that goes away;
    its time is the one the log gives; MODEL_FILE is not listed when not given; each chip outlines its class."""
    import processing
    from qgis.core import QgsProcessingFeedback

    from ktextures_plugin.core.segment.html_report import OUTLINE_RGB

    class Log(QgsProcessingFeedback):
        lines = []

        def pushInfo(self, info):  # noqa: N802
            self.lines.append(info)

    fb = Log()
    res = processing.run("ktextures:segment", {"INPUT": str(SAMPLE), "OUTPUT_RASTER": "TEMPORARY_OUTPUT",
                                               "OUTPUT_VECTOR": "TEMPORARY_OUTPUT",
                                               "OUTPUT_HTML": "TEMPORARY_OUTPUT"}, feedback=fb)
    text = Path(res["OUTPUT_HTML"]).read_text(encoding="utf-8")
    assert f"temporary layer &#x27;Classes ({SAMPLE.stem})&#x27;" in text and res["OUTPUT_RASTER"] not in text
    seconds = re.search(r"Segmenting and polygonizing: ([0-9.]+) s", text).group(1)
    assert f"Segmented and polygonized in {seconds} s." in fb.lines
    assert "<th>MODEL_FILE</th>" not in text and "<th>MODEL</th>" in text
    page = parse_page(res["OUTPUT_HTML"])
    chips = [im for im in page.images if im.get("alt", "").startswith("true colour of")]
    assert len(chips) == res["NUM_CLASSES"]
    lines = []
    for im in chips:  # the yellow line around the class's pixels (none where the class fills the whole chip)
        a = _png_array(im["src"])
        lines.append(np.all(a == np.array(OUTLINE_RGB, np.uint8)[:, None, None], axis=0).mean())
    assert max(lines) < 0.5 and sum(v > 0 for v in lines) >= len(lines) // 2, lines
