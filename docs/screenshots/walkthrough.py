"""A new user's day in a real QGIS desktop window, driven from inside the QGIS process (``./build.sh walkthrough``
runs ``qgis --code docs/screenshots/walkthrough.py`` under Xvfb with a fresh profile and Debian's own Python, so
onnxruntime and PyTorch are really missing): install the plugin zip (pyplugin_installer's "Install from ZIP"),
install onnxruntime and PyTorch with the "Install" buttons of the plugin's notices, fit a model on the bundled
sample in the fit dialog, segment two layers in the batch dialog, sample, run novelty and a segment -> sample
graphical model, each through QGIS's own dialog code (the Run button).

What the user would see is recorded in ``walkthrough.log``: every Log Messages line (level and tab), every message
bar item (the main window's and the dialogs'), each algorithm dialog's log with its red (error) and orange
(warning) lines, and any other dialog that pops up (QMessageBox, Python error, ...; grabbed and closed). After
each step a screenshot of the window (map canvas + Layers panel) goes to ``KTEXTURES_WORK``/raw (``shrink.py``
makes the README's small copies); the last line of the log says ``WALKTHROUGH DONE: <n> problem(s)``.

Environment: ``KTEXTURES_ROOT`` (the checkout), ``KTEXTURES_ZIP`` (dist/ktextures.zip), ``KTEXTURES_WORK`` (a
folder for the model, the second layer, the log and the screenshots), ``KTEXTURES_FIT_STEPS`` (training steps
of the fit; empty: the algorithm's default).
"""
import os
import re
import time
import traceback

from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QSize, QTimer
from qgis.PyQt.QtWidgets import QApplication, QDialog, QMessageBox, QPushButton, QTextEdit
from qgis.utils import iface

ROOT = os.environ["KTEXTURES_ROOT"]
ZIP = os.environ["KTEXTURES_ZIP"]
WORK = os.environ["KTEXTURES_WORK"]
FIT_STEPS = os.environ.get("KTEXTURES_FIT_STEPS", "")
SAMPLE = os.path.join(ROOT, "data", "s2_brandenburg_sample_b2b3b4b8_10m.tif")
LEVELS = {Qgis.Info: "info", Qgis.Warning: "WARNING", Qgis.Critical: "CRITICAL", Qgis.Success: "success"}
STATE = {"problems": [], "mine": set(), "bars": set(), "t0": time.time()}
LOG = open(os.path.join(WORK, "walkthrough.log"), "w", encoding="utf-8")  # noqa: SIM115 - open for the whole run


def log(line: str):
    LOG.write(f"{time.time() - STATE['t0']:7.1f}s {line}\n")
    LOG.flush()
    print(line, flush=True)


def problem(what: str):
    STATE["problems"].append(what)
    log("PROBLEM " + what)


# ------------------------------------------------------------------------------------------ what the user sees
def on_log_message(message, tag, level):
    if tag in ("Qt", "OGR") and level != Qgis.Critical:
        return
    log(f"LOG [{tag}] {LEVELS.get(level, level)}: {message}")
    if level == Qgis.Critical:
        problem(f"red line in Log Messages [{tag}]: {message}")


def watch_bar(bar, where: str):
    if id(bar) in STATE["bars"]:
        return
    STATE["bars"].add(id(bar))

    def added(item):
        if not hasattr(item, "level"):  # a plain widget (a progress bar ...)
            return log(f"BAR [{where}] widget {type(item).__name__}")
        text = re.sub(r"<[^>]+>", "", f"{item.title()}: {item.text()}")
        log(f"BAR [{where}] {LEVELS.get(item.level(), item.level())}: {text}")
        if item.level() == Qgis.Critical:
            problem(f"red message bar item ({where}): {text}")
    bar.widgetAdded.connect(added)


def dialog_log(dlg):
    """(plain text, red lines, orange lines) of an algorithm dialog's log."""
    edits = [e for e in dlg.findChildren(QTextEdit) if e.objectName() == "txtLog"] or dlg.findChildren(QTextEdit)
    html = "\n".join(e.toHtml() for e in edits)
    plain = "\n".join(e.toPlainText() for e in edits)

    def lines(colour):
        return [re.sub(r"<[^>]+>", "", m) for m in re.findall(
            r"<span style=\"[^\"]*color:%s[^\"]*\">(.*?)</span>" % colour, html, flags=re.S)]
    return plain, lines("#ff0000"), lines("#b85a20")


def check_dialog_log(dlg, what: str):
    plain, red, orange = dialog_log(dlg)
    with open(os.path.join(WORK, f"dialog-{what}.txt"), "w", encoding="utf-8") as f:
        f.write(plain)
    for line in orange:
        log(f"DIALOG LOG [{what}] warning: {line}")
    for line in red:
        problem(f"red line in the {what} dialog's log: {line}")
    log(f"DIALOG LOG [{what}]: {len(plain.splitlines())} lines, {len(red)} red, {len(orange)} orange")


