"""``ktextures:segment``: run a k-textures ONNX model over a raster layer; write a styled class raster,
its polygons, a per-class area report and optionally the simulated image.

Parameter ids are a public contract for scripts and graphical models: INPUT, MODEL, MODEL_FILE,
BANDS, SCALING, NODATA, EXTENT, MIN_SEGMENT_PX, TILE_SIZE, OUTPUT_RASTER, OUTPUT_VECTOR, OUTPUT_REPORT,
OUTPUT_SIMULATION. The work is done by :func:`ktextures_plugin.core.segment.segment_raster` and
:func:`ktextures_plugin.core.vectorize.polygonize`.
"""
from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputNumber, QgsProcessingOutputString,
                       QgsProcessingParameterDefinition, QgsProcessingParameterEnum, QgsProcessingParameterExtent,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination)

from ..core.classraster import DEFAULT_MIN_SEGMENT_PX, PALETTES, OutputError, check_class_names
from ..core.modelinfo import ModelError
from ..core.raster import RasterError
from ..core.runtime import INSTALL_HINT, onnxruntime_available
from . import styling
from .common import (ModelInputAlgorithm, cached_session, check_outputs, gdal_source, make_folders,
                     optional_number, output_message, progress_bridge, remove_outputs)

SCALINGS = ["model", "stretch"]
#: core keys (core.outputs, core.segment) -> parameter ids, for messages
NAMES = {"input": "INPUT", "model": "MODEL_FILE", "output": "OUTPUT_RASTER", "simulation": "OUTPUT_SIMULATION",
         "vector": "OUTPUT_VECTOR", "report": "OUTPUT_REPORT", "bands": "BANDS", "scaling": "SCALING",
         "nodata": "NODATA", "extent": "EXTENT"}


