"""The renderer-independent report model: frozen dataclasses, every field typed.

A renderer receives a :class:`ReportContext` and only chooses how figures are drawn (a
:class:`~reportgen.report.builder.FigureDrawer`) and which templates print it. Every number,
label, colour, id and the order of things is decided when the context is built; templates
only loop and print.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from markupsafe import Markup


@dataclass(frozen=True)
class FigureBlock:
    """One figure as inserted into the page (Plotly ``<div>`` or a static drawing)."""

    id: str
    title: str
    caption: str
    html: Markup
    error: str = ""  # why the figure could not be drawn (the report still renders)


@dataclass(frozen=True)
class Tok:
    """One token as shown in a token view."""

    index: int
    text: str
    special: bool
    css: str
    title: str
    role: str = ""  # chat role (system, user, assistant, tool) when the generation knows it


@dataclass(frozen=True)
class MessageRow:
    """One message of a prompt as the spec gives it; long text is shown shortened, expandable."""

    role: str
    text: str
    preview: str  # the first characters when the text is long, else ""


@dataclass(frozen=True)
class ScoreRow:
    index: int
    token: str
    special: bool
    values: tuple[str, ...]


@dataclass(frozen=True)
class ScoreTable:
    names: tuple[str, ...]
    rows: tuple[ScoreRow, ...]


@dataclass(frozen=True)
class HoverData:
    """The matrix the HTML report's script re-colours tokens from (window sums on hover)."""

    matrix: tuple[tuple[float | None, ...], ...]
    signed: bool

    def to_json(self) -> dict[str, object]:
        return {"A": [list(row) for row in self.matrix], "signed": self.signed}


@dataclass(frozen=True)
class MethodView:
    """One method's view of one (model, prompt): token colours, heatmap, scores, status."""

    key: str
    label: str
    method: str
    about: str  # what the method measures and how to read its colours, in plain words
    status: str
    reason: str | None
    signed: bool
    matrix_label: str
    options: str
    timings: tuple[tuple[str, str], ...]
    input_toks: tuple[Tok, ...]
    output_toks: tuple[Tok, ...]
    heatmap: FigureBlock | None
    heatmap_note: str
    scores: ScoreTable | None
    scores_fig: FigureBlock | None
    hover: HoverData | None  # None when the renderer is static or the matrix is too large


@dataclass(frozen=True)
class Panel:
    """One (model, prompt) generation with every method's view."""

    id: str
    model_id: str
    model_label: str
    prompt_id: str
    settings: str
    n: int
    t: int
    user_n: int
    window_max: int
    window_default: int
    methods: tuple[MethodView, ...]
    plain_input: tuple[Tok, ...]
    plain_output: tuple[Tok, ...]
    steps: FigureBlock | None
    figures: tuple[FigureBlock, ...]
    blend: BlendView | None = None  # methods toggled together and the eq. 10 mean (reportgen.report.blend)
    ling: LingView | None = None  # part-of-speech / entity filter; ling_note says why it is absent
    ling_note: str = ""


@dataclass(frozen=True)
class SyncUnits:
    """One side's units of one kind (input or response) in a comparison: each unit's value and the
    index of its aligned partner among the other side's units of that kind (None: unaligned)."""

    values: tuple[float | None, ...]
    partners: tuple[int | None, ...]

    def to_json(self) -> dict[str, object]:
        return {"v": list(self.values), "p": list(self.partners)}


@dataclass(frozen=True)
class SyncHover:
    """What the comparison view's synchronised hover reads (report.js ``setupSyncHover``)."""

    left_in: SyncUnits
    left_out: SyncUnits
    right_in: SyncUnits
    right_out: SyncUnits

    def to_json(self) -> dict[str, object]:
        return {
            "left": {"in": self.left_in.to_json(), "out": self.left_out.to_json()},
            "right": {"in": self.right_in.to_json(), "out": self.right_out.to_json()},
        }


