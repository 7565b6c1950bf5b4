"""core/novelty/demud.py: the incremental SVD equals a full SVD, reconstruction of vectors in the span, DEMUD order."""
import numpy as np
import pytest

from ktextures_plugin.core.novelty.demud import Subspace, demud


def _full(x):
    z = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(z.T, full_matrices=False)
    keep = s > 1e-9 * s[0]
    return x.mean(axis=0), u[:, keep], s[keep]


@pytest.mark.parametrize("n0,d", [(30, 12), (5, 40), (1, 8)])
def test_incremental_svd_equals_full_svd(n0, d):
    """Items added one by one (Brand's update, mean update) give the SVD of all items: same mean, singular
    values and subspace (projector), to float tolerance."""
    rng = np.random.default_rng(n0)
    x = rng.normal(size=(n0 + 15, d)) * np.linspace(3, 0.2, d)
    model = Subspace.fit(x[:n0], rank=d)
    for i in range(n0, x.shape[0]):
        model.update(x[i])
        mean, u, s = _full(x[:i + 1])
        np.testing.assert_allclose(model.mean, mean, atol=1e-10)
        np.testing.assert_allclose(model.sigma, s, rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(model.basis @ model.basis.T, u @ u.T, atol=1e-7)
    assert model.n == x.shape[0]


def test_update_from_empty_model_builds_the_svd():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 6))
    model = Subspace.empty(6)
    for row in x:
        model.update(row)
    mean, u, s = _full(x)
    np.testing.assert_allclose(model.sigma, s, rtol=1e-7)
    np.testing.assert_allclose(model.basis @ model.basis.T, u @ u.T, atol=1e-7)


def test_zero_error_in_the_span_positive_outside():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 20))
    model = Subspace.fit(x, rank=4)
    inside = model.mean + model.basis @ rng.normal(size=4) * 5
    outside = inside + rng.normal(size=20)
    err = model.errors(np.stack([inside, outside]))
    assert err[0] == pytest.approx(0.0, abs=1e-9)
    assert err[1] > 0.1
    np.testing.assert_allclose(model.residual(inside), 0.0, atol=1e-9)


def test_demud_learns_each_selection_and_is_deterministic():
    """Two identical outliers: DEMUD shows one, then something else (its model learned the first);
    plain reconstruction error would rank them 1 and 2. The same input gives the same order."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 10)) * 0.1
    x[:, :2] += rng.normal(size=(2000, 2)) * 3  # two strong directions: what the rank-2 model explains
    x[[10, 200], 5:] += 0.8                    # the same anomaly twice
    x[50, 3] += 1.2                            # a different, smaller one
    init = np.argsort(Subspace.fit(x, 2).errors(x))[::-1]
    assert set(init[:2]) == {10, 200}          # the static score ranks the twins first
    sel = demud(x, 3, Subspace.fit(x, 2), blocks=[slice(0, 5), slice(5, 10)])
    assert sel.order[0] in (10, 200)
    assert sel.order[1] == 50
    np.testing.assert_allclose(sel.block_scores.sum(axis=1), sel.scores, rtol=1e-9)
    again = demud(x, 3, Subspace.fit(x, 2))
    assert np.array_equal(again.order, sel.order) and np.array_equal(again.scores, sel.scores)
    assert np.array_equal(sel.initial, Subspace.fit(x, 2).errors(x))


def test_exclude_keeps_excluded_items_out_and_stops_when_none_is_left():
    """``exclude(j)`` removes items from the candidates once ``j`` is selected (novelty: the tiles near a
    selected tile); the selection ends early when every item is taken or excluded."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(12, 5))
    x[4] += 20.0                        # the outlier: selected first
    near = {j: np.array([j, j + 1]) % 12 for j in range(12)}
    sel = demud(x, 12, Subspace.fit(np.delete(x, 4, axis=0), 2), max_rank=2, exclude=lambda j: near[j])
    assert sel.order[0] == 4 and 5 not in sel.order       # item 5 went out with item 4
    assert 0 < len(sel.order) < 12 and len(set(sel.order.tolist())) == len(sel.order)
    for a in sel.order:                                   # no selected item excluded by an earlier one
        assert not any(a in near[b] and a != b for b in sel.order[:list(sel.order).index(a)])


def test_cancel_is_the_core_cancel_signal():
    """A cancel before a selection raises the core's one cancel signal, ``Canceled`` (not InterruptedError)."""
    from ktextures_plugin.core.errors import Canceled
    x = np.random.default_rng(0).normal(size=(20, 6))
    calls = []
    with pytest.raises(Canceled):
        demud(x, 5, Subspace.fit(x[:3], rank=2), is_canceled=lambda: calls.append(1) or len(calls) > 2)
    assert len(calls) == 3
