"""Novelty: the places the k textures cannot explain, as a short, diverse list of tiles (docs/novelty.md).

:mod:`.novelty` classifies the raster window by window with the segment pipeline, compares each tile with its
simulation in the features of the frozen feature CNN and ranks the tiles (:func:`rank_tiles` with its
:class:`NoveltyOptions`) with DEMUD (:mod:`.demud`, numpy only); :mod:`.novelty_output` writes the score raster,
the ranked tiles as polygons and the HTML explanation.
"""
from .novelty import NoveltyOptions, NoveltyResult, rank_tiles

__all__ = ["NoveltyOptions", "NoveltyResult", "rank_tiles"]
