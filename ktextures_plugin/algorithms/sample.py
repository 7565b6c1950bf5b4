"""``ktextures:sample``: stratified random sample points (and optional image chips) from a class raster.

Parameters in, ``core.sample.sampling`` calls, QGIS outputs out. No pixel work happens here.
"""
import os
import re
from typing import Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsWkbTypes,
)

from ..core.feedback import Feedback
from ..core.io import atomic
from ..core.io.classraster import read_palette
from ..core.io.raster import open_raster
from ..core.sample import sampling
from . import styling
from .common import (
    KTexturesAlgorithm,
    all_or_nothing,
    check_outputs,
    field_type,
    gdal_source,
    make_folders,
    name_loaded_outputs,
    sink_destination,
)

#: core keys (core.io.outputs, core.sample.sampling) -> parameter ids, for messages
NAMES = {"input": "INPUT", "image": "IMAGE", "folder": "OUTPUT_FOLDER", "points": "OUTPUT_POINTS",
         "chips": "OUTPUT_CHIPS", "summary": "OUTPUT_SUMMARY", "classes": "CLASSES", "chip_size": "CHIP_SIZE_PX"}
#: SampleOptions field -> the parameter that sets it (tests/frontends/test_options.py compares it with the
#: dataclass; ``border_is_edge`` and the tuning fields ``window_px``, ``distance_cap_px``, ``pool_min`` and
#: ``pool_factor`` are for scripts)
OPTIONS = {"points_per_class": "POINTS_PER_CLASS", "proportional": "PROPORTIONAL", "min_per_class": "MIN_PER_CLASS",
           "min_edge_distance_px": "MIN_EDGE_DISTANCE_PX", "min_spacing_px": "MIN_SPACING_PX", "seed": "SEED",
           "classes": "CLASSES", "chip_size_px": "CHIP_SIZE_PX"}


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
        adv = QgsProcessingParameterDefinition.Flag.FlagAdvanced
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Class raster (0 = nodata)"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.IMAGE, "Image for chips (same grid as the class raster)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.POINTS_PER_CLASS, "Points per class (total when proportional)",
            type=QgsProcessingParameterNumber.Type.Integer, defaultValue=50, minValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.PROPORTIONAL, "Proportional: spread the total over classes by area", defaultValue=False))
        p = QgsProcessingParameterNumber(self.MIN_PER_CLASS, "Minimum points per class when proportional",
                                         type=QgsProcessingParameterNumber.Type.Integer, defaultValue=5, minValue=0)
        p.setFlags(p.flags() | adv)
        self.addParameter(p)
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_EDGE_DISTANCE_PX, "Minimum distance to a class edge (pixels)",
            type=QgsProcessingParameterNumber.Type.Integer, defaultValue=3, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_SPACING_PX, "Minimum spacing between points (pixels)",
            type=QgsProcessingParameterNumber.Type.Integer, defaultValue=10, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            self.SEED, "Random seed", type=QgsProcessingParameterNumber.Type.Integer, defaultValue=1, minValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.CLASSES, "Classes to sample, e.g. 1,3,5 (empty = all)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.CHIP_SIZE_PX, "Chip size (pixels, 0 = no chips)",
            type=QgsProcessingParameterNumber.Type.Integer, defaultValue=0, minValue=0))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT_POINTS, "Sample points", type=QgsProcessing.SourceType.TypeVectorPoint))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, "Chip folder", optional=True, createByDefault=True))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT_CHIPS, "Chip footprints", type=QgsProcessing.SourceType.TypeVectorPolygon, optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.OUTPUT_SUMMARY, "Summary per class", type=QgsProcessing.SourceType.TypeVector, optional=True,
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
        """QgsFields from ``(name, type name)`` pairs (:func:`common.field_type`: 'Int', 'String', ...)."""
        f = QgsFields()
        for name, typ in spec:
            f.append(QgsField(name, field_type(typ)))
        return f

    @classmethod
    def _point_fields(cls):
        return cls._fields((("sample_id", "Int"), ("class_id", "Int"),
                            ("class_name", "String"), ("edge_distance_px", "Double"),
                            ("row", "Int"), ("col", "Int")))

    @classmethod
    def _chip_fields(cls):
        return cls._fields((("sample_id", "Int"), ("class_id", "Int"),
                            ("class_name", "String"), ("image_file", "String"),
                            ("mask_file", "String"), ("xoff", "Int"), ("yoff", "Int"),
                            ("size_px", "Int")))

    @classmethod
    def _summary_fields(cls):
        return cls._fields((("class_id", "Int"), ("class_name", "String"),
                            ("pixels", "LongLong"), ("area_m2", "Double"),
                            ("interior_px", "LongLong"), ("requested", "Int"),
                            ("found", "Int"), ("skipped", "Int"), ("reason", "String")))

    def _check_outputs(self, parameters, context, class_path, image_path):
        """The chip folder and the file sinks are neither an input nor each other (core.io.outputs)."""
        from ..core.io import outputs

        inputs = {"input": class_path, "image": image_path}
        wanted = {"folder": (self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context), outputs.FOLDER)}
        for key, pid in (("points", self.OUTPUT_POINTS), ("chips", self.OUTPUT_CHIPS),
                         ("summary", self.OUTPUT_SUMMARY)):
            # not parameterAsOutputLayer: on a sink it registers an extra layer, "not correctly generated"
            dest = sink_destination(parameters, pid, context)
            if dest.startswith(("ogr:", "spatialite:")):  # a table into an existing file: never into an input
                check_outputs(NAMES, {key: (_uri_file(dest), outputs.SINK)}, inputs)
            elif dest and not dest.startswith(("memory:", "TEMPORARY_OUTPUT", "postgres:")):
                wanted[key] = (dest, outputs.SINK)
        check_outputs(NAMES, wanted, inputs)

    # -- run -----------------------------------------------------------------------------------------
    @all_or_nothing
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.errors import Canceled

        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        class_path = gdal_source(layer, self.INPUT)
        image = self.parameterAsRasterLayer(parameters, self.IMAGE, context)
        image_path = gdal_source(image, self.IMAGE) if image is not None else None
        chip = self.parameterAsInt(parameters, self.CHIP_SIZE_PX, context)
        crs = layer.crs() if layer.crs().isValid() else QgsCoordinateReferenceSystem()
        self._check_outputs(parameters, context, class_path, image_path)
        try:
            classes = self._classes(parameters, context)
            self._preflight(class_path, image_path, chip)
            result = self._draw(parameters, context, feedback, class_path, classes, chip)
            self._log_summary(feedback, result, classes)
            # the chips first: a chip that cannot be written fails the run before any layer is written, and
            # a failure of a layer removes the chips (all_or_nothing)
            folder, chips = self._write_chips(parameters, context, feedback, class_path, image_path, result, chip)
            points_id = self._write_points(parameters, context, result, crs)
            chips_id = self._write_footprints(parameters, context, chips, crs)
            summary_id = self._write_summary(parameters, context, result)
        except Canceled:
            raise QgsProcessingException("Canceled by the user: sampling stopped, no output was left.") from None
        self._style(context, feedback, class_path, points_id, chips_id)
        name_loaded_outputs(self, context, _input_name(layer, image), {
            self.OUTPUT_POINTS: points_id, self.OUTPUT_CHIPS: chips_id, self.OUTPUT_SUMMARY: summary_id})
        out = {self.OUTPUT_POINTS: points_id, self.SAMPLE_COUNT: len(result.samples), self.CHIP_COUNT: len(chips)}
        if folder:
            out[self.OUTPUT_FOLDER] = folder
        if chips_id is not None:
            out[self.OUTPUT_CHIPS] = chips_id
        if summary_id is not None:
            out[self.OUTPUT_SUMMARY] = summary_id
        return out

    @staticmethod
    def _preflight(class_path, image_path, chip):
        """Fail fast on a wrong class raster, chip size, or image grid/CRS before any pixel is read."""
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

    def sample_options(self, parameters, context, *, classes, chip):
        """The :class:`~ktextures_plugin.core.sample.SampleOptions` of the parameters (:data:`OPTIONS`); ``classes``
        and ``chip`` as :meth:`processAlgorithm` parsed them."""
        return sampling.SampleOptions(
            self.parameterAsInt(parameters, self.POINTS_PER_CLASS, context),
            proportional=self.parameterAsBool(parameters, self.PROPORTIONAL, context),
            min_per_class=self.parameterAsInt(parameters, self.MIN_PER_CLASS, context),
            min_edge_distance_px=self.parameterAsInt(parameters, self.MIN_EDGE_DISTANCE_PX, context),
            min_spacing_px=self.parameterAsInt(parameters, self.MIN_SPACING_PX, context),
            seed=self.parameterAsInt(parameters, self.SEED, context), classes=classes, chip_size_px=chip)

    def _draw(self, parameters, context, feedback, class_path, classes, chip):
        """The stratified random sample (core.sample.draw_samples); progress 0-60 % when chips follow."""
        def progress(frac, stage):
            feedback.setProgress(100.0 * frac * (0.6 if chip else 1.0))

        opts = self.sample_options(parameters, context, classes=classes, chip=chip)
        return sampling.draw_samples(class_path, opts, feedback=Feedback(
            progress=progress, is_canceled=feedback.isCanceled, info=feedback.pushInfo))

    @staticmethod
    def _log_summary(feedback, result, classes):
        if not result.summary:
            feedback.pushWarning("The class raster has no class pixels (every pixel is 0 / nodata): "
                                 "no samples drawn.")
        for line, s in zip(sampling.summary_text(result), result.summary):
            feedback.pushInfo(line)
            if s.found < s.requested or (classes and not s.pixels):
                feedback.pushWarning(f"Class {s.class_id} '{s.class_name}': {s.found} of {s.requested} "
                                     f"point(s): {s.reason}")

    def _write_points(self, parameters, context, result, crs):
        """OUTPUT_POINTS; the sink is closed when this returns (so its file can take a style)."""
        feats = []
        for s in result.samples:
            f = QgsFeature()
            f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(s.x, s.y)))
            f.setAttributes([s.sample_id, s.class_id, s.class_name, float(s.edge_distance_px), s.row, s.col])
            feats.append(f)
        points_id = self._write_layer(parameters, self.OUTPUT_POINTS, context, self._point_fields(),
                                      QgsWkbTypes.Type.Point, crs, feats)
        if points_id is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT_POINTS))
        return points_id

    def _write_chips(self, parameters, context, feedback, class_path, image_path, result, chip):
        """The chip GeoTIFFs into OUTPUT_FOLDER (a temporary folder when none is given); ``(folder, chips)``."""
        chips = []
        folder = self.parameterAsFileOutput(parameters, self.OUTPUT_FOLDER, context) or None
        if chip and not folder:
            folder = QgsProcessingUtils.generateTempFilename("ktextures_chips")
        make_folders((), {self.OUTPUT_FOLDER: folder})
        if chip:
            if not image_path:
                feedback.pushWarning("No IMAGE given: only the class-mask chips are written.")

            def chip_progress(frac, stage):
                feedback.setProgress(60.0 + 40.0 * frac)

            chips = sampling.write_chips(class_path, result.samples, chip, folder, image_path,
                                         feedback=Feedback(progress=chip_progress, is_canceled=feedback.isCanceled))
            feedback.pushInfo(f"Wrote {len(chips)} chip pair(s) of {chip} x {chip} px to {folder}")
        return folder, chips

    def _write_footprints(self, parameters, context, chips, crs):
        """OUTPUT_CHIPS (the chips' footprints with their file names), or None when not wanted."""
        feats = []
        for c in chips:
            f = QgsFeature()
            f.setGeometry(QgsGeometry.fromPolygonXY([[QgsPointXY(x, y) for x, y in c.footprint + [c.footprint[0]]]]))
            f.setAttributes([c.sample.sample_id, c.sample.class_id, c.sample.class_name,
                             c.image_path, c.mask_path, c.window[0], c.window[1], c.window[2]])
            feats.append(f)
        return self._write_layer(parameters, self.OUTPUT_CHIPS, context, self._chip_fields(),
                                 QgsWkbTypes.Type.Polygon, crs, feats)

    def _write_summary(self, parameters, context, result):
        """OUTPUT_SUMMARY (one row per class), or None when not wanted."""
        feats = []
        for s in result.summary:
            row = s.as_row()
            f = QgsFeature()
            f.setAttributes([row[k] for k in ("class_id", "class_name", "pixels", "area_m2", "interior_px",
                                              "requested", "found", "skipped", "reason")])
            feats.append(f)
        return self._write_layer(parameters, self.OUTPUT_SUMMARY, context, self._summary_fields(),
                                 QgsWkbTypes.Type.NoGeometry, QgsCoordinateReferenceSystem(), feats)

    def _write_layer(self, parameters, name, context, fields, wkb, crs, feats):
        """The sink ``name`` with ``feats`` (None when the parameter is not set), closed and checked.

        An existing file of that name is kept for the run to put back on failure (``atomic.keep_backup``);
        the file is named to the run (:func:`_delivered`) before the first feature, so a failure removes it.
        A full disk can fail an insert, or only the commit when the sink closes, and QGIS reports neither: the
        file is read back after closing (:func:`_check_written`).

        Raises:
            OutputError: the file cannot be created, an insert failed, or it does not read back whole.
        """
        from ..core.io.atomic import disk_full, keep_backup, write_failed

        dest = sink_destination(parameters, name, context)
        target = _uri_file(dest.split("|")[0]) if dest else ""
        if target and os.path.isabs(target):
            keep_backup(target)
        try:
            sink, dest_id = self.parameterAsSink(parameters, name, context, fields, wkb, crs)
        except QgsProcessingException as exc:  # QGIS's text on a full disk: a page of a GeoPackage's SQL
            if target and (disk_full(target) or "disk is full" in str(exc) or "No space left" in str(exc)):
                raise write_failed(target, "No space left on device") from None
            raise
        if sink is None:
            return None
        _delivered(dest_id)
        failed = None
        for f in feats:
            if not sink.addFeature(f, QgsFeatureSink.Flag.FastInsert):
                failed = sink.lastError() or "the feature could not be added"
                break
        if failed is None and not sink.flushBuffer():
            failed = sink.lastError() or "the features could not be written"
        del sink  # the last reference: closes the file
        path = styling.file_of(dest_id)
        if failed is None and path:
            failed = _check_written(dest_id, [f.attributes()[0] for f in feats])
        if failed is not None:
            raise write_failed(path or dest_id, str(failed))
        return dest_id

    @staticmethod
    def _style(context, feedback, class_path, points_id, chips_id):
        """Points and footprints categorised by class with the class raster's colours and names: saved into
        their files (styling.save_sample_style) and applied when QGIS loads them."""
        try:
            names, colors = read_palette(class_path)
        except (RuntimeError, ValueError):  # no readable palette: the layers stay unstyled
            return
        for dest, polygons in ((points_id, False), (chips_id, True)):
            if dest is None:
                continue
            for w in styling.save_sample_style(dest, names, colors, polygons):
                feedback.pushWarning(w)
            styling.attach_sample_style(context, dest, names, colors, polygons)


