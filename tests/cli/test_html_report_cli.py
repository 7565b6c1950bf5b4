"""``segment --html``: the command line writes the same per-class HTML report as ktextures:segment."""
import base64
import html.parser
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from osgeo import gdal

from conftest import ROOT, SAMPLE


class _Page(html.parser.HTMLParser):
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


def _parse(path):
    page = _Page()
    page.feed(Path(path).read_text(encoding="utf-8"))
    page.close()
    return page


def _png_size(src):
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


def _check_report(path, names):
    page = _parse(path)
    assert [r[2] for r in page.rows] == names  # every class, in class order
    assert sum(float(r[7]) for r in page.rows) == pytest.approx(100, abs=0.05)
    sizes = [_png_size(im["src"]) for im in page.images]
    assert all(w > 0 and h > 0 for w, h, _ in sizes)
    return page


def test_cli_html(tmp_path):
    out = tmp_path / "r.html"
    cp = subprocess.run([sys.executable, "-m", "ktextures_plugin", "segment", str(SAMPLE), "--out",
                         str(tmp_path / "c.tif"), "--html", str(out), "--quiet"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    _check_report(out, [f"texture {i}" for i in range(1, 7)])
    bad = subprocess.run([sys.executable, "-m", "ktextures_plugin", "segment", str(SAMPLE), "--out",
                          str(tmp_path / "d.tif"), "--html", str(tmp_path / "r.txt"), "--quiet"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--html" in bad.stderr and not os.path.exists(tmp_path / "d.tif")
