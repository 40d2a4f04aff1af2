"""Eq. 10 over any subset of methods from the parts the page embeds (reportgen.report.blend.mean_parts):
equal, subset by subset, to eq. 6 of ``reportgen.aggregate.multi_method_mean`` computed directly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from reportgen.aggregate import multi_method_mean, token_importance
from reportgen.report.blend import mean_of, mean_parts


def _matrices() -> list[np.ndarray]:
    """Three 6 × 5 matrices (one signed) whose NaN cells differ: a PAS-like method finite on some rows
    only, a method with a NaN column, one cell NaN in every method (its row and column keep others)."""
    rng = np.random.default_rng(7)
    a = rng.uniform(0, 1, (6, 5))
    b = rng.normal(size=(6, 5))
    c = np.full((6, 5), np.nan)
    c[[1, 3, 4]] = rng.uniform(0, 2, (3, 5))
    b[:, 2] = np.nan
    for m in (a, b, c):
        m[5, 4] = np.nan
    return [a, b, c]


def _none_is_nan(v: list[float | None]) -> list[float]:
    return [np.nan if x is None else x for x in v]


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # the direct eq. 10 on a cell no method on has
@pytest.mark.parametrize("on", [s for s in itertools.product([False, True], repeat=3) if any(s)])
def test_every_subset_equals_eq10_computed_directly(on: tuple[bool, ...]) -> None:
    mats = _matrices()
    parts = mean_parts(mats)
    assert len(parts) > 1  # the NaN patterns differ: several parts
    got_in, got_out = mean_of(parts, list(on), (6, 5))
    want_in, want_out = token_importance(multi_method_mean([m for m, o in zip(mats, on, strict=True) if o]))
    assert _none_is_nan(got_in) == pytest.approx(_none_is_nan(want_in), abs=1e-5, nan_ok=True)
    assert _none_is_nan(got_out) == pytest.approx(_none_is_nan(want_out), abs=1e-5, nan_ok=True)


def test_a_token_without_a_finite_cell_under_the_methods_on_has_no_value() -> None:
    mats = _matrices()
    got_in, _ = mean_of(mean_parts(mats), [False, False, True], (6, 5))
    assert [i for i, v in enumerate(got_in) if v is None] == [0, 2, 5]  # method c is finite on rows 1, 3, 4 only
    assert mean_of(mean_parts(mats), [False, False, False], (6, 5)) == ([None] * 6, [None] * 5)


def test_without_nan_one_part_holds_each_methods_scaled_sums() -> None:
    a = np.arange(6.0).reshape(2, 3)
    b = -a
    (part,) = mean_parts([a, b])
    assert part.methods == (0, 1)
    assert part.input_sums == ((0.6, 2.4), (2.4, 0.6))  # rows of a/5 and of (b + 5)/5
    assert part.output_sums == ((0.6, 1.0, 1.4), (1.4, 1.0, 0.6))
