"""PAS views: the Probabilistic Attribution Score figures of the report (seed 003 Figs. 1, 2, 4–6).

For every ``probabilistic`` result with status ``ok`` this plugin builds up to five Plotly
figures, in this order (``FigureSpec.order``):

1. ``pas-as-…``: AS over the prompt tokens, diverging RdBu bars symmetric around 0, error
   bars from the intervals; tokens whose interval straddles 0 are hatched and marked.
2. ``pas-entropy-…``: AS vs contextual entropies H_p and H_pr (Fig. 2), two series.
3. ``pas-kl-…``: KL per token (Fig. 4), both directions, each toggled from the legend.
4. ``pas-candidates-…``: prior vs posterior probabilities of the top replacement candidates
   at the (up to) three most anomalous positions (Fig. 5), the original token outlined.
5. ``pas-replacement-…``: replacement entropy and original-response share vs AS (Fig. 6),
   only when computed.

Tokens are user data. Plotly renders hover, tick and title text through its own small
pseudo-HTML parser (it inserts text nodes and strips scripts and event handlers, so a token
cannot inject markup), but it would still *interpret* tags such as ``<b>`` or ``<br>`` inside
a token. Every token is therefore HTML-escaped (``&``, ``<``, ``>``) before it reaches a
figure: Plotly decodes the entities into literal text, and the figure JSON holds no raw ``<``
from a token at all.
"""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from typing import Any, ClassVar

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reportgen.data import AttributionResult, FigureSpec, Generation, RunResult
from reportgen.figures import (  # one escaping rule and one signed scale for every figure
    DIVERGING,
    esc,
    rnd,
    slug,
)
from reportgen.plugin_api import Visualization
from reportgen_plugins.pas.payload import (
    KIND_LABEL,
    KIND_MEANING,
    Candidate,
    CandidateLists,
    PasPayload,
    Which,
)

METHOD = "probabilistic"
#: FigureSpec.order of the five views (they appear in this order within a prompt section).
ORDER = {"as": 40, "entropy": 41, "kl": 42, "candidates": 43, "replacement": 44}
#: How many anomalous positions Fig. 5 shows, and how many candidates per list.
TOP_POSITIONS = 3
TOP_CANDIDATES = 5


def tick(token: str) -> str:
    """A short axis label for a token (escaped, trimmed, never empty)."""
    t = token.strip(" ") or "␣"
    if len(t) > 14:
        t = t[:13] + "…"
    return esc(t)


def kind_label(kind: str) -> str:
    """The reader's word for an interval kind ("exact", "certified", "estimated"; "unspecified" if unknown)."""
    return KIND_LABEL.get(kind, "unspecified")


def kind_hover(kind: str, width: int = 64) -> str:
    """What an interval kind means, wrapped for a hover box (Plotly line breaks)."""
    meaning = KIND_MEANING.get(kind)
    if meaning is None:
        return "how this number was obtained was not recorded"
    return "<br>".join(textwrap.wrap(f"{kind_label(kind)}: {meaning}", width))


#: Caption text per kind: how the number was obtained and what its error bar means.
KIND_CAPTION = {
    "exact": "every token of the vocabulary was tried in its place, so the bar is the exact value and has no error bar",
    "certified": (
        "only part of the vocabulary was tried (the likeliest replacements first); the bar is computed from "
        "those, and its error bar is guaranteed to contain the exact value"
    ),
    "estimate": (
        "part of the vocabulary was tried and the rest sampled at random; the bar is the sample's estimate, "
        "and its error bar is a 95% confidence interval (it contains the exact value in at least 95 of 100 "
        "runs) lying inside the guaranteed bounds"
    ),
}


