"""Every attribution method of inseq, run on the stored generation.

The methods are registered as one deferred family (``inseq.*``): listing them imports inseq,
torch and transformers, which a command that names no inseq method never needs.
"""

from __future__ import annotations

from typing import Any

from reportgen import hookimpl
from reportgen.plugin_api import AttributionMethod, DeferredMethods
from reportgen_plugins.inseq.methods import InseqMethod, available_methods, describe


def _load() -> list[AttributionMethod]:
    return [InseqMethod(name) for name in available_methods()]


@hookimpl
def reportgen_register_attribution_methods(register: Any) -> None:
    register(DeferredMethods(prefix="inseq.", load=_load, describe=describe))
