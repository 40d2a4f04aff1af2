"""``reportgen cache info | clear | prune``: look into the cache and keep it small.

The folder and the size limit are found as a run finds them (:mod:`reportgen.cache_admin`):
``--dir`` / ``--max-size``, else ``REPORTGEN_CACHE_DIR`` / ``REPORTGEN_CACHE_MAX_SIZE``, else the
spec given with ``--spec``, else ``.reportgen-cache`` in the working directory and 2 GB.
Exit 2 on a size that is not a size, a folder that is a file or an invalid spec.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from reportgen.errors import ReportgenError, SpecError

_dir_option = click.option("--dir", "cache_dir", metavar="DIR", help="The cache folder (default: see `reportgen cache --help`).")
_spec_option = click.option(
    "--spec", "spec_path", type=click.Path(dir_okay=False, path_type=Path), help="Use the cache settings of this audit spec."
)


def _settings(cache_dir: str | None, spec_path: Path | None, max_size: str | None = None) -> Any:
    from reportgen.cache_admin import folder_problem, resolve_settings

    spec_cache, base = None, Path.cwd()
    if spec_path is not None:
        from reportgen.spec import load_spec

        spec_cache, base = load_spec(spec_path)[0].cache, spec_path.resolve().parent
    try:
        settings = resolve_settings(spec_cache, base, dir_option=cache_dir, max_size_option=max_size)
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    why = folder_problem(settings.root)
    if why:
        raise SpecError(f"{settings.root_from}: {why}")
    return settings


def _fail(exc: ReportgenError) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _run(fn: Any) -> Any:
    try:
        return fn()
    except ReportgenError as exc:
        _fail(exc)


@click.group()
def cache() -> None:
    """Look into the cache of finished work and keep it small.

    The folder: --dir, else REPORTGEN_CACHE_DIR, else the --spec's cache.dir (relative to the
    spec), else ./.reportgen-cache. The limit: --max-size, else REPORTGEN_CACHE_MAX_SIZE, else the
    spec's cache.max_size, else 2GB.
    """


@cache.command()
@_dir_option
@_spec_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(cache_dir: str | None, spec_path: Path | None, as_json: bool) -> None:
    """Where the cache is, its entries per namespace, total size, limit, oldest and newest use."""
    from reportgen.cache_admin import format_size
    from reportgen.cache_admin import info as cache_info

    found = _run(lambda: cache_info(_settings(cache_dir, spec_path)))
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    click.echo(f"cache: {found['dir']} ({found['dir_from']})" + ("" if found["exists"] else ": does not exist yet"))
    share = f", {100 * found['size'] / found['max_size']:.0f} % of it" if found["max_size"] else ""
    click.echo(
        f"size: {format_size(found['size'])} in {found['entries']} entries; "
        f"limit {format_size(found['max_size'])} ({found['max_size_from']}){share}"
    )
    for name, ns in found["namespaces"].items():
        click.echo(f"  {name:<14} {ns['entries']:>7} entries {format_size(ns['size']):>10}")
    if found["entries"]:
        click.echo(f"last used: oldest {found['oldest']}, newest {found['newest']}")
    notes = (
        ("older_format", "of an older format (never read; prune or clear removes them)"),
        ("unfinished_writes", "unfinished writes (a run writing now, or one that died)"),
        ("other_files", "other files (not cache entries; never removed)"),
    )
    for field, what in notes:
        if found[field]["files"]:
            click.echo(f"{found[field]['files']} file(s), {format_size(found[field]['size'])}, {what}")


def _report(removal: Any) -> None:
    for problem in removal.failed:
        click.echo(f"warning: could not remove {problem}", err=True)
    if removal.failed:
        sys.exit(1)


@cache.command()
@_dir_option
@_spec_option
@click.option("--yes", is_flag=True, help="Do not ask.")
def clear(cache_dir: str | None, spec_path: Path | None, yes: bool) -> None:
    """Remove every cache entry (files that are not entries are left alone)."""
    from reportgen.cache_admin import clear as clear_cache
    from reportgen.cache_admin import format_size, scan

    settings = _run(lambda: _settings(cache_dir, spec_path))
    if not yes:
        if not sys.stdin.isatty():
            _fail(SpecError("cache clear: give --yes (standard input is not a terminal)"))
        inv = scan(settings.root)
        if not click.confirm(f"remove {len(inv.entries)} entries ({format_size(inv.size)}) from {settings.root}?"):
            click.echo("nothing removed")
            return
    removal = clear_cache(settings.root)
    click.echo(f"removed {removal.entries} file(s) ({format_size(removal.size)}) from {settings.root}")
    _report(removal)


@cache.command()
@click.option("--max-size", metavar="SIZE", help="Prune to this size: bytes, 500MB, 2GB, 1.5GiB … (default: the limit).")
@_dir_option
@_spec_option
def prune(max_size: str | None, cache_dir: str | None, spec_path: Path | None) -> None:
    """Remove least recently used entries until the cache fits SIZE (and outdated files)."""
    from reportgen.cache_admin import format_size
    from reportgen.cache_admin import prune as prune_cache

    settings = _run(lambda: _settings(cache_dir, spec_path, max_size))
    removal = prune_cache(settings.root, settings.max_size)
    click.echo(
        f"pruned {removal.entries} file(s) ({format_size(removal.size)}) from {settings.root}; "
        f"{removal.left} entries ({format_size(removal.left_size)}) kept, limit {format_size(settings.max_size)}"
    )
    _report(removal)
