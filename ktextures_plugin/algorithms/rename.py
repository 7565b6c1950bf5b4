"""``ktextures:rename_classes``: names for the classes of an existing class raster (and its polygons) in
place of "texture 1..k", colours kept. Writes new files (core.segment.rename); the inputs are never modified, so the
first run stays as it was and a typo is fixed by running again from it. Later ``sample`` and ``evaluate``
runs on the new raster show the names."""
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingParameterVectorLayer,
)

from . import styling
from .common import KTexturesAlgorithm, all_or_nothing, check_outputs, gdal_source, make_folders

#: core keys (core.io.outputs, core.segment.rename) -> parameter ids, for messages
NAMES = {"input": "INPUT", "polygons": "POLYGONS", "output": "OUTPUT_RASTER", "vector": "OUTPUT_VECTOR"}


class RenameClassesAlgorithm(KTexturesAlgorithm):
    INPUT = "INPUT"
    CLASS_NAMES = "CLASS_NAMES"
    POLYGONS = "POLYGONS"
    OUTPUT_RASTER = "OUTPUT_RASTER"
    OUTPUT_VECTOR = "OUTPUT_VECTOR"

    def name(self):
        return "rename_classes"

    def displayName(self):  # noqa: N802
        return "Rename classes"

    def tags(self):
        return ["class names", "legend", "label", "rename", "k-textures"]

    def shortHelpString(self):  # noqa: N802
        return ("Gives the classes of a class raster (from 'Segment' or 'Fit') names in place of 'texture 1..k', "
                "keeping their colours. Writes a new class raster with the names inside (read by 'Sample' and "
                "'Evaluate') and, when <b>Class polygons</b> are given, a copy of them with the new class_name; "
                "both open styled. The input layers are not changed.<br><br>"
                "<b>Class names</b>: comma-separated, in class order 1..k, e.g. 'forest, field, water, town'.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Class raster"))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_NAMES, "Class names (comma-separated, in class order 1..k)"))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.POLYGONS, "Class polygons of this raster (optional)", types=[QgsProcessing.TypeVectorPolygon],
            optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_RASTER, "Renamed classes"))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT_VECTOR, "Renamed class polygons", type=QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=True))

    @all_or_nothing
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.segment.rename import rename_classes

        src = gdal_source(self.parameterAsRasterLayer(parameters, self.INPUT, context))
        poly = self.parameterAsVectorLayer(parameters, self.POLYGONS, context)
        poly_src = poly.dataProvider().dataSourceUri().split("|")[0] if poly is not None else None
        if poly is not None and poly.providerType() != "ogr":
            raise QgsProcessingException(f"POLYGONS '{poly.name()}' is a '{poly.providerType()}' layer; save it "
                                         "as a GeoPackage first and give that file.")
        out_raster = self.parameterAsOutputLayer(parameters, self.OUTPUT_RASTER, context)
        out_vector = self.parameterAsOutputLayer(parameters, self.OUTPUT_VECTOR, context) if poly_src else None
        make_folders((out_raster, out_vector))
        from ..core.io import outputs
        check_outputs(NAMES, {"output": (out_raster, outputs.CLASS_RASTER), "vector": (out_vector, outputs.VECTOR)},
                      {"input": src, "polygons": poly_src})
        text = self.parameterAsString(parameters, self.CLASS_NAMES, context)
        try:
            res = rename_classes(src, out_raster, text, polygons_in=poly_src, polygons_out=out_vector)
        except ValueError as exc:  # other errors: common.processing_error
            pid = "POLYGONS" if "polygons" in str(exc) else "CLASS_NAMES"
            raise QgsProcessingException(f"{pid}: {exc}") from None
        for i, (o, n) in enumerate(zip(res.old_names, res.names), 1):
            feedback.pushInfo(f"class {i}: {o} -> {n}")
        if res.polygons:
            feedback.pushInfo(f"{res.polygon_count} polygons written to {res.polygons}")
        for w in styling.save_default_styles(res.raster, res.polygons, res.names, res.colors):
            feedback.pushWarning(w)
        for dest in (out_raster, out_vector):
            styling.attach_style(context, dest, res.names, res.colors)
        return {self.OUTPUT_RASTER: out_raster, self.OUTPUT_VECTOR: res.polygons}