def kinds_caption(v: _View) -> str:
    """Caption sentences saying how the numbers of this result were obtained (only the kinds present)."""
    counts = Counter(v.kind[k] for k in v.pos if v.kind.get(k) in KIND_CAPTION)
    if not counts:
        return ""
    order = [k for k in ("exact", "certified", "estimate") if counts[k]]
    parts = " ".join(f"{kind_label(k).capitalize()} ({counts[k]} token{'s' if counts[k] != 1 else ''}): {KIND_CAPTION[k]}." for k in order)
    return f" Each bar's hover text says how its number was obtained. {parts}"


def approximate_note(v: _View, what: str) -> str:
    """A caption sentence for figures without error bars, when some numbers are not exact."""
    if not any(v.kind.get(k) in ("certified", "estimate") for k in v.pos):
        return ""
    return (
        f" At tokens whose attribution score is certified or estimated, {what} computed from the "
        "replacements that were tried (and the random sample), so they are approximate and have no error bar."
    )


def _vec(result: AttributionResult, name: str, n: int) -> list[float | None]:
    raw = result.scores.get(name)
    if raw is None:
        return [None] * n
    out = [rnd(v) if v is not None else None for v in list(raw)[:n]]
    return out + [None] * (n - len(out))


def _interval(result: AttributionResult, k: int) -> tuple[float, float] | None:
    ivs = result.intervals.get("attribution_score")
    pair = ivs[k] if ivs and k < len(ivs) else None
    if pair is None or len(pair) != 2:
        return None
    lo, hi = rnd(pair[0]), rnd(pair[1])
    if lo is None or hi is None:
        return None
    return (min(lo, hi), max(lo, hi))


class _View:
    """One result's data, prepared once for all five figures."""

    def __init__(self, result: AttributionResult, generation: Generation | None) -> None:
        self.result = result
        if generation is not None and len(generation.input_tokens) == len(result.input_tokens):
            self.tokens = list(generation.input_tokens)
        else:
            self.tokens = list(result.input_tokens)
        n = len(self.tokens)
        self.AS = _vec(result, "attribution_score", n)
        self.pos = [k for k in range(n) if self.AS[k] is not None]  # scored positions, in order
        self.hp = _vec(result, "entropy_prompt", n)
        self.hpr = _vec(result, "entropy_prompt_response", n)
        self.kl_pp = _vec(result, "kl_posterior_prior", n)
        self.kl_rev = _vec(result, "kl_prior_posterior", n)
        self.lpr = _vec(result, "log_prior_original", n)
        self.lpo = _vec(result, "log_posterior_original", n)
        self.rent = _vec(result, "replacement_entropy", n)
        self.rpct = _vec(result, "original_response_pct", n)
        self.payload = PasPayload.of(result)
        self.kind: dict[int, str] = {k: self.payload.interval_kind.get(k, "") for k in self.pos}
        self.ids = list(generation.input_ids) if generation is not None and generation.n == n else [None] * n

    # x axis shared by the per-token bar charts: 0..m-1 over scored positions, token tick labels
    def token_axis(self) -> dict[str, Any]:
        return {
            "tickmode": "array",
            "tickvals": list(range(len(self.pos))),
            "ticktext": [tick(self.tokens[k]) for k in self.pos],
            "title": {"text": "prompt token"},
            "tickangle": -60,
        }


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    base: dict[str, Any] = {
        "title": {"text": title},
        "template": "plotly_white",
        "margin": {"l": 60, "r": 20, "t": 50, "b": 90},
        "height": 380,
        "hoverlabel": {"align": "left"},
    }
    base.update(kw)
    fig.update_layout(**base)
    return fig


