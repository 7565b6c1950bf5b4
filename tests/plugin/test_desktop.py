"""What the desktop user meets after a run, through QGIS's own code paths headless: the batch dialog
(processing.gui.BatchAlgorithmDialog, rows filled as the user fills them) with the HTML report on, the names of
the loaded layers, and the Results Viewer entries."""
import shutil
import time

import pytest

from conftest import SAMPLE

NOT_GENERATED = "not correctly generated"


@pytest.fixture
def two_inputs(tmp_path):
    paths = []
    for name in ("scene_a", "scene_b"):
        p = tmp_path / f"{name}.tif"
        shutil.copy(SAMPLE, p)
        paths.append(str(p))
    return paths


def _fill_batch(dlg, rows):
    """Put ``rows`` (one {parameter: value} per row; destinations by text) into the batch table."""
    from processing.tools import dataobjects

    panel = dlg.mainWidget()
    while panel.batchRowCount() < len(rows):
        panel.addRow()
    ctx = dataobjects.createContext()
    alg = dlg.algorithm()
    for r, values in enumerate(rows):
        for pid, value in values.items():
            col = panel.parameter_to_column[pid]
            if alg.parameterDefinition(pid).isDestination():
                panel.tblParameters.cellWidget(r + 1, col).setValue(value)
            else:
                panel.wrappers[r][col].setParameterValue(value, ctx)


def test_batch_of_two_layers_with_the_html_report(provider, two_inputs, tiny_models):
    """QGIS 3.22's batch dialog: no Python error (HTML output), no "not correctly generated" line (empty
    optional outputs), one Results Viewer entry per row, and layer names that carry their input."""
    from processing.core.ProcessingResults import resultsList
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from qgis.core import QgsApplication, QgsProject
    from qgis.PyQt.QtWidgets import QTextEdit

    dlg = BatchAlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById("ktextures:segment"))
    dlg.mainWidget().checkLoadLayersOnCompletion.setChecked(True)
    _fill_batch(dlg, [{"INPUT": p, "MODEL_FILE": tiny_models["bin4"], "OUTPUT_RASTER": "TEMPORARY_OUTPUT",
                       "OUTPUT_VECTOR": "TEMPORARY_OUTPUT", "OUTPUT_HTML": "TEMPORARY_OUTPUT"} for p in two_inputs])
    before = len(resultsList.getResults())
    try:
        dlg.runAlgorithm()  # QGIS 3.22 raised TypeError (ProcessingResults.addResult() ... 'timestamp') here
        log = "\n".join(w.toPlainText() for w in dlg.findChildren(QTextEdit))
        assert "Batch execution completed" in log and NOT_GENERATED not in log, log[-2000:]
        pages = [r.name for r in resultsList.getResults()[before:] if r.filename.endswith(".html")]
        assert [p for p in pages if "k-textures report" in p] == ["k-textures report (scene_a)",
                                                                  "k-textures report (scene_b)"], pages
        names = sorted(lyr.name() for lyr in QgsProject.instance().mapLayers().values())
        assert names == ["Class polygons (scene_a)", "Class polygons (scene_b)", "Classes (scene_a)",
                         "Classes (scene_b)"]
    finally:
        QgsProject.instance().removeAllMapLayers()
        dlg.deleteLater()


def test_html_output_is_declared_as_a_file(provider):
    """The declaration that keeps the batch dialog off its broken HTML branch (segment and novelty)."""
    from qgis.core import QgsApplication, QgsProcessingOutputFile, QgsProcessingOutputHtml

    for alg_id in ("ktextures:segment", "ktextures:novelty"):
        alg = QgsApplication.processingRegistry().algorithmById(alg_id)
        out = alg.outputDefinition("OUTPUT_HTML")
        assert isinstance(out, QgsProcessingOutputFile) and not isinstance(out, QgsProcessingOutputHtml)
        assert not alg.hasHtmlOutputs()


def _tree_names():
    from qgis.core import QgsProject
    return [n.name() for n in QgsProject.instance().layerTreeRoot().children()]


