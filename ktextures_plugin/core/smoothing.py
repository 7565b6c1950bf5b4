"""Edge-preserving spatial regularisation of per-class costs: a Potts model solved by synchronous ICM.

Each pixel p takes the class c that minimises ``cost[c, p] - beta * n_c(p)``, where ``n_c(p)`` is the number
of its 8 neighbours that hold class c; all pixels are updated at once (synchronous iterated conditional
modes, Besag 1986), for at most ``sweeps`` sweeps or until nothing changes. The first labelling is the
argmin of the costs. ``beta = 0`` (or ``sweeps = 0``) is the plain argmin.

Locality: after ``t`` sweeps a pixel depends only on the costs within ``t`` pixels (Chebyshev distance), so a
tile read with a halo of ``sweeps`` pixels (plus the model's own halo) gives, in its interior, exactly the
labels of the whole raster. Stopping early when a sweep changes nothing does not break this: a labelling that
no longer changes is a fixed point, the same as running the remaining sweeps. See ``docs/method.md``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .errors import ParameterError

#: Synchronous ICM sweeps of the smoothing step; also the halo (pixels) the step adds to a tile.
DEFAULT_SWEEPS = 10


def neighbour_counts(labels: np.ndarray, k: int, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Number of the 8 neighbours of each pixel that hold each class.

    Args:
        labels: (H, W) integer class indices 0..k-1.
        k: number of classes.
        valid: optional (H, W) bool; invalid pixels count as nobody's neighbour.

    Returns:
        (k, H, W) uint8 counts 0..8; pixels outside the array count as nobody's neighbour.
    """
    h, w = labels.shape
    out = np.zeros((k, h, w), np.uint8)
    pad = np.zeros((h + 2, w + 2), np.uint8)
    for c in range(k):
        m = labels == c
        if valid is not None:
            m &= valid
        pad[1:-1, 1:-1] = m
        rows = pad[:-2] + pad[1:-1] + pad[2:]              # (H, W+2) vertical 3-sums
        box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]    # (H, W) 3 x 3 sums
        out[c] = box - m
    return out


def icm_potts(costs: np.ndarray, beta: float, sweeps: int = DEFAULT_SWEEPS,
              valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Potts-regularised labels of per-class costs by synchronous ICM (module docstring).

    Args:
        costs: (k, H, W) float32 per-class cost, lower is better (e.g. squared distance to a k-means centre
            in z-scored band units, or a network's negative log-probability).
        beta: Potts weight per disagreeing 8-neighbour, in the units of ``costs``; 0 = plain argmin.
        sweeps: the most synchronous sweeps (the halo a tile needs, in pixels).
        valid: optional (H, W) bool; invalid pixels keep their argmin label and count as nobody's neighbour.

    Returns:
        (H, W) int64 class indices 0..k-1.

    Raises:
        ValueError: when ``costs`` is not 3-dimensional or ``beta`` / ``sweeps`` is negative.
    """
    if costs.ndim != 3:
        raise ParameterError(f"costs must be (k, H, W), got shape {costs.shape}")
    if beta < 0 or sweeps < 0:
        raise ParameterError(f"beta and sweeps must be >= 0, got {beta} and {sweeps}")
    labels = np.argmin(costs, axis=0)
    if beta == 0 or sweeps == 0:
        return labels
    k = costs.shape[0]
    beta = np.float32(beta)
    for _ in range(int(sweeps)):
        energy = costs - beta * neighbour_counts(labels, k, valid)
        new = np.argmin(energy, axis=0)
        if valid is not None:
            new = np.where(valid, new, labels)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def squared_distance_costs(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Per-class costs of k-means: squared Euclidean distance of each pixel to each centre.

    Args:
        z: (C, H, W) float32 features (e.g. z-scored bands).
        centres: (k, C) float centres in the same units.

    Returns:
        (k, H, W) float32 squared distances.
    """
    zc = z.astype(np.float32, copy=False)
    out = np.empty((centres.shape[0],) + z.shape[1:], np.float32)
    for i, centre in enumerate(np.asarray(centres, np.float32)):
        out[i] = np.sum((zc - centre[:, None, None]) ** 2, axis=0)
    return out