def _uri_file(uri: str) -> str:
    """The file an ``ogr:``/``spatialite:`` destination URI writes into (``dbname='...'``), else the URI."""
    m = re.search(r"dbname='((?:[^']|'')*)'", uri) or re.search(r"dbname=(\S+)", uri)
    return m.group(1).replace("''", "'") if m else uri


def _check_written(dest, first_values) -> Optional[str]:
    """None when the layer ``dest`` reads back with ``first_values`` as its first attribute, feature by feature,
    else what is wrong (a shapefile's .shx can count every point while its .dbf was cut short)."""
    from osgeo import ogr  # not a QgsVectorLayer: QGIS's OGR connection pool would keep the file open

    path, _, opts = dest.partition("|")
    name = dict(o.split("=", 1) for o in opts.split("|") if "=" in o).get("layername")
    try:
        ds = ogr.Open(path)
        lyr = ds.GetLayerByName(name) if name else ds.GetLayer(0)
        got = [f.GetField(0) for f in lyr]
    except (RuntimeError, AttributeError) as exc:
        return f"the file is incomplete ({exc})"
    finally:
        lyr = ds = None
    got, want = [str(v) for v in got], [str(v) for v in first_values]  # a CSV reads back as text
    if got != want:
        ok = sum(1 for a, b in zip(got, want) if a == b)
        return f"only {ok} of {len(first_values)} features could be read back"
    return None


def _delivered(dest):
    """Name a sink's file to the run (``core.io.atomic.delivered``), so that a later failure removes it."""
    path = styling.file_of(dest) if dest else None
    if path:
        atomic.delivered(path)
    return dest


def _input_name(classes, image) -> str:
    """The name the loaded outputs carry: the segmented image's, from a class raster named by segment ("Classes
    (s2_sample)" -> "s2_sample"), else the image's (a class raster made inside a graphical model is named after
    the child's output, "OUTPUT_RASTER"), else the class raster's."""
    source = re.fullmatch(r"Classes \((.+)\)", classes.name())
    if source:
        return source.group(1)
    return image.name() if image is not None else classes.name()
