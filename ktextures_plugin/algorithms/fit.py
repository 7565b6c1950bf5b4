"""``ktextures:fit``: fit a k-textures model on the analyst's own raster (PyTorch, CPU) and export it to
ONNX; optionally segment the same raster with it right away (through ``ktextures:segment``, the same code
path). Training: :func:`ktextures_plugin.training.fit` (docs/method.md §6)."""

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

# torch-free: the defaults live in one module that the QGIS glue, the CLI and the trainer share
from ..training.defaults import (
    DEFAULT_CONTINUITY,
    DEFAULT_MASK_WIDTH,
    DEFAULT_RETRIES,
    DEFAULT_STEPS,
    DEFAULT_VARIANT,
    VARIANTS,
)
from .common import (
    IGNORE_MASK_BANDS,
    KTexturesAlgorithm,
    add_mask_option,
    all_or_nothing,
    check_outputs,
    gdal_source,
    input_view,
    make_folders,
    optional_number,
    output_layer,
    step_feedback,
)

#: core keys (core.io.outputs, training.fit) -> parameter ids, for messages
NAMES = {"input": "INPUT", "output": "OUTPUT_MODEL", "raster": "OUTPUT_RASTER", "vector": "OUTPUT_VECTOR",
         "bands": "BANDS", "nodata": "NODATA"}

