"""K-means baselines: pixel and context k-means, written in the same class-raster format as :mod:`..segment`.

:func:`kmeans_raster` fits scikit-learn's ``KMeans`` on a sample of the valid pixels (optionally with their
Gaussian-smoothed context) and assigns every pixel window by window; :mod:`.kmeans` holds the steps.
"""
from .kmeans import KMeansOptions, KMeansResult, kmeans_raster

__all__ = ["KMeansOptions", "KMeansResult", "kmeans_raster"]
