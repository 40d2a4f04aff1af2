"""Command line: ``reportgen run | validate | plugins | schema | render | sign | verify``.

Exit codes (also in README.md):

====  ==================================================================================
0     ok
1     unexpected error (a bug: rerun with ``--debug`` for the traceback)
2     invalid spec or usage: every problem as ``file:line:col: field.path: message``, found
      before any model loads (names, options, devices, output folder); nothing is written
3     plugin error (a plugin is broken or registers a name twice)
4     a model could not load (weights missing or unreadable, not a GGUF file, package absent)
5     a black-box sampler failed (server down, timeout, request cap)
6     render error: a renderer failed (the other formats are still written), or the
      results.json given to ``render`` is malformed (the file and JSON path are named)
7     gate failed: the run finished and its reports are written, but ``--fail-on`` (or the
      spec's ``fail_on``) matched, or no method produced a result at all
8     verification failed: ``reportgen verify`` found a report, results.json or provenance
      statement that is not intact or not its run's (each difference is printed: which
      file, which field, figure, token or page)
130   interrupted (finished work is in the cache; rerun to resume)
====  ==================================================================================

Errors print one line (no traceback) unless ``--debug``.

Exit 7 without ``--fail-on``: when every method job failed or was unavailable, the reports
are still written (they say why each job did not run) but hold no attribution evidence, so
a pipeline that runs an audit must not read the run as a success. The CLI prints one line,
``error: gate failed: no method produced a result (N failed, M unavailable); the reports are
written``, and exits 7; ``--fail-on`` only adds conditions. A failed job among successful
ones is listed but exits 0 unless ``--fail-on failed``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import click

from reportgen import __version__
from reportgen.cache_cli import cache as cache_command
from reportgen.cli_diff import diff as diff_command
from reportgen.errors import GateFailed, RenderError, ReportgenError


def _fail(exc: BaseException, debug: bool) -> None:
    if debug:
        traceback.print_exception(exc)
    if isinstance(exc, ReportgenError):
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if isinstance(exc, KeyboardInterrupt):
        click.echo("interrupted: finished results are kept in the cache; rerun to resume", err=True)
        sys.exit(130)
    click.echo(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
    sys.exit(1)


def _guard(debug: bool, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI boundary: one line per error
        _fail(exc, debug)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reportgen")
def main() -> None:
    """Audit how language models depend on each input token; write shareable reports."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # reportgen shows its own progress
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF de-quantisation bars
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # library deprecation notices are not the user's to act on
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    warnings.filterwarnings("ignore", category=FutureWarning)


def _progress_lines() -> Any:
    """Progress for a log (stderr is not a terminal: CI, ``2> log.txt``): one plain line per
    finished job, ``[n/total] label · elapsed``, and the log lines; no redraws, no ANSI escapes."""
    import time

    from reportgen.runner import Progress as Hooks

    state = {"done": 0, "total": 0, "t0": time.monotonic()}

    def start(total: int) -> None:
        state.update(done=0, total=total, t0=time.monotonic())

    def advance(label: str) -> None:
        state["done"] += 1
        elapsed = time.monotonic() - state["t0"]
        click.echo(f"[{state['done']}/{state['total']}] {label} · {elapsed:.1f} s elapsed", err=True)

    return Hooks(start=start, advance=advance, log=lambda msg: click.echo(msg, err=True))


