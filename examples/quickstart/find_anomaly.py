"""Which short prompts make a PAS anomaly detector fire on the embedded SmolLM2?

    .venv/bin/python examples/quickstart/find_anomaly.py [--out DIR] [--no-cache] ["prompt" ...]

Runs the quickstart's ``probabilistic`` method (fast mode, the quickstart's generation settings)
over a modest list of candidate prompts (typos and odd words, in the spirit of seed 003's
"Passage" → "Sentence") with every detector at its default thresholds, through ``reportgen run``
itself, and prints each prompt's response and the findings, most severe first. This is how the
quickstart's anomaly prompt was chosen: nothing here lowers a threshold.

Each SmolLM2 PAS run costs tens of seconds on a quiet 2-core CPU (minutes on a loaded one);
results are cached under ``.reportgen-cache/`` in the output folder, so a rerun with the same
``--out`` only computes new prompts. On a CPU, fast mode's AS intervals are wide (its one-step
bound is off there, ``bound_pool: auto``), so the detectors that threshold AS (noise_token,
preferred_replacement, kl_outlier) mostly report "uncertain" info notes; a finding of medium
severity or worse needs an interval that clears the threshold, or response_broadened (entropies
carry no interval).
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
