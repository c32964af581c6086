"""Floating-point arithmetic units and the formats they work on."""

from .format import *  # noqa: F401,F403
from .format import __all__ as _format_all

__all__ = list(_format_all)
