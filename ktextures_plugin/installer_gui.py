"""The QGIS side of the dependency installer: the message-bar notice with an "Install" button, the pip run
in a ``QgsTask`` with its output in the Log Messages panel (tab "k-textures"), and the plugin folder on
``sys.path``. The interpreter, the pins, the resolution check and the pip command lines are ``installer.py``.
"""
import importlib
from functools import partial

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt import sip
from qgis.PyQt.QtCore import QObject, QTimer, pyqtSignal
from qgis.PyQt.QtWidgets import QPushButton

from . import installer
from .core.errors import Canceled

LOG_TAG = "k-textures"
#: What each feature is needed for (shown in the notice).
PURPOSE = {"onnxruntime": "to segment rasters", "torch": "to fit a model"}
#: Download size of each feature, said when its install starts.
SIZE = {"onnxruntime": "about 25 MB", "torch": "about 200 MB"}


def deps_folder() -> str:
    """The plugin's package folder in the active QGIS profile."""
    return installer.target_dir(QgsApplication.qgisSettingsDirPath())


def add_deps_to_path() -> bool:
    """Put the plugin's package folder on ``sys.path`` (after QGIS's own); called at plugin load."""
    return installer.add_to_path(deps_folder())


def manual_hint(feature: str) -> str:
    """What to do when ``feature`` is missing: the notice, the menu, and the terminal command with this QGIS's
    Python and profile (``python3 -m ktextures_plugin install``)."""
    what = {"onnxruntime": "Install onnxruntime", "torch": "Install PyTorch"}[feature]
    try:
        python = installer.find_python()
    except installer.InstallError:
        python = "<QGIS's python>"
    cmd = installer.manual_command(feature, python, profile_dir=QgsApplication.qgisSettingsDirPath())
    return (f"{feature} is not installed in the Python that QGIS uses; it is needed {PURPOSE[feature]}. In QGIS: "
            f"click 'Install' in the k-textures notice, or Plugins > k-textures > {what} (into a folder of your "
            f"QGIS profile; no system package is changed). By hand, {cmd}; then restart QGIS. README.md, "
            "'Installing the dependencies'.")


#: Menu names and what each package is for, short.
TITLE = {"onnxruntime": ("onnxruntime", "segmenting"), "torch": ("PyTorch", "fitting")}


def menu_text(feature: str) -> str:
    """The menu entry of ``feature``: what is installed ("PyTorch 2.13.0 installed (fitting): reinstall") or
    what the entry does ("Install PyTorch (fitting)")."""
    from importlib import metadata

    name, use = TITLE[feature]
    if not available(feature):
        return f"Install {name} ({use})"
    try:
        version = metadata.version(installer.requirement_names(feature)[0])
    except metadata.PackageNotFoundError:
        version = ""
    return f"{name} {version} installed ({use}): reinstall".replace("  ", " ")


def available(feature: str) -> bool:
    """True when the modules of ``feature`` import (``installer.MODULES``: a name or a tuple of names)."""
    importlib.invalidate_caches()
    names = installer.MODULES[feature]
    try:
        for name in (names,) if isinstance(names, str) else names:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


