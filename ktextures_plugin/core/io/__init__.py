"""Shared raster, model and output I/O: what every job of the core reads and writes through.

:mod:`.raster` opens rasters and reads windows of them (validity from the GDAL masks, percentiles, GDAL's
progress callback); :mod:`.tiling` is the tile grid and its :class:`~.tiling.Window` (one meaning each for tile,
block, window and strip); :mod:`.geo` gives areas in m² and compares CRSs; :mod:`.modelinfo` reads and checks
the model contract (``models/README.md``); :mod:`.classraster` creates the class raster on an input's grid and
writes its palette and class names; :mod:`.outputs` checks every output path against the files a run reads
before any work starts; :mod:`.atomic` writes each output to a hidden partial file renamed into place when
complete, and removes a failed run's outputs. Nothing here runs a model.
"""
