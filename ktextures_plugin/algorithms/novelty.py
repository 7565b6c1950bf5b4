"""``ktextures:novelty``: rank the tiles the k textures cannot explain with DEMUD; write a styled tile-grid score
raster, the selected tiles as labelled polygons and an HTML explanation (docs/novelty.md).

Parameter ids (a public contract for scripts and graphical models): INPUT, MODEL, MODEL_FILE, BANDS, SCALING,
NODATA, TILE_SIZE, N_SELECT, RANK, INIT_TILES, SEED, OUTPUT_SCORE, OUTPUT_SELECTED, OUTPUT_HTML. The work is
done by :func:`ktextures_plugin.core.novelty.rank_tiles` and ``core/novelty/novelty_output.py``.
"""
from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterVectorDestination,
)

from ..core.io import outputs
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
    progress_bridge,
)
from .segment import SCALINGS

#: Core keys (outputs, and the inputs a core error names) -> parameter ids.
NAMES = {"input": "INPUT", "model": "MODEL_FILE", "score": "OUTPUT_SCORE", "selected": "OUTPUT_SELECTED",
         "html": "OUTPUT_HTML", "bands": "BANDS", "scaling": "SCALING", "nodata": "NODATA", "tile_size": "TILE_SIZE",
         "n_select": "N_SELECT"}
#: NoveltyOptions field -> the parameter that sets it (tests/frontends/test_options.py compares it with the command
#: line's; ``threads`` is the command line's)
OPTIONS = {"bands": "BANDS", "tile_size": "TILE_SIZE", "n_select": "N_SELECT", "rank": "RANK", "seed": "SEED",
           "init_tiles": "INIT_TILES", "scaling": "SCALING", "extra_nodata": "NODATA"}


