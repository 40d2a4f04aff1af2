"""Example third-party reportgen plugin (see README.md): ``example.leave_one_out``."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
