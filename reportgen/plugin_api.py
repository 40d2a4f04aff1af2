"""Base classes a plugin subclasses (or duck-types) to register a capability."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # pragma: no cover
    import jinja2
    import numpy as np

    from reportgen.cache import Cache
    from reportgen.data import (
        AttributionResult,
        Evaluation,
        FigureSpec,
        Finding,
        Generation,
        RunResult,
    )
    from reportgen.report import FigureDrawer


class Options(BaseModel):
    """Base of every plugin's option model: unknown keys are errors, values are typed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(Options):
    pass


class Sampler:
    """Draws responses only (black-box access): a local model sampling, or an HTTP API."""

    id: str = ""

    def sample(
        self,
        prompt: str | list[dict[str, str]],
        n: int,
        *,
        seed: int,
        max_new_tokens: int,
        temperature: float = 1.0,
    ) -> list[str]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {}


@dataclass
class LoadedModel:
    """A model ready for methods.

    ``model``/``tokenizer`` are a transformers causal LM and its tokenizer for open-weights
    models (None for API-only models); ``sampler`` draws responses (every model has one).
    ``info`` is provenance (source, file hash, config) written into the report.
    """

    id: str
    source: str
    model: Any = None
    tokenizer: Any = None
    sampler: Sampler | None = None
    chat_template: bool = False
    device: str = "cpu"
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def open_weights(self) -> bool:
        return self.model is not None

    def close(self) -> None:
        """Free weights (called when the runner is done with the model)."""
        self.model = None
        self.tokenizer = None
        if self.sampler is not None and hasattr(self.sampler, "close"):
            self.sampler.close()


class ModelLoader:
    """Loads the models of one source scheme (``<scheme>:<name>`` in the spec).

    ``load`` is the only method a loader must have. ``check`` and ``fingerprint`` are
    optional hooks (a duck-typed loader may leave them out) that let the host do its work
    before any model loads: report a bad source with the other spec errors, and decide
    from the cache alone whether a model has to be loaded at all.
    """

    scheme: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def load(self, model_spec: Any, *, base_dir: str, device: str) -> LoadedModel:
        raise NotImplementedError

    def check(self, model_spec: Any) -> list[str]:
        """Problems with ``model_spec`` knowable without loading it, one message each.

        Called by ``reportgen validate`` and before a run; each message is reported as
        ``file:line:col: models[i].source: <message>`` (so give no position yourself), for
        example an unknown name with the valid choices. Touch no weights here.
        """
        return []

    def fingerprint(self, model_spec: Any, *, base_dir: str) -> dict[str, Any] | None:
        """What identifies the weights ``model_spec`` names, found without loading them.

        For example the sha256 of the weights file, or a package name and version whose
        content is verified on load. The host combines it with the spec's model settings into
        the cache key of every generation and result of this model, so it must change
        whenever the weights do. Return None (the default) when the loader cannot tell
        without loading: the runner then loads the model before consulting the cache.
        Raise ``ModelLoadError`` when the weights are missing or unreadable.
        """
        return None


def _builtin_reduce(array: np.ndarray, name: str | None = None) -> np.ndarray:
    from reportgen.aggregate import dimension_reduce

    how = (name or "l2").removeprefix("dimension.")
    if how not in ("l2", "sum", "mean"):
        raise ValueError(f"unknown dimensional aggregation {name!r}")
    return dimension_reduce(array, how)  # type: ignore[arg-type]


@dataclass
class AttributionContext:
    """Everything a method needs to explain one stored generation.

    ``progress(done, total)`` reports fine-grained progress inside a long method.
    ``reduce_dimension(array, name)`` applies the dimensional aggregation named ``name``
    (None: the spec's ``aggregations.dimension``), resolved through the plugin registry.
    ``cache`` is a content-addressed store (``cache.get(key)``/``cache.set(key, value)``)
    that methods may use for expensive intermediate results (e.g. sampled responses).
    """

    model: LoadedModel
    generation: Generation
    options: Any
    seed: int
    cache: Cache
    label: str | None = None
    progress: Callable[[int, int], None] = lambda done, total: None
    generation_settings: dict[str, Any] = field(default_factory=dict)
    reduce_dimension: Callable[[np.ndarray, str | None], np.ndarray] = field(default=_builtin_reduce)


