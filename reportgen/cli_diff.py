"""``reportgen diff OLD NEW -o DIR``: compare two runs' results.json (no model is loaded); see :mod:`reportgen.diff`."""

from __future__ import annotations

from pathlib import Path

import click

from reportgen.granularity import GRANULARITIES


@click.command("diff")
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("-f", "--format", "formats", multiple=True, default=("html", "json"), help="html, json, pdf (repeat or a comma list).")
@click.option("--granularity", type=click.Choice(GRANULARITIES), help="Units of the differential matrices (default: NEW spec's).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def diff(old: Path, new: Path, output: Path, formats: tuple[str, ...], granularity: str | None, debug: bool) -> None:
    """Compare two runs (OLD/results.json, NEW/results.json): per prompt, model and method the
    difference A[OLD] − A[NEW] (per word when the runs tokenised differently, aligned by a word
    diff when the responses differ), the findings that appeared, disappeared or changed severity,
    and what only one run has. Writes diff.html and diff.json into OUTPUT, and with -f pdf
    diff.pdf (PDF/A-3b, diff.json and both results.json attached) by the installed ``pdf``
    renderer plugin; without one, -f pdf is a usage error (exit 2)."""
    from reportgen.cli import _guard
    from reportgen.diff import check_formats, diff_runs, write_diff
    from reportgen.results import load_run

    def go() -> dict[str, str]:
        fmts = check_formats([f.strip() for value in formats for f in value.split(",") if f.strip()])
        if "pdf" in fmts:  # before any work: a usage error (exit 2) when no installed renderer writes PDF
            from reportgen.diff_pdf import pdf_writer
            from reportgen.plugins import get_registry

            pdf_writer(get_registry())
        d = diff_runs(load_run(old), load_run(new), str(old), str(new), granularity)  # type: ignore[arg-type]
        return write_diff(d, output, fmts)

    written = _guard(debug, go)
    for fmt, path in written.items():
        click.echo(f"{fmt}: {path}")
