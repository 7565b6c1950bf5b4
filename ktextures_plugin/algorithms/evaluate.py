"""``ktextures:evaluate``: score a class raster against reference labels.

Parameters in, ``core.evaluate`` / ``core.evaluate.metrics`` calls, QGIS outputs out. No pixel work happens here.
"""
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from ..core.evaluate import evaluate as core_evaluate
from ..core.io import classraster, outputs
from .common import KTexturesAlgorithm, all_or_nothing, check_outputs, gdal_source, make_folders, optional_number

#: core keys (core.io.outputs, core.evaluate) -> parameter ids, for messages
NAMES = {"input": "INPUT", "reference": "REFERENCE", "vector": "REFERENCE_VECTOR", "table": "OUTPUT_TABLE",
         "raster": "OUTPUT_RASTER", "image": "IMAGE"}


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
    IMAGE = "IMAGE"
    IMAGE_BANDS = "IMAGE_BANDS"
    KAPPA = "KAPPA"
    F1_MACRO = "F1_MACRO"
    DOWNSTREAM_ACCURACY = "DOWNSTREAM_ACCURACY"
    DOWNSTREAM_MIOU = "DOWNSTREAM_MIOU"

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
            "reference classes are the mapped class of at least one cluster. <i>Cohen's kappa</i> and per-class "
            "<i>precision, recall, F1</i> after the Hungarian matching.<br>"
            "<b>Downstream</b> (when the <i>Image</i> the classes were made from is given, same grid): what the "
            "classes are for. The interior samples above, each labelled with its cluster's majority reference class, "
            "train a random forest (scikit-learn, 100 trees, seed 0) on the image's band values (<i>Image bands</i>, "
            "default all); the forest classifies the scene and its accuracy and mean IoU against the reference are "
            "<i>downstream accuracy</i> and <i>downstream mIoU</i>.<br><br>"
            "<b>Outputs</b>: the figures; a CSV table with the IoU of every class and its matched reference "
            "class (columns class_id, class_name, reference_class, reference_name, iou, precision, recall, f1, "
            "pixels); optionally "
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
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.IMAGE, "Image the classes were made from (same grid; for the downstream figures)", optional=True))
        self.addParameter(QgsProcessingParameterBand(
            self.IMAGE_BANDS, "Image bands for the downstream random forest (empty: all)",
            parentLayerParameterName=self.IMAGE, allowMultiple=True, optional=True))
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
                          (self.CLASSES_REACHED, "Reference classes reached by the clusters"),
                          (self.KAPPA, "Cohen's kappa (Hungarian matching)"),
                          (self.F1_MACRO, "Mean F1 over the reference classes (Hungarian matching)"),
                          (self.DOWNSTREAM_ACCURACY, "Downstream accuracy (random forest on the samples; NaN "
                                                     "without an image)"),
                          (self.DOWNSTREAM_MIOU, "Downstream mean IoU (random forest on the samples; NaN "
                                                 "without an image)")):
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
        if parameters.get(self.IMAGE) not in (None, ""):
            kwargs["image"] = gdal_source(self.parameterAsRasterLayer(parameters, self.IMAGE, context), self.IMAGE)
            kwargs["bands"] = self.parameterAsInts(parameters, self.IMAGE_BANDS, context) or None
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
                      {"input": pred, "reference": kwargs.get("reference"), "vector": kwargs.get("vector"),
                       "image": kwargs.get("image")})
        ev = core_evaluate.evaluate(pred, **kwargs)
        for line in ev.log:
            feedback.pushInfo(line)
        s = ev.scores
        self._report(ev, feedback)
        results = {self.ARI: s.ari, self.NMI: s.nmi, self.ACCURACY: s.accuracy,
                   self.MIOU_HUNGARIAN: s.miou_hungarian, self.MIOU_MAJORITY: s.miou_majority,
                   self.PIXELS: s.pixels, self.SAMPLE_PURITY: s.sample_purity,
                   self.CLASSES_REACHED: s.classes_reached, self.KAPPA: s.kappa,
                   self.F1_MACRO: float(s.f1.mean()), self.DOWNSTREAM_ACCURACY: s.downstream_accuracy,
                   self.DOWNSTREAM_MIOU: s.downstream_miou, self.OUTPUT_TABLE: table_path}
        if raster_path:
            results[self.OUTPUT_RASTER] = raster_path
            try:
                from .styling import attach_style
                names, colors = classraster.read_palette(raster_path)
                attach_style(context, raster_path, names, colors)
            except Exception as exc:  # styling is a nicety; the file already carries its palette
                feedback.pushWarning(f"Could not style the relabelled raster: {exc}")
        return results

    @staticmethod
    def _report(ev, feedback):
        """The figures and the per-class table as log lines."""
        s = ev.scores
        feedback.pushInfo(f"Scored pixels: {s.pixels}; ARI {s.ari:.4f}, NMI {s.nmi:.4f}, accuracy (Hungarian) "
                          f"{s.accuracy:.4f}, mIoU Hungarian {s.miou_hungarian:.4f}, mIoU majority "
                          f"{s.miou_majority:.4f}")
        feedback.pushInfo(f"Sample purity {s.sample_purity:.4f} ({s.samples_scored} interior samples on labelled "
                          f"pixels); reference classes reached: {s.classes_reached} of {len(s.table.ref_labels)}")
        feedback.pushInfo(f"Cohen's kappa {s.kappa:.4f}, mean F1 {float(s.f1.mean()):.4f} (Hungarian matching)")
        if s.downstream_samples:
            feedback.pushInfo(f"Downstream (random forest on {s.downstream_samples} samples): accuracy "
                              f"{s.downstream_accuracy:.4f}, mIoU {s.downstream_miou:.4f}")
        for r in ev.rows:
            fig = {key: "-" if r[key] is None else f"{r[key]:.3f}" for key in ("iou", "precision", "recall", "f1")}
            feedback.pushInfo(f"  class {r['class_id'] if r['class_id'] is not None else '-'} "
                              f"({r['class_name'] or '-'}) -> reference {r['reference_class']} "
                              f"({r['reference_name'] or '-'}): IoU {fig['iou']}, precision {fig['precision']}, "
                              f"recall {fig['recall']}, F1 {fig['f1']}, {r['pixels']} px")
