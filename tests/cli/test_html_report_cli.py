"""``segment --html``: the command line writes the same per-class HTML report as ktextures:segment."""
import os
import subprocess
import sys

from conftest import ROOT, SAMPLE
from html_pages import check_report


def test_cli_html(tmp_path):
    out = tmp_path / "r.html"
    cp = subprocess.run([sys.executable, "-m", "ktextures_plugin", "segment", str(SAMPLE), "--out",
                         str(tmp_path / "c.tif"), "--html", str(out), "--quiet"],
                        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert cp.returncode == 0, cp.stderr
    check_report(out, [f"texture {i}" for i in range(1, 7)])
    bad = subprocess.run([sys.executable, "-m", "ktextures_plugin", "segment", str(SAMPLE), "--out",
                          str(tmp_path / "d.tif"), "--html", str(tmp_path / "r.txt"), "--quiet"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "--html" in bad.stderr and not os.path.exists(tmp_path / "d.tif")
