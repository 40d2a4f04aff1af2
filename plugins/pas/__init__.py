"""Probabilistic Attribution Score (seed 003): the method, its detectors and its report views.

One entry point (``pas``) registers all three, so blocking ``pas`` blocks the family.
"""

from __future__ import annotations

from typing import Any

from reportgen import hookimpl
from reportgen_plugins.pas.detectors import DETECTORS
from reportgen_plugins.pas.method import ProbabilisticMethod
from reportgen_plugins.pas.views import PASViews


@hookimpl
def reportgen_register_attribution_methods(register: Any) -> None:
    register(ProbabilisticMethod())


@hookimpl
def reportgen_register_detectors(register: Any) -> None:
    for cls in DETECTORS:
        register(cls())


@hookimpl
def reportgen_register_visualizations(register: Any) -> None:
    register(PASViews())
