"""Distribution-Based Sensitivity Analysis (seed 000): the method, its detector and its views.

One entry point (``dbsa``) registers all three, so blocking ``dbsa`` blocks the family. They
share a typed payload (:mod:`.payload`). Modules: ``method`` (the AttributionMethod),
``options``, ``units``, ``neighbours``, ``embeddings`` (MiniLM), ``sampling`` (cached draws),
``stats`` (energy distance, permutation test, p-value combination, BH), ``detector``, ``views``.
"""

from __future__ import annotations

from typing import Any

from reportgen import hookimpl
from reportgen_plugins.dbsa.detector import DBSASignificant
from reportgen_plugins.dbsa.method import DBSA
from reportgen_plugins.dbsa.views import DBSAViews


@hookimpl
def reportgen_register_attribution_methods(register: Any) -> None:
    register(DBSA())


@hookimpl
def reportgen_register_detectors(register: Any) -> None:
    register(DBSASignificant())


@hookimpl
def reportgen_register_visualizations(register: Any) -> None:
    register(DBSAViews())