def as_figure(v: _View) -> go.Figure:
    """Fig. 1 style: AS per prompt token, RdBu symmetric around 0, interval error bars."""
    xs = list(range(len(v.pos)))
    ys = [v.AS[k] for k in v.pos]
    m = max((abs(y) for y in ys if y is not None), default=1.0) or 1.0
    lo_hi = [_interval(v.result, k) for k in v.pos]
    plus = [rnd(iv[1] - y) if iv else 0.0 for iv, y in zip(lo_hi, ys, strict=True)]  # type: ignore[operator]
    minus = [rnd(y - iv[0]) if iv else 0.0 for iv, y in zip(lo_hi, ys, strict=True)]  # type: ignore[operator]
    strad = [bool(iv and iv[0] < 0 < iv[1]) for iv in lo_hi]
    custom = [
        [
            esc(v.tokens[k]),
            k,
            f"[{iv[0]:.4g}, {iv[1]:.4g}]" if iv else "none",
            kind_label(v.kind.get(k, "")) if v.kind.get(k) or iv else "n/a",
            "yes: sign uncertain" if s else "no",
            kind_hover(v.kind.get(k, "")),
        ]
        for k, iv, s in zip(v.pos, lo_hi, strad, strict=True)
    ]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=xs,
            y=ys,
            name="AS",
            showlegend=False,
            marker={
                "color": ys,
                "colorscale": DIVERGING,  # the report's one signed scale: positive red, negative blue
                "cmin": -m,
                "cmax": m,
                "cmid": 0,
                "showscale": False,  # the y axis already reads AS; colour repeats it
                "line": {"color": ["black" if s else "rgba(0,0,0,0)" for s in strad], "width": 1.5},
                "pattern": {"shape": ["/" if s else "" for s in strad], "fgcolor": "black"},
            },
            error_y={
                "type": "data",
                "symmetric": False,
                "array": plus,
                "arrayminus": minus,
                "visible": any(iv is not None for iv in lo_hi),
                "color": "#444",
            },
            customdata=custom,
            hovertemplate=(
                "token «%{customdata[0]}» (position %{customdata[1]})<br>AS = %{y:.4~g} nats"
                "<br>interval %{customdata[2]} (%{customdata[3]})<br>straddles 0: %{customdata[4]}"
                "<br>%{customdata[5]}<extra></extra>"
            ),
        )
    )
    sx = [x for x, s in zip(xs, strad, strict=True) if s]
    fig.add_trace(
        go.Scatter(
            x=sx,
            y=[rnd((lo_hi[x][1] if lo_hi[x] else 0.0) + 0.04 * m) for x in sx],  # type: ignore[index]
            mode="markers",
            name="interval straddles 0",
            marker={"symbol": "star-open", "size": 9, "color": "black"},
            customdata=[[esc(v.tokens[v.pos[x]])] for x in sx],
            hovertemplate="«%{customdata[0]}»: the AS interval includes 0 (sign uncertain)<extra></extra>",
            visible=True if sx else "legendonly",
        )
    )
    return _layout(
        fig,
        "Attribution score (AS) per prompt token",
        xaxis=v.token_axis(),
        yaxis={"title": {"text": "AS (nats)"}, "zeroline": True},
        showlegend=bool(sx),
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        margin={"l": 60, "r": 20, "t": 80, "b": 90},
        bargap=0.15,
    )


def entropy_figure(v: _View) -> go.Figure:
    """Fig. 2: contextual entropies H_p and H_pr against AS, one point per token."""
    fig = go.Figure()
    for name, vec, symbol in (
        ("H_p (prompt only)", v.hp, "circle"),
        ("H_pr (prompt + response)", v.hpr, "diamond"),
    ):
        ks = [k for k in v.pos if vec[k] is not None]
        fig.add_trace(
            go.Scatter(
                x=[v.AS[k] for k in ks],
                y=[vec[k] for k in ks],
                mode="markers",
                name=name,
                marker={"symbol": symbol, "size": 8, "opacity": 0.8},
                customdata=[[esc(v.tokens[k]), k, kind_label(v.kind.get(k, ""))] for k in ks],
                hovertemplate=(
                    "token «%{customdata[0]}» (position %{customdata[1]})<br>AS = %{x:.4~g} nats"
                    f"<br>{name.split(' ')[0]} = %{{y:.4~g}} nats<br>numbers: %{{customdata[2]}}<extra></extra>"
                ),
            )
        )
    return _layout(
        fig,
        "Contextual entropy vs attribution score",
        xaxis={"title": {"text": "AS (nats)"}, "zeroline": True},
        yaxis={"title": {"text": "contextual entropy (nats)"}, "rangemode": "tozero"},
    )


