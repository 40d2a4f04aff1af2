"""Aggregations (seed 001 eqs. 4–7, 9–11) against hand-computed answers."""

from __future__ import annotations

import numpy as np
import pytest

from reportgen import aggregate as agg
from reportgen.plugins import get_registry

A = np.array([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [4.0, 0.0, 1.0], [1.0, 1.0, 1.0]])  # n=4, t=3


def test_token_importance_eq6() -> None:
    ix, iy = agg.token_importance(A)
    assert ix == [3.0, 2.0, 5.0, 3.0]
    assert iy == [6.0, 2.0, 5.0]
    ix_abs, _ = agg.token_importance(A, absolute=True)
    assert ix_abs[1] == 4.0


def test_token_importance_skips_nan_rows() -> None:
    b = A.copy()
    b[0, :] = np.nan
    b[1, 0] = np.nan
    ix, iy = agg.token_importance(b)
    assert ix[0] is None and ix[1] == 2.0
    assert iy == [5.0, 0.0, 5.0]


def test_intensity_eq7() -> None:
    out = agg.intensity(A)
    assert out.min() == 0.0 and out.max() == 1.0
    assert out[1, 1] == 0.0 and out[2, 0] == 1.0
    assert np.isclose(out[0, 0], (1 - (-1)) / (4 - (-1)))
    assert np.all(agg.intensity(np.ones((2, 2))) == 0.0)
    assert np.isnan(agg.intensity(np.array([[np.nan, 1.0]]))[0, 0])


def test_windows_eq4_eq5() -> None:
    # c = 3 → ⌊c/2⌋ = 1: rows k-1..k+1
    assert agg.input_window(A, 1, 3).tolist() == [5.0, 1.0, 4.0]
    assert agg.input_window(A, 0, 3).tolist() == [1.0, 1.0, 3.0]  # clipped at the start
    assert agg.output_window(A, 2, 3).tolist() == [2.0, 2.0, 1.0, 2.0]
    assert agg.input_window(A, 2, 1).tolist() == A[2].tolist()  # c = 1 is the row itself
    assert agg.clamp_window(10, 4, 3) == 1 and agg.clamp_window(2, 8, 6) == 2 and agg.clamp_window(0, 8, 8) == 1


def test_dimension_reduce_eq9() -> None:
    x = np.arange(24, dtype=float).reshape(2, 3, 4)
    assert np.allclose(agg.dimension_reduce(x, "sum"), x.sum(-1))
    assert np.allclose(agg.dimension_reduce(x, "mean"), x.mean(-1))
    assert np.allclose(agg.dimension_reduce(x, "l2"), np.sqrt((x**2).sum(-1)))
    assert agg.dimension_reduce(A, "l2") is not None and agg.dimension_reduce(A, "l2").shape == A.shape
    y = np.ones((2, 3, 2, 5))  # layers × heads flatten together
    assert np.allclose(agg.dimension_reduce(y, "sum"), 10.0)
    with pytest.raises(ValueError):
        agg.dimension_reduce(x, "max")  # type: ignore[arg-type]


def test_multi_method_mean_eq10_and_difference() -> None:
    b = 2 * A
    assert np.allclose(agg.multi_method_mean([A, b], normalise=False), 1.5 * A)
    assert np.allclose(agg.multi_method_mean([A, b]), agg.intensity(A))  # same shape after scaling
    d = agg.difference(A, np.zeros((3, 5)))
    assert d.shape == (3, 3) and np.allclose(d, A[:3])
    with pytest.raises(ValueError):
        agg.multi_method_mean([A, np.ones((2, 2))])


def test_temporal_weights_eq11() -> None:
    w = agg.temporal_weights([0, 0, 1, 2, 2], 0.5)
    assert w.tolist() == [0.25, 0.25, 0.5, 1.0, 1.0]


def test_dimension_aggregations_registered_as_plugins() -> None:
    reg = get_registry()
    assert reg.dimension_aggregations() == ["dimension.l2", "dimension.mean", "dimension.sum"]
    x = np.arange(6, dtype=float).reshape(1, 2, 3)
    assert reg.dimension_aggregation("sum")(x).tolist() == [[3.0, 12.0]]  # the spec's short name
    assert np.allclose(reg.dimension_aggregation("dimension.l2")(x), np.sqrt((x**2).sum(-1)))
    assert reg.dimension_aggregation("mean")(x).tolist() == [[1.0, 4.0]]
    assert reg.dimension_aggregation("l3") is None
