"""The cache: checksummed, versioned entries (a corrupted one is recomputed with a warning), sizes,
settings precedence, least-recently-used pruning, `reportgen cache info|clear|prune`, and two
processes sharing one cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reportgen import cache as cache_mod
from reportgen.cache import FORMAT, Cache, CorruptEntry, content_key, decode_entry, encode_entry
from reportgen.cache_admin import (
    DEFAULT_MAX_SIZE,
    ENV_DIR,
    ENV_MAX_SIZE,
    clear,
    format_size,
    info,
    parse_size,
    prune,
    resolve_settings,
    scan,
)
from reportgen.cli import main
from reportgen.errors import SpecError
from reportgen.spec import RunTarget, load_spec
from tests.conftest import REPO, write_spec

KEY = content_key("some", "work")


def _logged(c: Cache) -> list[str]:
    lines: list[str] = []
    c.log = lines.append
    return lines


def _entry(root: Path, namespace: str = "results", key: str = KEY) -> Path:
    return root / namespace / key[:2] / f"{key}.v{FORMAT}.json"


# --------------------------------------------------------------------------- entries


def test_an_entry_round_trips_and_its_header_carries_the_checksum(tmp_path: Path) -> None:
    c = Cache(tmp_path)
    value = {"matrix": [[1.5, -2.0], [0.0, 3.25]], "text": "déjà vu ⟨F0 9F⟩"}
    c.set("results", KEY, value)
    data = _entry(tmp_path).read_bytes()
    header = json.loads(data.split(b"\n", 1)[0])
    assert header["reportgen-cache"] == FORMAT and header["namespace"] == "results" and header["key"] == KEY
    import hashlib

    payload = data.split(b"\n", 1)[1]
    assert header["sha256"] == hashlib.sha256(payload).hexdigest() and header["size"] == len(payload)
    assert c.get("results", KEY) == value and (c.hits, c.misses) == (1, 0)
    assert c.get("results", content_key("other")) is None and c.misses == 1


def _flip(data: bytes) -> bytes:
    i = len(data) - 3  # inside the payload
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_flip, "checksum mismatch"),
        (lambda d: d[: len(d) - 7], "truncated"),
        (lambda d: d.split(b"\n", 1)[0], "no entry header"),  # half-written: the header line only
        (lambda d: b'{"not": "an entry"}', "no entry header"),
        (lambda d: b"\x00\xff garbage", "no entry header"),
        (lambda d: b"", "no entry header"),
    ],
    ids=["flipped-byte", "truncated", "header-only", "garbage-json", "binary", "empty"],
)
def test_a_damaged_entry_is_a_miss_removed_with_one_warning_then_recomputed(tmp_path: Path, damage: Any, why: str) -> None:
    c = Cache(tmp_path)
    lines = _logged(c)
    c.set("generations", KEY, {"tokens": ["a", "b"]})
    path = _entry(tmp_path, "generations")
    path.write_bytes(damage(path.read_bytes()))
    assert c.get("generations", KEY) is None
    assert not path.exists() and c.corrupted == 1 and c.misses == 1
    assert len(lines) == 1 and lines[0].startswith(f"warning: cache entry generations/{KEY[:12]} is corrupted (")
    assert why in lines[0] and lines[0].endswith("removed and recomputed")
    c.set("generations", KEY, {"tokens": ["a", "b"]})  # what the caller does on a miss
    assert c.get("generations", KEY) == {"tokens": ["a", "b"]} and len(lines) == 1


def test_an_entry_under_another_key_is_not_served(tmp_path: Path) -> None:
    other = content_key("other")
    data = encode_entry("results", other, [1, 2])
    with pytest.raises(CorruptEntry, match="holds results/"):
        decode_entry(data, "results", KEY)
    assert decode_entry(data) == [1, 2]


def test_a_format_change_never_reuses_old_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Cache(tmp_path)
    c.set("results", KEY, [1])
    monkeypatch.setattr(cache_mod, "FORMAT", FORMAT + 1)
    assert c.get("results", KEY) is None  # another file name: a plain miss
    c.set("results", KEY, [2])
    assert c.get("results", KEY) == [2]
    monkeypatch.setattr(cache_mod, "FORMAT", FORMAT)
    assert c.get("results", KEY) == [1]
    # A file of another format at this format's name is refused by its header.
    _entry(tmp_path).write_bytes(encode_entry("results", KEY, [1]).replace(b'"reportgen-cache":2', b'"reportgen-cache":9'))
    lines = _logged(c)
    assert c.get("results", KEY) is None and "entry format 9, expected 2" in lines[0]


def test_an_unwritable_cache_costs_reuse_not_the_run(tmp_path: Path) -> None:
    (tmp_path / "results").write_text("a file where a folder should be")
    c = Cache(tmp_path)
    lines = _logged(c)
    c.set("results", KEY, [1])
    assert len(lines) == 1 and lines[0].startswith(f"warning: cache entry results/{KEY[:12]} not written (")


# --------------------------------------------------------------------------- sizes and settings


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500MB", 500 * 10**6),
        ("2GB", 2 * 10**9),
        ("1.5GiB", 3 * 2**29),
        ("2 gb", 2 * 10**9),
        ("10kB", 10_000),
        ("64KiB", 65_536),
        ("1TB", 10**12),
        ("123", 123),
        ("0", 0),
        (4096, 4096),
        (".5MiB", 2**19),
    ],
)
def test_sizes(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["2XB", "", "GB", "-1GB", "1.2.3MB", "two GB", -5, True, 1.5, None])
def test_what_is_not_a_size(bad: Any) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(bad)


def test_format_size() -> None:
    assert [format_size(n) for n in (0, 999, 1000, 1_500_000, 2 * 10**9, 3 * 10**12)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.5 MB",
        "2.0 GB",
        "3.0 TB",
    ]


SPEC = """\
title: cache
models:
  - id: tiny
    source: "tiny:1"
