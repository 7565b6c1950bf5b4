"""Options as the API: every front end's option table (``OPTIONS`` in ``cli/<job>.py`` and ``algorithms/<job>.py``)
covers the job's options dataclass, names real options or parameters, and the same values give equal options.
``segment`` and ``novelty`` have both front ends, ``kmeans`` only the command line, ``sample`` only the QGIS
algorithm."""
import dataclasses

from conftest import SAMPLE


def test_cli_and_qgis_build_the_same_segment_options(provider, tmp_path):
    """Options as the API: every SegmentOptions field has a QGIS parameter and a command-line option (``window`` is
    for scripts, ``threads`` for the command line), and the same values in both give equal options."""
    from qgis.core import QgsApplication, QgsProcessingContext

    from ktextures_plugin.algorithms import segment as qgis_segment
    from ktextures_plugin.cli import segment as cli_segment
    from ktextures_plugin.core.segment import SegmentOptions

    fields = {f.name for f in dataclasses.fields(SegmentOptions)}
    assert set(cli_segment.OPTIONS) == fields - {"window"}
    assert set(qgis_segment.OPTIONS) == fields - {"window", "threads"}
    parser = cli_segment.build_parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    assert set(cli_segment.OPTIONS.values()) <= flags
    alg = QgsApplication.processingRegistry().algorithmById("ktextures:segment")
    assert set(qgis_segment.OPTIONS.values()) <= {d.name() for d in alg.parameterDefinitions()}

    sim = str(tmp_path / "sim.tif")
    names = "a,b,c,d,e,f"
    args = parser.parse_args([str(SAMPLE), "--out", str(tmp_path / "c.tif"), "--bands", "3,2,1,4", "--scaling",
                              "stretch", "--nodata", "7", "--extent", "500000,5800000,501000,5801000",
                              "--tile-size", "256", "--min-segment-px", "5", "--simulation", sim,
                              "--palette", "qualitative", "--class-names", names, "--smoothing", "2.5"])
    from_cli = cli_segment.segment_options(args)
    params = {"INPUT": str(SAMPLE), "BANDS": "3,2,1,4", "SCALING": "stretch", "NODATA": 7,
              "EXTENT": "500000,501000,5800000,5801000", "TILE_SIZE": 256, "MIN_SEGMENT_PX": 5,
              "PALETTE": "qualitative", "CLASS_NAMES": names, "SMOOTHING": 2.5}
    context = QgsProcessingContext()
    layer = alg.parameterAsRasterLayer(params, "INPUT", context)
    from_qgis = alg.segment_options(params, context, extent=alg._extent(params, context, layer), simulation=sim,
                                    session=None)
    norm = dataclasses.replace(from_cli, threads=None, class_names=names.split(","))
    assert from_qgis == norm
    assert from_cli != SegmentOptions() and all(getattr(from_qgis, f) != getattr(SegmentOptions(), f)
                                                for f in qgis_segment.OPTIONS)


def _non_default(opts, default, fields):
    """The fields of ``fields`` on which ``opts`` still has the default value (a front end that drops one)."""
    return [f for f in fields if getattr(opts, f) == getattr(default, f)]


def test_kmeans_command_line_covers_kmeans_options(tmp_path):
    """Every KMeansOptions field has a command-line option (``rgb`` and ``window_pixels`` are for scripts), each
    option is one the parser has, and each, set, reaches its field."""
    from ktextures_plugin.cli import kmeans as cli_kmeans
    from ktextures_plugin.core.kmeans import KMeansOptions

    fields = {f.name for f in dataclasses.fields(KMeansOptions)}
    assert set(cli_kmeans.OPTIONS) == fields - {"rgb", "window_pixels"}
    parser = cli_kmeans.build_parser()
    assert set(cli_kmeans.OPTIONS.values()) <= {s for a in parser._actions for s in a.option_strings}
    args = parser.parse_args([str(SAMPLE), "--out", str(tmp_path / "k.tif"), "--k", "5", "--bands", "3,2,1,4",
                              "--seed", "7", "--nodata", "9", "--sample", "5000", "--n-init", "2",
                              "--scaling", "stretch", "--context", "--smoothing", "1.5"])
    opts = cli_kmeans.kmeans_options(args)
    assert opts == KMeansOptions(5, bands="3,2,1,4", seed=7, extra_nodata=9.0, max_sample=5000, n_init=2,
                                 scaling="stretch", context=True, smoothing=1.5)
    assert not _non_default(opts, KMeansOptions(2), cli_kmeans.OPTIONS)


