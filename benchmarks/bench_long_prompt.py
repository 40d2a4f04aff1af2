"""Long prompts: time and peak memory of each method on a ~1,000-token retrieval prompt (SmolLM2, CPU).

The prompt is a retrieval context (the paragraphs below, as many as fit ``--tokens``) followed by
a question; the model answers greedily with ``--response`` tokens (default 50). The generation is
made once; then every method runs in a fresh subprocess (so one that runs out of memory does not
stop the others), which loads the model, runs the method and reports its wall time, its CPU time
(user + system: on a shared machine wall time mostly measures the other processes) and the
process's peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), once after the
model load and once at the end: "peak" is the whole process, "Δ" what the method added. A method
that has used ``--timeout`` CPU seconds reports the peak so far and "timed out".

Settings (``METHODS``), chosen for what a long prompt costs:

* jacobian.semantic / temperature: defaults (one forward, t VJPs, ``vjp_batch`` 16);
* jacobian.fisher: ``low_rank`` with rank 4 (4·t VJPs; the default rank 8 doubles it);
* inseq.saliency / input_x_gradient: defaults (inseq's forced decoding: one forward and one
  backward over the growing prefix per response token);
* inseq.integrated_gradients: ``n_steps`` 8 (the default 50 costs 50 backward passes per response
  token: intrinsic, steps × backwards, about 50/8 times the row shown);
* PAS at sentence units (``units: sentence``, ``unit_samples`` 16): token-level PAS needs a forward
  per candidate per position, about n × 64 × (n + t) token-forwards, hours at 1,000 tokens on a CPU;
* DBSA at sentence units (``unit: sentence``), 3 samples, 1 neighbour, 100 permutations, 8-token
  responses (every draw prefills the ~1,000-token prompt once for all its samples).

Run (``OMP_NUM_THREADS=1`` on a shared machine, see bench_dtype.py)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_long_prompt.py [--tokens 1000] [--response 50] [--timeout CPU_S] [--only NAME ...]

``--ig-options '{"n_steps": 16}'`` replaces integrated gradients' settings (here: no
``internal_batch_size``, so the batch the method picks from the free memory; the options it used
are printed under its row).

``--device cuda`` (or ``cuda:N``) runs the generation and every method on that GPU; the memory
columns stay the process's resident host memory (GPU memory is not measured).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from device_args import add_device_argument, checked_device

PARAGRAPHS = [
    "The Harbour Street library opened in 1911 in a former customs warehouse. Its first librarian, Agnes Morrow, "
    "bought most of the early collection at auctions in Glasgow and Leeds, and she insisted that the reading room "
    "stay open until ten in the evening so that dock workers could use it after their shifts.",
    "In 1934 a fire destroyed the east wing of the library, including the map room and about four thousand volumes "
    "of local newspapers. The wing was rebuilt in brick two years later, with money raised by a public subscription "
    "that the harbour pilots' association started with a gift of three hundred pounds.",
    "During the Second World War the basement of the library served as an air-raid shelter for up to two hundred "
    "people. The librarians kept a lending shelf down there, and the register of loans from that period survives: "
    "detective novels and seed catalogues were borrowed far more often than anything else.",
    "The library's most valuable object is a hand-coloured chart of the estuary drawn in 1768 by the surveyor Thomas "
    "Pell. It shows the old sandbanks that were dredged away in the nineteenth century and is displayed once a year, "
    "on the first Saturday of September, because light damages its pigments.",
    "In 1987 the library became the first public library in the county to lend computer software. The collection "
    "started with forty cassette tapes for home computers and grew to more than six hundred titles before it was "
    "withdrawn in 1996, when the council decided that the tapes were too easily damaged.",
    "The current building manager, Ravi Desai, led the 2015 renovation, which added a lift, solar panels on the "
    "south roof and a children's room in the old boiler house. The renovation cost 2.4 million pounds and took "
    "eighteen months, during which the library operated from a temporary site in the market hall.",
    "Every spring the library hosts a week of talks on the history of the harbour. The most popular talk in recent "
    "years was about the 1953 flood, when water reached the second step of the main staircase and the staff carried "
    "the rare books to the upper gallery by hand in a single night.",
    "The library's opening hours today are nine to seven on weekdays and ten to four on Saturdays; it is closed on "
    "Sundays. Membership is free for residents of the borough, and visitors from elsewhere can buy a reading pass "
    "for five pounds a year, which also gives access to the local history archive.",
    "A volunteer group, the Friends of Harbour Street, runs a second-hand book sale on the last Friday of every "
    "month. The proceeds paid for the digitisation of the loan registers from 1911 to 1960, which are now searchable "
    "online and are used by family historians from as far away as New Zealand.",
    "The local history archive holds the papers of the harbour board from 1850 onwards, including the minutes of the "
    "meeting at which the board voted to build the north breakwater. Researchers must book a desk two days in advance "
    "and may use pencils only, never pens, in the archive room.",
    "In 2021 the library started a seed library in the former map room: members can borrow seeds in spring and bring "
    "back seeds from their own harvest in autumn. The tomato varieties are the most popular, and a local school keeps "
    "a record of which varieties grow best in the salty air near the water.",
    "The library's cat, a grey tabby called Ledger, arrived as a stray in 2009 and lived in the staff room until 2022. "
    "A small brass plaque by the issue desk remembers him, and the children's room still has a reading corner with "
    "a cushion that visitors call Ledger's chair.",
]
QUESTION = "Question: In which year was the east wing of the library destroyed by fire, and who started the fund to rebuild it?"

METHODS: dict[str, tuple[str, dict[str, Any]]] = {  # cheapest first; the settings: see the module docstring
    "jacobian.semantic": ("jacobian.semantic", {}),
    "dbsa sentence": (
        "dbsa",
        {"unit": "sentence", "samples": 3, "neighbours": 1, "permutations": 100, "max_new_tokens": 8, "neighbour_source": "embedding"},
    ),
    "jacobian.temperature": ("jacobian.temperature", {}),
    "inseq.saliency": ("inseq.saliency", {}),
    "inseq.input_x_gradient": ("inseq.input_x_gradient", {}),
    "jacobian.fisher low_rank": ("jacobian.fisher", {"fisher_mode": "low_rank", "rank": 4}),
    "probabilistic sentence": ("probabilistic", {"units": "sentence", "unit_samples": 16}),
    "inseq.integrated_gradients": ("inseq.integrated_gradients", {"n_steps": 8, "internal_batch_size": 8}),
}


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system): unlike wall time, not inflated by other processes' load."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load(device: str) -> Any:
    from reportgen_plugins.models.loaders import EmbeddedLoader

    spec = SimpleNamespace(
        id="smollm2", source="embedded:smollm2-135m-instruct", dtype="float32", attn_implementation="sdpa", chat_template="auto"
    )
    return EmbeddedLoader().load(spec, base_dir=".", device=device)


def make_generation(tokens: int, response: int, path: Path, device: str) -> None:
    from reportgen.generate import generate

    loaded = load(device)
    context = []
    for p in PARAGRAPHS * 4:
        text = "Context:\n" + "\n\n".join([*context, p]) + "\n\n" + QUESTION
        if len(loaded.tokenizer(text)["input_ids"]) > tokens - 30:  # the chat template adds ~30 tokens
            break
        context.append(p)
    prompt = SimpleNamespace(id="long", text="Context:\n" + "\n\n".join(context) + "\n\n" + QUESTION, messages=None)
    settings = SimpleNamespace(
        max_new_tokens=response, do_sample=False, temperature=1.0, top_p=1.0, model_dump=lambda: {"max_new_tokens": response}
    )
    gen = generate(loaded, prompt, settings, seed=0)
    path.write_text(json.dumps(gen.to_json()), encoding="utf-8")
    print(f"prompt n={gen.n} tokens ({len(context)} paragraphs), response t={gen.t}: {gen.response_text[:80]!r}…", flush=True)


def child(label: str, gen_path: str, budget: float, device: str) -> None:
    """Runs in the subprocess: load, run one method, print one JSON line (after ``budget`` CPU seconds of
    the method at the latest: then with the peak memory so far and ``timed out``)."""
    import os
    import threading

    from reportgen.cache import Cache
    from reportgen.data import Generation
    from reportgen.plugin_api import AttributionContext
    from reportgen_plugins.dbsa.method import DBSA
    from reportgen_plugins.inseq.methods import InseqMethod
    from reportgen_plugins.jacobian.scopes import FisherScope, SemanticScope, TemperatureScope
    from reportgen_plugins.pas.method import ProbabilisticMethod

    name, opts = METHODS[label]
    gen = Generation.from_json(json.loads(Path(gen_path).read_text(encoding="utf-8")))
    loaded = load(device)
    make = {
        "jacobian.semantic": SemanticScope,
        "jacobian.temperature": TemperatureScope,
        "jacobian.fisher": FisherScope,
        "probabilistic": ProbabilisticMethod,
        "dbsa": DBSA,
    }
    method = InseqMethod(name.split(".", 1)[1]) if name.startswith("inseq.") else make[name]()
    base = rss_mib()
    cpu0, t0 = cpu_seconds(), time.perf_counter()

    def watch() -> None:  # the budget is CPU seconds: on a loaded machine wall time says little
        while cpu_seconds() - cpu0 < budget:
            time.sleep(1.0)
        out = {
            "seconds": time.perf_counter() - t0,
            "cpu": cpu_seconds() - cpu0,
            "base_mib": base,
            "peak_mib": rss_mib(),
            "status": "timed out",
        }
        print(json.dumps(out), flush=True)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    ctx = AttributionContext(
        model=loaded,
        generation=gen,
        options=method.options_model(**opts),
        seed=0,
        cache=Cache(None),
        generation_settings={"max_new_tokens": gen.t},
    )
    res = method.attribute(ctx)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    out = {"seconds": seconds, "cpu": cpu, "base_mib": base, "peak_mib": rss_mib(), "status": res.status, "options": res.options}
    print(json.dumps(out, default=str), flush=True)
    os._exit(0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("--response", type=int, default=50)
    ap.add_argument("--only", nargs="*", default=[], help="substrings of the method labels to run")
    ap.add_argument("--timeout", type=int, default=1800, help="CPU seconds per method (model load not counted)")
    ap.add_argument(
        "--ig-options",
        type=json.loads,
        help="inseq.integrated_gradients options as JSON instead of the above, e.g. '{\"n_steps\": 16}' (automatic batch)",
    )
    ap.add_argument("--child", nargs=3, metavar=("LABEL", "GENERATION", "BUDGET"), help=argparse.SUPPRESS)
    add_device_argument(ap)
    args = ap.parse_args()
    device = str(checked_device(args.device, ap.prog))
    ig = ["--ig-options", json.dumps(args.ig_options)] if args.ig_options is not None else []
    if ig:
        METHODS["inseq.integrated_gradients"] = ("inseq.integrated_gradients", args.ig_options)
    if args.child:
        child(args.child[0], args.child[1], float(args.child[2]), device)
        return
    with tempfile.TemporaryDirectory() as tmp:
        gen_path = Path(tmp) / "generation.json"
        make_generation(args.tokens, args.response, gen_path, device)
        print(f"{'method':26s} {'wall s':>8s} {'CPU s':>8s} {'peak MiB':>9s} {'Δ MiB':>7s}  status", flush=True)
        for label in METHODS:
            if args.only and not any(o in label for o in args.only):
                continue
            cmd = [sys.executable, __file__, "--child", label, str(gen_path), str(args.timeout), "--device", device, *ig]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=20 * args.timeout, check=False)
            except subprocess.TimeoutExpired:
                print(f"{label:26s} {'>' + str(20 * args.timeout):>8s} {'':>8s} {'':>9s} {'':>7s}  timed out (wall)", flush=True)
                continue
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                why = "killed (out of memory?)" if proc.returncode < 0 else (proc.stderr.strip().splitlines() or ["?"])[-1][:100]
                print(f"{label:26s} {'':>8s} {'':>8s} {'':>9s} {'':>7s}  failed, exit {proc.returncode}: {why}", flush=True)
                continue
            r = json.loads(lines[-1])
            late = ">" if r["status"] == "timed out" else ""
            secs, cpu = f"{late}{r['seconds']:.1f}", f"{late}{r['cpu']:.1f}"
            print(f"{label:26s} {secs:>8s} {cpu:>8s} {r['peak_mib']:9.0f} {r['peak_mib'] - r['base_mib']:7.0f}  {r['status']}", flush=True)
            if ig and label == "inseq.integrated_gradients":
                print(f"{'':26s} options used: {r.get('options')}", flush=True)


if __name__ == "__main__":
    main()
