"""``ktextures:sample``: stratified random sample points (and optional image chips) from a class raster.

Parameters in, ``core.sampling`` calls, QGIS outputs out. No pixel work happens here.
"""
import os

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsFillSymbol,
    QgsGeometry,
    QgsMarkerSymbol,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsRendererCategory,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core import sampling
from ..core.classraster import OutputError, read_palette
from ..core.raster import RasterError, open_raster
from .common import KTexturesAlgorithm, check_outputs, gdal_source, output_message

#: core keys (core.outputs, core.sampling) -> parameter ids, for messages
NAMES = {"input": "INPUT", "image": "IMAGE", "folder": "OUTPUT_FOLDER", "points": "OUTPUT_POINTS",
         "chips": "OUTPUT_CHIPS", "summary": "OUTPUT_SUMMARY", "classes": "CLASSES", "chip_size": "CHIP_SIZE_PX"}


class ClassSymbolPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Colours sample points (filled circles) or chip footprints (outlines) by ``class_id`` with the class
    raster's palette when QGIS loads them on completion (GUI, runAndLoadResults)."""

    _keep = []  # Python references: only the C++ side is owned by the context (docs/development.md §5)

    def __init__(self, names, colors, polygons: bool):
        super().__init__()
        self.names, self.colors, self.polygons = list(names), list(colors), polygons

    def renderer(self):
        cats = []
        for i, (n, c) in enumerate(zip(self.names, self.colors)):
            if self.polygons:
                sym = QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": c, "outline_width": "0.5"})
            else:
                sym = QgsMarkerSymbol.createSimple({"name": "circle", "color": c, "outline_color": "#202020",
                                                    "size": "2.6"})
            cats.append(QgsRendererCategory(i + 1, sym, n))
        return QgsCategorizedSymbolRenderer("class_id", cats)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if isinstance(layer, QgsVectorLayer):
            layer.setRenderer(self.renderer())
            layer.triggerRepaint()

    @classmethod
    def attach(cls, context, layer_id, names, colors, polygons):
        if layer_id and context.willLoadLayerOnCompletion(layer_id):
            pp = cls(names, colors, polygons)
            cls._keep.append(pp)
            context.layerToLoadOnCompletionDetails(layer_id).setPostProcessor(pp)


