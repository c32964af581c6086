"""Floating-point arithmetic units and the formats they work on.

Ref: NUMERICS.md; docs/numerics.md and docs/architecture.md.
"""

from .format import *  # noqa: F401,F403
from .format import __all__ as _format_all
from .multiplier import FPMultiplier
from .adder import FPAdder
from .fma import FPFMA
from .convert import FPConvert

__all__ = list(_format_all) + ["FPMultiplier", "FPAdder", "FPFMA", "FPConvert"]
