"""Glue shared by the algorithms: feedback bridges, cached onnxruntime sessions, input checks, one run, one
error translation."""
import contextlib
import functools
import os
import sys
from typing import Optional

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException

_SESSIONS = {}


def field_type(name: str):
    """The ``QgsField`` type ``name`` ('Int', 'LongLong', 'Double', 'String'): ``QVariant.Type`` where Qt 5 has
    it (QGIS 3, whose ``QgsField`` takes only that), else ``QMetaType.Type`` (Qt 6, QGIS 4)."""
    from qgis.PyQt.QtCore import QMetaType, QVariant

    legacy = getattr(QVariant, name, None)
    return legacy if legacy is not None else getattr(QMetaType.Type, name)


def progress_bridge(feedback, start: float = 0.0, end: float = 100.0):
    """``progress(fraction, stage)`` for core calls, mapped onto ``feedback`` between start and end %."""
    def progress(fraction, _stage=""):
        feedback.setProgress(start + (end - start) * max(0.0, min(1.0, fraction)))
    return progress


def step_feedback(feedback, start: float, end: float):
    """A ``QgsProcessingFeedback`` for a child algorithm run as one step of ``feedback``: its 0-100 % shows as
    ``start``..``end`` % of the parent (QGIS's ``QgsProcessingMultiStepFeedback`` only has equal steps); the
    parent's cancel reaches it; messages go to the parent."""
    from qgis.core import QgsProcessingFeedback

    class StepFeedback(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802
            feedback.pushInfo(info)

        def pushWarning(self, warning):  # noqa: N802
            feedback.pushWarning(warning)

        def reportError(self, error, fatalError=False):  # noqa: N802, N803
            feedback.reportError(error, fatalError)

        def setProgressText(self, text):  # noqa: N802
            feedback.setProgressText(text)

        def pushCommandInfo(self, info):  # noqa: N802
            feedback.pushCommandInfo(info)

        def pushDebugInfo(self, info):  # noqa: N802
            feedback.pushDebugInfo(info)

        def pushConsoleInfo(self, info):  # noqa: N802
            feedback.pushConsoleInfo(info)

    child = StepFeedback()
    child.progressChanged.connect(lambda p: feedback.setProgress(start + (end - start) * max(0.0, min(100.0, p)) / 100))
    feedback.canceled.connect(child.cancel)
    if feedback.isCanceled():
        child.cancel()
    return child


def cached_session(path: str):
    """One onnxruntime session per model file and modification time (batch runs reuse it)."""
    from ..core.segment.inference import open_session

    key = (os.path.abspath(path), os.path.getmtime(path) if os.path.exists(path) else 0)
    if key not in _SESSIONS:
        _SESSIONS.clear()
        _SESSIONS[key] = open_session(path)
    return _SESSIONS[key]


def gdal_source(layer, name: str = "INPUT") -> str:
    """The GDAL path of a raster layer, or a clear error for non-GDAL layers (WMS, XYZ, memory)."""
    if layer is None:
        raise QgsProcessingException(f"Could not load the raster layer given as {name}.")
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"{name} '{layer.name()}' is a '{layer.providerType()}' layer; k-textures reads rasters with GDAL. "
            "Save it as a GeoTIFF first (Raster > Conversion > Translate) and use that file.")
    return layer.dataProvider().dataSourceUri().split("|")[0]


def all_or_nothing(process_algorithm):
    """Decorator of ``processAlgorithm``: the run is all or nothing (``core.io.atomic.all_or_nothing``): when it
    raises (an error, a cancel), every output it had delivered is removed, earlier ones too. Outputs written
    by QGIS feature sinks are named with ``core.io.atomic.delivered`` to join."""
    @functools.wraps(process_algorithm)
    def run(self, parameters, context, feedback):
        from ..core.io.atomic import all_or_nothing as one_run
        with one_run():
            return process_algorithm(self, parameters, context, feedback)
    return run


def optional_number(parameters, name) -> Optional[float]:
    v = parameters.get(name)
    if v is None or v == "" or (isinstance(v, float) and v != v):
        return None
    return float(v)


