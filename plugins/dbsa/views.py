"""``dbsa_views``: effect size per unit (significant units marked) and original-vs-perturbed responses."""

from __future__ import annotations

from typing import Any

from reportgen.data import AttributionResult, FigureSpec, RunResult
from reportgen.figures import esc, slug
from reportgen.plugin_api import Visualization
from reportgen_plugins.dbsa.payload import METHOD, DbsaPayload, UnitResult


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _hover(u: UnitResult) -> str:
    nb = "<br>".join(f"{esc(n.text)}: E={n.energy:.4g}, p={_num(n.p_value)}" for n in u.neighbours if n.energy is not None)
    return (
        f"<b>{esc(u.text)}</b><br>effect {_num(u.effect)}<br>p {_num(u.p_value)}, q {_num(u.q_value)}"
        + (f"<br>{nb}" if nb else "")
        + (f"<br>skipped: {esc(u.skipped)}" if u.skipped else "")
    )


def effect_figure(payload: DbsaPayload) -> Any:
    import plotly.graph_objects as go

    units = payload.units
    sig = [u.significant for u in units]
    fig = go.Figure(
        go.Bar(
            x=[f"{esc(u.text.strip() or '␣')} ·{u.positions[0]}" for u in units],
            y=[u.effect for u in units],
            marker_color=["#c0392b" if s else "#95a5a6" for s in sig],
            text=["*" if s else "" for s in sig],
            textposition="outside",
            hovertext=[_hover(u) for u in units],
            hoverinfo="text",
        )
    )
    fig.update_layout(
        title=f"DBSA effect size per {payload.unit} (red, *: q < {payload.alpha:g})",
        xaxis_title="unit · token position",
        yaxis_title="mean energy distance",
        margin={"l": 60, "r": 20, "t": 50, "b": 80},
        height=360,
    )
    return fig


def responses_figure(payload: DbsaPayload) -> Any | None:
    import plotly.graph_objects as go

    cols: list[list[str]] = [[], [], [], []]
    for u in payload.units:
        if u.examples is None:
            continue
        for a, b in zip(u.examples.original, u.examples.perturbed, strict=True):
            cols[0].append(esc(u.text))
            cols[1].append(esc(u.examples.neighbour))
            cols[2].append(esc(a))
            cols[3].append(esc(b))
    if not cols[0]:
        return None
    fig = go.Figure(
        go.Table(
            header={
                "values": ["unit", "replaced by", "original prompt: sampled response", "perturbed prompt: sampled response"],
                "align": "left",
            },
            cells={"values": cols, "align": "left"},
            columnwidth=[1, 1, 4, 4],
        )
    )
    fig.update_layout(title="DBSA: responses to the original vs the perturbed prompt", margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def _figures(r: AttributionResult) -> list[FigureSpec]:
    payload = DbsaPayload.of(r)
    base = f"dbsa-{slug(r.model_id)}-{slug(r.prompt_id)}-{slug(r.display_name)}"
    out = [
        FigureSpec(
            id=f"{base}-effect",
            title=f"DBSA effect sizes ({r.display_name})",
            caption=(
                f"Mean energy distance between responses to the original prompt and to prompts with the unit replaced by "
                f"{payload.neighbours_per_unit} neighbours (N={payload.samples} samples each, "
                f"B={payload.permutations} permutations, {payload.combine} combination, BH across units). "
                "Red bars: q < alpha."
            ),
            figure=effect_figure(payload),
            model_id=r.model_id,
            prompt_id=r.prompt_id,
            order=60,
        )
    ]
    resp = responses_figure(payload)
    if resp is not None:
        out.append(
            FigureSpec(
                id=f"{base}-responses",
                title=f"DBSA sample responses ({r.display_name})",
                caption=(
                    "A few sampled responses to the original prompt beside responses with a significant unit "
                    "replaced by its most influential neighbour."
                ),
                figure=resp,
                model_id=r.model_id,
                prompt_id=r.prompt_id,
                order=61,
            )
        )
    return out


class DBSAViews(Visualization):
    name = "dbsa_views"
    description = "DBSA effect size per unit (q < 0.05 marked) and original-vs-perturbed responses"

    def figures(self, run: RunResult) -> list[FigureSpec]:
        return [f for r in run.results if r.method == METHOD and r.status == "ok" for f in _figures(r)]