def sweep_dialogs():
    """Any dialog the walk did not open itself (error dialogs, message boxes): grab, record, close."""
    for w in QApplication.topLevelWidgets():
        if not w.isVisible() or id(w) in STATE["mine"] or w is iface.mainWindow():
            continue
        if isinstance(w, (QMessageBox, QDialog)):
            STATE["popup"] = STATE.get("popup", 0) + 1
            name = f"popup_{STATE['popup']}.png"
            w.grab().save(os.path.join(WORK, name))
            text = w.text() if isinstance(w, QMessageBox) else " ".join(
                e.toPlainText() for e in w.findChildren(QTextEdit))[:2000]
            problem(f"a {type(w).__name__} '{w.windowTitle()}' popped up ({name}): {text}")
            w.close()


# ------------------------------------------------------------------------------------------ screenshots
def shot(name: str, widget=None):
    """``widget`` (default the main window) as a PNG in ``KTEXTURES_WORK``/raw; ``shrink.py`` makes the small
    copies after QGIS has quit (Pillow's quantizer run inside the QGIS process corrupted its memory: QGIS 3.22
    crashed on the next click of a button)."""
    widget = widget or iface.mainWindow()
    os.makedirs(os.path.join(WORK, "raw"), exist_ok=True)
    path = os.path.join(WORK, "raw", name + ".png")
    widget.grab().save(path)
    log(f"SHOT {path}")


def layers_summary(step: str):
    """The Layers panel top to bottom: name, visible, opacity, renderer."""
    for node in QgsProject.instance().layerTreeRoot().findLayers():
        lyr = node.layer()
        if lyr is None:
            continue
        opacity = lyr.opacity() if hasattr(lyr, "opacity") else ""
        if isinstance(lyr, QgsRasterLayer) and lyr.renderer() is not None:
            kind, opacity = lyr.renderer().type(), lyr.renderer().opacity()
        else:
            kind = lyr.renderer().type() if lyr.renderer() is not None else ""
        log(f"LAYER [{step}] {lyr.name()!r} visible={node.isVisible()} opacity={opacity:.2f} renderer={kind}")


# ------------------------------------------------------------------------------------------ the driver
class Wait:
    """Yielded by a step: poll ``cond`` every 0.5 s until true, at most ``seconds``."""

    def __init__(self, cond, seconds: float, what: str):
        self.cond, self.seconds, self.what = cond, seconds, what


def drive(gen):
    def advance():
        try:
            what = next(gen)
        except StopIteration:
            return finish()
        except Exception:  # noqa: BLE001 - a failed step ends QGIS with the trace in the log
            problem("the walk-through script failed: " + traceback.format_exc())
            return finish()
        if isinstance(what, Wait):
            deadline = time.time() + what.seconds

            def poll():
                sweep_dialogs()
                try:
                    ok = what.cond()
                except Exception:  # noqa: BLE001
                    problem(f"waiting for {what.what}: " + traceback.format_exc())
                    return finish()
                if ok:
                    return advance()
                if time.time() > deadline:
                    problem(f"timed out after {what.seconds:.0f} s waiting for {what.what}")
                    return finish()
                QTimer.singleShot(500, poll)
            QTimer.singleShot(500, poll)
        else:
            def later():
                sweep_dialogs()
                advance()
            QTimer.singleShot(int(what), later)
    advance()


def finish():
    sweep_dialogs()
    n = len(STATE["problems"])
    log(f"WALKTHROUGH DONE: {n} problem(s)")
    for p in STATE["problems"]:
        log("  - " + p.splitlines()[0][:400])
    LOG.close()
    QgsProject.instance().setDirty(False)
    os._exit(0)


def click_install(bar, feature: str) -> bool:
    """Click the "Install" button of the notice of ``feature`` in ``bar``; False when there is none."""
    for item in bar.items():
        if feature in item.text():
            for b in item.findChildren(QPushButton):
                if b.text() == "Install":
                    log(f"CLICK Install ({feature})")
                    QTimer.singleShot(0, b.click)  # from the event loop, as a user's click
                    return True
    return False


def plugin():
    import qgis.utils
    return qgis.utils.plugins.get("ktextures")


def installed(feature: str) -> bool:
    from ktextures.ktextures_plugin import installer_gui
    p = plugin()
    return feature not in p.installer.tasks and installer_gui.available(feature)


