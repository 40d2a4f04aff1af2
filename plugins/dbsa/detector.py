"""``dbsa_significant``: units whose replacement significantly changes the response distribution."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from reportgen.data import AttributionResult, Finding, Generation
from reportgen.plugin_api import Detector, Options
from reportgen_plugins.dbsa.payload import METHOD, DbsaPayload, UnitResult


class SignificantOptions(Options):
    alpha: float = Field(0.05, gt=0, lt=1, description="Report units with BH q-value below this.")
    min_effect: float = Field(0.0, ge=0, description="…and with mean energy distance at least this.")


class DBSASignificant(Detector):
    name = "dbsa_significant"
    description = "Words/tokens whose replacement by neighbours significantly changes the response distribution (DBSA q < alpha)"
    options_model = SignificantOptions
    methods = (METHOD,)

    def detect(self, result: AttributionResult, generation: Generation, options: Any) -> list[Finding]:
        if result.method != METHOD or result.status != "ok":
            return []
        opts = options if isinstance(options, SignificantOptions) else SignificantOptions.model_validate(options or {})
        payload = DbsaPayload.of(result)
        return [
            self._finding(result, payload, u, opts)
            for u in payload.units
            if u.q_value is not None and u.effect is not None and u.q_value < opts.alpha and u.effect >= opts.min_effect
        ]

    def _finding(self, result: AttributionResult, payload: DbsaPayload, u: UnitResult, opts: SignificantOptions) -> Finding:
        assert u.q_value is not None and u.effect is not None
        tested = [n for n in u.neighbours if n.energy is not None and n.p_value is not None]
        nb = ", ".join(f"{n.text!r} (E={n.energy:.3g}, p={n.p_value:.3g})" for n in tested)
        return Finding(
            detector=self.name,
            severity="high" if u.q_value < opts.alpha / 10 else "medium",
            model_id=result.model_id,
            prompt_id=result.prompt_id,
            method=result.display_name,
            positions=u.positions,
            token=u.text,
            evidence={
                "effect": u.effect,
                "p_value": u.p_value,
                "q_value": u.q_value,
                "alpha": opts.alpha,
                "neighbours": [n.to_json() for n in u.neighbours],
                "samples": payload.samples,
                "permutations": payload.permutations,
                "combine": payload.combine,
            },
            title=f"Response depends on {u.text!r}",
            message=(
                f"Replacing {u.text!r} by its neighbours changes the distribution of responses "
                f"(mean energy distance {u.effect:.3g}, q = {u.q_value:.3g} < {opts.alpha:g}; neighbours: {nb})."
            ),
            suggestion=(
                "Check that the response should depend on this word; if not, the model is sensitive to wording "
                "here (rephrase the prompt or add guidance)."
            ),
        )
