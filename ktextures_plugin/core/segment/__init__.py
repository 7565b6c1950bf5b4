"""Segment: the streamed pipeline from a raster and a k-textures ONNX model to the class raster and polygons.

In order: :mod:`.bands` (which raster bands feed the model), :mod:`.scaling` (raw values to the model's
range, range warnings), :mod:`.tileio` (reader and writer threads on the tile grid of
:mod:`..io.tiling`), :mod:`.inference` (onnxruntime sessions, strips, :func:`.inference.classify_tile`),
:mod:`.smoothing` (the Potts/ICM step on the model's scores), :mod:`.sieve`, :mod:`.classstats` (counts and
areas), :mod:`.vectorize` (polygons). :mod:`.segment` is the one engine that runs them
(:func:`segment_raster` with its :class:`SegmentOptions`); :mod:`.windowmap` says how its windows are
classified (this process; ``cli/distributed.py`` for Dask). After a run: :mod:`.html_report` (the per-class HTML
page) and :mod:`.rename` (new class names on a class raster and its polygons).
"""
from .segment import SegmentOptions, SegmentResult, segment_raster

__all__ = ["SegmentOptions", "SegmentResult", "segment_raster"]
