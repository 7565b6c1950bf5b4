"""``ktextures:segment``: run a k-textures ONNX model over a raster layer; write a styled class raster,
its polygons, a per-class area report and optionally the simulated image.

Parameter ids are a public contract for scripts and graphical models: INPUT, MODEL, MODEL_FILE,
BANDS, SCALING, NODATA, EXTENT, MIN_SEGMENT_PX, PALETTE, CLASS_NAMES, SMOOTHING, TILE_SIZE, OUTPUT_RASTER,
OUTPUT_VECTOR, OUTPUT_REPORT, OUTPUT_SIMULATION, OUTPUT_HTML. The work is done by
:func:`ktextures_plugin.core.segment.segment_raster` (with the options of :meth:`SegmentAlgorithm.segment_options`)
and :func:`ktextures_plugin.core.segment.vectorize.polygonize`.
"""
import time

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)
from qgis.PyQt.QtCore import QVariant

from ..core.io.classraster import DEFAULT_MIN_SEGMENT_PX, PALETTES, check_class_names
from . import styling
from .common import (
    ModelInputAlgorithm,
    add_html_destination,
    all_or_nothing,
    cached_session,
    check_outputs,
    gdal_source,
    input_view,
    make_folders,
    name_loaded_outputs,
    optional_number,
    output_layer,
    progress_bridge,
    temporary_label,
)

SCALINGS = ["model", "stretch"]
#: core keys (core.io.outputs, core.segment) -> parameter ids, for messages
NAMES = {"input": "INPUT", "model": "MODEL_FILE", "output": "OUTPUT_RASTER", "simulation": "OUTPUT_SIMULATION",
         "vector": "OUTPUT_VECTOR", "report": "OUTPUT_REPORT", "html": "OUTPUT_HTML", "bands": "BANDS",
         "scaling": "SCALING", "nodata": "NODATA", "extent": "EXTENT", "smoothing": "SMOOTHING",
         "min_segment_px": "MIN_SEGMENT_PX", "tile_size": "TILE_SIZE"}
#: SegmentOptions field -> the parameter that sets it (tests compare it with the command line's; ``window`` is
#: for scripts, ``threads`` is the command line's: QGIS runs onnxruntime with one thread per core)
OPTIONS = {"bands": "BANDS", "scaling": "SCALING", "extra_nodata": "NODATA", "extent": "EXTENT",
           "tile_size": "TILE_SIZE", "min_segment_px": "MIN_SEGMENT_PX", "simulation_path": "OUTPUT_SIMULATION",
           "palette": "PALETTE", "class_names": "CLASS_NAMES", "smoothing": "SMOOTHING"}


