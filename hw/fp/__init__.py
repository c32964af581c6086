"""Floating-point arithmetic units and the formats they work on.

Ref: docs/numerics.md sections 1-3 and 7; docs/architecture.md ("Unit interfaces",
"Pipelines").
"""

from .format import *  # noqa: F401,F403
from .format import __all__ as _format_all
from .multiplier import FPMultiplier
from .adder import FPAdder
from .fma import FPFMA
from .convert import FPConvert

__all__ = list(_format_all) + ["FPMultiplier", "FPAdder", "FPFMA", "FPConvert"]