def make_folders(paths, folders=None) -> None:
    """Create the missing folders of output files ``paths`` (as QGIS does for its own algorithms) and the missing
    output folders ``folders`` (``{parameter id: folder}``: the chip folder of ``sample``). Each folder made is
    named to the run (``core.io.atomic.created_folder``), so a failed run removes it when it is empty."""
    from ..core.io.atomic import created_folder

    wanted = [(os.path.dirname(os.path.abspath(p)), f"Cannot create the output folder for '{p}': ", False)
              for p in paths if p]
    wanted += [(f, f"{name} '{f}' cannot be created: ", True) for name, f in (folders or {}).items() if f]
    for folder, message, short in wanted:
        if not os.path.isdir(folder):
            try:
                os.makedirs(folder)
            except OSError as exc:
                why = exc.strerror if short else exc
                raise QgsProcessingException(f"{message}{why}. Choose a folder you can write to.") from None
            created_folder(folder)


def check_outputs(names, outputs, inputs) -> None:
    """:func:`core.io.outputs.check_outputs` before any work; its error becomes a QgsProcessingException naming the
    QGIS parameters (``names``: core key -> parameter id). The algorithms save QGIS default styles beside their
    raster and vector outputs, so those ``.qml`` files are checked too (``styles=True``)."""
    from ..core.io.outputs import OutputPathError
    from ..core.io.outputs import check_outputs as check

    try:
        check(outputs, inputs, styles=True)
    except OutputPathError as exc:
        raise QgsProcessingException(exc.message(names)) from None


def sink_destination(parameters, name, context) -> str:
    """The destination text of the feature-sink parameter ``name`` (a path, 'TEMPORARY_OUTPUT', 'memory:', an
    'ogr:' URI; '' when not set), read without ``parameterAsOutputLayer``: called on a sink, that registers an
    extra layer to load on completion, which QGIS then reports as "not correctly generated"."""
    from qgis.core import QgsProcessingOutputLayerDefinition, QgsProperty

    value = parameters.get(name)
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink
    if isinstance(value, QgsProperty):
        value = value.valueAsString(context.expressionContext(), "")[0]
    return "" if value is None else str(value)


def output_layer(alg, parameters, name, context) -> str:
    """``parameterAsOutputLayer`` of a raster or vector destination, except that one given but empty ('' when
    not wanted) registers nothing: the batch dialog passes an optional output left blank that way, and QGIS then
    reports an empty bullet as "not correctly generated"."""
    if parameters.get(name) is not None and sink_destination(parameters, name, context) == "":
        return ""
    return alg.parameterAsOutputLayer(parameters, name, context) or ""


def temporary_label(path: str, title: str, input_name: str):
    """How a report names an output in QGIS's temporary folder (its path is gone once QGIS closes): the layer
    name and how to keep it; None for a file the user chose."""
    from qgis.core import QgsProcessingUtils

    folder = os.path.abspath(QgsProcessingUtils.tempFolder())
    if path and os.path.abspath(path).startswith(folder + os.sep):
        return (f"temporary layer '{title} ({input_name})' (not saved: in the Layers panel, right-click > "
                "Export > Save As to keep it)")
    return None


def add_html_destination(alg, name: str, description: str, by_default: bool = False) -> None:
    """An optional HTML file destination ``name`` whose output is declared as a ``QgsProcessingOutputFile``.

    Declared as the automatic ``QgsProcessingOutputHtml``, the page breaks QGIS 3.22's batch dialog
    (``BatchAlgorithmDialog.loadHTMLResults`` calls ``ProcessingResults.addResult()`` without its ``timestamp``
    for every HTML output: a Python error dialog, then a progress bar stuck at 100 %). The page still reaches
    the Results Viewer, from :meth:`KTexturesAlgorithm.postProcessAlgorithm` (:meth:`show_page`)."""
    from qgis.core import QgsProcessingOutputFile, QgsProcessingParameterFileDestination

    alg.addParameter(QgsProcessingParameterFileDestination(
        name, description, fileFilter="HTML files (*.html *.htm)", optional=True, createByDefault=by_default),
        createOutput=False)
    alg.addOutput(QgsProcessingOutputFile(name, description))