def _progress_bar(quiet: bool) -> tuple[Any, Any]:
    """(a rich bar to enter while the run lasts, or None; the runner's progress hooks)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from reportgen.runner import Progress as Hooks

    console = Console(stderr=True)
    if quiet:  # no bar; log lines (model loads, cache reuse, removed files) stay, as plain lines
        return None, Hooks(log=lambda msg: click.echo(msg, err=True))
    if not sys.stderr.isatty():
        return None, _progress_lines()
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[detail]}"),
        console=console,
        transient=False,
    )
    task: dict[str, Any] = {}

    def start(total: int) -> None:
        task["id"] = bar.add_task("audit", total=total, detail="")

    def advance(label: str) -> None:
        bar.update(task["id"], advance=1, detail=label)

    def detail(label: str, done: int, total: int) -> None:
        bar.update(task["id"], detail=f"{label} {done}/{total}")

    def log(msg: str) -> None:
        bar.console.print(msg, style="dim", markup=False, highlight=False)

    return bar, Hooks(start=start, advance=advance, detail=detail, log=log)


def _fail_on_levels(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    from reportgen.spec import GATE_LEVELS

    levels = tuple(v.strip() for value in values for v in value.split(",") if v.strip())
    bad = [v for v in levels if v not in GATE_LEVELS]
    if bad:
        raise click.BadParameter(f"{bad[0]!r}; choose from {', '.join(GATE_LEVELS)} (repeat it or give a comma list)")
    return levels


def _key_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--cert``, ``--tsa`` and ``--key-pass-env``: how ``run --sign`` and ``sign`` find and use the key."""
    from reportgen.signing import DEFAULT_PASS_ENV

    fn = click.option(
        "--key-pass-env",
        default=DEFAULT_PASS_ENV,
        show_default=True,
        metavar="VAR",
        help="Environment variable holding the key's passphrase (read, never written anywhere).",
    )(fn)
    fn = click.option(
        "--tsa",
        metavar="URL",
        help="RFC 3161 timestamp authority; when it cannot be reached, a warning, and the files are signed without a timestamp.",
    )(fn)
    return click.option(
        "--cert",
        "sign_cert",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The signer's certificate for a PEM key (PEM; further certificates in the file are its chain).",
    )(fn)


def _signing_key(key: Path, cert: Path | None, pass_env: str, debug: bool) -> Any:
    """The signing key, or exit 2 with one line (bad key file, wrong passphrase, variable unset, no sign extra)."""
    from reportgen.signing import load_key

    return _guard(debug, lambda: load_key(key, cert, pass_env))


def _key_id(key: Any) -> str:
    from reportgen.signing import key_id

    return key_id(key.cert)


def _sign_paths(paths: list[Path], key: Any, tsa: str | None, debug: bool) -> None:
    from reportgen.signing import sign_files, timestamper

    for line in _guard(debug, lambda: sign_files(paths, key, timestamper(tsa, lambda msg: click.echo(msg, err=True)))):
        click.echo(line)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Output folder (default: the spec's report.output).")
@click.option("-f", "--format", "formats", multiple=True, help="Report format(s): html, json, pdf (default: the spec's).")
@click.option("--device", help="cpu, cuda, cuda:1 … (default: the spec's).")
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    help="Where the jobs run: local (this process) or ray (a Ray cluster, set by the spec's executor: block). Default: the spec's.",
)
@click.option("--no-cache", is_flag=True, help="Recompute everything instead of reusing cached results.")
@click.option(
    "--fail-on",
    "fail_on",
    multiple=True,
    callback=_fail_on_levels,
    metavar="LEVEL",
    help="CI gate: exit 7 after writing the reports when a method job failed (failed) or a finding of this "
    "severity or worse exists (high, medium, low, info). Repeatable or a comma list; adds to the spec's fail_on.",
)
@click.option(
    "--sign",
    "sign_key",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="KEY",
    help="Sign every report written with this key (PEM with --cert, or PKCS#12): PAdES in the PDF, NAME.dsse.json beside the rest.",
)
@_key_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (log lines are still printed).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def run(
    spec: Path,
    output: str | None,
    formats: tuple[str, ...],
    device: str | None,
    executor: Literal["local", "ray"] | None,
    no_cache: bool,
    fail_on: tuple[str, ...],
    quiet: bool,
    debug: bool,
    sign_key: Path | None,
    sign_cert: Path | None,
    tsa: str | None,
    key_pass_env: str,
) -> None:
    """Run the audit SPEC and write the reports."""
    from reportgen.runner import RunOptions, audit, gate, sign_reports
    from reportgen.statement import reset_command, set_command

    key = _signing_key(sign_key, sign_cert, key_pass_env, debug) if sign_key else None  # before anything is written
    signer = _key_id(key) if key is not None else None

    bar, hooks = _progress_bar(quiet)
    base = spec.resolve().parent
    argv = ["reportgen", "run", _portable(spec, base)]
    argv += ["-o", _portable(Path(output), base)] if output else []
    argv += [a for fmt in formats for a in ("-f", fmt)]
    argv += ["--device", device] if device else []
    argv += ["--executor", executor] if executor else []
    argv += ["--no-cache"] if no_cache else []
    argv += ["--fail-on", ",".join(fail_on)] if fail_on else []

    def go() -> Any:
        opts = RunOptions(
            output=output,
            formats=list(formats) or None,
            device=device,
            use_cache=not no_cache,
            progress=hooks,
            executor=executor,
            signer=signer,
        )
        token = set_command(argv)  # for the provenance statement
        try:
            if bar is None:
                return audit(spec, opts)
            with bar:
                return audit(spec, opts)
        finally:
            reset_command(token)

    done = _guard(debug, go)
    run_result, written = done.run, done.written
    failed = [r for r in run_result.results if r.status == "failed"]
    for fmt, path in written.items():
        click.echo(f"{fmt}: {path}")
    n_find = len(run_result.findings)
    click.echo(f"{len(run_result.results)} result(s), {n_find} finding(s), {len(failed)} failed method run(s)", err=True)
    if failed:
        for r in failed:
            click.echo(f"  failed: {r.method} on {r.model_id}/{r.prompt_id}: {r.reason}", err=True)
    if signer is not None and not done.up_to_date:  # an up-to-date folder holds this key's signatures
        sign_reports(done, signer, lambda paths: _sign_paths(paths, key, tsa, debug))
    why = gate(run_result, (*run_result.spec.fail_on, *fail_on))
    if why:
        _fail(GateFailed(f"gate failed: {why}; the reports are written"), False)


