"""Sample: stratified sample points inside the class interiors of a class raster, and image/mask chips.

:func:`draw_samples` (with its :class:`SampleOptions`) draws the points per class at a minimum distance from
the class's edge and optionally cuts chips of the image and the class mask around them, for training a
supervised model; :mod:`.sampling` holds the steps.
"""
from .sampling import SampleOptions, SampleResult, draw_samples

__all__ = ["SampleOptions", "SampleResult", "draw_samples"]
