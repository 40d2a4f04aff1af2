"""Exception hierarchy; the CLI maps each class to an exit code and a one-line message.

Exit codes: 1 unexpected (``ReportgenError`` itself) · 2 ``SpecError``, ``VerifyInputError`` ·
3 ``PluginError`` · 4 ``ModelLoadError`` · 5 ``SamplerError`` · 6 ``RenderError``
(``ResultsError``) · 7 ``GateFailed`` · 8 ``VerificationFailed`` · 130 interrupted
(``KeyboardInterrupt``, handled by the CLI).
"""

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
    """A report could not be written (a renderer failed, or the results it reads are malformed)."""

    exit_code = 6


class ResultsError(RenderError):
    """A results.json cannot be rendered: the message names the file and the JSON path."""


class GateFailed(ReportgenError):
    """The run finished and its reports are written, but the CI gate (``--fail-on``) failed."""

    exit_code = 7


class VerificationFailed(ReportgenError):
    """``reportgen verify`` found a report that is not intact or not its run's (each difference is printed)."""

    exit_code = 8


class VerifyInputError(ReportgenError):
    """A path given to ``reportgen verify`` cannot be read or is not a report (a usage error)."""

    exit_code = 2
