"""``ktextures:evaluate``: score a class raster against reference labels.

Parameters in, ``core.evaluate`` / ``core.metrics`` calls, QGIS outputs out. No pixel work happens here.
"""
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core import classraster, outputs
from ..core import evaluate as core_evaluate
from .common import KTexturesAlgorithm, all_or_nothing, check_outputs, gdal_source, make_folders, optional_number

#: core keys (core.outputs, core.evaluate) -> parameter ids, for messages
NAMES = {"input": "INPUT", "reference": "REFERENCE", "vector": "REFERENCE_VECTOR", "table": "OUTPUT_TABLE",
         "raster": "OUTPUT_RASTER"}


class EvaluateAlgorithm(KTexturesAlgorithm):
    INPUT = "INPUT"
    REFERENCE = "REFERENCE"
    REFERENCE_NODATA = "REFERENCE_NODATA"
    REFERENCE_VECTOR = "REFERENCE_VECTOR"
    REFERENCE_FIELD = "REFERENCE_FIELD"
    REFERENCE_NAME_FIELD = "REFERENCE_NAME_FIELD"
    MATCHING = "MATCHING"
    OUTPUT_TABLE = "OUTPUT_TABLE"
    OUTPUT_RASTER = "OUTPUT_RASTER"
    ARI = "ARI"
    NMI = "NMI"
    ACCURACY = "ACCURACY"
    MIOU_HUNGARIAN = "MIOU_HUNGARIAN"
    MIOU_MAJORITY = "MIOU_MAJORITY"
    PIXELS = "PIXELS"
    SAMPLE_PURITY = "SAMPLE_PURITY"
    CLASSES_REACHED = "CLASSES_REACHED"

    MATCHING_OPTIONS = ["Hungarian (one-to-one)", "Majority (many-to-one)"]

    def name(self):
        return "evaluate"

    def displayName(self):  # noqa: N802
        return "Evaluate classes against reference labels"

    def shortHelpString(self):  # noqa: N802
        return (
            "Measures how well a class raster (k-textures segment, k-means, ...) agrees with reference "
            "labels. Only pixels labelled in the reference and classified in the class raster are scored.<br><br>"
            "<b>Class raster</b>: integer classes 1..k, 0 = nodata.<br>"
            "<b>Reference</b>: either a label raster on exactly the same grid (size, pixel size, origin, CRS; "
            "the value <i>Reference nodata</i>, 0 by default, and the raster's own nodata value mean "
            "unlabelled), or reference polygons with a numeric class field, rasterised onto the class "
            "raster's grid (pixel centres; pixels outside every polygon are unlabelled). An optional text "
            "field gives the reference class names.<br><br>"
            "<b>Scores</b> (from the contingency table): ARI (adjusted Rand index, Hubert &amp; Arabie 1985) "
            "and NMI (normalised mutual information, arithmetic mean of the entropies) compare the "
            "partitions without naming clusters; pixel accuracy and mean IoU need each cluster matched to "
            "a reference class: <i>Hungarian</i> = one-to-one matching maximising the agreeing pixels "
            "(surplus clusters stay unmatched and count as errors), <i>majority</i> = each cluster takes the "
            "reference class most of its pixels belong to (many clusters can share a class). mIoU = mean "
            "over reference classes of TP / (TP + FP + FN). <i>Sample purity</i>: 50 interior samples per "
            "class (edge distance at least 3 px, seed 1, as <i>Sample points</i> draws them); each cluster is "
            "mapped to its majority reference class; the share of the samples on labelled pixels whose "
            "reference class is their cluster's mapped class. <i>Classes reached</i>: how many distinct "
            "reference classes are the mapped class of at least one cluster.<br><br>"
            "<b>Outputs</b>: the figures; a CSV table with the IoU of every class and its matched reference "
            "class (columns class_id, class_name, reference_class, reference_name, iou, pixels); optionally "
            "the class raster relabelled with the matched reference classes, with their names and colours "
            "(matching chosen by <i>Matching for the table and raster</i>)."
        )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Class raster (0 = nodata, classes 1..k)"))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE, "Reference label raster (same grid)", optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.REFERENCE_VECTOR, "Or: reference polygons", [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.REFERENCE_FIELD, "Reference class field (numeric)", parentLayerParameterName=self.REFERENCE_VECTOR,
            type=QgsProcessingParameterField.Numeric, optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.REFERENCE_NAME_FIELD, "Reference class name field (optional)",
            parentLayerParameterName=self.REFERENCE_VECTOR, type=QgsProcessingParameterField.Any, optional=True))
        nd = QgsProcessingParameterNumber(self.REFERENCE_NODATA, "Reference value meaning unlabelled",
                                          type=QgsProcessingParameterNumber.Double, defaultValue=0, optional=True)
        nd.setFlags(nd.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(nd)
        m = QgsProcessingParameterEnum(self.MATCHING, "Matching for the table and raster", self.MATCHING_OPTIONS,
                                       defaultValue=0)
        m.setFlags(m.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(m)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_TABLE, "Per-class IoU table", fileFilter="CSV files (*.csv)", optional=True,
            createByDefault=True))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_RASTER, "Classes relabelled with the matched reference classes", optional=True,
            createByDefault=False))
        for key, text in ((self.ARI, "Adjusted Rand index"), (self.NMI, "Normalised mutual information"),
                          (self.ACCURACY, "Pixel accuracy (Hungarian matching)"),
                          (self.MIOU_HUNGARIAN, "Mean IoU (Hungarian matching)"),
                          (self.MIOU_MAJORITY, "Mean IoU (majority matching)"),
                          (self.PIXELS, "Scored pixels"),
                          (self.SAMPLE_PURITY, "Sample purity (interior samples whose cluster's majority "
                                               "reference class is right)"),
                          (self.CLASSES_REACHED, "Reference classes reached by the clusters")):
            self.addOutput(QgsProcessingOutputNumber(key, text))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        has_raster = parameters.get(self.REFERENCE) not in (None, "")
        has_vector = parameters.get(self.REFERENCE_VECTOR) not in (None, "")
        if has_raster == has_vector:
            return False, ("Give exactly one reference: a reference label raster, or reference polygons "
                           "with their class field.")
        if has_vector and parameters.get(self.REFERENCE_FIELD) in (None, ""):
            return False, "Reference polygons need a numeric reference class field (REFERENCE_FIELD)."
        return super().checkParameterValues(parameters, context)

    @all_or_nothing
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        pred = gdal_source(self.parameterAsRasterLayer(parameters, self.INPUT, context), self.INPUT)
        # absent = the default (0); explicitly empty = no unlabelled value
        ref_nodata = (optional_number(parameters, self.REFERENCE_NODATA) if self.REFERENCE_NODATA in parameters
                      else self.parameterDefinition(self.REFERENCE_NODATA).defaultValue())
        matching = core_evaluate.MATCHINGS[self.parameterAsEnum(parameters, self.MATCHING, context)]
        table_path = self.parameterAsFileOutput(parameters, self.OUTPUT_TABLE, context) or None
        raster_path = (self.parameterAsOutputLayer(parameters, self.OUTPUT_RASTER, context)
                       if parameters.get(self.OUTPUT_RASTER) not in (None, "") else None) or None
        kwargs = dict(ref_nodata=ref_nodata, matching=matching, table_path=table_path, raster_path=raster_path)
        if parameters.get(self.REFERENCE) not in (None, ""):
            kwargs["reference"] = gdal_source(self.parameterAsRasterLayer(parameters, self.REFERENCE, context),
                                              self.REFERENCE)
            feedback.pushInfo(f"Reference raster: {kwargs['reference']}")
        else:
            field = self.parameterAsString(parameters, self.REFERENCE_FIELD, context)
            name_field = self.parameterAsString(parameters, self.REFERENCE_NAME_FIELD, context) or None
            if not field:
                raise QgsProcessingException("Reference polygons need a numeric reference class field.")
            path, layer_name = self.parameterAsCompatibleSourceLayerPathAndLayerName(
                parameters, self.REFERENCE_VECTOR, context, ["gpkg", "shp"], "gpkg", feedback)
            if not path:
                raise QgsProcessingException("Could not load the reference polygons (REFERENCE_VECTOR).")
            kwargs.update(vector=path.split("|")[0], vector_layer=layer_name or None, field_name=field,
                          name_field=name_field)
            feedback.pushInfo(f"Reference polygons: {path} (class field '{field}'), rasterised onto the class "
                              "raster's grid")
        make_folders((table_path, raster_path))
        check_outputs(NAMES, {"table": (table_path, outputs.TABLE), "raster": (raster_path, outputs.CLASS_RASTER)},
                      {"input": pred, "reference": kwargs.get("reference"), "vector": kwargs.get("vector")})
        ev = core_evaluate.evaluate(pred, **kwargs)
        for line in ev.log:
            feedback.pushInfo(line)
        s = ev.scores
        feedback.pushInfo(f"Scored pixels: {s.pixels}; ARI {s.ari:.4f}, NMI {s.nmi:.4f}, accuracy (Hungarian) "
                          f"{s.accuracy:.4f}, mIoU Hungarian {s.miou_hungarian:.4f}, mIoU majority "
                          f"{s.miou_majority:.4f}")
        feedback.pushInfo(f"Sample purity {s.sample_purity:.4f} ({s.samples_scored} interior samples on labelled "
                          f"pixels); reference classes reached: {s.classes_reached} of {len(s.table.ref_labels)}")
        for r in ev.rows:
            iou = "-" if r["iou"] is None else f"{r['iou']:.3f}"
            feedback.pushInfo(f"  class {r['class_id'] if r['class_id'] is not None else '-'} "
                              f"({r['class_name'] or '-'}) -> reference {r['reference_class']} "
                              f"({r['reference_name'] or '-'}): IoU {iou}, {r['pixels']} px")
        results = {self.ARI: s.ari, self.NMI: s.nmi, self.ACCURACY: s.accuracy,
                   self.MIOU_HUNGARIAN: s.miou_hungarian, self.MIOU_MAJORITY: s.miou_majority,
                   self.PIXELS: s.pixels, self.SAMPLE_PURITY: s.sample_purity,
                   self.CLASSES_REACHED: s.classes_reached, self.OUTPUT_TABLE: table_path}
        if raster_path:
            results[self.OUTPUT_RASTER] = raster_path
            try:
                from .styling import attach_style
                names, colors = classraster.read_palette(raster_path)
                attach_style(context, raster_path, names, colors)
            except Exception as exc:  # styling is a nicety; the file already carries its palette
                feedback.pushWarning(f"Could not style the relabelled raster: {exc}")
        return results