class FitAlgorithm(KTexturesAlgorithm):
    INPUT, BANDS, K, STEPS, VARIANT, FEATURES, SEED = "INPUT", "BANDS", "K", "STEPS", "VARIANT", "FEATURES", "SEED"
    NODATA, MASK_WIDTH, RETRIES, CONTINUITY = "NODATA", "MASK_WIDTH", "RETRIES", "CONTINUITY"
    OUTPUT_MODEL, OUTPUT_RASTER, OUTPUT_VECTOR = "OUTPUT_MODEL", "OUTPUT_RASTER", "OUTPUT_VECTOR"

    def name(self):
        return "fit"

    def displayName(self):  # noqa: N802
        return "Fit a k-textures model on a raster"

    def tags(self):
        return ["train", "fit", "self-supervised", "unsupervised", "segmentation", "texture", "onnx"]

    def shortHelpString(self):  # noqa: N802
        return (
            "Fits a k-textures model (Wagner et al. 2022) on this raster, without labels, and saves it as an "
            "ONNX model that 'Segment raster into k textures' runs (Model file). Like k-means, k-textures "
            "segments an image best with a model fitted on that image.\n\n"
            "<b>Bands</b>: red, green, blue and NIR, in this order (empty: from band descriptions).\n"
            "<b>Steps</b>: optimisation steps of 8 random 128 x 128 tiles each; the default reaches its final "
            "quality on a 512 x 768 Sentinel-2 image in a few minutes on 2 CPU cores.\n"
            "<b>Variant</b>: 'context' (the default) starts from a full-covariance Gaussian mixture of the bands "
            "and their 1-pixel Gaussian blur and refines it with the k-textures loss; 'faithful' is the paper's "
            "per-pixel mask network; 'spatial' looks at a 5 x 5 neighbourhood.\n"
            "<b>Features</b>: the loss's feature extractor: 'random' (a fixed random CNN), 'ae' "
            "(a 4-band auto-encoder trained on this raster first, about a minute more), or "
            "'vgg16:/path/to/vgg16.pth' for ImageNet VGG16 weights you have locally.\n"
            "<b>Refits</b>: when a class stays unused (the model would segment into fewer classes than asked), "
            "the fit is repeated with the next seed this many times and the fit using the most classes is kept.\n\n"
            "Optionally writes the class raster and polygons of this raster with the new model. Needs PyTorch "
            "(CPU build) in QGIS's Python.")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster layer"))
        self.addParameter(QgsProcessingParameterBand(
            self.BANDS, "Bands: red, green, blue, NIR in this order (empty: from band descriptions)",
            parentLayerParameterName=self.INPUT, allowMultiple=True, optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.K, "Number of classes (k)",
                                                       type=QgsProcessingParameterNumber.Integer,
                                                       minValue=2, maxValue=128, defaultValue=6))
        self.addParameter(QgsProcessingParameterNumber(self.STEPS, "Training steps",
                                                       type=QgsProcessingParameterNumber.Integer,
                                                       minValue=1, maxValue=100000, defaultValue=DEFAULT_STEPS))
        self.addParameter(QgsProcessingParameterEnum(self.VARIANT, "Variant", options=list(VARIANTS),
                                                     defaultValue=DEFAULT_VARIANT, usesStaticStrings=True))
        cont = QgsProcessingParameterNumber(self.CONTINUITY, "Spatial continuity weight (context and spatial variants)",
                                            type=QgsProcessingParameterNumber.Double, minValue=0.0, maxValue=100.0,
                                            defaultValue=DEFAULT_CONTINUITY)
        cont.setFlags(cont.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(cont)
        feats = QgsProcessingParameterString(self.FEATURES, "Feature extractor of the loss", defaultValue="random")
        feats.setFlags(feats.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(feats)
        width = QgsProcessingParameterNumber(self.MASK_WIDTH, "Mask network width (16 measured best for speed at "
                                             "equal quality; 64 as in the paper, segments about 3x slower; "
                                             "see docs/benchmarks.md)",
                                             type=QgsProcessingParameterNumber.Integer, minValue=1, maxValue=256,
                                             defaultValue=DEFAULT_MASK_WIDTH)
        width.setFlags(width.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(width)
        add_mask_option(self)
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed",
                                                       type=QgsProcessingParameterNumber.Integer, defaultValue=0))
        retries = QgsProcessingParameterNumber(self.RETRIES, "Refits with the next seed when a class stays unused",
                                               type=QgsProcessingParameterNumber.Integer, minValue=0, maxValue=10,
                                               defaultValue=DEFAULT_RETRIES)
        retries.setFlags(retries.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(retries)
        nd = QgsProcessingParameterNumber(self.NODATA, "Extra nodata value",
                                          type=QgsProcessingParameterNumber.Double, optional=True)
        nd.setFlags(nd.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(nd)
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_MODEL, "Fitted model",
                                                                fileFilter="ONNX models (*.onnx)"))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_RASTER, "Classes (segment this raster with the new model)", optional=True,
            createByDefault=True))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT_VECTOR, "Class polygons", type=QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=True))
        self.addOutput(QgsProcessingOutputNumber("FINAL_LOSS", "Final training loss"))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", "Fit wall time (s)"))

    def canExecute(self):  # noqa: N802
        """Always True in the desktop, so the dialog opens (with the PyTorch notice in it:
        :meth:`createCustomParametersWidget`) rather than an error dialog; elsewhere False without PyTorch."""
        from ..installer_gui import CURRENT, available, manual_hint
        if not available("torch") and not CURRENT:
            return False, manual_hint("torch")
        return True, ""

    def createCustomParametersWidget(self, parent=None):  # noqa: N802
        """The fit dialog with the PyTorch install notice in front when PyTorch is missing (desktop only)."""
        from ..installer_gui import available, dialog_with_notice
        return None if available("torch") else dialog_with_notice(self, parent, "torch")

    @all_or_nothing
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..installer_gui import available

        if not available("torch"):  # PyTorch and scikit-learn (k-means)
            from ..installer_gui import manual_hint, request_install
            request_install("torch")
            raise QgsProcessingException(manual_hint("torch"))
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        src = gdal_source(layer)
        bands = self._bands(parameters, context, src)
        out_model, out_raster, out_vector = self._outputs(parameters, context, src)
        with input_view(self, parameters, context, feedback, src) as view:
            info = self._fit(parameters, context, feedback, view, bands, out_model,
                             title=f"k-textures, k = {self.parameterAsInt(parameters, self.K, context)}, "
                                   f"{layer.name()}", fit_end=85.0 if out_raster else 100.0)
        results = {self.OUTPUT_MODEL: out_model, "FINAL_LOSS": info.final_loss, "SECONDS": info.seconds,
                   self.OUTPUT_RASTER: None, self.OUTPUT_VECTOR: None}
        if out_raster:
            import processing
            feedback.setProgressText("Segmenting the raster with the new model")
            seg = processing.run("ktextures:segment", {
                "INPUT": src, "MODEL_FILE": out_model, "BANDS": bands, "SCALING": "model",
                "OUTPUT_RASTER": out_raster, "OUTPUT_VECTOR": out_vector or None,
                "NODATA": parameters.get(self.NODATA),
                IGNORE_MASK_BANDS: parameters.get(IGNORE_MASK_BANDS, False)},
                context=context, feedback=step_feedback(feedback, 85.0, 100.0), is_child_algorithm=True)
            results[self.OUTPUT_RASTER] = seg["OUTPUT_RASTER"]
            results[self.OUTPUT_VECTOR] = seg.get("OUTPUT_VECTOR")
        feedback.setProgress(100)
        return results

    def _bands(self, parameters, context, src: str):
        """BANDS as given (a string or band numbers), or red, green, blue, NIR matched by band description."""
        from osgeo import gdal

        from ..core.io.modelinfo import RGBN
        from ..core.segment.bands import match_bands

        bands = parameters.get(self.BANDS)
        if bands in (None, "", []):
            ds = gdal.Open(src)
            try:
                return match_bands(ds, list(RGBN))
            finally:
                ds = None
        if isinstance(bands, str):
            return bands
        if isinstance(bands, (list, tuple)):
            return list(bands)  # parsed and checked by the core (core.segment.bands.parse_bands)
        return self.parameterAsInts(parameters, self.BANDS, context)

    def _outputs(self, parameters, context, src: str):
        """(model, class raster, polygons) paths, their folders made and checked against the input."""
        from ..core.io import outputs

        out_model = self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context)
        if not out_model.lower().endswith(".onnx"):
            out_model += ".onnx"
        out_raster = output_layer(self, parameters, self.OUTPUT_RASTER, context)  # blank in a batch row: none
        out_vector = output_layer(self, parameters, self.OUTPUT_VECTOR, context)
        make_folders((out_model, out_raster, out_vector))
        check_outputs(NAMES, {"output": (out_model, outputs.MODEL), "raster": (out_raster, outputs.CLASS_RASTER),
                              "vector": (out_vector, outputs.VECTOR)}, {"input": src})
        return out_model, out_raster, out_vector

    def fit_config(self, parameters, context):
        """The :class:`~ktextures_plugin.training.train.FitConfig` of the parameters (imports torch)."""
        from ..training import FitConfig
        return FitConfig(
            k=self.parameterAsInt(parameters, self.K, context),
            steps=self.parameterAsInt(parameters, self.STEPS, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            variant=self.parameterAsEnumString(parameters, self.VARIANT, context) or DEFAULT_VARIANT,
            continuity=self.parameterAsDouble(parameters, self.CONTINUITY, context),
            features=self.parameterAsString(parameters, self.FEATURES, context) or "random",
            extra_nodata=optional_number(parameters, self.NODATA),
            mask_width=self.parameterAsInt(parameters, self.MASK_WIDTH, context) or DEFAULT_MASK_WIDTH)

    def _fit(self, parameters, context, feedback, src: str, bands, out_model: str, *, title: str, fit_end: float):
        """Run :func:`ktextures_plugin.training.fit` with the algorithm's parameters; progress up to ``fit_end``
        percent. Returns its :class:`~ktextures_plugin.training.train.FitReport`."""
        from ..training import fit

        k = self.parameterAsInt(parameters, self.K, context)
        steps = self.parameterAsInt(parameters, self.STEPS, context)

        def progress(step, total, loss):
            feedback.setProgress(fit_end * step / max(1, total))
            feedback.setProgressText(f"Fitting: step {step}/{total}, loss {loss:.5f}")
            if step == total or step % max(1, total // 10) == 0:
                feedback.pushInfo(f"step {step}/{total}  loss {loss:.5f}")

        feedback.pushInfo(f"Fitting k = {k} on bands {bands} for {steps} steps (CPU) ...")
        info = fit(src, bands, out_model, self.fit_config(parameters, context), progress=progress,
                   is_canceled=feedback.isCanceled, retries=self.parameterAsInt(parameters, self.RETRIES, context),
                   log=feedback.pushInfo, title=title)
        feedback.pushInfo(f"Model written to {out_model} in {info.seconds:.1f} s "
                          f"({info.steps_per_s:.2f} steps/s), final loss {info.final_loss:.5f}")
        for w in info.warnings:
            feedback.pushWarning(w)
        return info