def kl_figure(v: _View) -> go.Figure:
    """Fig. 4: KL between posterior ρ (with response) and prior π per token, both directions."""
    fig = go.Figure()
    xs = list(range(len(v.pos)))
    custom = [[esc(v.tokens[k]), k, v.AS[k], kind_label(v.kind.get(k, ""))] for k in v.pos]
    for name, vec, color in (
        ("KL(ρ‖π): posterior vs prior", v.kl_pp, "#1f77b4"),
        ("KL(π‖ρ): prior vs posterior", v.kl_rev, "#ff7f0e"),
    ):
        fig.add_trace(
            go.Bar(
                x=xs,
                y=[vec[k] for k in v.pos],
                name=name,
                marker={"color": color},
                customdata=custom,
                hovertemplate=(
                    "token «%{customdata[0]}» (position %{customdata[1]})<br>"
                    + name.split(":")[0]
                    + " = %{y:.4~g} nats<br>AS = %{customdata[2]:.4~g} nats<br>numbers: %{customdata[3]}"
                    "<extra></extra>"
                ),
            )
        )
    return _layout(
        fig,
        "KL divergence between token distributions with and without the response",
        barmode="group",
        xaxis=v.token_axis(),
        yaxis={"title": {"text": "KL divergence (nats)"}, "rangemode": "tozero"},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        margin={"l": 60, "r": 20, "t": 80, "b": 90},
    )


def anomalous_positions(v: _View, top: int = TOP_POSITIONS) -> list[int]:
    """The (up to) ``top`` positions with the largest max(|AS|, KL(ρ‖π)) (both in nats) that
    have recorded candidates; ties broken by position."""

    def score(k: int) -> float:
        return max(abs(v.AS[k] or 0.0), v.kl_pp[k] or 0.0)

    ks = [k for k in v.pos if k in v.payload.candidates]
    return sorted(sorted(ks, key=lambda k: (-score(k), k))[:top])


def _candidate_rows(v: _View, k: int) -> list[dict[str, Any]]:
    """Union of the top prior and posterior candidates at k (the original first): token, p_prior,
    p_post (None where that list did not include it), original flag."""
    c = v.payload.candidates.get(k) or CandidateLists()
    rows: dict[Any, dict[str, Any]] = {}
    orig_key = v.ids[k] if v.ids[k] is not None else ("tok", v.tokens[k])
    lpr, lpo = v.lpr[k], v.lpo[k]
    rows[orig_key] = {
        "token": v.tokens[k],
        "prior": rnd(math.exp(lpr)) if lpr is not None else None,
        "posterior": rnd(math.exp(lpo)) if lpo is not None else None,
        "original": True,
    }

    def key(d: Candidate) -> Any:
        return d.id if d.id is not None else ("tok", d.token)

    which: Which
    for which in ("prior", "posterior"):
        for d in c.ranked(which)[:TOP_CANDIDATES]:
            kd = orig_key if d.token == v.tokens[k] and v.ids[k] is None else key(d)
            row = rows.setdefault(kd, {"token": d.token, "prior": None, "posterior": None, "original": False})
            if row[which] is None:
                row[which] = rnd(d.p)
    # fill the other list's probability where a candidate appears in both lists
    for which in ("prior", "posterior"):
        for d in c.prior if which == "prior" else c.posterior:
            if key(d) in rows and rows[key(d)][which] is None:
                rows[key(d)][which] = rnd(d.p)
    out = list(rows.values())
    out[1:] = sorted(out[1:], key=lambda r: -max(r["prior"] or 0.0, r["posterior"] or 0.0))
    return out


