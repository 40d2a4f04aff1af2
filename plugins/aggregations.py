"""Built-in dimensional aggregations (seed 001 eq. 9): reduce per-cell vectors to one number.

A spec names one in ``aggregations.dimension`` (``l2``, ``sum`` or ``mean``, or a third-party
aggregation's full name); the runner resolves it here and hands it to every method.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from reportgen import aggregate, hookimpl
from reportgen.plugin_api import Aggregation


class DimensionReduce(Aggregation):
    def __init__(self, how: Literal["l2", "sum", "mean"], description: str) -> None:
        self.how = how
        self.name = f"dimension.{how}"
        self.description = description

    def __call__(self, array: np.ndarray) -> np.ndarray:
        return aggregate.dimension_reduce(array, self.how)


BUILTIN = [
    DimensionReduce("l2", "L2 norm over the trailing (hidden) dimensions"),
    DimensionReduce("sum", "sum over the trailing dimensions"),
    DimensionReduce("mean", "mean over the trailing dimensions"),
]


@hookimpl
def reportgen_register_aggregations(register: Any) -> None:
    for agg in BUILTIN:
        register(agg)
