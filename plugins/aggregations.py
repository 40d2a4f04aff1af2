"""Built-in aggregations (seed 001 eqs. 4–7, 9–11) registered as plugins."""

from __future__ import annotations

from typing import Any

import numpy as np

from reportgen import aggregate, hookimpl
from reportgen.plugin_api import Aggregation


class _Fn(Aggregation):
    def __init__(self, name: str, kind: str, fn: Any, description: str) -> None:
        self._name, self._kind, self.fn, self._description = name, kind, fn, description

    @property  # type: ignore[override]
    def name(self) -> str:
        return self._name

    @property  # type: ignore[override]
    def kind(self) -> str:
        return self._kind

    @property  # type: ignore[override]
    def description(self) -> str:
        return self._description

    def __call__(self, array: np.ndarray, **kwargs: Any) -> Any:
        return self.fn(array, **kwargs)


BUILTIN = [
    _Fn("dimension.l2", "dimension", lambda a: aggregate.dimension_reduce(a, "l2"), "Eq. 9, L2 norm over hidden dims"),
    _Fn("dimension.sum", "dimension", lambda a: aggregate.dimension_reduce(a, "sum"), "Eq. 9, sum over hidden dims"),
    _Fn("dimension.mean", "dimension", lambda a: aggregate.dimension_reduce(a, "mean"), "Eq. 9, mean over hidden dims"),
    _Fn("token_importance", "matrix", aggregate.token_importance, "Eq. 6, I(x_i)=Σ_j A_ij, I(y_j)=Σ_i A_ij"),
    _Fn("intensity", "matrix", aggregate.intensity, "Eq. 7, min–max intensity in [0, 1]"),
    _Fn("input_window", "matrix", aggregate.input_window, "Eq. 4, input-centred window sum"),
    _Fn("output_window", "matrix", aggregate.output_window, "Eq. 5, output-centred window sum"),
    _Fn("multi_method_mean", "matrix", aggregate.multi_method_mean, "Eq. 10, mean over methods"),
    _Fn("difference", "matrix", aggregate.difference, "§4.5, differential matrix between two models"),
]


@hookimpl
def reportgen_register_aggregations(register: Any) -> None:
    for agg in BUILTIN:
        register(agg)