def candidates_figure(v: _View, positions: list[int]) -> go.Figure:
    """Fig. 5: grouped bars of prior vs posterior probability of the top candidates."""
    titles = [f"«{esc(v.tokens[k])}» (position {k}, AS = {v.AS[k]:.3g})" for k in positions]
    fig = make_subplots(rows=1, cols=len(positions), subplot_titles=titles, shared_yaxes=True)
    for col, k in enumerate(positions, start=1):
        rows = _candidate_rows(v, k)
        xs = list(range(len(rows)))
        labels = [tick(r["token"]) + (" (original)" if r["original"] else "") for r in rows]
        for which, name, color in (
            ("prior", "without response: π (prompt only)", "#9ecae1"),
            ("posterior", "with response: ρ (prompt + response)", "#08519c"),
        ):
            fig.add_trace(
                go.Bar(
                    x=xs,
                    y=[r[which] for r in rows],
                    name=name,
                    legendgroup=which,
                    showlegend=col == 1,
                    marker={
                        "color": color,
                        "line": {"color": ["black" if r["original"] else color for r in rows], "width": 2},
                    },
                    customdata=[
                        [esc(r["token"]), "yes" if r["original"] else "no", "not in the recorded top list" if r[which] is None else ""]
                        for r in rows
                    ],
                    hovertemplate=(
                        "candidate «%{customdata[0]}» (original: %{customdata[1]})<br>"
                        + name.split(":")[0]
                        + ": p = %{y:.4~g} %{customdata[2]}<extra></extra>"
                    ),
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(tickmode="array", tickvals=xs, ticktext=labels, tickangle=-60, row=1, col=col)
    fig.update_yaxes(title_text="probability", rangemode="tozero", row=1, col=1)
    return _layout(
        fig,
        "Replacement candidates with and without the response",
        barmode="group",
        height=420,
        legend={"orientation": "h", "y": -0.45, "x": 0},
        margin={"l": 60, "r": 20, "t": 90, "b": 130},
    )


def replacement_figure(v: _View) -> go.Figure | None:
    """Fig. 6: replacement entropy and original-response % vs AS (size = candidate count)."""
    ks_e = [k for k in v.pos if v.rent[k] is not None]
    ks_p = [k for k in v.pos if v.rpct[k] is not None]
    if not ks_e and not ks_p:
        return None

    def count(k: int) -> int | None:
        stats = v.payload.replacement_at(k)
        return None if stats is None else stats.count

    def size(k: int) -> float:
        c = count(k)
        return 6.0 if c is None else rnd(6.0 + 3.0 * math.sqrt(max(c, 0))) or 6.0

    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["Replacement entropy vs AS", "Original response % vs AS"],
        horizontal_spacing=0.12,
    )
    for col, ks, vec, name, unit in (
        (1, ks_e, v.rent, "replacement entropy", "nats"),
        (2, ks_p, v.rpct, "original response %", "%"),
    ):
        fig.add_trace(
            go.Scatter(
                x=[v.AS[k] for k in ks],
                y=[vec[k] for k in ks],
                mode="markers",
                name=name,
                marker={"size": [size(k) for k in ks], "opacity": 0.75, "line": {"width": 1, "color": "#333"}},
                customdata=[[esc(v.tokens[k]), k, count(k) if count(k) is not None else "n/a"] for k in ks],
                hovertemplate=(
                    "token «%{customdata[0]}» (position %{customdata[1]})<br>AS = %{x:.4~g} nats<br>"
                    + name
                    + f" = %{{y:.4~g}} {unit}<br>candidates: %{{customdata[2]}}<extra></extra>"
                ),
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="AS (nats)", row=1, col=col)
    fig.update_yaxes(title_text="replacement entropy (nats)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="original response (%)", range=[-5, 105], row=1, col=2)
    return _layout(
        fig,
        "Response variability under token replacement",
        showlegend=False,
        margin={"l": 60, "r": 20, "t": 90, "b": 60},
    )


class PASViews(Visualization):
    """The PAS figures of each (model, prompt) section; see the module docstring."""

    name: ClassVar[str] = "pas_views"
    description: ClassVar[str] = (
        "PAS figures: AS bars with intervals, AS vs contextual entropy, KL per token, "
        "replacement candidates with/without the response, replacement entropy."
    )

    def figures(self, run: RunResult) -> list[FigureSpec]:
        out: list[FigureSpec] = []
        used: set[str] = set()

        def uid(base: str) -> str:
            fid, i = base, 2
            while fid in used:
                fid, i = f"{base}-{i}", i + 1
            used.add(fid)
            return fid

        for r in run.results:
            if r.method != METHOD or r.status != "ok" or not r.scores.get("attribution_score"):
                continue
            v = _View(r, run.generation(r.model_id, r.prompt_id))
            if not v.pos:
                continue
            suffix = f"{slug(r.model_id)}-{slug(r.prompt_id)}" + (f"-{slug(r.label)}" if r.label else "")
            who = f"{r.model_id}, prompt {r.prompt_id}" + (f" ({r.label})" if r.label else "")

            def spec(kind: str, title: str, caption: str, fig: go.Figure, r: AttributionResult = r, suffix: str = suffix) -> FigureSpec:
                return FigureSpec(
                    id=uid(f"pas-{kind}-{suffix}"),
                    title=title,
                    caption=caption,
                    figure=fig,
                    section="prompt",
                    model_id=r.model_id,
                    prompt_id=r.prompt_id,
                    order=ORDER[kind],
                )

            out.append(
                spec(
                    "as",
                    f"PAS attribution scores: {who}",
                    "Attribution score AS_k = log P(x_k | rest, response) − log P(x_k | rest) per prompt token, "
                    "in nats. Red (positive): the response makes the token more likely (the response depends on it); "
                    "blue (negative): the model would prefer another token given its response. Error bars show the AS interval "
                    "where one is known; hatched bars with a star have an interval that includes 0." + kinds_caption(v),
                    as_figure(v),
                )
            )
            if any(v.hp[k] is not None or v.hpr[k] is not None for k in v.pos):
                out.append(
                    spec(
                        "entropy",
                        f"Contextual entropy vs AS: {who}",
                        "Entropy (nats) of the distribution over replacements of each prompt token, with the prompt "
                        "only (H_p) and with prompt + response (H_pr), against AS. Usually H_pr ≤ H_p; points where "
                        "H_pr > H_p mean the response broadened the token's distribution." + approximate_note(v, "both entropies are"),
                        entropy_figure(v),
                    )
                )
            if any(v.kl_pp[k] is not None or v.kl_rev[k] is not None for k in v.pos):
                out.append(
                    spec(
                        "kl",
                        f"KL divergence per token: {who}",
                        "KL divergence (nats) between the token's replacement distribution with the response (ρ) "
                        "and without it (π), both directions (click the legend to toggle). High KL at near-zero AS "
                        "is anomalous." + approximate_note(v, "both divergences are"),
                        kl_figure(v),
                    )
                )
            positions = anomalous_positions(v)
            if positions:
                out.append(
                    spec(
                        "candidates",
                        f"Replacement candidates: {who}",
                        f"Probabilities of the top replacement candidates at the {len(positions)} most anomalous "
                        "positions (largest |AS| or KL), without the response (π, light) and with it (ρ, dark). "
                        "The original token is outlined; a missing bar means the candidate was not in that top list."
                        + approximate_note(v, "the probabilities are"),
                        candidates_figure(v, positions),
                    )
                )
            rf = replacement_figure(v)
            if rf is not None:
                out.append(
                    spec(
                        "replacement",
                        f"Replacement entropy: {who}",
                        "Each prompt token was replaced by each candidate in the top-p nucleus and the response "
                        "regenerated. Left: entropy (nats) of the distribution of distinct responses; right: share "
                        "of candidates that reproduce the original response. Marker size grows with the number of "
                        "candidates.",
                        rf,
                    )
                )
        return out
