"""k-textures core: numpy, GDAL, onnxruntime, scipy and scikit-learn (matplotlib, lazily, for the HTML report's
chart); no QGIS.

Nothing in this package imports qgis, PyQt5, processing or torch, and nothing beside those six and the standard
library (``tests/test_layers.py`` enforces both, and that no import cycle exists), so the command line
(``python -m ktextures_plugin``) and the benchmarks run it without QGIS.

The segment pipeline, one module a step: :mod:`.bands` (which bands feed the model), :mod:`.scaling` (raw values
to the model's range, range warnings), :mod:`.tiling` (the tile grid, :class:`.tiling.Window`), :mod:`.tileio`
(reader and writer threads), :mod:`.inference` (onnxruntime sessions, strips, :func:`.inference.classify_tile`),
:mod:`.classraster` (the class raster, palette, partial files), :mod:`.sieve`, :mod:`.classstats` (counts and
areas), :mod:`.vectorize` (polygons); :mod:`.segment` runs them in order. :mod:`.errors` holds every error type;
:mod:`.outputs` checks output paths against the files a run reads, :mod:`.atomic` writes every output atomically.
"""