class InstallTask(QgsTask):
    """Runs ``installer.install`` off the GUI thread; pip's output goes to the log line by line."""

    def __init__(self, feature: str, profile_dir: str):
        super().__init__(f"k-textures: installing {feature}", QgsTask.Flag.CanCancel)
        self.feature, self.profile_dir = feature, profile_dir
        self.error = None
        self.canceled = False
        self.target = None

    def run(self):
        try:
            self.target = installer.install(self.feature, self._log, self.isCanceled,
                                            profile_dir=self.profile_dir).target
        except Canceled:
            self.canceled = True
            return False
        except installer.InstallError as exc:
            self.error = str(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - anything else must reach the user, not the task manager
            self.error = f"Installing failed: {exc!r}"
            return False
        return True

    def _log(self, line: str):
        QgsMessageLog.logMessage(line, LOG_TAG, Qgis.MessageLevel.Info)


class Installer(QObject):
    """Shows notices and runs installs; ``request`` may be called from any thread (a queued signal)."""

    requested = pyqtSignal(str)
    #: (feature, installed and importable) when an install task ends
    finished = pyqtSignal(str, bool)

    def __init__(self, iface):
        super().__init__()
        self.iface = iface
        self.tasks = {}  # feature -> running InstallTask (a Python reference keeps it alive)
        self.notices = {}  # id of the Install button -> (bar, notice, button) shown (_install_clicked)
        self.dialog_bars = {}  # feature -> the message bar of the dialog the install was asked for in
        self.requested.connect(self.notice)

    def request(self, feature: str):
        """Ask for the notice of ``feature`` (thread-safe: e.g. from a Processing algorithm's thread)."""
        self.requested.emit(feature)

    def notice(self, feature: str, bar=None):
        """A message-bar notice with an "Install" button when ``feature`` cannot be imported; in ``bar`` (an
        algorithm dialog's, so that it is in front) or the main window's. One short line: a longer text is cut
        off in a dialog's bar (where the packages go is in the log tab and the README)."""
        if (bar is None and self.iface is None) or available(feature) or feature in self.tasks:
            return
        bar = bar if bar is not None else self.iface.messageBar()
        widget = bar.createMessage(
            "k-textures", f"{feature} is not installed; it is needed {PURPOSE[feature]}.")
        button = QPushButton("Install", widget)
        key = id(button)
        self.notices[key] = (bar, widget, button)
        button.clicked.connect(partial(self._install_clicked, feature, key))
        widget.layout().addWidget(button)
        bar.pushWidget(widget, Qgis.MessageLevel.Warning)

    def _install_clicked(self, feature: str, key: int, *_):
        """The notice's button: start the install; the notice goes once the click is over.

        A lambda slot that held the bar and the notice and removed the notice while it ran crashed QGIS 3.22 on
        the click (a segfault in the slot: it had been freed). Here the slot is a method of this long-lived
        object, ``notices`` holds the bar, the notice and its button until the notice is removed, and the
        removal waits for the event loop."""
        bar = self.notices.get(key, (None,))[0]
        main = self.iface.messageBar() if self.iface is not None else None
        in_dialog = bar is not None and (main is None or sip.unwrapinstance(bar) != sip.unwrapinstance(main))
        self.start(feature, dialog_bar=bar if in_dialog else None)
        QTimer.singleShot(0, partial(self._drop_notice, key))

    def _drop_notice(self, key: int):
        bar, widget, button = self.notices.pop(key, (None, None, None))
        if button is not None and not sip.isdeleted(button):  # not closed by the user or with its dialog
            bar.popWidget(widget)

    def start(self, feature: str, dialog_bar=None) -> InstallTask:
        """Start the install task of ``feature``; the log tab "k-textures" shows pip's output. The progress and
        the end are shown in the main window and, when the install was asked for in a dialog (the fit dialog),
        in ``dialog_bar``, that dialog's message bar, in front of the user (until the dialog is deleted)."""
        task = InstallTask(feature, QgsApplication.qgisSettingsDirPath())
        task.taskCompleted.connect(lambda: self._done(feature, task, True))
        task.taskTerminated.connect(lambda: self._done(feature, task, False))
        self.tasks[feature] = task
        QgsApplication.taskManager().addTask(task)
        if dialog_bar is not None:
            self.dialog_bars[feature] = dialog_bar
            dialog_bar.destroyed.connect(partial(self.dialog_bars.pop, feature, None))
        for bar in self._bars(feature):
            _push(bar, f"Installing {feature} ({SIZE[feature]}); pip's output is in View > Panels > Log Messages, "
                  f"tab '{LOG_TAG}'.", Qgis.MessageLevel.Info, 0)
        return task

    def _bars(self, feature: str) -> list:
        main = [self.iface.messageBar()] if self.iface is not None else []
        return main + ([self.dialog_bars[feature]] if feature in self.dialog_bars else [])

    def _done(self, feature: str, task: InstallTask, ok: bool):
        self.tasks.pop(feature, None)
        ok = ok and available(feature)
        canceled = task.canceled or (not ok and task.error is None and task.isCanceled())
        if ok:
            QgsMessageLog.logMessage(f"{feature} installed in {task.target}", LOG_TAG, Qgis.MessageLevel.Info)
            name = menu_text(feature).split(" installed")[0]  # "PyTorch 2.13.0+cpu": the path is in the log
            msg, level = f"{name} installed; ready to use.", Qgis.MessageLevel.Success
        elif canceled:
            msg, level = f"Installing {feature} was canceled.", Qgis.MessageLevel.Info
        else:
            msg = task.error or f"Installing {feature} failed (see the log tab '{LOG_TAG}')."
            level = Qgis.MessageLevel.Critical
        QgsMessageLog.logMessage(msg, LOG_TAG, level)
        for bar in self._bars(feature):
            bar.clearWidgets()  # the "Installing ..." notice is stale now
            _push(bar, msg, level, 0 if level == Qgis.MessageLevel.Critical else 10)
        self.dialog_bars.pop(feature, None)
        self.finished.emit(feature, ok)


def _push(bar, text: str, level, duration: int) -> None:
    bar.pushWidget(bar.createMessage("k-textures", text), level, duration)


def dialog_with_notice(alg, parent, feature: str):
    """The standard algorithm dialog of ``alg`` with the install notice of ``feature`` in its own message bar (in
    front of the user) when ``feature`` is missing; None (QGIS makes its own dialog) when the plugin is not
    loaded in a desktop. Called from ``createCustomParametersWidget``, the hook the toolbox, the menus, the
    locator and ``processing.createAlgorithmDialog`` use to make an algorithm's dialog (as GDAL's algorithms
    do). An application-wide event filter watching for the dialog crashed QGIS 3.22 (a segfault in sip's type
    conversion of the object of an unrelated event, right after the plugin was installed from the zip)."""
    if not CURRENT:
        return None
    from processing.gui.AlgorithmDialog import AlgorithmDialog

    dlg = AlgorithmDialog(alg, parent=parent)
    CURRENT[0].notice(feature, bar=dlg.messageBar())
    return dlg


#: The plugin's installer while the plugin is loaded (algorithms call :func:`request_install`).
CURRENT = []


def request_install(feature: str):
    """Show the install notice for ``feature`` in the desktop (no-op under qgis_process)."""
    if CURRENT:
        CURRENT[0].request(feature)
