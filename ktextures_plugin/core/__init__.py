"""k-textures core: numpy, GDAL, onnxruntime, scipy and scikit-learn (matplotlib, lazily, for the HTML report's
chart); no QGIS.

Nothing in this package imports qgis, PyQt5, processing or torch, and nothing beside those six and the standard
library (``tests/test_layers.py`` enforces both, and that no import cycle exists), so the command line
(``python -m ktextures_plugin``) and the benchmarks run it without QGIS.

One subpackage a job, named after the algorithm it serves: :mod:`.segment` (the streamed pipeline: bands,
scaling, tiles, inference, smoothing, sieve, statistics, polygons, and the one engine that runs them),
:mod:`.kmeans` (the k-means baselines), :mod:`.sample` (sample points and chips), :mod:`.evaluate` (scores
against a reference), :mod:`.novelty` (DEMUD novelty ranking). They share :mod:`.io` (raster reading, the tile
grid and ``Window``, the model contract, the class raster and its palette, the output-path check, atomic
outputs) and four modules here: :mod:`.errors` (every error type, rooted at ``CoreError``; the one cancel
signal ``Canceled``), :mod:`.feedback` (the progress/cancel/log object of long jobs), :mod:`.colour` (CIELAB and
CIEDE2000 for the palettes) and :mod:`.runtime` (is onnxruntime installed). Dependencies run one way
(``tests/test_layers.py``): ``io`` uses only these four; ``segment`` uses ``io``; ``kmeans``, ``sample`` and
``novelty`` use both; ``evaluate`` uses ``io`` and ``sample``.
"""