def open_dialog(alg_id: str, params: dict):
    import processing
    dlg = processing.createAlgorithmDialog(alg_id, params)
    STATE["mine"].add(id(dlg))
    watch_bar(dlg.messageBar(), alg_id)
    done = {}
    dlg.algorithmFinished.connect(lambda ok, res: done.update(ok=ok, res=res))
    dlg.show()
    return dlg, done


def run_dialog(dlg, done, what: str, seconds: float):
    """Click Run; yields until the run ends (finished signal, or the log's end line)."""
    log(f"RUN {what}")
    dlg.runButton().click()

    def ended():
        plain = dialog_log(dlg)[0]
        return "ok" in done or "Execution failed" in plain
    yield Wait(ended, seconds, what)
    yield 3000  # the layers load, the canvas renders
    check_dialog_log(dlg, what)
    if not done.get("ok"):
        problem(f"{what} did not finish")


def walk():
    import processing
    from osgeo import gdal

    win = iface.mainWindow()
    win.resize(QSize(1280, 800))
    watch_bar(iface.messageBar(), "main window")
    QgsApplication.messageLog().messageReceived.connect(on_log_message)
    yield 3000
    log(f"QGIS {Qgis.QGIS_VERSION}, profile {QgsApplication.qgisSettingsDirPath()}")

    # 1. Plugins > Manage and Install Plugins > Install from ZIP
    import pyplugin_installer
    log(f"STEP install the zip {ZIP}")
    pyplugin_installer.instance().installFromZipFile(ZIP)
    yield 2000
    if plugin() is None:
        problem("the plugin is not loaded after installing the zip")
        return
    image = QgsRasterLayer(SAMPLE, "s2_sample", "gdal")
    QgsProject.instance().addMapLayer(image)
    iface.mapCanvas().setExtent(image.extent())
    yield 2000
    shot("01_zip_installed")

    # 2. the onnxruntime notice's Install button
    log("STEP install onnxruntime from the notice")
    if not click_install(iface.messageBar(), "onnxruntime"):
        problem("no onnxruntime notice with an Install button in the main window")
    yield Wait(lambda: installed("onnxruntime"), 900, "onnxruntime installed")
    yield 1500
    shot("02_onnxruntime_installed")

    # 3. the fit dialog: the PyTorch notice in it, Install, then Run
    log("STEP open the fit dialog")
    model = os.path.join(WORK, "s2_sample_k6.onnx")
    params = {"INPUT": image.id(), "OUTPUT_MODEL": model}
    if FIT_STEPS:
        params["STEPS"] = int(FIT_STEPS)
    dlg, done = open_dialog("ktextures:fit", params)
    yield 2500
    shot("03_fit_torch_notice", dlg)
    if not click_install(dlg.messageBar(), "torch"):
        problem("no PyTorch notice with an Install button in the fit dialog")
    yield Wait(lambda: installed("torch"), 3000, "PyTorch installed")
    yield 2000
    shot("04_torch_installed", dlg)
    yield from run_dialog(dlg, done, "fit", 3600)
    shot("05_fit_done")
    layers_summary("fit")
    dlg.close()

    # 4. batch: segment two layers with the fitted model (a bundled one when the fit failed: the rest is still walked)
    log("STEP batch segment of two layers")
    model = model if os.path.isfile(model) else ""
    south = os.path.join(WORK, "s2_sample_south.tif")
    gdal.Translate(south, SAMPLE, srcWin=[0, 384, 512, 384])
    second = QgsRasterLayer(south, "s2_sample_south", "gdal")
    QgsProject.instance().addMapLayer(second)
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from processing.tools import dataobjects
    batch = BatchAlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById("ktextures:segment"),
                                 parent=win)
    STATE["mine"].add(id(batch))
    watch_bar(batch.messageBar(), "batch")
    panel = batch.mainWidget()
    panel.checkLoadLayersOnCompletion.setChecked(True)
    while panel.batchRowCount() < 2:
        panel.addRow()
    ctx = dataobjects.createContext()
    alg = batch.algorithm()
    for r, src in enumerate((SAMPLE, south)):
        for pid, value in {"INPUT": src, "MODEL_FILE": model, "OUTPUT_RASTER": "TEMPORARY_OUTPUT",
                           "OUTPUT_VECTOR": "TEMPORARY_OUTPUT", "OUTPUT_HTML": "TEMPORARY_OUTPUT",
                           "OUTPUT_REPORT": "TEMPORARY_OUTPUT"}.items():
            col = panel.parameter_to_column[pid]
            if alg.parameterDefinition(pid).isDestination():
                panel.tblParameters.cellWidget(r + 1, col).setValue(value)
            else:
                panel.wrappers[r][col].setParameterValue(value, ctx)
    batch.show()
    yield 1500
    shot("06_batch_dialog", batch)
    log("RUN batch segment")
    bdone = {}
    batch.algorithmFinished.connect(lambda ok, res: bdone.update(ok=ok))
    batch.runButton().click()
    yield Wait(lambda: "Batch execution completed" in dialog_log(batch)[0] or "ok" in bdone, 1800,
               "the batch to finish")
    yield 3000
    check_dialog_log(batch, "batch segment")
    shot("07_batch_done")
    layers_summary("batch")
    batch.close()

    # 5. sample the first class raster
    log("STEP sample")
    classes = [n.layer() for n in QgsProject.instance().layerTreeRoot().findLayers()
               if n.layer() is not None and n.layer().name().startswith("Classes (s2_sample)")]
    if not classes:
        problem("no 'Classes (s2_sample)' layer after the batch")
        return
    yield from dialog_step("ktextures:sample", {"INPUT": classes[0].id(), "IMAGE": image.id()}, "sample", 900,
                           "08_sample_done")

    # 6. novelty on the image
    log("STEP novelty")
    yield from dialog_step("ktextures:novelty", {"INPUT": image.id(), "MODEL_FILE": model or None}, "novelty", 1800,
                           "09_novelty_done")

    # 7. a segment -> sample graphical model, saved in the profile's models folder and run from the toolbox
    log("STEP segment -> sample model")
    model_id = save_model(model)
    yield from dialog_step(model_id, {"image": image.id()}, "segment -> sample model", 1800, "11_model_done",
                           before="10_model_dialog", summary="model")
    yield 1000
    del processing


