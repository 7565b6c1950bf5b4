"""k-textures core: numpy, GDAL and onnxruntime only.

Nothing in this package imports qgis, PyQt5 or processing (``tests/test_layers.py`` enforces it), so the
command line (``python -m ktextures_plugin``) and the benchmarks run it without QGIS.
"""
