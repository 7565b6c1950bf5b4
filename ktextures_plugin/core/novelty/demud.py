"""DEMUD: rank items by how poorly a low-rank model of what was already seen reconstructs them (numpy only).

Method (docs/novelty.md, "DEMUD"): Wagstaff et al., "Guiding scientific discovery with explanations using
DEMUD", AAAI 2013. The model of the items seen is their mean and the leading left singular vectors of the
centred items; an item's score is its squared reconstruction error; the highest-scoring item is selected and
added to the model with Brand's incremental SVD update (M. Brand, "Incremental singular value decomposition
of uncertain data with missing values", ECCV 2002), the mean being updated as in Ross et al., "Incremental
learning for robust visual tracking", IJCV 2008 (one appended column ``sqrt(n / (n + 1)) (x - mean)``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import Canceled, ParameterError

#: rows of the item matrix scored at a time (bounds the float64 temporaries)
SCORE_CHUNK = 1024


@dataclass
class Subspace:
    """A low-rank model of ``n`` items: ``mean`` float64 (d,), orthonormal ``basis`` float64 (d, q) and the
    singular values ``sigma`` float64 (q,) of the centred items (descending)."""

    mean: np.ndarray
    basis: np.ndarray
    sigma: np.ndarray
    n: int

    @classmethod
    def empty(cls, dim: int, mean: Optional[np.ndarray] = None) -> "Subspace":
        """No item seen: rank 0 around ``mean`` (default the origin); the first update sets the mean."""
        m = np.zeros(dim) if mean is None else np.asarray(mean, np.float64).copy()
        return cls(m, np.zeros((dim, 0)), np.zeros(0), 0)

    @classmethod
    def fit(cls, items: np.ndarray, rank: int) -> "Subspace":
        """Exact rank-``rank`` SVD of ``items`` (n, d) centred on their mean.

        The basis comes from the SVD of the centred items when n <= d, else from the eigen-decomposition of the
        (d, d) scatter matrix (cheap for n >> d); numerically zero singular values are dropped, so ``rank`` is
        an upper bound.

        Raises:
            ValueError: ``items`` is empty or ``rank`` < 0.
        """
        x = np.asarray(items, np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ParameterError(f"need a non-empty (n, d) item matrix, got shape {x.shape}")
        if rank < 0:
            raise ParameterError(f"rank must be >= 0, got {rank}")
        mean = x.mean(axis=0)
        z = x - mean
        if z.shape[0] <= z.shape[1]:   # few items: SVD of the items themselves
            _, sigma, vt = np.linalg.svd(z, full_matrices=False)
            basis, sigma = vt[:rank].T, sigma[:rank]
            keep = sigma > 1e-9 * max(float(sigma[0]) if sigma.size else 0.0, 1e-300)
        else:                          # many items: eigenvectors of the (d, d) scatter matrix
            w, v = np.linalg.eigh(z.T @ z)
            order = np.argsort(w)[::-1][:rank]
            w = w[order]
            keep = w > 1e-12 * max(float(w[0]) if w.size else 0.0, 1e-300)
            basis, sigma = v[:, order], np.sqrt(np.maximum(w, 0.0))
        return cls(mean, basis[:, keep], sigma[keep], x.shape[0])

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    def errors(self, items: np.ndarray) -> np.ndarray:
        """Squared reconstruction errors ``||x - (mean + U U^T (x - mean))||^2`` of ``items`` (n, d) -> (n,)
        float64, in row chunks of :data:`SCORE_CHUNK`."""
        out = np.empty(items.shape[0])
        for a in range(0, items.shape[0], SCORE_CHUNK):
            z = np.asarray(items[a:a + SCORE_CHUNK], np.float64) - self.mean
            p = z @ self.basis
            out[a:a + SCORE_CHUNK] = np.maximum(np.einsum("ij,ij->i", z, z) - np.einsum("ij,ij->i", p, p), 0.0)
        return out

    def residual(self, x: np.ndarray) -> np.ndarray:
        """The residual ``x - reconstruction`` of one item (d,) -> (d,) float64 (DEMUD's explanation)."""
        z = np.asarray(x, np.float64) - self.mean
        return z - self.basis @ (self.basis.T @ z)

    def update(self, x: np.ndarray, max_rank: Optional[int] = None, tol: float = 1e-10) -> "Subspace":
        """Add one item ``x`` (d,) in place (Brand's update of the thin SVD, mean update of Ross et al.).

        Appends the column ``c = sqrt(n / (n + 1)) (x - mean)`` to the centred data: ``p = U^T c``,
        ``r = c - U p``; the SVD of the small matrix ``[[diag(sigma), p], [0, |r|]]`` rotates ``[U, r / |r|]``.
        Without truncation the result equals the SVD of all items seen (tests/core/novelty/test_demud.py).

        Args:
            max_rank: keep at most this many singular vectors (``None``: all).
            tol: a residual norm below ``tol`` times the largest singular value adds no new direction.
        """
        x = np.asarray(x, np.float64)
        c = np.sqrt(self.n / (self.n + 1.0)) * (x - self.mean)
        self.mean = self.mean + (x - self.mean) / (self.n + 1.0)
        self.n += 1
        p = self.basis.T @ c
        r = c - self.basis @ p
        rho = float(np.linalg.norm(r))
        scale = max(float(self.sigma[0]) if self.sigma.size else 0.0, float(np.linalg.norm(c)), 1e-300)
        q = self.rank
        if rho > tol * scale:
            k = np.zeros((q + 1, q + 1))
            k[:q, :q] = np.diag(self.sigma)
            k[:q, q] = p
            k[q, q] = rho
            ext = np.hstack([self.basis, (r / rho)[:, None]])
        else:
            if q == 0:
                return self
            k = np.hstack([np.diag(self.sigma), p[:, None]])
            ext = self.basis
        uk, sk, _ = np.linalg.svd(k, full_matrices=False)
        keep = sk > tol * max(float(sk[0]), 1e-300)
        if max_rank is not None:
            keep[max_rank:] = False
        self.basis = ext @ uk[:, keep]
        self.sigma = sk[keep]
        return self


@dataclass
class Selection:
    """What :func:`demud` selected.

    Attributes:
        order: int64 (s,) item indices in the order selected (rank 1 first).
        scores: float64 (s,) each item's reconstruction error when it was selected.
        block_scores: float64 (s, len(blocks)) the same error split over the column blocks.
        initial: float64 (n,) every item's error under the initial model (before any selection).
        residuals: float64 (s, d) each selected item's residual (item - reconstruction) when selected.
    """

    order: np.ndarray
    scores: np.ndarray
    block_scores: np.ndarray
    initial: np.ndarray
    residuals: np.ndarray


def demud(items: np.ndarray, n_select: int, model: Subspace, blocks: Sequence[slice] = (),
          max_rank: Optional[int] = None, progress: Optional[Callable[[float, str], None]] = None,
          is_canceled: Optional[Callable[[], bool]] = None,
          exclude: Optional[Callable[[int], np.ndarray]] = None) -> Selection:
    """Select ``n_select`` items one by one, each the worst reconstructed by ``model``, which learns it.

    Args:
        items: (n, d) float32/float64 feature vectors (already standardised).
        n_select: number of selections (at most n).
        model: the initial :class:`Subspace` (of all items, a subset, or :meth:`Subspace.empty`); updated
            in place with each selection.
        blocks: column slices whose share of each selected item's error is reported.
        max_rank: the model keeps at most this many singular vectors after each update (DEMUD's k;
            ``None``: no truncation, each selection adds a direction).
        progress: ``progress(fraction, "select")``; is_canceled: polled before every selection.
        exclude: ``exclude(j)`` -> indices of the items that can no longer be selected once item ``j`` is
            (e.g. the tiles overlapping tile ``j``); the selection stops early when none is left.

    Returns:
        :class:`Selection`.

    Raises:
        ParameterError: ``n_select`` < 1; Canceled: canceled.
    """
    n = items.shape[0]
    if n_select < 1:
        raise ParameterError(f"the number of selections must be >= 1, got {n_select}")
    n_select = min(int(n_select), n)
    err = model.errors(items)
    initial = err.copy()
    taken = np.zeros(n, bool)
    order, scores, parts, res = [], [], [], []
    for i in range(n_select):
        if is_canceled and is_canceled():
            raise Canceled()
        if taken.all():
            break
        err[taken] = -np.inf
        j = int(np.argmax(err))  # first index on ties: deterministic
        r = model.residual(items[j])
        order.append(j)
        scores.append(float(err[j]))
        parts.append([float(np.dot(r[b], r[b])) for b in blocks])
        res.append(r)
        taken[j] = True
        if exclude is not None:
            taken[exclude(j)] = True
        model.update(items[j], max_rank=max_rank)
        if i + 1 < n_select:
            err = model.errors(items)
        if progress:
            progress((i + 1) / n_select, "select")
    if progress and len(order) < n_select:
        progress(1.0, "select")
    return Selection(np.asarray(order, np.int64), np.asarray(scores), np.asarray(parts).reshape(len(order), -1),
                     initial, np.asarray(res))
