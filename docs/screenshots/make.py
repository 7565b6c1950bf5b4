"""Screenshots for the README, taken in a real QGIS desktop window (run by ``./build.sh screenshots`` under
Xvfb): the map after ``ktextures:segment`` and ``ktextures:sample`` on the bundled sample, the HTML report, and
the Processing Toolbox. Run inside QGIS (``qgis --code docs/screenshots/make.py``); writes the PNGs next to
this file and quits. ``KTEXTURES_ROOT``: the checkout (``--code`` runs the file without ``__file__``)."""
import os
import traceback

from qgis.core import QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QSize, QTimer, QUrl
from qgis.PyQt.QtWidgets import QDockWidget, QLineEdit
from qgis.utils import iface

ROOT = os.environ["KTEXTURES_ROOT"]
HERE = os.path.join(ROOT, "docs", "screenshots")
SAMPLE = os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif")
STATE = {}


def later(ms, fn):
    def run():
        try:
            fn()
        except Exception:  # noqa: BLE001 - a failed step must end QGIS, not leave it open under Xvfb
            traceback.print_exc()
            finish(1)
    QTimer.singleShot(ms, run)


def finish(rc=0):
    QgsProject.instance().setDirty(False)
    print("SCREENSHOTS DONE" if rc == 0 else "SCREENSHOTS FAILED", flush=True)
    os._exit(rc)


def grab(widget, name):
    path = os.path.join(HERE, name)
    assert widget.grab().save(path, quality=85), path
    print("wrote", path, flush=True)


def step_segment():
    import processing

    iface.mainWindow().resize(QSize(1400, 900))
    image = QgsRasterLayer(SAMPLE, "s2_sample", "gdal")
    QgsProject.instance().addMapLayer(image)
    res = processing.runAndLoadResults("ktextures:segment", {
        "INPUT": SAMPLE, "OUTPUT_RASTER": "TEMPORARY_OUTPUT", "OUTPUT_VECTOR": "TEMPORARY_OUTPUT",
        "OUTPUT_HTML": "TEMPORARY_OUTPUT"})
    STATE["segment"] = res
    processing.runAndLoadResults("ktextures:sample", {
        "INPUT": res["OUTPUT_RASTER"], "POINTS_PER_CLASS": 8, "OUTPUT_POINTS": "TEMPORARY_OUTPUT",
        "OUTPUT_SUMMARY": None})
    iface.mapCanvas().setExtent(image.extent())
    iface.mapCanvas().refreshAllLayers()
    later(4000, step_map)


def step_map():
    grab(iface.mainWindow(), "map.png")
    # the same map with the class raster hidden: the polygons' outlines over the true-colour image
    root = QgsProject.instance().layerTreeRoot()
    for node in root.findLayers():
        if node.name().startswith("Classes"):
            node.setItemVisibilityChecked(False)
    iface.mapCanvas().refreshAllLayers()
    later(3000, step_map_image)


def step_map_image():
    grab(iface.mapCanvas(), "map_outlines.jpg")
    dock = iface.mainWindow().findChild(QDockWidget, "ProcessingToolbox")
    dock.show()
    dock.raise_()
    search = dock.findChild(QLineEdit)
    if search is not None:
        search.setText("k-textures")
    later(1500, lambda: (grab(dock, "toolbox.png"), step_report()))


def step_report():
    from qgis.PyQt.QtWebKitWidgets import QWebView

    view = QWebView()
    view.resize(1100, 1500)
    STATE["view"] = view

    def loaded(ok):
        later(500, lambda: (grab(view, "report.png"), finish(0)))
    view.loadFinished.connect(loaded)
    view.load(QUrl.fromLocalFile(STATE["segment"]["OUTPUT_HTML"]))
    view.show()


later(3000, step_segment)
later(120000, lambda: finish(1))  # never hang
