"""Jacobian Scopes (seed 004): semantic, temperature and Fisher scopes."""

from __future__ import annotations

from typing import Any

from reportgen import hookimpl
from reportgen_plugins.jacobian.scopes import FisherScope, SemanticScope, TemperatureScope


@hookimpl
def reportgen_register_attribution_methods(register: Any) -> None:
    register(SemanticScope())
    register(FisherScope())
    register(TemperatureScope())