class NoveltyAlgorithm(ModelInputAlgorithm):
    SCALING = "SCALING"
    NODATA = "NODATA"
    TILE_SIZE = "TILE_SIZE"
    N_SELECT = "N_SELECT"
    RANK = "RANK"
    INIT_TILES = "INIT_TILES"
    SEED = "SEED"
    OUTPUT_SCORE = "OUTPUT_SCORE"
    OUTPUT_SELECTED = "OUTPUT_SELECTED"
    OUTPUT_HTML = "OUTPUT_HTML"

    def name(self):
        return "novelty"

    def displayName(self):  # noqa: N802
        return "Find novel tiles (DEMUD)"

    def tags(self):
        return ["novelty", "anomaly", "outlier", "discovery", "DEMUD", "SVD", "texture", "training samples"]

    def shortHelpString(self):  # noqa: N802
        return (
            "Finds the places the k textures cannot explain and ranks a short, diverse list of tiles to look at "
            "(DEMUD, Wagstaff et al., AAAI 2013; explanations after Lee and Wagstaff, DMKD 2020).\n\n"
            "Each tile gets a feature vector: the frozen multi-scale CNN features of the k-textures loss, pooled "
            "over the tile, and the difference between the tile and the model's simulation of it (what the "
            "textures miss). DEMUD selects the tile its model reconstructs worst, adds it to the model, and "
            "repeats, so one kind of novelty is shown once.\n\n"
            "<b>Model</b>: a k-textures model with textures (bundled, or an .onnx made with 'Fit').\n"
            "<b>Bands</b>: the input bands for red, green, blue, NIR (empty: from band descriptions).\n"
            "<b>Tile size</b>: a multiple of 32 pixels; tiles start every half tile, so an anomaly is whole in one of "
            "them. Tiles with under half their pixels valid are skipped. Selected tiles never overlap.\n"
            "<b>Rank</b>: the most directions DEMUD's model keeps. It starts as a model of the scene (the SVD "
            "of its typical tiles).\n\n"
            "Outputs: the initial score of every tile (its error under the model of the scene, before any "
            "selection; one pixel per tile, the tile's central half), the selected tiles (rank 1 = first; "
            "selection_score = the error when selected, which orders the list; initial_score; residual = the part "
            "of the selection score from the k-textures difference; dominant classes) and an HTML page showing "
            "each tile, its simulation and where they differ.")

    def initAlgorithm(self, config=None):  # noqa: N802
        from ..core.novelty.novelty import DEFAULT_RANK, INIT_TILES
        self.add_model_inputs()
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE_SIZE, "Tile size (pixels, a multiple of 32)", type=QgsProcessingParameterNumber.Integer,
            minValue=32, maxValue=1024, defaultValue=64))
        self.addParameter(QgsProcessingParameterNumber(
            self.N_SELECT, "Number of tiles to select", type=QgsProcessingParameterNumber.Integer, minValue=1,
            defaultValue=20))
        self.addParameter(QgsProcessingParameterNumber(
            self.RANK, "Rank of DEMUD's model", type=QgsProcessingParameterNumber.Integer, minValue=1,
            defaultValue=DEFAULT_RANK))
        self.addParameter(QgsProcessingParameterNumber(
            self.SEED, "Random seed", type=QgsProcessingParameterNumber.Integer, minValue=0, defaultValue=0))
        advanced = [
            QgsProcessingParameterEnum(self.SCALING, "Scaling", options=SCALINGS, defaultValue="model",
                                       usesStaticStrings=True),
            QgsProcessingParameterNumber(self.NODATA, "Extra nodata value", type=QgsProcessingParameterNumber.Double,
                                         optional=True),
            QgsProcessingParameterNumber(self.INIT_TILES, "Initial model: -2 = typical tiles, -1 = none, 0 = all "
                                         "tiles, N = N random tiles", type=QgsProcessingParameterNumber.Integer,
                                         minValue=-2, defaultValue=INIT_TILES)]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_SCORE, "Novelty score per tile"))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT_SELECTED, "Selected tiles", type=QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=True))
        # a file output, not an HTML one: QGIS 3.22's batch dialog fails on HTML outputs (common.add_html_destination)
        add_html_destination(self, self.OUTPUT_HTML, "Explanation (HTML)", by_default=True)
        self.addOutput(QgsProcessingOutputNumber("TILES", "Tiles scored"))
        self.addOutput(QgsProcessingOutputNumber("SKIPPED_TILES", "Tiles skipped (mostly nodata)"))

    def _outputs(self, parameters, context, src, model_path):
        score = self.parameterAsOutputLayer(parameters, self.OUTPUT_SCORE, context)
        selected = self.parameterAsOutputLayer(parameters, self.OUTPUT_SELECTED, context)
        page = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        make_folders((score, selected, page))
        check_outputs({"input": self.INPUT, "model": self.MODEL_FILE, "score": self.OUTPUT_SCORE,
                       "selected": self.OUTPUT_SELECTED, "html": self.OUTPUT_HTML},
                      {"score": (score, outputs.FLOAT_RASTER), "selected": (selected, outputs.VECTOR),
                       "html": (page, outputs.TABLE)}, {"input": src, "model": model_path})
        return score, selected, page

    def novelty_options(self, parameters, context):
        """The :class:`~ktextures_plugin.core.novelty.NoveltyOptions` of the parameters (:data:`OPTIONS`)."""
        from ..core.novelty import NoveltyOptions
        return NoveltyOptions(
            bands=self.bands(parameters, context),
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            n_select=self.parameterAsInt(parameters, self.N_SELECT, context),
            rank=self.parameterAsInt(parameters, self.RANK, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            init_tiles=self.parameterAsInt(parameters, self.INIT_TILES, context),
            scaling=self.parameterAsEnumString(parameters, self.SCALING, context) or "model",
            extra_nodata=optional_number(parameters, self.NODATA))

    @all_or_nothing
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.feedback import Feedback
        from ..core.novelty import rank_tiles
        from ..core.novelty.novelty_output import write_html, write_score_raster, write_selected

        self.require_onnxruntime()
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        src = gdal_source(layer)
        model_path = self.model_path(parameters, context)
        score, selected, page = self._outputs(parameters, context, src, model_path)
        nodata = optional_number(parameters, self.NODATA)
        # a failure: processing_error words it, all_or_nothing (processAlgorithm) removes the outputs
        session = cached_session(model_path)
        feedback.pushInfo(f"Model file: {model_path}")
        core_feedback = Feedback(progress=progress_bridge(feedback, 0, 90 if page else 100),
                                 is_canceled=feedback.isCanceled, info=feedback.pushInfo, warning=feedback.pushWarning)
        with input_view(self, parameters, context, feedback, src) as view:
            res = rank_tiles(view, model_path, self.novelty_options(parameters, context), core_feedback,
                             session=session)
        stop = core_feedback.check_canceled  # between the writers too: a cancel after the ranking
        stop()
        write_score_raster(score, res, src)
        stop()
        if selected:
            write_selected(selected, res, src)
            stop()
        if page:
            feedback.setProgressText("Explaining the selected tiles")
            write_html(page, res, src, model_path, nodata, session=session)
            stop()
            feedback.setProgress(100)
        for s in res.selected:
            feedback.pushInfo(f"rank {s.rank}: tile at x {s.window[0]}, y {s.window[1]} px, selection score "
                              f"{s.score:.4g}, initial score {s.initial:.4g}, residual {s.residual:.4g}")
        for w in styling.save_novelty_styles(score, selected):
            feedback.pushWarning(w)
        styling.attach_novelty_styles(context, score, selected)
        name_loaded_outputs(self, context, layer.name(), {self.OUTPUT_SCORE: score, self.OUTPUT_SELECTED: selected})
        self.show_page(page, f"k-textures novelty ({layer.name()})")
        return {self.OUTPUT_SCORE: score, self.OUTPUT_SELECTED: selected or None, self.OUTPUT_HTML: page or None,
                "TILES": int(res.table.index.size), "SKIPPED_TILES": int(res.table.skipped)}
