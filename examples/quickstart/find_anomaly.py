"""Which short prompts make a PAS anomaly detector fire on the embedded SmolLM2?

    .venv/bin/python examples/quickstart/find_anomaly.py [--out DIR] [--no-cache] ["prompt" ...]

Runs the quickstart's ``probabilistic`` method (fast mode, the quickstart's generation settings)
over a modest list of candidate prompts (typos and odd words, in the spirit of seed 003's
"Passage" → "Sentence") with every detector at its default thresholds, through ``reportgen run``
itself, and prints each prompt's response and the findings, most severe first. This is how the
quickstart's anomaly prompt was chosen: nothing here lowers a threshold.

Each SmolLM2 PAS run costs about a minute per prompt on a quiet 2-core CPU (several on a loaded
one); results are cached under ``.reportgen-cache/`` in the output folder, so a rerun with the same
``--out`` only computes new prompts. The detectors that threshold AS (noise_token,
preferred_replacement, kl_outlier) decide only where the AS interval clears the threshold. With the
one-step bound off (``bound_pool: auto`` on a CPU) the certified intervals were tens of nats wide and
every AS detector said "uncertain" (info); the quickstart therefore runs PAS with
``bound_pool: adaptive``, which computes one-step bounds for more candidates only where the upper end
of the interval could fall below −0.5 nats. Lower ends stay near log P(y|x) (−3 to −8 nats here), so
noise_token and kl_outlier (|AS| ≤ 0.1) stay "uncertain" on a CPU.

Search record (SmolLM2-135M-Instruct, greedy, 12 new tokens, default thresholds; the candidate list
below was run with an earlier growth rule that bounded more tokens; the final rule gives " biggest" in
the French prompt the same certified interval [−6.22, −0.80]):

* typos and odd words, all info only: "What is the capitol of France?", "What is the capital of
  Frnace?", "What is the capital of Frence", "Summarise this pasage", "Name the capital of Itlay",
  "What is the capital of French?". A typo splits into word pieces (" cap" + "itol"), and no single
  piece has a one-token replacement that spells the right word, so the model does not prefer to
  replace any piece; "French" in place of "France" gets a positive AS (+1.4: it still points at
  France, and the answer is "The capital of France is Paris.").
* a word the answer rephrases: "Which ocean is the biggest?" → "The largest ocean …": " biggest"
  AS −0.43, interval [−3.88, −0.41], info; "Which Italian city is the biggest?" → "The largest
  Italian city is Rome, Italy.": **high** preferred_replacement on " biggest" (AS −0.92, posterior
  " largest" 0.94 against " biggest" 0.06); "Which French city is the biggest?" → "The largest French
  city is Paris, France.": **high** preferred_replacement on " biggest" (AS −1.04, certified
  interval [−6.2, −0.8]), the quickstart's third prompt.
* tried position by position beforehand (the same method, called directly): "Which is the biggest
  town in France?", "What is the biggest planet?", "What is the tallest mountain in the world?",
  "Which is the biggest city in Italy?", "Which city in Italy is the biggest?", "What is Italy's
  biggest city?", "What Italian city is the biggest?", "Which Italian city is biggest?", "Which
  European/Spanish city is the biggest?", "Which country/planet/animal/desert/lake/US state is the
  biggest?": the point AS of the adjective lies between −0.75 and +5.1, and no interval cleared
  −0.5; where the answer keeps the prompt's word (" biggest", " tallest") AS is clearly positive.
  "What is the capital of Italian?" gets the answer "Il Capitale, il Repubbiano, il" (AS +5.0).

On " biggest" in the French prompt a fixed pool of 256 gave the interval [−7.2, 0.21], 1,024
[−6.9, −0.29], 4,096 [−6.1, −0.81]: only the last decides, and costs 53 s of one-step bounds at
that position on a loaded CPU, which is why the pool grows only where it can decide.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from reportgen.cli import main as reportgen_main
from reportgen.data import SEVERITY_ORDER

CANDIDATES = (
    "What is the capitol of France?",
    "What is the capital of Frnace?",
    "What is the capital of Frence",
    "Summarise this pasage",
    "Name the capital of Itlay",
    "What is the capital of French?",
    "Which ocean is the biggest?",
    "Which Italian city is the biggest?",
    "Which French city is the biggest?",
)


def spec_for(prompts: list[str]) -> dict[str, Any]:
    """The quickstart's model, generation and PAS settings over ``prompts``; default detectors."""
    quickstart = yaml.safe_load((Path(__file__).with_name("audit.yaml")).read_text("utf-8"))
    pas = [m for m in quickstart["methods"] if m["method"] == "probabilistic"]
    return {
        "title": "PAS anomaly search on the quickstart model",
        "models": quickstart["models"],
        "prompts": [{"id": f"p{i}", "text": text} for i, text in enumerate(prompts)],
        "generation": quickstart["generation"],
        "methods": pas,
        "report": {"formats": ["json"]},
        "seed": quickstart.get("seed", 0),
    }


def run(prompts: list[str], out: Path, no_cache: bool) -> dict[str, Any]:
    """``reportgen run`` on the search spec; the parsed results.json."""
    spec = out / "search.yaml"
    spec.write_text(yaml.safe_dump(spec_for(prompts), allow_unicode=True, sort_keys=False), "utf-8")
    args = ["run", str(spec), "-o", str(out), "-q", *(["--no-cache"] if no_cache else [])]
    try:
        reportgen_main.main(args, standalone_mode=False)
    except SystemExit as exc:  # a one-line error was printed already
        if exc.code:
            raise
    data: dict[str, Any] = json.loads((out / "results.json").read_text("utf-8"))
    return data


def report(data: dict[str, Any], prompts: list[str]) -> None:
    """Each prompt, its response and its findings (most severe first)."""
    responses = {g["prompt_id"]: g["response_text"] for g in data["generations"]}
    for i, text in enumerate(prompts):
        pid = f"p{i}"
        found = sorted((f for f in data["findings"] if f["prompt_id"] == pid), key=lambda f: SEVERITY_ORDER[f["severity"]])
        print(f"\n[{pid}] {text!r} → {responses.get(pid, '')!r}")
        if not found:
            print("    no finding")
        for f in found:
            print(f"    {f['severity']:<6} {f['detector']:<22} {f['token']!r}: {f['message']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("prompts", nargs="*", help="Prompts to try instead of the built-in candidates.")
    ap.add_argument("--out", type=Path, help="Folder for the search spec and results.json (default: a temporary one).")
    ap.add_argument("--no-cache", action="store_true", help="Recompute instead of reusing cached results.")
    a = ap.parse_args(argv)
    prompts = a.prompts or list(CANDIDATES)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        report(run(prompts, a.out, a.no_cache), prompts)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            report(run(prompts, Path(tmp), a.no_cache), prompts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