def name_loaded_outputs(alg, context, input_name: str, destinations) -> None:
    """Name the outputs QGIS loads on completion after their input: "Classes (s2_sample)". ``destinations``:
    parameter id -> the destination returned for it (path or layer id). Files the user named keep their file
    name when QGIS prefers file names (Settings > Options > Processing); temporary outputs take this name."""
    for pid, dest in destinations.items():
        if dest and isinstance(dest, str) and context.willLoadLayerOnCompletion(dest):
            context.layerToLoadOnCompletionDetails(dest).name = (
                f"{alg.parameterDefinition(pid).description()} ({input_name})")


#: The advanced parameter every reading algorithm offers to read Alpha-tagged bands as data (CLI:
#: --ignore-mask-bands).
IGNORE_MASK_BANDS = "IGNORE_MASK_BANDS"


def add_mask_option(alg) -> None:
    """Add the advanced boolean :data:`IGNORE_MASK_BANDS` to the algorithm ``alg``."""
    from qgis.core import QgsProcessingParameterBoolean, QgsProcessingParameterDefinition
    p = QgsProcessingParameterBoolean(
        IGNORE_MASK_BANDS, "Ignore mask bands (read bands tagged Alpha as data; nodata values still apply)",
        defaultValue=False, optional=True)
    p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    alg.addParameter(p)


@contextlib.contextmanager
def input_view(alg, parameters, context, feedback, src: str):
    """The input path to give the core: ``src``, or with IGNORE_MASK_BANDS an in-memory view of it without
    Alpha masks (``core.io.raster.without_mask_bands``); without it, a log warning for each Alpha band that masks
    pixels (``core.io.raster.alpha_mask_warnings``)."""
    from ..core.io import raster
    ignore = IGNORE_MASK_BANDS in parameters and alg.parameterAsBool(parameters, IGNORE_MASK_BANDS, context)
    if not ignore:
        for w in raster.alpha_mask_warnings(src, IGNORE_MASK_BANDS):
            feedback.pushWarning(w)
    with raster.without_mask_bands(src, ignore) as view:
        yield view


def processing_error(exc: BaseException, names=None) -> Optional[QgsProcessingException]:
    """The QGIS front end's one translation of an exception into the ``QgsProcessingException`` QGIS shows
    (message only, no traceback), or None for an exception that is no input or system problem (a bug).

    * a cancel (``Canceled``, ``KeyboardInterrupt``, GDAL's "User terminated"): "Canceled: no output was
      written.";
    * a ``CoreError`` (and what :func:`core.errors.as_core_error` maps to one: a GDAL read error, an
      ``OSError``, a ``MemoryError``): its message worded with the parameter ids ``names`` (core key -> id).
    """
    from ..core.errors import as_core_error, is_cancel

    if isinstance(exc, QgsProcessingException):
        return exc
    if is_cancel(exc):
        return QgsProcessingException("Canceled: no output was written.")
    err = as_core_error(exc)
    return None if err is None else QgsProcessingException(err.message(names))


def _translated(process):
    """``processAlgorithm`` with every exception but a bug raised as :func:`processing_error`; the parameter
    names come from the algorithm's ``ERROR_NAMES`` or its module's ``NAMES``."""
    @functools.wraps(process)
    def run(self, parameters, context, feedback):
        try:
            return process(self, parameters, context, feedback)
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt is translated too
            names = getattr(self, "ERROR_NAMES", None) or getattr(sys.modules[type(self).__module__], "NAMES", {})
            err = processing_error(exc, names)
            if err is None:
                raise
            if err is exc:
                raise
            raise err from None
    return run