class SegmentAlgorithm(ModelInputAlgorithm):
    SCALING = "SCALING"
    NODATA = "NODATA"
    EXTENT = "EXTENT"
    MIN_SEGMENT_PX = "MIN_SEGMENT_PX"
    PALETTE = "PALETTE"
    CLASS_NAMES = "CLASS_NAMES"
    SMOOTHING = "SMOOTHING"
    TILE_SIZE = "TILE_SIZE"
    OUTPUT_RASTER = "OUTPUT_RASTER"
    OUTPUT_VECTOR = "OUTPUT_VECTOR"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    OUTPUT_SIMULATION = "OUTPUT_SIMULATION"
    OUTPUT_HTML = "OUTPUT_HTML"

    def name(self):
        return "segment"

    def displayName(self):  # noqa: N802
        return "Segment raster into k textures"

    def tags(self):
        return ["segmentation", "unsupervised", "classification", "texture", "clustering", "onnx", "k-means"]

    def shortHelpString(self):  # noqa: N802
        return (
            "Segments a raster layer into k hard texture classes with a k-textures model (Wagner et al., "
            "Front. Environ. Sci. 2022) exported to ONNX, tile by tile, so memory grows with the tile and not "
            "with the raster.\n\n"
            "<b>Model</b>: a bundled model, or an .onnx file (Model file) made with 'Fit a k-textures model'.\n"
            "<b>Bands</b>: the input bands for the model's channels in the model's order (red, green, blue, NIR "
            "for k-textures). Empty: found from the band descriptions or colour interpretation.\n"
            "<b>Scaling</b>: 'model' uses the per-band scaling stored in the model (right for the sensor it was "
            "trained on); 'stretch' uses this raster's 2-98 % percentiles (another sensor or processing level).\n"
            "<b>Nodata</b>: the GDAL mask band, NaN/Inf and this extra value are nodata; they get class 0.\n"
            "<b>Minimum segment size</b>: GDAL sieve threshold in pixels (0 = off; default 8, which removes "
            "about 90 % of the polygons of a 10 m scene while changing about 6 % of the pixels), applied to the "
            "raster before polygonizing.\n"
            "<b>Class colours</b>: 'true colour' = the mean colour of each class's pixels, kept at least "
            "CIEDE2000 15 apart; 'qualitative' = Tableau 10.\n"
            "<b>Class names</b>: e.g. 'forest, field, water, town, meadow, bare' in class order 1..k; they go "
            "into the raster, the polygons and the report.\n"
            "<b>Smoothing</b>: Potts weight (beta) of an edge-preserving smoothing of the model's class scores "
            "before each pixel takes its best class (0 = off; empty: the model's recommendation, else off). Needs a "
            "model with a 'scores' output; other models segment without it (with a warning).\n\n"
            "Outputs: class raster (0 = nodata, classes 1..k, colour table and class names inside), polygons "
            "(class_id, class_name, area_m2), a per-class area report (CSV), the model's simulation of the "
            "image (each pixel shows the texture of its class; loaded in true colour) and an HTML report (per class: "
            "colour, a true-colour image of a typical interior area, the model's texture, area; an area chart; "
            "the parameters), which opens in the Results Viewer.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_model_inputs()
        self.addParameter(QgsProcessingParameterEnum(
            self.SCALING, "Scaling", options=SCALINGS, defaultValue="model", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.NODATA, "Extra nodata value", type=QgsProcessingParameterNumber.Double, optional=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Extent (empty: whole layer)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_SEGMENT_PX, "Minimum segment size (pixels, 0 = no sieve)",
            type=QgsProcessingParameterNumber.Integer, minValue=0, maxValue=2 ** 31 - 1,
            defaultValue=DEFAULT_MIN_SEGMENT_PX))
        self.addParameter(QgsProcessingParameterEnum(
            self.PALETTE, "Class colours", options=PALETTES, defaultValue=PALETTES[0], usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_NAMES, "Class names (comma-separated, in class order 1..k; empty: the model's)",
            optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.SMOOTHING, "Smoothing (Potts beta, 0 = off; empty: the model's recommendation)",
            type=QgsProcessingParameterNumber.Double, minValue=0.0, optional=True))
        tile = QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size (pixels)",
                                            type=QgsProcessingParameterNumber.Integer, minValue=32,
                                            maxValue=8192, defaultValue=512)
        tile.setFlags(tile.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(tile)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_RASTER, "Classes"))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT_VECTOR, "Class polygons", type=QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_REPORT, "Per-class area report", fileFilter="CSV files (*.csv)", optional=True,
            createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_SIMULATION, "Simulated image (textures of the classes)", optional=True,
            createByDefault=False))
        add_html_destination(self, self.OUTPUT_HTML, "Report (HTML: class colours, images, textures, area chart)",
                             by_default=True)
        self.addOutput(QgsProcessingOutputNumber("NUM_CLASSES", "Number of classes (k)"))
        self.addOutput(QgsProcessingOutputNumber("VALID_PIXELS", "Pixels with a class"))
        self.addOutput(QgsProcessingOutputString("EXECUTION_PROVIDER", "onnxruntime execution provider"))

    def _class_names(self, parameters, context, session):
        """CLASS_NAMES checked against the model's k before anything is computed (None: the model's)."""
        text = self.parameterAsString(parameters, self.CLASS_NAMES, context).strip()
        if not text:
            return None
        from ..core.segment.inference import read_model_info
        k = read_model_info(self.model_path(parameters, context), session=session).num_classes
        try:
            return check_class_names(text, k)
        except ValueError as exc:
            raise QgsProcessingException(f"CLASS_NAMES: {exc}") from None

    @all_or_nothing
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        self.require_onnxruntime()
        t0 = time.perf_counter()
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        src = gdal_source(layer)
        model_path = self.model_path(parameters, context)
        out = self._output_paths(parameters, context, src, model_path)
        extent = self._extent(parameters, context, layer)
        session = cached_session(model_path)
        with input_view(self, parameters, context, feedback, src) as view:
            result = self._run(parameters, context, feedback, src=view, model_path=model_path, out=out,
                               extent=extent, session=session)
        seconds = time.perf_counter() - t0
        feedback.pushInfo(f"Segmented{' and polygonized' if out['vector'] else ''} in {seconds:.1f} s.")
        self._log_and_report(feedback, result, out)
        if out["html"]:
            self._write_html(parameters, context, feedback, src=src, out=out, result=result, session=session,
                             seconds=seconds, label=temporary_label(out["raster"], "Classes", layer.name()))
        for w in styling.save_default_styles(out["raster"], out["vector"], result.class_names, result.colors):
            feedback.pushWarning(w)
        for dest in (out["raster"], out["vector"]):
            styling.attach_style(context, dest, result.class_names, result.colors)
        if out["simulation"]:
            styling.style_simulation(context, out["simulation"], result.info.channel_names, feedback)
        name_loaded_outputs(self, context, layer.name(), {self.OUTPUT_RASTER: out["raster"],
                                                          self.OUTPUT_VECTOR: out["vector"],
                                                          self.OUTPUT_SIMULATION: out["simulation"]})
        self.show_page(out["html"], f"k-textures report ({layer.name()})")
        feedback.pushInfo(f"Done in {time.perf_counter() - t0:.1f} s ({result.execution_provider}).")
        return {self.OUTPUT_RASTER: out["raster"], self.OUTPUT_VECTOR: out["vector"] or None,
                self.OUTPUT_REPORT: out["report"] or None, self.OUTPUT_SIMULATION: out["simulation"] or None,
                self.OUTPUT_HTML: out["html"] or None,
                "NUM_CLASSES": result.info.num_classes, "VALID_PIXELS": result.valid_pixels,
                "EXECUTION_PROVIDER": result.execution_provider}

    def _output_paths(self, parameters, context, src, model_path):
        """The output paths (core key -> path, "" when not wanted), their folders made and checked against
        the inputs and each other (``check_outputs``) before any work."""
        from ..core.io import outputs
        out = {"raster": output_layer(self, parameters, self.OUTPUT_RASTER, context),
               "vector": output_layer(self, parameters, self.OUTPUT_VECTOR, context),
               "report": self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context),
               "simulation": output_layer(self, parameters, self.OUTPUT_SIMULATION, context),
               "html": self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)}
        make_folders(out.values())
        check_outputs(NAMES, {"output": (out["raster"], outputs.CLASS_RASTER),
                              "simulation": (out["simulation"], outputs.FLOAT_RASTER),
                              "vector": (out["vector"], outputs.VECTOR), "report": (out["report"], outputs.TABLE),
                              "html": (out["html"], outputs.HTML)},
                      {"input": src, "model": model_path})
        return out

    def _extent(self, parameters, context, layer):
        """EXTENT as ``(xmin, ymin, xmax, ymax)`` in the layer's CRS (map units), or None (whole layer); the core
        turns it into the pixel window."""
        if not parameters.get(self.EXTENT):
            return None
        ext = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
        if ext.isNull() or ext.isEmpty():
            return None
        return ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum()

    def segment_options(self, parameters, context, *, extent, simulation, session):
        """The :class:`~ktextures_plugin.core.segment.SegmentOptions` of the parameters (:data:`OPTIONS`)."""
        from ..core.segment import SegmentOptions
        return SegmentOptions(
            bands=self.bands(parameters, context),
            scaling=self.parameterAsEnumString(parameters, self.SCALING, context) or "model",
            extra_nodata=optional_number(parameters, self.NODATA), extent=extent,
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            min_segment_px=self.parameterAsInt(parameters, self.MIN_SEGMENT_PX, context),
            simulation_path=simulation or None,
            palette=self.parameterAsEnumString(parameters, self.PALETTE, context) or PALETTES[0],
            class_names=self._class_names(parameters, context, session),
            smoothing=optional_number(parameters, self.SMOOTHING))

    def _run(self, parameters, context, feedback, *, src, model_path, out, extent, session):
        """Segment (and polygonize when OUTPUT_VECTOR is set); on failure or cancel nothing is left behind."""
        from ..core.feedback import Feedback
        from ..core.segment import segment_raster
        from ..core.segment.vectorize import polygonize

        seg_end = 70.0 if out["vector"] else 100.0
        # a failure: processing_error words it, all_or_nothing (processAlgorithm) removes the outputs
        feedback.pushInfo(f"Model file: {model_path}")
        options = self.segment_options(parameters, context, extent=extent, simulation=out["simulation"],
                                       session=session)
        result = segment_raster(src, model_path, out["raster"], options,
                                Feedback(progress=progress_bridge(feedback, 0, seg_end),
                                         is_canceled=feedback.isCanceled, info=feedback.pushInfo,
                                         warning=feedback.pushWarning), session=session)
        if out["vector"]:
            feedback.setProgressText("Polygonizing (GDAL)")
            n = polygonize(out["raster"], out["vector"], class_names=result.class_names,
                           feedback=Feedback(progress=progress_bridge(feedback, seg_end, 100),
                                             is_canceled=feedback.isCanceled))
            feedback.pushInfo(f"{n} polygons written to {out['vector']}")
        return result

    @staticmethod
    def _log_and_report(feedback, result, out):
        """The per-class area table in the log (monospace, columns kept) and in OUTPUT_REPORT."""
        from ..core.segment.vectorize import format_report, write_report
        rows = result.report_rows()
        feedback.pushInfo("Per-class area:")
        # console text is shown in a monospace font; no-break spaces keep the columns in the HTML log
        feedback.pushConsoleInfo(format_report(rows).replace(" ", "\u00a0"))
        if out["report"]:
            write_report(out["report"], rows)

    def _write_html(self, parameters, context, feedback, *, src, out, result, session, seconds, label):
        """OUTPUT_HTML: the per-class report (core.segment.html_report) with this run's parameters."""
        from ..core.segment.html_report import from_segment, write_html_report
        feedback.setProgressText("Writing the HTML report")
        data = from_segment(result, src, session=session, parameters=self._parameter_texts(parameters, context),
                            seconds=seconds, class_raster_label=label)
        try:
            write_html_report(out["html"], data)
        except OSError as exc:
            raise QgsProcessingException(f"OUTPUT_HTML '{out['html']}' could not be written: {exc}. "
                                         "Choose a file in a folder you can write to.") from None
        feedback.pushInfo(f"HTML report written to {out['html']}")

    def _parameter_texts(self, parameters, context):
        """Parameter id -> value as text, for the report (destinations left out; defaults shown)."""
        texts = {}
        for d in self.parameterDefinitions():
            if d.isDestination():
                continue
            value = parameters.get(d.name())
            if isinstance(value, QVariant) and value.isNull():
                value = None
            if d.name() == self.MODEL and self.parameterAsFile(parameters, self.MODEL_FILE, context):
                continue  # MODEL_FILE overrides the bundled model
            if d.name() == self.INPUT:
                value = gdal_source(self.parameterAsRasterLayer(parameters, self.INPUT, context))
            elif value is None or value == "":
                value = d.defaultValue()
            if value is None or value == "" or value == []:
                continue
            if isinstance(d, QgsProcessingParameterEnum) and isinstance(value, int) and 0 <= value < len(d.options()):
                value = d.options()[value]  # the option's text (e.g. the bundled model's name), not its index
            texts[d.name()] = value if isinstance(value, str) else d.valueAsPythonString(value, context)
        return texts