def test_sample_algorithm_covers_sample_options(provider):
    """Every SampleOptions field a user sets has a QGIS parameter (``border_is_edge`` and the tuning fields are
    for scripts), each parameter is one the algorithm has, and each, set, reaches its field."""
    from qgis.core import QgsApplication, QgsProcessingContext

    from ktextures_plugin.algorithms import sample as qgis_sample
    from ktextures_plugin.core.sample import SampleOptions

    fields = {f.name for f in dataclasses.fields(SampleOptions)}
    assert set(qgis_sample.OPTIONS) == fields - {"border_is_edge", "window_px", "distance_cap_px", "pool_min",
                                                 "pool_factor"}
    alg = QgsApplication.processingRegistry().algorithmById("ktextures:sample")
    assert set(qgis_sample.OPTIONS.values()) <= {d.name() for d in alg.parameterDefinitions()}
    params = {"POINTS_PER_CLASS": 12, "PROPORTIONAL": True, "MIN_PER_CLASS": 2, "MIN_EDGE_DISTANCE_PX": 5,
              "MIN_SPACING_PX": 9, "SEED": 4, "CLASSES": "1,3", "CHIP_SIZE_PX": 16}
    opts = alg.sample_options(params, QgsProcessingContext(), classes=[1, 3], chip=16)
    assert opts == SampleOptions(12, proportional=True, min_per_class=2, min_edge_distance_px=5, min_spacing_px=9,
                                 seed=4, classes=[1, 3], chip_size_px=16)
    assert not _non_default(opts, SampleOptions(), qgis_sample.OPTIONS)


def test_cli_and_qgis_build_the_same_novelty_options(provider, tmp_path):
    """Every NoveltyOptions field a user sets has a command-line option and (but ``threads``) a QGIS parameter
    (``init_rank``, ``residual_weight``, ``features_path`` are for scripts and the benchmark), and the same values in
    both give equal options."""
    from qgis.core import QgsApplication, QgsProcessingContext

    from ktextures_plugin.algorithms import novelty as qgis_novelty
    from ktextures_plugin.cli import novelty as cli_novelty
    from ktextures_plugin.core.novelty import NoveltyOptions

    fields = {f.name for f in dataclasses.fields(NoveltyOptions)} - {"init_rank", "residual_weight", "features_path"}
    assert set(cli_novelty.OPTIONS) == fields
    assert set(qgis_novelty.OPTIONS) == fields - {"threads"}
    parser = cli_novelty.build_parser()
    assert set(cli_novelty.OPTIONS.values()) <= {s for a in parser._actions for s in a.option_strings}
    alg = QgsApplication.processingRegistry().algorithmById("ktextures:novelty")
    assert set(qgis_novelty.OPTIONS.values()) <= {d.name() for d in alg.parameterDefinitions()}
    args = parser.parse_args([str(SAMPLE), "--score", str(tmp_path / "s.tif"), "--bands", "3,2,1,4", "--tile-size",
                              "96", "--n-select", "7", "--rank", "3", "--seed", "5", "--init-tiles", "16",
                              "--scaling", "stretch", "--nodata", "7", "--threads", "2"])
    from_cli = cli_novelty.novelty_options(args)
    params = {"INPUT": str(SAMPLE), "BANDS": "3,2,1,4", "TILE_SIZE": 96, "N_SELECT": 7, "RANK": 3, "SEED": 5,
              "INIT_TILES": 16, "SCALING": "stretch", "NODATA": 7}
    from_qgis = alg.novelty_options(params, QgsProcessingContext())
    assert from_qgis == dataclasses.replace(from_cli, threads=None)
    assert not _non_default(from_cli, NoveltyOptions(), cli_novelty.OPTIONS)
