"""The QGIS side of the dependency installer: the message-bar notice with an "Install" button, the pip run
in a ``QgsTask`` with its output in the Log Messages panel (tab "k-textures"), and the plugin folder on
``sys.path``. The interpreter, the pins, the resolution check and the pip command lines are ``installer.py``.
"""
import importlib

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.gui import QgsProcessingAlgorithmDialogBase
from qgis.PyQt.QtCore import QEvent, QObject, pyqtSignal
from qgis.PyQt.QtWidgets import QPushButton

from . import installer
from .core.errors import Canceled

LOG_TAG = "k-textures"
#: What each feature is needed for (shown in the notice).
PURPOSE = {"onnxruntime": "to segment rasters", "torch": "to fit a model (ktextures:fit; about 200 MB)"}


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
    """True when the module of ``feature`` imports."""
    importlib.invalidate_caches()
    try:
        importlib.import_module(installer.MODULES[feature])
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
        self.requested.connect(self.notice)

    def request(self, feature: str):
        """Ask for the notice of ``feature`` (thread-safe: e.g. from a Processing algorithm's thread)."""
        self.requested.emit(feature)

    def notice(self, feature: str, bar=None):
        """A message-bar notice with an "Install" button when ``feature`` cannot be imported; in ``bar`` (an
        algorithm dialog's, so that it is in front) or the main window's."""
        if (bar is None and self.iface is None) or available(feature) or feature in self.tasks:
            return
        bar = bar if bar is not None else self.iface.messageBar()
        widget = bar.createMessage(
            "k-textures", f"{feature} is not installed; it is needed {PURPOSE[feature]}. "
            "Install it into the plugin's own folder (no system package is changed)?")
        button = QPushButton("Install", widget)
        button.clicked.connect(lambda: (bar.popWidget(widget), self.start(feature)))
        widget.layout().addWidget(button)
        bar.pushWidget(widget, Qgis.MessageLevel.Warning)

    def start(self, feature: str) -> InstallTask:
        """Start the install task of ``feature``; the log tab "k-textures" shows pip's output."""
        task = InstallTask(feature, QgsApplication.qgisSettingsDirPath())
        task.taskCompleted.connect(lambda: self._done(feature, task, True))
        task.taskTerminated.connect(lambda: self._done(feature, task, False))
        self.tasks[feature] = task
        QgsApplication.taskManager().addTask(task)
        if self.iface is not None:
            _push(self.iface.messageBar(), f"Installing {feature}; pip's output is in View > Panels > Log Messages, "
                  f"tab '{LOG_TAG}'.", Qgis.MessageLevel.Info, 0)
        return task

    def _done(self, feature: str, task: InstallTask, ok: bool):
        self.tasks.pop(feature, None)
        ok = ok and available(feature)
        canceled = task.canceled or (not ok and task.error is None and task.isCanceled())
        if ok:
            msg, level = f"{feature} installed in {task.target}; ready to use.", Qgis.MessageLevel.Success
        elif canceled:
            msg, level = f"Installing {feature} was canceled.", Qgis.MessageLevel.Info
        else:
            msg = task.error or f"Installing {feature} failed (see the log tab '{LOG_TAG}')."
            level = Qgis.MessageLevel.Critical
        QgsMessageLog.logMessage(msg, LOG_TAG, level)
        if self.iface is not None:
            bar = self.iface.messageBar()
            bar.clearWidgets()  # the "Installing ..." notice is stale now
            _push(bar, msg, level, 0 if level == Qgis.MessageLevel.Critical else 10)
        self.finished.emit(feature, ok)


def _push(bar, text: str, level, duration: int) -> None:
    bar.pushWidget(bar.createMessage("k-textures", text), level, duration)


class DialogWatcher(QObject):
    """An application event filter: when the dialog of an algorithm that needs a missing package opens (fit
    needs PyTorch), the install notice appears in that dialog's own message bar, in front of the user, instead
    of an error dialog or a notice hidden behind the dialog in the main window."""

    #: algorithm id -> the package it needs
    NEEDS = {"ktextures:fit": "torch"}

    def __init__(self, installer_: "Installer"):
        super().__init__()
        self.installer = installer_

    def eventFilter(self, obj, event):  # noqa: N802 (Qt API)
        if event.type() == QEvent.Type.Show and isinstance(obj, QgsProcessingAlgorithmDialogBase):
            alg = obj.algorithm()
            feature = self.NEEDS.get(alg.id()) if alg is not None else None
            if feature:
                self.installer.notice(feature, bar=obj.messageBar())
        return False


#: The plugin's installer while the plugin is loaded (algorithms call :func:`request_install`).
CURRENT = []


def request_install(feature: str):
    """Show the install notice for ``feature`` in the desktop (no-op under qgis_process)."""
    if CURRENT:
        CURRENT[0].request(feature)