@main.command()
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--debug", is_flag=True)
def validate(spec: Path, debug: bool) -> None:
    """Check SPEC without loading any model: syntax, fields, plugin names and options, model
    sources, devices, and that the output folder can be written."""
    from reportgen.plugins import get_registry
    from reportgen.spec import RunTarget, load_spec

    parsed, _ = _guard(debug, lambda: load_spec(spec, get_registry(), target=RunTarget()))
    click.echo(f"{spec}: ok ({len(parsed.models)} model(s) × {len(parsed.prompts)} prompt(s) × {len(parsed.methods)} method(s))")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List plugins, their versions and what they register; plugins that failed to load and why."""
    from reportgen.plugins import get_registry

    reg = _guard(False, get_registry)
    _guard(False, reg.methods.load_deferred)  # list every method, inseq's too
    infos = reg.plugins()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "plugins": [vars(i) for i in infos],
                    "failed": [vars(f) for f in reg.failed],
                },
                indent=2,
            )
        )
        return
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "(not installed as a distribution)"
        click.echo(f"{info.name}  [{dist}]  {info.module}")
        for kind, names in sorted(info.registered.items()):
            click.echo(f"    {kind}: {', '.join(names)}")
    if reg.failed:
        click.echo("\nplugins that could not load:")
        for f in reg.failed:
            click.echo(f"  {f.name} ({f.value}): {f.reason}")


def _portable(path: Path, base: Path) -> str:
    """A path as the provenance statement records it: relative to the spec's folder, never absolute."""
    from reportgen.provenance import portable_path

    return portable_path(str(path.resolve()), base)


@main.command()
@click.option("--results", "results_schema", is_flag=True, help="The JSON Schema of results.json instead of the spec's.")
def schema(results_schema: bool) -> None:
    """Print the JSON Schema of the audit spec (for editor completion), or with ``--results``
    the schema of results.json (its schema_version, and the run-dependent fields as
    ``x-run-dependent``)."""
    if results_schema:
        from reportgen.results import json_schema_text

        click.echo(json_schema_text(), nl=False)
        return
    from reportgen.spec import json_schema

    click.echo(json_schema())