class AttributionMethod:
    """An attribution method. ``attribute`` returns one ``AttributionResult``.

    ``requires``: "weights" (needs model/tokenizer), "sampler" (black-box is enough).
    ``unavailable_reason(model)`` returns why the method cannot run on this model
    (None when it can); the runner records the reason and goes on.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options_model: ClassVar[type[Options]] = NoOptions
    requires: ClassVar[str] = "weights"
    plugin: str = ""

    def unavailable_reason(self, model: LoadedModel) -> str | None:
        if self.requires == "weights" and not model.open_weights:
            return f"{self.name} needs the model's weights; {model.source} is API-only"
        return None

    def attribute(self, ctx: AttributionContext) -> AttributionResult:
        raise NotImplementedError

    def release(self, model: LoadedModel) -> None:
        """Drop anything held for ``model`` (called when the runner frees the model)."""


@dataclass(frozen=True)
class DeferredMethods:
    """Attribution methods whose names are known only after importing a heavy library.

    Register it with ``reportgen_register_attribution_methods`` like a method. ``prefix`` begins
    every name it stands for (e.g. ``"inseq."``); ``load()`` returns the methods (it may import
    torch). The host calls ``load`` once, the first time it looks up a name with the prefix or
    lists every method (validating a spec that names such a method, a run, ``reportgen
    plugins``), never to render a report or for a spec that names none: ``describe(name)`` gives
    a method's one-line description without loading.
    """

    prefix: str
    load: Callable[[], Iterable[AttributionMethod]]
    describe: Callable[[str], str]


class Aggregation:
    """A dimensional aggregation (seed 001 eq. 9): reduces ``n × t × d…`` to ``n × t``.

    ``kind`` is ``"dimension"``, the one kind the host looks up (a spec's
    ``aggregations.dimension`` names it).
    """

    name: str = ""
    kind: str = "dimension"
    description: str = ""

    def __call__(self, array: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Detector:
    """Turns results into findings. ``options_model`` holds the documented thresholds."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options_model: ClassVar[type[Options]] = NoOptions
    methods: ClassVar[tuple[str, ...]] = ()  # methods whose results it reads ("" = any)

    def detect(self, result: AttributionResult, generation: Generation, options: Any) -> list[Finding]:
        raise NotImplementedError


@dataclass(frozen=True)
class EvaluationSettings:
    """What a spec's ``evaluation:`` block asks of every evaluator (the host fills it in).

    ``metrics``: the metric families to compute (empty: all the evaluator offers).
    ``k_percent``: percentages of user tokens for comprehensiveness and sufficiency.
    ``operator``: what perturbing a token means: ``replace`` (by ``replacement``: ``neutral``, a
    single-space token, or ``prior``, the model's most probable other token there), ``mask`` (the
    tokenizer's unk or pad token) or ``delete``. ``perturbations``: random subsets drawn for
    infidelity. ``seed``: seeds every draw (the same draws for every method). ``target``:
    ``response`` (log-probability of the whole stored response) or ``token`` (each response
    token's log-probability against that token's column of A). ``methods``: the method labels to
    score (empty: every method). ``bootstrap``: resamples for intervals over prompts.
    ``token_importance``: the spec's ``aggregations.token_importance`` (``abs_sum`` makes every
    method's importance a size).
    """

    metrics: tuple[str, ...] = ()
    k_percent: tuple[float, ...] = (1.0, 5.0, 10.0, 20.0, 50.0)
    operator: Literal["replace", "mask", "delete"] = "replace"
    replacement: Literal["neutral", "prior"] = "neutral"
    perturbations: int = 32
    seed: int = 0
    target: Literal["response", "token"] = "response"
    methods: tuple[str, ...] = ()
    bootstrap: int = 1000
    token_importance: Literal["sum", "abs_sum"] = "sum"

    def wants(self, family: str) -> bool:
        return not self.metrics or family in self.metrics

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": list(self.metrics),
            "k_percent": list(self.k_percent),
            "operator": self.operator,
            "replacement": self.replacement,
            "perturbations": self.perturbations,
            "seed": self.seed,
            "target": self.target,
            "methods": list(self.methods),
            "bootstrap": self.bootstrap,
            "token_importance": self.token_importance,
        }


