"""Every attribution method of inseq, run on the stored generation."""

from __future__ import annotations

from typing import Any

from reportgen import hookimpl
from reportgen_plugins.inseq.methods import InseqMethod, available_methods


@hookimpl
def reportgen_register_attribution_methods(register: Any) -> None:
    for name in available_methods():
        register(InseqMethod(name))
