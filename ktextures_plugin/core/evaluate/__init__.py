"""Evaluate: a class raster scored against a reference labelling (ARI, NMI, accuracy, mIoU, downstream).

:mod:`.metrics` defines every figure on the contingency table, accumulated window by window over the two
rasters; :mod:`.evaluate` is the job of the ``evaluate`` front ends: a reference raster or polygons rasterised
onto the class raster's grid, the per-class IoU table, the class raster relabelled with the matched classes.
"""
