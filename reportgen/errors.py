"""Exception hierarchy; the CLI maps each class to an exit code and a one-line message."""

from __future__ import annotations


class ReportgenError(Exception):
    """Base of every error reportgen reports to a user."""

    exit_code = 1


class SpecError(ReportgenError):
    """The audit spec is invalid. ``problems`` lists ``file:line:col: field: message`` lines."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def __str__(self) -> str:
        head = super().__str__()
        if not self.problems:
            return head
        return head + "\n" + "\n".join(f"  {p}" for p in self.problems)


class PluginError(ReportgenError):
    """A plugin is broken (duplicate names, bad registration)."""

    exit_code = 3


class ModelLoadError(ReportgenError):
    """A model could not be loaded (weights missing, bad source)."""

    exit_code = 4


class MethodUnavailable(ReportgenError):
    """A method cannot run on a model here; the run records the reason and goes on."""


class SamplerError(ReportgenError):
    """A black-box sampler failed (server down, timeout, malformed reply)."""

    exit_code = 5


class RenderError(ReportgenError):
    exit_code = 6