prompts:
  - id: p1
    text: "Is it safe?"
generation: {max_new_tokens: 3}
methods:
  - method: inseq.saliency
report:
  formats: [json]
  output: out
"""


def test_precedence_is_option_then_environment_then_spec_then_default(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, SPEC + "cache: {dir: spec-cache, max_size: 500MB}\n"))[0]
    plain = load_spec(write_spec(tmp_path, SPEC, "plain.yaml"))[0]
    env = {ENV_DIR: "env-cache", ENV_MAX_SIZE: "1.5GiB"}
    s = resolve_settings(spec.cache, tmp_path, dir_option="cli", max_size_option="1kB", environ=env)
    assert (s.root, s.max_size, s.root_from, s.max_size_from) == (Path("cli"), 1000, "--dir", "--max-size")
    s = resolve_settings(spec.cache, tmp_path, environ=env)
    assert (s.root, s.max_size, s.root_from, s.max_size_from) == (Path("env-cache"), 3 * 2**29, ENV_DIR, ENV_MAX_SIZE)
    s = resolve_settings(spec.cache, tmp_path, environ={})
    assert (s.root, s.max_size, s.root_from, s.max_size_from) == (tmp_path / "spec-cache", 500 * 10**6, "spec", "spec")
    s = resolve_settings(plain.cache, tmp_path, environ={})
    assert (s.root, s.max_size, s.root_from) == (tmp_path / ".reportgen-cache", DEFAULT_MAX_SIZE, "default")
    with pytest.raises(ValueError, match=f"^{ENV_MAX_SIZE}: 'lots' is not a size"):
        resolve_settings(spec.cache, tmp_path, environ={ENV_MAX_SIZE: "lots"})


def test_the_spec_forms_of_cache(tmp_path: Path) -> None:
    assert load_spec(write_spec(tmp_path, SPEC + "cache: c\n"))[0].cache.dir == "c"
    assert load_spec(write_spec(tmp_path, SPEC + "cache: false\n"))[0].cache.enabled is False
    both = load_spec(write_spec(tmp_path, SPEC + "cache:\n  dir: d\n  max_size: 1.5GiB\n"))[0].cache
    assert (both.dir, both.max_size, both.enabled) == ("d", 3 * 2**29, True)


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        ("cache:\n  max_size: 2XB\n", ":15:3: cache.max_size: '2XB' is not a size"),
        ("cache:\n  max_size: 0\n", ":15:3: cache.max_size: a cache of 0 bytes keeps nothing"),
        ("cache:\n  size: 1GB\n", ":15:3: cache.size: unknown field"),
        ("cache: 12\n", ":14:1: cache: Input should be"),
    ],
)
def test_cache_settings_in_the_spec_are_validated_with_their_line(tmp_path: Path, tail: str, problem: str) -> None:
    path = write_spec(tmp_path, SPEC + tail)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert any(p.startswith(str(path) + problem) for p in err.value.problems), err.value.problems


def test_a_cache_folder_that_is_a_file_is_a_spec_or_environment_problem(
    tmp_path: Path, tiny_registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)
    monkeypatch.delenv(ENV_MAX_SIZE, raising=False)
    (tmp_path / "blocked").write_text("x")
    path = write_spec(tmp_path, SPEC + "cache: {dir: blocked}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path, tiny_registry, target=RunTarget())
    assert err.value.problems == [f"{path}:14:9: cache.dir: {tmp_path / 'blocked'} is a file, not a folder"]
    load_spec(path, tiny_registry, target=RunTarget(use_cache=False))  # --no-cache: no cache folder to check
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "blocked"))
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(tmp_path, SPEC, "plain.yaml"), tiny_registry, target=RunTarget())
    assert err.value.problems == [f"{ENV_DIR}: {tmp_path / 'blocked'} is a file, not a folder"]
    monkeypatch.setenv(ENV_DIR, str(tmp_path / "fine"))
    monkeypatch.setenv(ENV_MAX_SIZE, "huge")
    with pytest.raises(SpecError, match="cannot run with these options") as err:
        load_spec(path, tiny_registry, target=RunTarget())
    assert err.value.problems == [f"{ENV_MAX_SIZE}: 'huge' is not a size; give bytes or a number with a unit: 500MB, 2GB, 1.5GiB"]


# --------------------------------------------------------------------------- pruning, clearing


def _filled(root: Path, n: int, size: int = 1000) -> list[str]:
    """``n`` entries of about ``size`` bytes, entry i last used at time 1000 + i."""
    c = Cache(root)
    keys = [content_key("entry", i) for i in range(n)]
    for i, k in enumerate(keys):
        c.set("results", k, "x" * size)
        os.utime(_entry(root, key=k), (1000 + i, 1000 + i))
    return keys


def test_prune_removes_the_least_recently_used_first_and_a_hit_counts_as_use(tmp_path: Path) -> None:
    keys = _filled(tmp_path, 6)
    each = _entry(tmp_path, key=keys[0]).stat().st_size
    assert Cache(tmp_path).get("results", keys[0]) is not None  # used now: the most recent
    out = prune(tmp_path, 3 * each)
    left = {f.path.name.split(".")[0] for f in scan(tmp_path).entries}
    assert left == {keys[0], keys[4], keys[5]}
    assert (out.entries, out.size, out.left, out.left_size) == (3, 3 * each, 3, 3 * each)
    assert prune(tmp_path, 3 * each).entries == 0  # already within the limit
    assert prune(tmp_path, 0).left == 0 and scan(tmp_path).entries == []


def test_prune_removes_older_formats_and_abandoned_writes_but_never_other_files(tmp_path: Path) -> None:
    keys = _filled(tmp_path, 2)
    shard = _entry(tmp_path, key=keys[0]).parent
    legacy = shard / f"{keys[0]}.json"  # format 1: bare JSON, no version in the name
    legacy.write_text("[1]")
    abandoned = shard / f".{keys[0]}.v{FORMAT}.json.abcd1234.tmp"
    abandoned.write_text("half")
    os.utime(abandoned, (1000, 1000))
    writing = shard / f".{keys[1]}.v{FORMAT}.json.efgh5678.tmp"  # a write under way now
    writing.write_text("half")
    mine = tmp_path / "dbsa" / "minilm_vocab_0123.npz"  # a plugin's own file
    mine.parent.mkdir()
    mine.write_bytes(b"npz")
    inv = scan(tmp_path)
    assert (len(inv.entries), len(inv.stale), len(inv.writes), len(inv.other)) == (2, 1, 2, 1)
    out = prune(tmp_path, 10**9)
    assert out.entries == 2 and not legacy.exists() and not abandoned.exists() and writing.exists() and mine.exists()
    assert len(scan(tmp_path).entries) == 2
    out = clear(tmp_path)
    assert out.entries == 3 and mine.exists() and not writing.exists() and not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- the command line


def cache_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    base = {ENV_DIR: None, ENV_MAX_SIZE: None}
    return CliRunner().invoke(main, ["cache", *args], env={**base, **(env or {})}, catch_exceptions=False)


def test_cli_info(tmp_path: Path) -> None:
    keys = _filled(tmp_path, 3)
    Cache(tmp_path).set("generations", keys[0], {"t": 1})
    os.utime(_entry(tmp_path, "generations", keys[0]), (900, 900))
    res = cache_cli("info", "--dir", str(tmp_path), "--json")
    assert res.exit_code == 0, res.output
    found = json.loads(res.stdout)
    sizes = [f.size for f in scan(tmp_path).entries]
    assert found["dir"] == str(tmp_path) and found["dir_from"] == "--dir" and found["exists"] is True
    assert found["entries"] == 4 and found["size"] == sum(sizes)
    assert found["max_size"] == DEFAULT_MAX_SIZE and found["max_size_from"] == "default"
    assert {k: v["entries"] for k, v in found["namespaces"].items()} == {"generations": 1, "results": 3}
    assert found["oldest"] == "1970-01-01T00:15:00+00:00" and found["newest"] == "1970-01-01T00:16:42+00:00"
    res = cache_cli("info", env={ENV_DIR: str(tmp_path), ENV_MAX_SIZE: "1MB"})
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == f"cache: {tmp_path} ({ENV_DIR})"
    assert lines[1] == f"size: {format_size(found['size'])} in 4 entries; limit 1.0 MB ({ENV_MAX_SIZE}), 0 % of it"
    assert lines[2].split() == ["generations", "1", "entries", *format_size(found["namespaces"]["generations"]["size"]).split()]
    assert lines[4] == "last used: oldest 1970-01-01T00:15:00+00:00, newest 1970-01-01T00:16:42+00:00"


def test_cli_info_of_a_spec_and_of_a_missing_folder(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, SPEC + "cache: {dir: mine, max_size: 3GB}\n")
    found = json.loads(cache_cli("info", "--spec", str(spec), "--json").stdout)
    assert (found["dir"], found["exists"], found["max_size"], found["max_size_from"]) == (str(tmp_path / "mine"), False, 3 * 10**9, "spec")
    res = cache_cli("info", "--spec", str(spec))
    assert res.stdout.splitlines()[0] == f"cache: {tmp_path / 'mine'} (spec): does not exist yet"


def test_cli_prune_and_clear(tmp_path: Path) -> None:
    keys = _filled(tmp_path, 4)
    each = _entry(tmp_path, key=keys[0]).stat().st_size
    res = cache_cli("prune", "--max-size", str(2 * each), "--dir", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == (
        f"pruned 2 file(s) ({format_size(2 * each)}) from {tmp_path}; 2 entries ({format_size(2 * each)}) kept, "
        f"limit {format_size(2 * each)}"
    )
    assert {f.path.name.split(".")[0] for f in scan(tmp_path).entries} == set(keys[2:])
    res = cache_cli("clear", "--dir", str(tmp_path))  # no terminal to ask on
    assert res.exit_code == 2 and res.stderr.strip() == "error: cache clear: give --yes (standard input is not a terminal)"
    assert len(scan(tmp_path).entries) == 2
    res = cache_cli("clear", "--dir", str(tmp_path), "--yes")
    assert res.exit_code == 0 and res.stdout.strip() == f"removed 2 file(s) ({format_size(2 * each)}) from {tmp_path}"
    assert scan(tmp_path).entries == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("prune", "--max-size", "2XB", "--dir", "{dir}"),
            "--max-size: '2XB' is not a size; give bytes or a number with a unit",
        ),
        (("prune", "--max-size", "-3MB", "--dir", "{dir}"), "--max-size: '-3MB' is not a size"),
        (("info", "--dir", "{file}"), "--dir: {file} is a file, not a folder"),
        (("clear", "--yes", "--dir", "{file}/sub"), "--dir: {file}/sub cannot be created: {file} is a file"),
    ],
)
def test_cli_usage_errors_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    file = tmp_path / "f"
    file.write_text("x")
    res = cache_cli(*(a.format(file=file, dir=tmp_path) for a in args))
    assert res.exit_code == 2
    assert res.stderr.strip().startswith("error: " + message.format(file=file)), res.stderr
    assert file.read_text() == "x"


def test_cli_environment_errors_exit_2(tmp_path: Path) -> None:
    res = cache_cli("info", "--dir", str(tmp_path), env={ENV_MAX_SIZE: "big"})
    assert res.exit_code == 2 and res.stderr.strip().startswith(f"error: {ENV_MAX_SIZE}: 'big' is not a size")


# --------------------------------------------------------------------------- a run


def _run(spec: Path, out: str, registry: Any) -> tuple[Any, list[str]]:
    from reportgen.runner import Progress, RunOptions, run_audit

    logs: list[str] = []
    run, _ = run_audit(spec, RunOptions(output=str(spec.parent / out), progress=Progress(log=logs.append)), registry)
    return run, logs


@pytest.fixture()
def no_cache_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)
    monkeypatch.delenv(ENV_MAX_SIZE, raising=False)


def test_a_run_recomputes_a_corrupted_entry_with_a_warning_and_the_same_numbers(
    tmp_path: Path, tiny_registry: Any, no_cache_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = write_spec(tmp_path, SPEC + "cache: c\n")
    first, _ = _run(spec, "a", tiny_registry)
    entry = next((tmp_path / "c" / "results").rglob(f"*.v{FORMAT}.json"))
    entry.write_bytes(_flip(entry.read_bytes()))
    again, logs = _run(spec, "b", tiny_registry)
    warning = [x for x in logs if x.startswith("warning:")]
    assert warning == [f"warning: cache entry results/{entry.name[:12]} is corrupted (checksum mismatch); removed and recomputed"]
    assert "jobs: 1 of 2 reused from the cache, 1 computed" in logs
    assert again.results[0].matrix.tolist() == first.results[0].matrix.tolist()
    assert not again.results[0].details.get("from_cache")
    _, logs = _run(spec, "c", tiny_registry)
    assert "jobs: 2 of 2 reused from the cache, 0 computed" in logs and not [x for x in logs if x.startswith("warning")]
    # The generation key carries the token display version: a new display never reuses an old generation
    # (the result is reused: its key holds the generation itself, which is the same here).
    import reportgen.runner as runner

    monkeypatch.setattr(runner, "TOKEN_DISPLAY_VERSION", runner.TOKEN_DISPLAY_VERSION + 1)
    fourth, logs = _run(spec, "d", tiny_registry)
    assert "jobs: 1 of 2 reused from the cache, 1 computed" in logs and fourth.results[0].details.get("from_cache")


def test_a_run_keeps_the_cache_under_its_limit(tmp_path: Path, tiny_registry: Any, no_cache_env: None) -> None:
    spec = write_spec(tmp_path, SPEC + "cache: {dir: c, max_size: 1kB}\n")
    _filled(tmp_path / "c", 3)  # older entries, each about 1 kB
    _, logs = _run(spec, "a", tiny_registry)
    pruned = [x for x in logs if x.startswith("cache: pruned")]
    assert len(pruned) == 1 and "to stay within 1.0 kB" in pruned[0], logs
    assert scan(tmp_path / "c").size <= 1000


# --------------------------------------------------------------------------- two processes


WORKER = textwrap.dedent(
    """
    import json, sys, random, time
    from pathlib import Path
    from reportgen.cache import Cache, content_key
    from reportgen.cache_admin import clear, prune

    root, role, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    warnings = []
    cache = Cache(root, log=warnings.append)
    keys = [content_key("shared", i) for i in range(4)]
    value = lambda i: {"i": i, "payload": str(i) * (200_000 + 100_000 * i)}  # 0.2-0.5 MB, one true value per key
    rng = random.Random(role)
    wrong = rounds = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rounds += 1
        if role == "janitor":  # prunes to a few entries, and now and then clears everything
            prune(root, 1_000_000) if rounds % 4 else clear(root)
            time.sleep(0.005)
            continue
        i = rng.randrange(len(keys))
        got = cache.get("results", keys[i])
        if got is None:
            cache.set("results", keys[i], value(i))
        elif got != value(i):
            wrong += 1
    print(json.dumps({"wrong": wrong, "warnings": warnings, "hits": cache.hits, "misses": cache.misses, "rounds": rounds}))
    """
)


def test_two_processes_sharing_one_cache_never_corrupt_it(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(root), role, "4"], stdout=subprocess.PIPE, text=True, env=env)
        for role in ("a", "b", "janitor")
    ]
    reports = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert reports[2]["rounds"] > 10
    for r in reports[:2]:
        assert r["wrong"] == 0 and r["warnings"] == [], r
        assert r["hits"] > 0 and r["misses"] > 4, r  # they shared, and recomputed what the janitor removed
    inv = scan(root)
    assert not inv.stale and not inv.other and not inv.writes  # every finished write renamed its temporary file
    for f in inv.entries:  # every entry left checks
        key = f.path.name.split(".")[0]
        assert decode_entry(f.path.read_bytes(), "results", key)["i"] == [content_key("shared", i) for i in range(4)].index(key)
    assert info(resolve_settings(None, root, dir_option=str(root)))["entries"] == len(inv.entries)