def test_loaded_results_read_together(provider, tmp_path):
    """Loaded on completion: simulation at the bottom, class raster (opaque) above it, polygons as outlines on
    top; a later sample run's points above all, class-coloured dots on a white halo."""
    import processing
    from qgis.core import QgsProject, QgsRasterLayer

    QgsProject.instance().removeAllMapLayers()
    try:
        res = processing.runAndLoadResults("ktextures:segment", {
            "INPUT": str(SAMPLE), "OUTPUT_RASTER": "TEMPORARY_OUTPUT", "OUTPUT_VECTOR": "TEMPORARY_OUTPUT",
            "OUTPUT_SIMULATION": "TEMPORARY_OUTPUT"})
        tag = SAMPLE.stem
        assert _tree_names() == [f"Class polygons ({tag})", f"Classes ({tag})",
                                 f"Simulated image (textures of the classes) ({tag})"]
        layers = {lyr.name(): lyr for lyr in QgsProject.instance().mapLayers().values()}
        classes, polygons = layers[f"Classes ({tag})"], layers[f"Class polygons ({tag})"]
        assert classes.renderer().type() == "paletted" and classes.renderer().opacity() == 1.0
        assert polygons.opacity() == 1.0
        cats = polygons.renderer().categories()
        for cat in cats:
            casing, line = cat.symbol().symbolLayer(0), cat.symbol().symbolLayer(1)
            assert line.fillColor().alpha() == 0 and casing.fillColor().alpha() == 0  # outlines only
            assert line.strokeColor().alpha() == 255 and casing.strokeWidth() > line.strokeWidth()
        sim = layers[f"Simulated image (textures of the classes) ({tag})"]
        assert isinstance(sim, QgsRasterLayer) and sim.renderer().type() == "multibandcolor"
        processing.runAndLoadResults("ktextures:sample", {"INPUT": res["OUTPUT_RASTER"], "POINTS_PER_CLASS": 3,
                                                          "OUTPUT_POINTS": "TEMPORARY_OUTPUT",
                                                          "OUTPUT_SUMMARY": None})
        assert _tree_names()[0] == f"Sample points ({tag})"  # the image the classes came from
        points = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name().startswith("Sample")][0]
        cats = points.renderer().categories()  # keep the list: the symbols belong to it
        sym = cats[0].symbol()
        assert sym.symbolLayerCount() == 2 and sym.symbolLayer(0).color().name() == "#ffffff"  # the halo
        assert sym.symbolLayer(0).size() > sym.symbolLayer(1).size()
        poly_cats = polygons.renderer().categories()
        assert sym.color().name() == poly_cats[0].symbol().color().name()  # the class colour
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_bundled_sample_opens_in_true_colour():
    from qgis.core import QgsRasterLayer

    layer = QgsRasterLayer(str(SAMPLE), "sample", "gdal")  # keep the layer: the renderer belongs to it
    r = layer.renderer()
    assert r.type() == "multibandcolor" and (r.redBand(), r.greenBand(), r.blueBand()) == (3, 2, 1)
    for ce in (r.redContrastEnhancement(), r.greenContrastEnhancement(), r.blueContrastEnhancement()):
        assert 0 < ce.minimumValue() < ce.maximumValue() < 10000


