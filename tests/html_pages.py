"""The per-class HTML report as a reader checks it (ktextures:segment OUTPUT_HTML, ``segment --html``): parsed
with the standard library's HTML parser, its images decoded by GDAL."""
import base64
import html.parser
import re
import uuid
from pathlib import Path

import pytest
from osgeo import gdal


class Page(html.parser.HTMLParser):
    """Collects the images and the cells of the class table."""

    def __init__(self):
        super().__init__()
        self.images, self.rows, self._row, self._cell, self._in_classes = [], [], None, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        elif tag == "table" and a.get("class") == "classes":
            self._in_classes = True
        elif tag == "tr" and self._in_classes:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows.append(self._row)
            self._row = None
        elif tag == "table":
            self._in_classes = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse_page(path) -> Page:
    """The report at ``path``, parsed."""
    page = Page()
    page.feed(Path(path).read_text(encoding="utf-8"))
    page.close()
    return page


def png_size(src):
    """(width, height, bands) of a base64 PNG data URI, decoded by GDAL."""
    m = re.fullmatch(r"data:image/png;base64,([A-Za-z0-9+/=]+)", src)
    assert m, src[:60]
    name = f"/vsimem/{uuid.uuid4().hex}.png"
    gdal.FileFromMemBuffer(name, base64.b64decode(m.group(1)))
    try:
        ds = gdal.Open(name)
        size = (ds.RasterXSize, ds.RasterYSize, ds.RasterCount)
        assert ds.ReadAsArray().std() > 0  # not a blank image
        ds = None
    finally:
        gdal.Unlink(name)
    return size


def check_report(path, names) -> Page:
    """The report at ``path`` names the classes ``names`` in class order, its percentages sum to 100 and every
    image decodes to a non-blank PNG."""
    page = parse_page(path)
    assert [r[2] for r in page.rows] == names  # every class, in class order
    assert sum(float(r[7]) for r in page.rows) == pytest.approx(100, abs=0.05)
    sizes = [png_size(im["src"]) for im in page.images]
    assert all(w > 0 and h > 0 for w, h, _ in sizes)
    return page