class KTexturesAlgorithm(QgsProcessingAlgorithm):
    """Base of the provider's algorithms: group, icon and ``createInstance`` shared by all of them.

    Every subclass's ``processAlgorithm`` is wrapped (``__init_subclass__``) in the one error translation of
    this front end, :func:`processing_error`: no algorithm catches error types itself.

    No group: the algorithms sit directly under the provider in the toolbox ("k-textures > Segment ..."),
    not in a group of the provider's own name ("k-textures > k-textures > ...").
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "processAlgorithm" in cls.__dict__:
            cls.processAlgorithm = _translated(cls.__dict__["processAlgorithm"])

    def group(self):
        return ""

    def groupId(self):  # noqa: N802
        return ""

    def icon(self):
        from ..provider import icon
        return icon()

    def createInstance(self):  # noqa: N802
        return type(self)()

    def show_page(self, path: str, title: str) -> None:
        """Show the HTML page ``path`` in the Results Viewer when the run ends (see :func:`add_html_destination`)."""
        self._pages = getattr(self, "_pages", []) + ([(path, title)] if path else [])

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802
        """The pages of :meth:`show_page` into Processing's Results Viewer (main thread only: the viewer is GUI)."""
        pages, self._pages = getattr(self, "_pages", []), []
        if pages:
            from qgis.PyQt.QtCore import QCoreApplication, QThread
            app = QCoreApplication.instance()
            if app is not None and QThread.currentThread() == app.thread():
                import time

                from processing.core.ProcessingResults import resultsList
                for path, title in pages:
                    resultsList.addResult(icon=self.icon(), name=title, timestamp=time.localtime(), result=path)
        return {}


class ModelInputAlgorithm(KTexturesAlgorithm):
    """Base of the algorithms that run a k-textures model over a raster layer (segment, novelty): the
    parameters INPUT, MODEL (bundled, by title), MODEL_FILE (an .onnx that overrides it) and BANDS, and how they
    are read."""

    INPUT, MODEL, MODEL_FILE, BANDS = "INPUT", "MODEL", "MODEL_FILE", "BANDS"

    def add_model_inputs(self) -> None:
        """Add INPUT, MODEL, MODEL_FILE and BANDS, in this order, and the advanced IGNORE_MASK_BANDS."""
        from qgis.core import (
            QgsProcessingParameterBand,
            QgsProcessingParameterEnum,
            QgsProcessingParameterFile,
            QgsProcessingParameterRasterLayer,
        )

        from .. import BUNDLED_MODELS, DEFAULT_MODEL
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster layer"))
        self.addParameter(QgsProcessingParameterEnum(
            self.MODEL, "Model", options=[title for _, title in BUNDLED_MODELS], defaultValue=DEFAULT_MODEL))
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL_FILE, "Model file (.onnx; overrides Model)", extension="onnx", optional=True))
        self.addParameter(QgsProcessingParameterBand(
            self.BANDS, "Bands in the model's channel order (empty: from band descriptions)",
            parentLayerParameterName=self.INPUT, allowMultiple=True, optional=True))
        add_mask_option(self)

    @staticmethod
    def onnxruntime_missing() -> str:
        """'' when onnxruntime imports, else the install hint (``installer_gui.manual_hint``)."""
        from ..core.runtime import onnxruntime_available
        from ..installer_gui import manual_hint
        return "" if onnxruntime_available() else manual_hint("onnxruntime")

    def canExecute(self):  # noqa: N802
        """Runnable only with onnxruntime: else the dialog says how to install it."""
        hint = self.onnxruntime_missing()
        return not hint, hint

    def require_onnxruntime(self) -> None:
        """Raise the install hint as a QgsProcessingException when onnxruntime is missing (a run from a script or
        qgis_process, which do not ask :meth:`canExecute`)."""
        hint = self.onnxruntime_missing()
        if hint:
            raise QgsProcessingException(hint)

    def model_path(self, parameters, context) -> str:
        """MODEL_FILE when given, else the bundled model chosen in MODEL.

        Raises:
            QgsProcessingException: the bundled model file is missing from the plugin folder.
        """
        from .. import BUNDLED_MODELS, bundled_model_path
        path = self.parameterAsFile(parameters, self.MODEL_FILE, context)
        if path:
            return path
        idx = self.parameterAsEnum(parameters, self.MODEL, context)
        path = bundled_model_path(idx)
        if not os.path.exists(path):
            raise QgsProcessingException(
                f"The bundled model '{BUNDLED_MODELS[idx][1]}' is missing from the plugin folder ({path}). "
                "Reinstall the plugin, or give an .onnx file as Model file.")
        return path

    def bands(self, parameters, context):
        """BANDS as core takes it: None (match by band description), a "3,2,1,4" string or a list; the core
        parses and checks it (``core.segment.bands.parse_bands``: a clear error for ``a,b,c,d``)."""
        value = parameters.get(self.BANDS)
        if value is None or value == "" or value == []:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple)):
            return list(value)
        return self.parameterAsInts(parameters, self.BANDS, context) or None