def dialog_step(alg_id: str, params: dict, name: str, timeout_s: int, after: str, before: str = "",
                summary: str = ""):
    """Open the algorithm dialog of ``alg_id`` with ``params``, optionally grab it (``before``), run it (at most
    ``timeout_s`` seconds), grab the window (``after``), log the layer tree and close the dialog."""
    dlg, done = open_dialog(alg_id, params)
    yield 2000 if before else 1500
    if before:
        shot(before, dlg)
    yield from run_dialog(dlg, done, name, timeout_s)
    shot(after)
    layers_summary(summary or name)
    dlg.close()


def save_model(onnx: str) -> str:
    """A segment -> sample model as the modeler would save it (.model3 in the profile), loaded by the provider."""
    from qgis.core import (
        QgsProcessingDestinationParameter,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )
    from qgis.core import QgsProcessingModelChildParameterSource as Src

    reg = QgsApplication.processingRegistry()
    m = QgsProcessingModelAlgorithm("segment then sample", "k-textures walk-through")
    m.addModelParameter(QgsProcessingParameterRasterLayer("image", "Image"), QgsProcessingModelParameter("image"))
    wiring = (("ktextures:segment", "seg", {"INPUT": Src.fromModelParameter("image"),
                                            "MODEL_FILE": Src.fromStaticValue(onnx)}, ("OUTPUT_RASTER",)),
              ("ktextures:sample", "sample", {"INPUT": Src.fromChildOutput("seg", "OUTPUT_RASTER"),
                                              "IMAGE": Src.fromModelParameter("image")},
               ("OUTPUT_POINTS", "OUTPUT_SUMMARY")))
    for alg_id, cid, sources, outputs in wiring:
        child = QgsProcessingModelChildAlgorithm(alg_id)
        child.setChildId(cid)
        for p in reg.algorithmById(alg_id).parameterDefinitions():
            if p.name() in sources:
                child.addParameterSources(p.name(), [sources[p.name()]])
            elif not isinstance(p, QgsProcessingDestinationParameter):
                child.addParameterSources(p.name(), [Src.fromStaticValue(p.defaultValue())])
        outs = {}
        for name in outputs:  # named as the modeler names them: the output's description
            o = QgsProcessingModelOutput(f"{cid}_{name}", reg.algorithmById(alg_id).parameterDefinition(name)
                                         .description())
            o.setChildOutputName(name)
            o.setChildId(cid)
            outs[o.name()] = o
        child.setModelOutputs(outs)
        m.addChildAlgorithm(child)
    ok, errors = m.validate()
    if not ok:
        problem("the model does not validate: " + "; ".join(errors))
    folder = os.path.join(QgsApplication.qgisSettingsDirPath(), "processing", "models")
    os.makedirs(folder, exist_ok=True)
    m.toFile(os.path.join(folder, "segment_then_sample.model3"))
    reg.providerById("model").refreshAlgorithms()
    alg = next(a for a in reg.providerById("model").algorithms() if a.displayName() == "segment then sample")
    return alg.id()


QTimer.singleShot(3000, lambda: drive(walk()))
QTimer.singleShot(4 * 3600 * 1000, lambda: (problem("the walk-through took over 4 hours"), finish()))
