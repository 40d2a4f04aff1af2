"""Wall time of DBSA on the quickstart prompt (SmolLM2-135M-Instruct, word units, M=3, N=10, B=1000).

Runs it twice: through the local sampler (transformers, batched sampling of N per prompt) and
through llama.cpp's OpenAI-compatible HTTP server on 127.0.0.1 (same GGUF, one request per
draw). Prints each wall time and the ratio HTTP/local, measured in the same run. A fresh
cache folder is used for each, so every draw is made (nothing comes from a cache).

    .venv/bin/python benchmarks/bench_dbsa.py [--skip-server] [--samples 10] [--permutations 1000]
"""

from __future__ import annotations

import argparse
import importlib.resources
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from reportgen.cache import Cache
from reportgen.plugin_api import AttributionContext
from reportgen.spec import GenerationSpec, ModelSpec, PromptSpec

PROMPT = PromptSpec(id="quickstart", text="What is the capital of France?")
GEN = GenerationSpec(max_new_tokens=20)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def gguf_path() -> str:
    from reportgen_plugins.models.loaders import EMBEDDED

    e = EMBEDDED["smollm2-135m-instruct"]
    return str(importlib.resources.files(e["module"]) / e["file"])


def start_server(port: int, log: Any) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        gguf_path(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "512",
        "--n_threads",
        str(os.cpu_count() or 2),
    ]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1/models"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("llama_cpp.server did not come up in 120 s")


def run_dbsa(loaded: Any, gen: Any, options: dict[str, Any], root: str) -> tuple[Any, float]:
    """One DBSA run with no cached samples (the vocabulary embedding in ``root`` is reused)."""
    from reportgen_plugins.dbsa.method import DBSA
    from reportgen_plugins.dbsa.options import DBSAOptions

    shutil.rmtree(Path(root) / "samples", ignore_errors=True)
    ctx = AttributionContext(
        model=loaded, generation=gen, options=DBSAOptions(**options), seed=0, cache=Cache(root), generation_settings=GEN.model_dump()
    )
    t0 = time.perf_counter()
    res = DBSA().attribute(ctx)
    return res, time.perf_counter() - t0


def summary(name: str, res: Any, wall: float) -> None:
    from reportgen_plugins.dbsa.payload import DbsaPayload

    d = DbsaPayload.of(res)
    sig = [u.text for u in d.units if u.significant]
    print(f"{name}: {wall:.1f} s  draws={d.draws_total}  timings={ {k: round(v, 1) for k, v in res.timings.items()} }")
    for u in d.units:
        print(
            f"    {u.text!r:12} E={u.effect if u.effect is None else round(u.effect, 4)}  "
            f"p={u.p_value}  q={u.q_value}  neighbours={[n.text for n in u.neighbours]}"
        )
    print(f"    significant (q<0.05): {sig}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--permutations", type=int, default=1000)
    ap.add_argument("--neighbours", type=int, default=3)
    args = ap.parse_args()
    options = {"unit": "word", "neighbours": args.neighbours, "samples": args.samples, "permutations": args.permutations}

    from reportgen.generate import generate, generate_via_sampler
    from reportgen_plugins.dbsa.embeddings import embed_minilm, minilm_vocab
    from reportgen_plugins.models.loaders import EmbeddedLoader
    from reportgen_plugins.models.openai import OpenAILoader

    root = tempfile.mkdtemp(prefix="bench_dbsa_")
    t0 = time.perf_counter()
    embed_minilm(["warm up"])
    print(f"MiniLM load: {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    minilm_vocab(root)  # the one-off vocabulary embedding (cached on disk in real runs)
    print(f"MiniLM neighbour vocabulary embedding (one-off, cached on disk afterwards): {time.perf_counter() - t0:.1f} s", flush=True)

    t0 = time.perf_counter()
    loaded = EmbeddedLoader().load(ModelSpec(id="smol", source="embedded:smollm2-135m-instruct"), base_dir=".", device="cpu")
    print(f"SmolLM2 load: {time.perf_counter() - t0:.1f} s", flush=True)
    gen = generate(loaded, PROMPT, GEN, seed=0)
    print(f"local reference response: {gen.response_text!r}")
    res_local, wall_local = run_dbsa(loaded, gen, options, root)
    summary("DBSA local sampler", res_local, wall_local)
    loaded.close()
    if args.skip_server:
        return

    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = start_server(port, log)
        try:
            spec = ModelSpec(id="smol-http", source="openai:smollm2", base_url=f"http://127.0.0.1:{port}/v1", concurrency=2)
            api = OpenAILoader().load(spec, base_dir=".", device="cpu")
            gen_api = generate_via_sampler(api, PROMPT, GEN, 0)
            print(f"HTTP reference response: {gen_api.response_text!r}")
            res_http, wall_http = run_dbsa(api, gen_api, options, root)
            summary("DBSA via HTTP (llama_cpp.server)", res_http, wall_http)
            print(f"requests sent: {api.sampler.requests_sent}")  # type: ignore[union-attr]
            print(f"ratio HTTP / local: {wall_http / wall_local:.2f}")
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