@dataclass(frozen=True)
class CompareMethod:
    key: str
    label: str
    left_input: tuple[Tok, ...]
    left_output: tuple[Tok, ...]
    right_input: tuple[Tok, ...]
    right_output: tuple[Tok, ...]
    diff: FigureBlock | None
    note: str
    sync: SyncHover | None = None  # aligned partners and values for the synchronised hover


@dataclass(frozen=True)
class Comparison:
    id: str
    left: str
    right: str
    left_label: str
    right_label: str
    same_output: bool
    inputs_note: str  # says when the two models did not see the same input
    methods: tuple[CompareMethod, ...]
    title: str = "Model comparison"  # the heading's first words ("Run comparison" in ``reportgen diff``)


@dataclass(frozen=True)
class TimelineRow:
    """One (turn, role) of a conversation's attributed input, or its generated output."""

    turn: int
    role: str
    text: str
    preview: str  # the first characters when the text is long, else ""
    generated: bool  # the model's own earlier output (eq. 8) or the attributed reply
    tokens: int
    shares: tuple[str, ...]  # per method: share of Σ|A| its tokens carry ("" for the output row)
    output: bool = False  # the reply every method attributes
    template: bool = False  # written by the chat template, not a message of the spec (its own system prompt)


@dataclass(frozen=True)
class TemporalRow:
    """One turn of the eq. 11 view: its α_t and its share of Σ|A| before and after weighting."""

    turn: int
    alpha: str
    shares: tuple[str, ...]
    weighted: tuple[str, ...]


@dataclass(frozen=True)
class ConversationView:
    """A model's conversation: the turn timeline and the eq. 11 temporal view of its attributed last turn."""

    id: str
    model_label: str
    methods: tuple[str, ...]
    rows: tuple[TimelineRow, ...]
    temporal: tuple[TemporalRow, ...]
    alpha_rule: str  # where the α_t come from, in words
    note: str  # methods whose shares could not be computed, and why


@dataclass(frozen=True)
class PromptSection:
    id: str
    prompt_id: str
    label: str
    messages: tuple[MessageRow, ...]
    panels: tuple[Panel, ...]
    comparisons: tuple[Comparison, ...]
    conversations: tuple[ConversationView, ...] = ()  # one per model, for a multi-turn prompt
    roles_marked: bool = False  # tokens carry a role stripe (the legend is shown)
    template_system: bool = False  # a chat template wrote its own system prompt (the legend says so)


@dataclass(frozen=True)
class FindingView:
    id: str
    severity: str
    title: str
    detector: str
    model_id: str
    prompt_id: str
    method: str
    token: str
    positions: str
    context: tuple[str, str, str]  # text before, the tokens at the finding's positions, text after
    evidence: tuple[tuple[str, str], ...]
    message: str
    suggestion: str
    panel_id: str


@dataclass(frozen=True)
class StatusCell:
    status: str  # ok | unavailable | failed | partial | none
    text: str
    reason: str


@dataclass(frozen=True)
class StatusRow:
    label: str
    cells: tuple[StatusCell, ...]


@dataclass(frozen=True)
class Narrative:
    id: str
    title: str
    html: Markup


@dataclass(frozen=True)
class ModelRow:
    id: str
    label: str
    source: str
    info: str


@dataclass(frozen=True)
class TemplateText:
    """What one model's chat template put around the prompt's messages, verbatim.

    ``text`` is the model input with each run of user content replaced by ``⟦…⟧``.
    """

    models: str  # the models whose template added exactly this text
    text: str
    chars: int  # characters the template added


@dataclass(frozen=True)
class PromptRow:
    id: str
    label: str
    messages: tuple[MessageRow, ...]
    template: tuple[TemplateText, ...]
    anchor: str


@dataclass(frozen=True)
class MethodRow:
    label: str
    method: str
    options: str
    models: str


