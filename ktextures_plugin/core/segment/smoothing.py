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

from ..errors import ParameterError

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

    Exactly the labels of the plain algorithm (every pixel re-evaluated each sweep), computed on the pixels that
    can change only: in the first sweep the pixels with fewer than 4 of their 8 neighbours in their own (argmin)
    class (:func:`_mixed`), afterwards the neighbours of the pixels the previous
    sweep changed (a pixel's energies depend on its neighbours only). Each of them gets its 8 neighbours'
    labels gathered, per-class counts and energies ``cost - beta * count`` in float32 (the same operations as
    the dense form) and the first class of least energy (``np.argmin``'s tie rule).

    Args:
        costs: (k, H, W) float32 per-class cost, lower is better (e.g. squared distance to a k-means centre
            in z-scored band units, or a network's negative score).
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
    k, h, w = costs.shape
    ldt = np.uint8 if k < 255 else np.uint16
    costs = np.asarray(costs, np.float32)
    first = _argmin_classes(costs, ldt)
    if beta == 0 or sweeps == 0 or k < 2:
        return first.astype(np.int64)
    # labels padded by one pixel; label k marks "nobody" (outside the array, or invalid)
    lab = np.full((h + 2, w + 2), k, ldt)
    lab[1:-1, 1:-1] = first
    if valid is not None:
        lab[1:-1, 1:-1][~valid] = k
    grid = _Grid(lab.ravel(), costs.reshape(k, -1), w, np.float32(beta))
    todo = np.flatnonzero(_mixed(lab, k))
    for _ in range(int(sweeps)):
        changed = grid.sweep(todo)
        if changed.size == 0:
            break
        todo = grid.neighbours(changed)
    out = lab[1:-1, 1:-1].astype(np.int64)
    if valid is not None:
        out[~valid] = first[~valid]
    return out


def _argmin_classes(costs: np.ndarray, dtype) -> np.ndarray:
    """``np.argmin(costs, axis=0)`` of (k, ...) float32 as ``dtype`` (the first class on ties), by a running
    minimum: a class replaces the label only where it is strictly lower, and classes come in increasing order, so
    the label is the running maximum of ``class x (strictly lower)``."""
    best = costs[0].copy()
    labels = np.zeros(best.shape, dtype)
    less = np.empty(best.shape, bool)
    step = np.empty(best.shape, dtype)
    for c in range(1, costs.shape[0]):
        np.less(costs[c], best, out=less)
        np.minimum(best, costs[c], out=best)
        np.multiply(less, c, out=step, casting="unsafe")
        np.maximum(labels, step, out=labels)
    return labels


def _mixed(lab: np.ndarray, k: int) -> np.ndarray:
    """(H+2, W+2) bool: the real pixels of the padded first labels (each its argmin class) that the first sweep
    can change: those with fewer than 4 of their 8 neighbours in their own class. With 4 or more, any other
    class c has at most as many neighbours and no smaller cost (the own class is the first argmin), so its
    energy is no lower, and on a tie the own class, the first argmin, wins."""
    core = lab[1:-1, 1:-1]
    h, w = core.shape
    same = np.zeros(core.shape, np.uint8)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                same += lab[dy:dy + h, dx:dx + w] == core
    mixed = np.zeros(lab.shape, bool)
    np.less(same, 4, out=mixed[1:-1, 1:-1])
    mixed[1:-1, 1:-1] &= core != k
    return mixed


class _Grid:
    """The padded label plane (flat, width ``width + 2``) and the unpadded cost planes ``(k, H * W)`` of one ICM
    run; pixels are flat indices into the padded plane."""

    def __init__(self, lab: np.ndarray, costs: np.ndarray, width: int, beta: np.float32) -> None:
        self.lab, self.costs, self.beta, self.k, self.width = lab, costs, beta, costs.shape[0], width
        pw = width + 2
        self.offsets = np.array([-pw - 1, -pw, -pw + 1, -1, 1, pw - 1, pw, pw + 1], np.intp)
        self.real = lab != self.k             # never changes: padding and invalid pixels stay "nobody"
        self.marker = np.zeros(lab.size, bool)

    def sweep(self, px: np.ndarray) -> np.ndarray:
        """One synchronous sweep over the pixels ``px`` (every other pixel cannot change); returns the pixels
        whose label changed."""
        n = px.size
        if n == 0:
            return px
        nb = np.empty((8, n), self.lab.dtype)
        for j, o in enumerate(self.offsets):
            np.take(self.lab, px + o, out=nb[j])
        row = px // (self.width + 2)
        at = px - (self.width + 3) - 2 * (row - 1)          # the same pixel in the unpadded cost planes
        energy = np.empty((self.k, n), np.float32)
        count = np.empty(n, self.lab.dtype)
        tmp = np.empty(n, self.lab.dtype)
        for c in range(self.k):
            np.equal(nb[0], c, out=count, casting="unsafe")
            for j in range(1, 8):
                np.equal(nb[j], c, out=tmp, casting="unsafe")
                count += tmp
            np.take(self.costs[c], at, out=energy[c])
            energy[c] -= self.beta * count               # float32, as costs - beta * counts
        new = _argmin_classes(energy, self.lab.dtype)
        moved = new != self.lab[px]
        changed = px[moved]
        self.lab[changed] = new[moved]  # after every energy of this sweep: synchronous
        return changed

    def neighbours(self, px: np.ndarray) -> np.ndarray:
        """The real pixels among the 8 neighbours of ``px``, sorted, each once (few pixels: sorted directly;
        many: marked in a plane that is then scanned)."""
        if 8 * px.size < self.lab.size // 64:
            out = np.unique((px[:, None] + self.offsets).ravel())
            return out[self.real[out]]
        for o in self.offsets:
            self.marker[px + o] = True
        out = np.flatnonzero(self.marker)
        self.marker[out] = False
        return out[self.real[out]]


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
