"""Base classes a plugin subclasses (or duck-types) to register a capability."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # pragma: no cover
    import jinja2
    import numpy as np

    from reportgen.cache import Cache
    from reportgen.data import AttributionResult, FigureSpec, Finding, Generation, RunResult


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

    def detect(
        self, result: AttributionResult, generation: Generation, options: Any
    ) -> list[Finding]:
        raise NotImplementedError


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
    say what was checked (and when nothing could be). ``methods``: each installed method's
    name → its one-line description.
    """

    run: RunResult
    figures: tuple[FigureSpec, ...]
    env: jinja2.Environment
    detectors: Mapping[str, tuple[str, ...]]
    methods: Mapping[str, str]


class Renderer:
    format: ClassVar[str] = ""
    extension: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def render(self, ctx: RenderContext, out_path: str) -> None:
        """Write the report to ``out_path`` (the host makes the write atomic)."""
        raise NotImplementedError