class SampleAlgorithm(KTexturesAlgorithm):
    INPUT = "INPUT"
    IMAGE = "IMAGE"
    POINTS_PER_CLASS = "POINTS_PER_CLASS"
    PROPORTIONAL = "PROPORTIONAL"
    MIN_PER_CLASS = "MIN_PER_CLASS"
    MIN_EDGE_DISTANCE_PX = "MIN_EDGE_DISTANCE_PX"
    MIN_SPACING_PX = "MIN_SPACING_PX"
    SEED = "SEED"
    CLASSES = "CLASSES"
    CHIP_SIZE_PX = "CHIP_SIZE_PX"
    OUTPUT_POINTS = "OUTPUT_POINTS"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    OUTPUT_CHIPS = "OUTPUT_CHIPS"
    OUTPUT_SUMMARY = "OUTPUT_SUMMARY"
    SAMPLE_COUNT = "SAMPLE_COUNT"
    CHIP_COUNT = "CHIP_COUNT"

    def name(self):
        return "sample"

    def displayName(self):  # noqa: N802
        return "Sample training points and chips from classes"

    def shortHelpString(self):  # noqa: N802
        return (
            "Draws stratified random sample points from a class raster (for example the output of "
            "k-textures segment) to train a supervised model, and optionally cuts an image chip and a "
            "class-mask chip around every point.<br><br>"
            "<b>Class raster</b>: an integer raster, 0 = nodata, classes 1..k; class names come from the "
            "raster.<br>"
            "<b>Points per class</b>: samples per class, or with <b>Proportional</b> the total, spread by "
            "class area with at least <b>Minimum per class</b>.<br>"
            "<b>Minimum distance to a class edge</b> (pixels): a point's Euclidean distance to the nearest "
            "pixel of another class, nodata or outside the raster (the raster border counts as an edge) is "
            "at least this; points are at pixel centres.<br>"
            "<b>Minimum spacing</b> (pixels): any two points, of any classes, are at least this far apart.<br>"
            "<b>Seed</b>: the same seed and inputs give the same points.<br>"
            "<b>Classes</b>: optional list of class ids such as 1,3,5 (empty = all).<br>"
            "<b>Chip size</b> (pixels, 0 = no chips): for every point a square GeoTIFF of all bands of "
            "<b>Image</b> (which must be on the class raster's grid and CRS) and the matching class-mask "
            "GeoTIFF with the palette, written to <b>Chip folder</b>; only points whose chip fits inside "
            "the raster are drawn. <b>Chip footprints</b> lists the chips with their file names.<br>"
            "A class with too few interior pixels yields fewer points and a warning; the <b>Summary</b> "
            "table gives per class the points requested, found and skipped, and why.")

    def initAlgorithm(self, config=None):  # noqa: N802
        adv = QgsProcessingParameterDefinition.FlagAdvanced
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Class raster (0 = nodata)"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.IMAGE, "Image for chips (same grid as the class raster)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.POINTS_PER_CLASS, "Points per class (total when proportional)",
            type=QgsProcessingParameterNumber.Integer, defaultValue=50, minValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.PROPORTIONAL, "Proportional: spread the total over classes by area", defaultValue=False))
        p = QgsProcessingParameterNumber(self.MIN_PER_CLASS, "Minimum points per class when proportional",
                                         type=QgsProcessingParameterNumber.Integer, defaultValue=5, minValue=0)
        p.setFlags(p.flags() | adv)
        self.addParameter(p)
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_EDGE_DISTANCE_PX, "Minimum distance to a class edge (pixels)",
            type=QgsProcessingParameterNumber.Integer, defaultValue=3, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_SPACING_PX, "Minimum spacing between points (pixels)",
            type=QgsProcessingParameterNumber.Integer, defaultValue=10, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.SEED, "Random seed", type=QgsProcessingParameterNumber.Integer, defaultValue=1, minValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.CLASSES, "Classes to sample, e.g. 1,3,5 (empty = all)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.CHIP_SIZE_PX, "Chip size (pixels, 0 = no chips)",
            type=QgsProcessingParameterNumber.Integer, defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT_POINTS, "Sample points", type=QgsProcessing.TypeVectorPoint))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, "Chip folder", optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT_CHIPS, "Chip footprints", type=QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT_SUMMARY, "Summary per class", type=QgsProcessing.TypeVector, optional=True,
            createByDefault=True))
        self.addOutput(QgsProcessingOutputNumber(self.SAMPLE_COUNT, "Number of sample points"))
        self.addOutput(QgsProcessingOutputNumber(self.CHIP_COUNT, "Number of chips"))

    # -- helpers -------------------------------------------------------------------------------------
    def _classes(self, parameters, context):
        raw = parameters.get(self.CLASSES)
        if isinstance(raw, (list, tuple, int, float)) and not isinstance(raw, bool):
            return sampling.parse_classes(raw)
        return sampling.parse_classes(self.parameterAsString(parameters, self.CLASSES, context) or None)

    @staticmethod
    def _fields(spec):
        """QgsFields from ``(name, QVariant type)`` pairs."""
        f = QgsFields()
        for name, typ in spec:
            f.append(QgsField(name, typ))
        return f

    @classmethod
    def _point_fields(cls):
        return cls._fields((("sample_id", QVariant.Int), ("class_id", QVariant.Int),
                            ("class_name", QVariant.String), ("edge_distance_px", QVariant.Double),
                            ("row", QVariant.Int), ("col", QVariant.Int)))

    @classmethod
    def _chip_fields(cls):
        return cls._fields((("sample_id", QVariant.Int), ("class_id", QVariant.Int),
                            ("class_name", QVariant.String), ("image_file", QVariant.String),
                            ("mask_file", QVariant.String), ("xoff", QVariant.Int), ("yoff", QVariant.Int),
                            ("size_px", QVariant.Int)))

    @classmethod
    def _summary_fields(cls):
        return cls._fields((("class_id", QVariant.Int), ("class_name", QVariant.String),
                            ("pixels", QVariant.LongLong), ("area_m2", QVariant.Double),
                            ("interior_px", QVariant.LongLong), ("requested", QVariant.Int),
                            ("found", QVariant.Int), ("skipped", QVariant.Int), ("reason", QVariant.String)))

    def _check_outputs(self, parameters, context, class_path, image_path):
        """The chip folder and the file sinks are neither an input nor each other (core.outputs)."""
        from ..core import outputs

        wanted = {"folder": (self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context), outputs.FOLDER)}
        for key, pid in (("points", self.OUTPUT_POINTS), ("chips", self.OUTPUT_CHIPS),
                         ("summary", self.OUTPUT_SUMMARY)):
            if parameters.get(pid) in (None, ""):
                continue
            dest = self.parameterAsOutputLayer(parameters, pid, context) or ""
            if dest and not dest.startswith(("memory:", "TEMPORARY_OUTPUT", "ogr:", "postgres:", "spatialite:")):
                wanted[key] = (dest, outputs.SINK)
        check_outputs(NAMES, wanted, {"input": class_path, "image": image_path})

    # -- run -----------------------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.segment import Canceled

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        class_path = gdal_source(layer, self.INPUT)
        image = self.parameterAsRasterLayer(parameters, self.IMAGE, context)
        image_path = gdal_source(image, self.IMAGE) if image is not None else None
        n = self.parameterAsInt(parameters, self.POINTS_PER_CLASS, context)
        proportional = self.parameterAsBool(parameters, self.PROPORTIONAL, context)
        min_per_class = self.parameterAsInt(parameters, self.MIN_PER_CLASS, context)
        min_edge = self.parameterAsInt(parameters, self.MIN_EDGE_DISTANCE_PX, context)
        spacing = self.parameterAsInt(parameters, self.MIN_SPACING_PX, context)
        seed = self.parameterAsInt(parameters, self.SEED, context)
        chip = self.parameterAsInt(parameters, self.CHIP_SIZE_PX, context)
        crs = layer.crs() if layer.crs().isValid() else QgsCoordinateReferenceSystem()
        self._check_outputs(parameters, context, class_path, image_path)
        try:
            classes = self._classes(parameters, context)
            # fail fast on a wrong grid/CRS or chip size before any pixel is read
            cds = open_raster(class_path)
            try:
                sampling.check_class_raster(cds, class_path)
                if chip and (chip > cds.RasterXSize or chip > cds.RasterYSize):
                    raise sampling.SamplingError(
                        f"CHIP_SIZE_PX {chip} is larger than the class raster ({cds.RasterXSize} x "
                        f"{cds.RasterYSize} px). Choose a chip size of at most "
                        f"{min(cds.RasterXSize, cds.RasterYSize)} px.")
                if image_path:
                    ids = open_raster(image_path)
                    try:
                        sampling.image_offset(cds, ids)
                    finally:
                        ids = None
            finally:
                cds = None

            def progress(frac, stage):
                feedback.setProgress(100.0 * frac * (0.6 if chip else 1.0))

            result = sampling.draw_samples(
                class_path, n, proportional=proportional, min_per_class=min_per_class,
                min_edge_distance_px=min_edge, min_spacing_px=spacing, seed=seed, classes=classes,
                chip_size_px=chip, progress=progress, is_canceled=feedback.isCanceled, log=feedback.pushInfo)

            if not result.summary:
                feedback.pushWarning("The class raster has no class pixels (every pixel is 0 / nodata): "
                                     "no samples drawn.")
            for line, s in zip(sampling.summary_text(result), result.summary):
                feedback.pushInfo(line)
                if s.found < s.requested or (classes and not s.pixels):
                    feedback.pushWarning(f"Class {s.class_id} '{s.class_name}': {s.found} of {s.requested} "
                                         f"point(s): {s.reason}")

            sink, points_id = self.parameterAsSink(parameters, self.OUTPUT_POINTS, context, self._point_fields(),
                                                   QgsWkbTypes.Point, crs)
            if sink is None:
                raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT_POINTS))
            for s in result.samples:
                f = QgsFeature()
                f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(s.x, s.y)))
                f.setAttributes([s.sample_id, s.class_id, s.class_name, float(s.edge_distance_px), s.row, s.col])
                sink.addFeature(f, QgsFeatureSink.FastInsert)

            chips = []
            folder = self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context) or None
            if chip and not folder:
                folder = QgsProcessingUtils.generateTempFilename("ktextures_chips")
            if folder:
                os.makedirs(folder, exist_ok=True)
            if chip:
                if not image_path:
                    feedback.pushWarning("No IMAGE given: only the class-mask chips are written.")

                def chip_progress(frac, stage):
                    feedback.setProgress(60.0 + 40.0 * frac)

                chips = sampling.write_chips(class_path, result.samples, chip, folder, image_path,
                                             progress=chip_progress, is_canceled=feedback.isCanceled)
                feedback.pushInfo(f"Wrote {len(chips)} chip pair(s) of {chip} x {chip} px to {folder}")

            csink, chips_id = self.parameterAsSink(parameters, self.OUTPUT_CHIPS, context, self._chip_fields(),
                                                   QgsWkbTypes.Polygon, crs)
            if csink is not None:
                for c in chips:
                    f = QgsFeature()
                    f.setGeometry(QgsGeometry.fromPolygonXY([[QgsPointXY(x, y) for x, y in
                                                              c.footprint + [c.footprint[0]]]]))
                    f.setAttributes([c.sample.sample_id, c.sample.class_id, c.sample.class_name,
                                     c.image_path, c.mask_path, c.window[0], c.window[1], c.window[2]])
                    csink.addFeature(f, QgsFeatureSink.FastInsert)

            ssink, summary_id = self.parameterAsSink(parameters, self.OUTPUT_SUMMARY, context,
                                                     self._summary_fields(), QgsWkbTypes.NoGeometry,
                                                     QgsCoordinateReferenceSystem())
            if ssink is not None:
                for s in result.summary:
                    row = s.as_row()
                    f = QgsFeature()
                    f.setAttributes([row[k] for k in ("class_id", "class_name", "pixels", "area_m2", "interior_px",
                                                      "requested", "found", "skipped", "reason")])
                    ssink.addFeature(f, QgsFeatureSink.FastInsert)
        except Canceled:
            raise QgsProcessingException("Canceled by the user: sampling stopped (chips already written stay "
                                         "in the chip folder).") from None
        except (sampling.SamplingError, RasterError, OutputError) as exc:
            raise QgsProcessingException(output_message(exc, NAMES)) from None

        try:
            names, colors = read_palette(class_path)
        except Exception:  # noqa: BLE001  (no palette: the layers stay unstyled)
            names = colors = []
        ClassSymbolPostProcessor.attach(context, points_id, names, colors, polygons=False)
        if csink is not None:
            ClassSymbolPostProcessor.attach(context, chips_id, names, colors, polygons=True)
        out = {self.OUTPUT_POINTS: points_id, self.SAMPLE_COUNT: len(result.samples), self.CHIP_COUNT: len(chips)}
        if folder:
            out[self.OUTPUT_FOLDER] = folder
        if csink is not None:
            out[self.OUTPUT_CHIPS] = chips_id
        if ssink is not None:
            out[self.OUTPUT_SUMMARY] = summary_id
        return out
