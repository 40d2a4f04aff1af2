"""Options of ``dbsa`` (methods.md §3), validated from the spec."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from reportgen.plugin_api import Options
from reportgen.prompt_units import SpanSpec, check_spans


class DBSAOptions(Options):
    """Options of ``dbsa`` (methods.md §3)."""

    unit: Literal["auto", "word", "token", "sentence", "spans"] = Field(
        "auto",
        description="Perturbed unit: word (DBSA regex), token (open models), sentence, or the named spans; "
        "auto = token for open models, word for API models. A sentence or span is perturbed as a whole: "
        "its k-th neighbour replaces each of its words by that word's k-th neighbour.",
    )
    spans: list[SpanSpec] = Field(
        default_factory=list,
        description="unit: spans: substrings of the prompt (every occurrence in user content) "
        "or [start, end) character ranges of the prompt text.",
    )
    neighbours: int = Field(3, ge=1, le=50, description="M neighbours tried per unit.")
    samples: int = Field(10, ge=2, le=1000, description="N responses per prompt (baseline and each perturbation).")
    permutations: int = Field(1000, ge=100, le=100000, description="B permutations of the pooled sample.")
    combine: Literal["fisher", "mean", "min_bonferroni"] = Field(
        "fisher", description="How a unit's neighbour p-values are combined (fisher assumes independence)."
    )
    max_new_tokens: int | None = Field(None, ge=1, le=2048, description="Response length (default: the spec's generation.max_new_tokens).")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    neighbour_map: dict[str, list[str]] = Field(default_factory=dict, description="Explicit neighbours per word (used first).")
    neighbour_source: Literal["auto", "embedding", "minilm", "map"] = Field(
        "auto", description="Where neighbours come from when neighbour_map has none (map = only the map)."
    )
    metric: Literal["cosine", "l2", "l1"] = Field("cosine", description="Distance between response embeddings.")
    max_requests: int | None = Field(None, ge=1, description="Refuse to start when the plan needs more draws than this.")
    alpha: float = Field(0.05, gt=0, lt=1, description="q threshold marked in details and figures.")
    examples: int = Field(3, ge=0, le=20, description="Responses kept per side for significant units.")

    @model_validator(mode="after")
    def _spans_fit_the_unit(self) -> DBSAOptions:
        check_spans(self.unit, self.spans, "unit")
        return self