def test_dialog_defaults_write_the_report_and_the_table(provider, qgis_iface, monkeypatch):
    """A fresh segment dialog: the HTML report and the CSV are on (temporary files), like the layers."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication, QgsProcessingOutputLayerDefinition, QgsProject, QgsRasterLayer
    from qgis.gui import QgsBrowserGuiModel

    browser = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)  # pytest-qgis's has none

    layer = QgsRasterLayer(str(SAMPLE), "s2", "gdal")
    QgsProject.instance().addMapLayer(layer)
    dlg = AlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById("ktextures:segment"))
    try:
        params = dlg.createProcessingParameters()
        for pid in ("OUTPUT_HTML", "OUTPUT_REPORT", "OUTPUT_RASTER", "OUTPUT_VECTOR"):
            value = params.get(pid)
            if isinstance(value, QgsProcessingOutputLayerDefinition):
                value = value.sink.staticValue()
            assert value == "TEMPORARY_OUTPUT", (pid, value)
        assert not params.get("OUTPUT_SIMULATION")
    finally:
        dlg.deleteLater()
        QgsProject.instance().removeAllMapLayers()


def test_background_task_keeps_the_results(provider, tiny_models, tmp_path):
    """The dialog runs algorithms in a QgsProcessingAlgRunnerTask; postProcessAlgorithm (which shows the HTML page)
    must not replace the run's results."""
    from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext, QgsProcessingFeedback
    from qgis.PyQt.QtCore import QCoreApplication

    alg = QgsApplication.processingRegistry().createAlgorithmById("ktextures:segment")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    params = {"INPUT": str(SAMPLE), "MODEL_FILE": tiny_models["bin4"], "OUTPUT_RASTER": str(tmp_path / "c.tif"),
              "OUTPUT_HTML": str(tmp_path / "r.html")}
    task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
    got = []
    task.executed.connect(lambda ok, results: got.append((ok, dict(results))))
    QgsApplication.taskManager().addTask(task)
    for _ in range(600):
        if got:
            break
        QCoreApplication.processEvents()
        time.sleep(0.05)
    assert got and got[0][0], got
    assert got[0][1]["OUTPUT_RASTER"] == str(tmp_path / "c.tif") and got[0][1]["NUM_CLASSES"] == 4


def test_fit_dialog_shows_the_torch_notice_in_front(provider, qgis_iface, monkeypatch):
    """Without PyTorch, the fit dialog opens (no error dialog) with the install notice in its own message bar,
    made through the toolbox's code path (createCustomParametersWidget, via processing.createAlgorithmDialog),
    with no application-wide event filter (one crashed QGIS 3.22 right after the zip was installed)."""
    import processing
    from qgis.core import QgsApplication
    from qgis.gui import QgsBrowserGuiModel
    from qgis.PyQt import sip
    from qgis.PyQt.QtCore import QCoreApplication
    from qgis.PyQt.QtWidgets import QPushButton

    from ktextures_plugin import installer, installer_gui

    browser = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    monkeypatch.setitem(installer.MODULES, "torch", "ktextures_no_such_module")  # PyTorch "missing"
    inst = installer_gui.Installer(qgis_iface)
    monkeypatch.setattr(installer_gui, "CURRENT", [inst])  # the plugin is loaded in a desktop
    alg = QgsApplication.processingRegistry().createAlgorithmById("ktextures:fit")
    assert alg.canExecute()[0]  # the dialog opens
    dlg = processing.createAlgorithmDialog("ktextures:fit", {})
    try:
        dlg.show()
        QCoreApplication.processEvents()
        item = dlg.messageBar().currentItem()
        assert item is not None and "torch is not installed" in item.text()
        assert [b.text() for b in item.findChildren(QPushButton)] == ["Install"]
        started = []
        monkeypatch.setattr(inst, "start", lambda f, dialog_bar=None: started.append((f, dialog_bar)))  # no pip
        button = item.findChildren(QPushButton)[0]
        button.click()
        # the button (and its slot) outlive the click: the notice removed inside the button's own slot freed the
        # running slot, and QGIS 3.22 crashed on the click in the fit dialog
        assert started == [("torch", dlg.messageBar())] and not sip.isdeleted(button)  # progress: in the dialog
        for _ in range(3):
            QCoreApplication.processEvents()
        assert dlg.messageBar().currentItem() is None  # the notice went once the click was over
    finally:
        dlg.close()
        dlg.deleteLater()


def test_no_application_wide_event_filter():
    """The plugin installs no Python event filter on the application: one (watching for the fit dialog) made
    QGIS 3.22 segfault right after Plugins > Install from ZIP (sip converting the objects of every event)."""
    from pathlib import Path

    import ktextures_plugin
    code = Path(ktextures_plugin.__file__).parent.rglob("*.py")
    hits = [str(p) for p in code if "installEventFilter" in p.read_text()]
    assert hits == []