@dataclass
class EvaluationContext:
    """Everything an evaluator needs to score the methods on one model.

    ``generations``: the model's stored generations (spec prompt order); ``results``: every
    finished method result on them (any status); ``model``: the loaded model; ``options``: the
    evaluator's validated options; ``cache`` as in :class:`AttributionContext`;
    ``progress(done, total)`` reports progress inside a long evaluation.
    """

    model: LoadedModel
    generations: list[Generation]
    results: list[AttributionResult]
    settings: EvaluationSettings
    options: Any
    cache: Cache
    progress: Callable[[int, int], None] = lambda done, total: None


class Evaluator:
    """Scores the attribution methods after they ran: returns one :class:`~reportgen.data.Evaluation`
    per model (metric tables, stored in results.json and shown in the report).

    ``metrics`` lists the metric families it computes (what a spec's ``evaluation.metrics`` may
    name); ``options_model`` validates ``evaluation.options.<name>``; ``version`` is part of the
    cache key (raise it when the numbers change). ``unavailable_reason(model)`` says why it cannot
    run on a model (None when it can); ``release(model)`` drops per-model state.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options_model: ClassVar[type[Options]] = NoOptions
    metrics: ClassVar[tuple[str, ...]] = ()
    version: ClassVar[str] = "1"
    plugin: str = ""

    def unavailable_reason(self, model: LoadedModel) -> str | None:
        return None

    def evaluate(self, ctx: EvaluationContext) -> Evaluation:
        raise NotImplementedError

    def release(self, model: LoadedModel) -> None:
        """Drop anything held for ``model`` (called when the runner frees the model)."""


class Visualization:
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def figures(self, run: RunResult) -> list[FigureSpec]:
        raise NotImplementedError


@dataclass(frozen=True)
class RenderContext:
    """What the host hands every renderer.

    ``figures``: every visualization's figures for ``run``. ``env``: the one Jinja
    environment (autoescape, StrictUndefined, plugins' filters, the user's template folder).
    ``detectors``: each installed detector's name → the methods it reads, so a report can
    say what was checked (and when nothing could be). ``methods``: each installed method the
    run names → its one-line description.
    """

    run: RunResult
    figures: tuple[FigureSpec, ...]
    env: jinja2.Environment
    detectors: Mapping[str, tuple[str, ...]]
    methods: Mapping[str, str]


@dataclass(frozen=True)
class Attachment:
    """A file embedded in a print document: ``relationship`` is its PDF/A-3 AFRelationship
    (``Data``, ``Source``, …)."""

    name: str
    data: bytes
    description: str
    relationship: str


class Renderer:
    """Writes a run's report in one ``format``.

    Optional capability: a renderer with ``writes_print_documents = True`` also writes other
    documents in its format from print HTML (``write_print_document``); ``reportgen diff -f
    pdf`` asks the registry's ``pdf`` renderer for it.
    """

    format: ClassVar[str] = ""
    extension: ClassVar[str] = ""
    description: ClassVar[str] = ""
    writes_print_documents: ClassVar[bool] = False

    def render(self, ctx: RenderContext, out_path: str) -> None:
        """Write the report to ``out_path`` (the host makes the write atomic)."""
        raise NotImplementedError

    def write_print_document(
        self, build_html: Callable[[FigureDrawer], str], out_path: str, attachments: Sequence[Attachment], when: str
    ) -> None:
        """Write the print HTML ``build_html(drawer)`` returns (no scripts, ``data:`` URLs only;
        ``drawer`` draws its figures the way this renderer's reports do) to ``out_path`` with
        ``attachments`` embedded, dated ``when`` (ISO 8601)."""
        raise NotImplementedError