@dataclass(frozen=True)
class Headline:
    """What the summary leads with: what an auditor must act on, nothing else.

    ``findings``: high, medium and low findings, most severe first (the first few; ``more`` not
    listed). ``failed``: each failed method job. ``verdict``: when no finding is listed, what was
    (not) established, never "no anomalies" while info-level notes could be ones. ``notes``:
    how many info-level notes, on how many token positions (they are in the anomalies section).
    """

    findings: tuple[FindingView, ...]
    more: int
    failed: tuple[str, ...]
    verdict: str
    notes: str


@dataclass(frozen=True)
class Summary:
    """What was audited, what ran, what the detectors read, and how long it took."""

    models: tuple[ModelRow, ...]
    prompts: tuple[PromptRow, ...]
    methods: tuple[MethodRow, ...]
    status_models: tuple[str, ...]
    status_rows: tuple[StatusRow, ...]
    checked: tuple[str, ...]
    nothing_checked: bool  # detectors are installed and none had results to read
    timings: tuple[tuple[str, str], ...]
    headline: Headline


@dataclass(frozen=True)
class Findings:
    """Every finding, most severe first, and the counts per severity."""

    severity_counts: tuple[tuple[str, int], ...]
    top: tuple[FindingView, ...]
    all: tuple[FindingView, ...]


@dataclass(frozen=True)
class TocEntry:
    anchor: str
    text: str
    level: int


@dataclass(frozen=True)
class Rebuilt:
    """Set when ``reportgen render`` rebuilt the report from a results.json (not the run itself)."""

    at: str  # when it was rebuilt (UTC, ISO 8601)
    source: str  # the results file's name (never its absolute path)
    sha256: str  # of that file's bytes


@dataclass(frozen=True)
class ScoreColumn:
    """One metric column of a scorecard: which direction is better (arrow) and what it means."""

    name: str
    label: str
    arrow: str  # ↑, ↓ or "" (the metric describes, it does not judge)
    better: str  # the arrow in words
    description: str
    unit: str


@dataclass(frozen=True)
class ScoreCell:
    value: str  # the mean over prompts, formatted ("—" when not computed)
    interval: str  # "[lo, hi]" (95 % bootstrap over prompts), "" when there is none
    best: bool  # the best value of its column
    title: str  # exact numbers and n, for hover


@dataclass(frozen=True)
class ScoreRowView:
    method: str
    kind: str  # signed | unsigned | reference
    reference: bool  # a baseline (random order), never the best
    recommended: bool
    cells: tuple[ScoreCell, ...]


@dataclass(frozen=True)
class AgreementTable:
    """The averaged rank agreement as numbers (the heatmap's values, readable in print)."""

    methods: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]  # (method, each cell as "τ (ρ)")
    n: int  # prompts averaged


@dataclass(frozen=True)
class EvaluationView:
    """One evaluator's verdict on one model: recommendation, scorecard, curves, agreement."""

    id: str
    model_id: str
    model_label: str
    evaluator: str
    status: str  # ok | unavailable | failed
    reason: str
    headline: str
    verdict: str  # recommend | no_clear_winner | too_thin | none
    tone: str  # ok | medium | info: the colour of the verdict (the report's CSS variables --ok, --medium, --info)
    evidence: tuple[str, ...]
    perturbation: str
    ranking: str
    facts: tuple[tuple[str, str], ...]
    columns: tuple[ScoreColumn, ...]
    rows: tuple[ScoreRowView, ...]
    curves: tuple[FigureBlock, ...]
    agreement: FigureBlock | None
    agreement_table: AgreementTable | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class EvaluationSection:
    """ "Which attributions can you trust?": one view per (model, evaluator); ``headline`` feeds the summary."""

    id: str
    title: str
    views: tuple[EvaluationView, ...]
    headline: tuple[str, ...]


