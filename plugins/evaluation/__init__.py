"""Faithfulness evaluation: which attribution can a reader trust?

One entry point (``evaluation``) registers the ``faithfulness`` evaluator; the report's
"Which attributions can you trust?" section is built by the host from its
:class:`~reportgen.data.Evaluation` tables.
"""

from __future__ import annotations

from typing import Any

from reportgen import hookimpl
from reportgen_plugins.evaluation.faithfulness import FaithfulnessEvaluator


@hookimpl
def reportgen_register_evaluators(register: Any) -> None:
    register(FaithfulnessEvaluator())
