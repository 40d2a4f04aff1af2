"""reportgen: audit how language models depend on each input token, as shareable reports."""

from reportgen.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