class SegmentAlgorithm(ModelInputAlgorithm):
    SCALING = "SCALING"
    NODATA = "NODATA"
    EXTENT = "EXTENT"
    MIN_SEGMENT_PX = "MIN_SEGMENT_PX"
    PALETTE = "PALETTE"
    CLASS_NAMES = "CLASS_NAMES"
    TILE_SIZE = "TILE_SIZE"
    OUTPUT_RASTER = "OUTPUT_RASTER"
    OUTPUT_VECTOR = "OUTPUT_VECTOR"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    OUTPUT_SIMULATION = "OUTPUT_SIMULATION"

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
            "into the raster, the polygons and the report.\n\n"
            "Outputs: class raster (0 = nodata, classes 1..k, colour table and class names inside), polygons "
            "(class_id, class_name, area_m2), a per-class area report (CSV) and the model's simulation of the "
            "image (each pixel shows the texture of its class).")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_model_inputs()
        self.addParameter(QgsProcessingParameterEnum(
            self.SCALING, "Scaling", options=SCALINGS, defaultValue="model", usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.NODATA, "Extra nodata value", type=QgsProcessingParameterNumber.Double, optional=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, "Extent (empty: whole layer)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_SEGMENT_PX, "Minimum segment size (pixels, 0 = no sieve)",
            type=QgsProcessingParameterNumber.Integer, minValue=0, defaultValue=DEFAULT_MIN_SEGMENT_PX))
        self.addParameter(QgsProcessingParameterEnum(
            self.PALETTE, "Class colours", options=PALETTES, defaultValue=PALETTES[0], usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_NAMES, "Class names (comma-separated, in class order 1..k; empty: the model's)",
            optional=True))
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
            createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_SIMULATION, "Simulated image (textures of the classes)", optional=True,
            createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("NUM_CLASSES", "Number of classes (k)"))
        self.addOutput(QgsProcessingOutputNumber("VALID_PIXELS", "Pixels with a class"))
        self.addOutput(QgsProcessingOutputString("EXECUTION_PROVIDER", "onnxruntime execution provider"))

    def canExecute(self):  # noqa: N802
        if not onnxruntime_available():
            return False, INSTALL_HINT
        return True, ""

    def _class_names(self, parameters, context, session):
        """CLASS_NAMES checked against the model's k before anything is computed (None: the model's)."""
        text = self.parameterAsString(parameters, self.CLASS_NAMES, context).strip()
        if not text:
            return None
        from ..core.inference import read_model_info
        k = read_model_info(self.model_path(parameters, context), session=session).num_classes
        try:
            return check_class_names(text, k)
        except ValueError as exc:
            raise QgsProcessingException(f"CLASS_NAMES: {exc}")

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.errors import Canceled
        from ..core.segment import segment_raster
        from ..core.vectorize import format_report, polygonize, write_report

        if not onnxruntime_available():
            raise QgsProcessingException(INSTALL_HINT)
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        src = gdal_source(layer)
        model_path = self.model_path(parameters, context)
        out_raster = self.parameterAsOutputLayer(parameters, self.OUTPUT_RASTER, context)
        out_vector = self.parameterAsOutputLayer(parameters, self.OUTPUT_VECTOR, context)
        out_report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        out_sim = self.parameterAsOutputLayer(parameters, self.OUTPUT_SIMULATION, context)
        from ..core import outputs
        make_folders((out_raster, out_vector, out_report, out_sim))
        check_outputs(NAMES, {"output": (out_raster, outputs.CLASS_RASTER), "simulation": (out_sim, outputs.FLOAT_RASTER),
                              "vector": (out_vector, outputs.VECTOR), "report": (out_report, outputs.TABLE)},
                      {"input": src, "model": model_path})
        extent = None
        if parameters.get(self.EXTENT):
            ext = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
            if not ext.isNull() and not ext.isEmpty():
                extent = (ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum())
        min_seg = self.parameterAsInt(parameters, self.MIN_SEGMENT_PX, context)
        seg_end = 70.0 if out_vector else 100.0
        written = []
        try:
            session = cached_session(model_path)
            feedback.pushInfo(f"Model file: {model_path}")
            result = segment_raster(
                src, model_path, out_raster, bands=self.bands(parameters, context),
                scaling=self.parameterAsEnumString(parameters, self.SCALING, context) or "model",
                extra_nodata=optional_number(parameters, self.NODATA), extent=extent,
                tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context), min_segment_px=min_seg,
                simulation_path=out_sim or None, progress=progress_bridge(feedback, 0, seg_end),
                is_canceled=feedback.isCanceled, log=feedback.pushInfo, session=session,
                warn=feedback.pushWarning,
                palette=self.parameterAsEnumString(parameters, self.PALETTE, context) or PALETTES[0],
                class_names=self._class_names(parameters, context, session))
            written += [out_raster] + ([out_sim] if out_sim else [])
            if out_vector:
                feedback.setProgressText("Polygonizing (GDAL)")
                n = polygonize(out_raster, out_vector, class_names=result.class_names,
                               progress=progress_bridge(feedback, seg_end, 100), is_canceled=feedback.isCanceled)
                written.append(out_vector)
                feedback.pushInfo(f"{n} polygons written to {out_vector}")
        except Canceled:
            remove_outputs(written)
            raise QgsProcessingException("Canceled: no output was written.")
        except (ModelError, RasterError, OutputError, ImportError, ValueError) as exc:
            remove_outputs(written)
            raise QgsProcessingException(output_message(exc, NAMES))
        rows = result.report_rows()
        feedback.pushInfo("Per-class area:\n" + format_report(rows))
        if out_report:
            write_report(out_report, rows)
        for w in styling.save_default_styles(out_raster, out_vector, result.class_names, result.colors):
            feedback.pushWarning(w)
        for dest in (out_raster, out_vector):
            styling.attach_style(context, dest, result.class_names, result.colors)
        feedback.pushInfo(f"Done in {result.seconds:.1f} s ({result.execution_provider}).")
        return {self.OUTPUT_RASTER: out_raster, self.OUTPUT_VECTOR: out_vector or None,
                self.OUTPUT_REPORT: out_report or None, self.OUTPUT_SIMULATION: out_sim or None,
                "NUM_CLASSES": result.info.num_classes, "VALID_PIXELS": result.valid_pixels,
                "EXECUTION_PROVIDER": result.execution_provider}