@main.command()
@click.argument("results", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("-f", "--format", "formats", multiple=True, default=("html",), show_default=True)
@click.option("--debug", is_flag=True)
def render(results: Path, output: str, formats: tuple[str, ...], debug: bool) -> None:
    """Rebuild reports from a results.json without running any model.

    The rebuilt reports say so: a notice at the top and ``provenance.rebuilt`` (when, from
    which file and its sha256). Nothing else in the output folder is touched.
    """
    from reportgen.plugins import get_registry
    from reportgen.results import load_run, manifest_status, read_json
    from reportgen.runner import render as render_run
    from reportgen.spec import output_problem
    from reportgen.statement import reset_command, set_command

    def go() -> dict[str, str]:
        reg = get_registry()
        unknown = [f for f in formats if f not in reg.renderers]
        if unknown:
            from reportgen.errors import SpecError

            raise SpecError(f"unknown format {unknown[0]!r}; valid choices: {', '.join(sorted(reg.renderers))}")
        run_result = load_run(results, rebuild=True)
        base = results.resolve().parent
        argv = ["reportgen", "render", _portable(results, base), "-o", _portable(Path(output), base)]
        why = output_problem(Path(output))
        if why:
            raise RenderError(f"--output: {why}")
        data = read_json(results.read_bytes(), str(results))
        edited = manifest_status(data) if data.get("schema_version") != "1.0" else None  # 1.0 had no manifest
        if edited:  # still rendered: the rebuilt reports record the file's sha256
            click.echo(f"warning: {results}: {edited} (edited after the run?); the rebuilt reports record its sha256", err=True)
        token = set_command([*argv, *[a for fmt in formats for a in ("-f", fmt)]])
        try:
            return render_run(reg, run_result, Path(output), list(formats))
        finally:
            reset_command(token)

    for fmt, path in _guard(debug, go).items():
        click.echo(f"{fmt}: {path}")


@main.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Private key: PEM, or PKCS#12.")
@_key_options
@click.option("--debug", is_flag=True)
def sign(reports: tuple[Path, ...], key_path: Path, sign_cert: Path | None, tsa: str | None, key_pass_env: str, debug: bool) -> None:
    """Sign REPORTS (report files or report folders): a PAdES signature inside each PDF (an
    incremental update: the PDF/A-3b revision stays as written), a DSSE envelope NAME.dsse.json
    beside every other file. The key and its passphrase are never written anywhere."""
    from reportgen.signing import files_to_sign

    key = _signing_key(key_path, sign_cert, key_pass_env, debug)
    _sign_paths(_guard(debug, lambda: files_to_sign(reports)), key, tsa, debug)


@main.command()
@click.argument("reports", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--spec", type=click.Path(dir_okay=False, path_type=Path), help="The audit spec: its text must be the one the run used.")
@click.option(
    "--cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trusted certificates (PEM or DER: signers or CAs): every file must be signed by a certificate that chains to one.",
)
@click.option("--debug", is_flag=True)
def verify(reports: tuple[Path, ...], spec: Path | None, cert: Path | None, debug: bool) -> None:
    """Check that REPORTS (report.html, report.pdf, results.json, provenance.intoto.json, or a
    report folder) are intact and show their run's numbers.

    Each report's manifest must match the results it carries; an HTML or PDF report must be
    what those results render to (a difference names the file and where: field, figure,
    token, table cell or page); several files must be of one run. A signature found (PAdES in
    a PDF, NAME.dsse.json beside another file) must verify, and its signer is printed; with
    --cert every file must be signed by a certificate that chains to the ones given. Exit 0
    when everything checks, 8 when anything differs.
    """
    from reportgen.errors import VerificationFailed
    from reportgen.verify import summary_lines
    from reportgen.verify import verify as run_verify

    result = _guard(debug, lambda: run_verify(list(reports), spec=spec, cert=cert))
    for line in summary_lines(result):
        click.echo(line)
    if not result.ok:
        bad = [c.path.name for c in result.files if not c.ok]
        what = ", ".join(bad) if bad else "the files disagree with each other"
        _fail(VerificationFailed(f"verification failed: {what}; each difference is listed above"), debug)


main.add_command(cache_command)  # reportgen cache info | clear | prune (reportgen/cache_cli.py)
main.add_command(diff_command)  # reportgen diff OLD NEW -o DIR (reportgen/cli_diff.py)

if __name__ == "__main__":  # pragma: no cover
    main()
