"""OpenAISampler against a real in-process HTTP server (http.server on 127.0.0.1, port 0), with DBSA's cached draws."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reportgen.cache import Cache
from reportgen.errors import SamplerError
from reportgen.generate import generate_via_sampler, pseudo_tokens, words_with_space
from reportgen_plugins.dbsa.sampling import draw_samples
from reportgen_plugins.models.openai import OpenAISampler


class FakeState:
    def __init__(self) -> None:
        self.mode = "ok"
        self.fail_first = 0  # answer 500 to this many requests first
        self.ok_budget: int | None = None  # after this many successes, answer 500 forever
        self.supports_n = False
        self.sleep_s = 0.0
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()


def make_handler(state: FakeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _send(self, code: int, body: str, ctype: str = "application/json") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                k = len(state.requests)
                successes = sum(1 for r in state.requests if r.get("ok"))
            if state.sleep_s:
                time.sleep(state.sleep_s)
            if k <= state.fail_first:
                return self._send(500, '{"error": "warming up"}')
            if state.ok_budget is not None and successes >= state.ok_budget:
                return self._send(503, '{"error": "overloaded"}')
            if state.mode == "malformed":
                return self._send(200, "<html>oops</html>", "text/html")
            if state.mode == "missing":
                return self._send(200, json.dumps({"choices": [{"index": 0}]}))
            if state.mode == "401":
                return self._send(401, '{"error": {"message": "invalid api key"}}')
            with state.lock:
                state.requests[-1]["ok"] = True
            n = body.get("n", 1) if state.supports_n else 1
            prompt = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
            texts = [f"{prompt}|s{body.get('seed')}|t{body.get('temperature')}|c{c}" for c in range(n)]
            if "messages" in body:
                choices = [{"index": c, "message": {"role": "assistant", "content": t}} for c, t in enumerate(texts)]
            else:
                choices = [{"index": c, "text": t} for c, t in enumerate(texts)]
            self._send(200, json.dumps({"choices": choices}))

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, FakeState]]:
    state = FakeState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def sampler(url: str, **kw: Any) -> OpenAISampler:
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 5.0)
    return OpenAISampler(url, "smol", **kw)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_chat_sampling_repeated_requests(server):
    url, state = server
    s = sampler(url)
    out = s.sample([{"role": "user", "content": "hi"}], 4, seed=3, max_new_tokens=5)
    assert len(out) == 4 and len(set(out)) == 4  # one request per draw, distinct seeds
    assert s.supports_n is False  # the server ignored n on the first request
    assert all(r["path"] == "/v1/chat/completions" for r in state.requests)
    assert state.requests[0]["body"]["n"] == 4 and state.requests[1]["body"].get("n") is None
    assert state.requests[0]["body"]["max_tokens"] == 5
    again = sampler(url).sample([{"role": "user", "content": "hi"}], 4, seed=3, max_new_tokens=5)
    assert again == out  # seeds are deterministic per draw


def test_n_choices_when_supported(server):
    url, state = server
    state.supports_n = True
    s = sampler(url)
    out = s.sample("hello", 3, seed=0, max_new_tokens=5)
    assert len(out) == 3 and len(state.requests) == 1 and s.supports_n is True


def test_completions_endpoint(server):
    url, state = server
    s = sampler(url, chat=False)
    assert s.sample("plain", 1, seed=1, max_new_tokens=2, temperature=0.0)[0].startswith("plain|")
    assert state.requests[0]["path"] == "/v1/completions"


def test_api_key_sent_but_never_described(server, monkeypatch):
    url, state = server
    monkeypatch.setenv("RG_TEST_KEY", "sk-secret-123")
    s = sampler(url, api_key_env="RG_TEST_KEY")
    s.sample("x", 1, seed=0, max_new_tokens=1)
    assert state.requests[0]["auth"] == "Bearer sk-secret-123"
    assert "sk-secret-123" not in json.dumps(s.describe())
    monkeypatch.delenv("RG_TEST_KEY")
    with pytest.raises(SamplerError, match=r"RG_TEST_KEY.*not set"):
        s.sample("x", 1, seed=0, max_new_tokens=1)


def test_retry_after_500(server):
    url, state = server
    state.fail_first = 2
    s = sampler(url, max_retries=3)
    assert len(s.sample("x", 1, seed=0, max_new_tokens=1)) == 1
    assert s.requests_sent == 3


def test_500_exhausts_retries(server):
    url, state = server
    state.fail_first = 100
    with pytest.raises(SamplerError, match=r"HTTP 500 after 3 attempt\(s\): .*warming up"):
        sampler(url, max_retries=2).sample("x", 1, seed=0, max_new_tokens=1)


def test_timeout(server):
    url, state = server
    state.sleep_s = 0.5
    t0 = time.perf_counter()
    with pytest.raises(SamplerError, match=r"timed out after 2 attempt\(s\) \(0.1 s each\)"):
        sampler(url, timeout_s=0.1, max_retries=1).sample("x", 1, seed=0, max_new_tokens=1)
    assert time.perf_counter() - t0 < 3


def test_malformed_replies(server):
    url, state = server
    state.mode = "malformed"
    with pytest.raises(SamplerError, match=r"malformed reply .*not JSON"):
        sampler(url).sample("x", 1, seed=0, max_new_tokens=1)
    state.mode = "missing"
    with pytest.raises(SamplerError, match=r"malformed reply .*choice 0 has no string message.content"):
        sampler(url).sample("x", 1, seed=0, max_new_tokens=1)


def test_client_error_not_retried(server):
    url, state = server
    state.mode = "401"
    s = sampler(url, max_retries=3)
    with pytest.raises(SamplerError, match=r"HTTP 401: .*invalid api key"):
        s.sample("x", 1, seed=0, max_new_tokens=1)
    assert s.requests_sent == 1


def test_server_down():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(SamplerError, match=r"cannot connect to .*127.0.0.1.*connection refused after 2 attempt"):
        sampler(url, max_retries=1).sample("x", 1, seed=0, max_new_tokens=1)


def test_request_cap(server):
    url, _ = server
    s = sampler(url, max_requests=3)
    with pytest.raises(SamplerError, match="request cap reached: 3 of max_requests=3"):
        s.sample("x", 5, seed=0, max_new_tokens=1)
    assert s.requests_sent == 3


def test_draws_before_a_fault_are_cached_and_resumed(server, tmp_path):
    url, state = server
    cache = Cache(tmp_path)
    state.ok_budget = 3  # three draws succeed, then the server answers 503
    s = sampler(url, max_retries=0, concurrency=1)
    with pytest.raises(SamplerError, match="HTTP 503"):
        draw_samples(s, "q", 6, seed=1, max_new_tokens=4, cache=cache)
    kept = len(list(tmp_path.rglob("*.json")))
    assert kept == 3
    state.ok_budget = None
    before = len(state.requests)
    out, fresh = draw_samples(sampler(url), "q", 6, seed=1, max_new_tokens=4, cache=cache)
    assert fresh == 3 and len(state.requests) - before == 3  # only the missing ones were asked for
    full, _ = draw_samples(sampler(url), "q", 6, seed=1, max_new_tokens=4, cache=Cache(None))
    assert out == full  # resumed draws equal an uninterrupted run
    out2, fresh2 = draw_samples(sampler(url), "q", 6, seed=1, max_new_tokens=4, cache=cache)
    assert fresh2 == 0 and out2 == out


def test_words_and_pseudo_tokens():
    text = "What is the capital of France? It costs $3.50, ok "
    toks = words_with_space(text)
    assert "".join(t for t, _, _ in toks) == text
    assert [text[a:b] for _, a, b in toks] == ["What", "is", "the", "capital", "of", "France", "?", "It", "costs", "$3.50", ",", "ok"]
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    pt = pseudo_tokens(msgs)
    assert [t[0] for t in pt] == ["Be", " brief", ".", "\n\n", "Hi", " there"]
    assert [t[1] for t in pt] == [False, False, False, True, False, False]


def test_generate_via_sampler(server):
    from reportgen.plugin_api import LoadedModel
    from reportgen.spec import GenerationSpec, PromptSpec

    url, state = server
    loaded = LoadedModel(id="api", source="openai:smol", sampler=sampler(url))
    g = generate_via_sampler(loaded, PromptSpec(id="p", text="Capital of France?"), GenerationSpec(max_new_tokens=7), 0)
    assert g.input_tokens == ("Capital", " of", " France", "?")
    assert g.input_special == (False,) * 4
    assert g.input_ids == (0, 1, 2, 3)
    assert "".join(g.output_tokens) == g.response_text
    assert state.requests[0]["body"]["temperature"] == 0.0
    assert g.settings["messages"] == [{"role": "user", "content": "Capital of France?"}]
    assert g.step_scores == {}