@dataclass(frozen=True)
class ReportContext:
    title: str
    description: str
    created_at: str
    completed_at: str
    summary: Summary
    findings: Findings
    narrative_before: tuple[Narrative, ...]
    narrative_after: tuple[Narrative, ...]
    sections: tuple[PromptSection, ...]
    summary_figures: tuple[FigureBlock, ...]
    anomaly_figures: tuple[FigureBlock, ...]
    other_figures: tuple[FigureBlock, ...]
    provenance: tuple[tuple[str, str], ...]
    spec_text: str
    spec_path: str
    heatmap_cells: int  # the largest heatmap drawn before block-averaging
    toc: tuple[TocEntry, ...] = field(default=())
    rebuilt: Rebuilt | None = None  # a notice at the top; None for a report written by the run
    evaluation: EvaluationSection | None = None  # "Which attributions can you trust?"; None unless the spec asked

    @property
    def n_findings(self) -> int:
        return len(self.findings.all)


# ---- comparing methods (reportgen.report.blend) and the linguistic filter (reportgen.linguistics)

Intensities = tuple[float | None, ...]


@dataclass(frozen=True)
class BlendMethod:
    key: str
    label: str
    colour_name: str
    hex: str
    rgb: tuple[int, int, int]
    signed: bool
    on: bool  # toggled on when the page opens (the tokens' colours at load are this blend)
    input_s: Intensities  # per input token (or unit): the intensity the method's own view shows
    output_s: Intensities


@dataclass(frozen=True)
class CategoryRow:
    """Mean intensity of the tokens in one linguistic category, per method and for eq. 10."""

    kind: str  # "pos" or "ent"
    label: str
    count: int
    means: tuple[float, ...]  # one per blend method, then the eq. 10 mean (NaN: no value)


@dataclass(frozen=True)
class MeanPart:
    """The cells where exactly the methods ``methods`` (indices into the blend's) have finite values:
    each one's row and column sums of its min–max-scaled matrix over those cells (None: the row or
    column has no such cell). Eq. 10 over any subset of methods is a sum over parts
    (reportgen.report.blend.mean_of)."""

    methods: tuple[int, ...]
    input_sums: tuple[Intensities, ...]  # one per method in ``methods``
    output_sums: tuple[Intensities, ...]


@dataclass(frozen=True)
class MeanView:
    """Eq. 10 over the methods toggled on, in one hue: the page sums its parts for the toggled subset."""

    rgb: tuple[int, int, int]
    hex: str
    parts: tuple[MeanPart, ...]


@dataclass(frozen=True)
class BlendView:
    methods: tuple[BlendMethod, ...]
    input_toks: tuple[Tok, ...]
    output_toks: tuple[Tok, ...]
    mean: MeanView
    categories: tuple[CategoryRow, ...]  # empty without linguistic labels

    def to_json(self) -> object:
        """What report.js needs: colours, per token the methods' intensities, the eq. 10 parts."""
        m = self.mean
        return {
            "keys": [x.key for x in self.methods],
            "colours": [list(x.rgb) for x in self.methods],
            "in": [list(col) for col in zip(*(x.input_s for x in self.methods), strict=True)],
            "out": [list(col) for col in zip(*(x.output_s for x in self.methods), strict=True)],
            "mean": {
                "colour": list(m.rgb),
                "parts": [
                    {"m": list(q.methods), "in": [list(v) for v in q.input_sums], "out": [list(v) for v in q.output_sums]} for q in m.parts
                ],
            },
        }


Label = tuple[str | None, str | None]  # (part of speech, entity type)


@dataclass(frozen=True)
class LingView:
    """Part-of-speech and entity labels of a panel's tokens, for the filter control (report.js)."""

    pos_tags: tuple[str, ...]
    ent_types: tuple[str, ...]
    input_labels: tuple[Label, ...]
    output_labels: tuple[Label, ...]

    def to_json(self) -> object:
        return {"in": [list(x) for x in self.input_labels], "out": [list(x) for x in self.output_labels]}
