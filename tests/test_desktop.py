"""What the desktop user meets after a run, through QGIS's own code paths headless: the batch dialog
(processing.gui.BatchAlgorithmDialog, rows filled as the user fills them) with the HTML report on, the names of
the loaded layers, and the Results Viewer entries."""
import shutil

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

    for alg_id in ("ktextures:segment",):
        alg = QgsApplication.processingRegistry().algorithmById(alg_id)
        out = alg.outputDefinition("OUTPUT_HTML")
        assert isinstance(out, QgsProcessingOutputFile) and not isinstance(out, QgsProcessingOutputHtml)
        assert not alg.hasHtmlOutputs()
