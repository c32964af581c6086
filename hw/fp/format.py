"""Floating-point formats and rounding modes shared by the RTL and the golden model.

Ref: docs/numerics.md sections 1 (formats) and 2 (rounding modes).
"""

import enum
from dataclasses import dataclass

from amaranth.lib import data

__all__ = [
    "Specials", "Rounding", "FloatFormat",
    "E5M2", "E4M3", "DLFLOAT16", "BINARY16", "BFLOAT16", "BINARY32",
    "PRESETS", "FP8_FORMATS", "format_by_name", "rounding_by_name", "check_rbits",
    "RBITS_MAX",
]

#: Largest number of random bits a stochastic rounding may consume (the generator word is 32 bits).
RBITS_MAX = 32


class Specials(enum.Enum):
    """Which codes of a format are not finite numbers (docs/numerics.md section 1)."""
    #: Exponent all ones: mantissa zero is +-Inf, anything else NaN.
    IEEE = "ieee"
    #: Only exponent and mantissa all ones is NaN (OCP E4M3FN). No Inf.
    FN = "fn"
    #: Only exponent and mantissa all ones is special ("NaN or overflow", DLFloat16). No Inf.
    SINGLE = "single"
    #: Every code is a finite number.
    NONE = "none"


class Rounding(enum.Enum):
    """Rounding modes (docs/numerics.md section 2)."""
    #: Nearest, ties to even.
    RNE = "rne"
    #: Nearest, ties away from zero.
    RNA = "rna"
    #: Toward zero.
    RTZ = "rtz"
    #: Stochastic: round up with probability equal to the discarded fraction, using ``rbits`` bits.
    SR = "sr"


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format ``(e, m, bias, subnormals, specials)``.

    A code has ``1 + e + m`` bits: the sign in the MSB, an ``e``-bit exponent field and an
    ``m``-bit mantissa field in the LSBs.

    Parameters
    ----------
    e : int
        Exponent field width.
    m : int
        Mantissa (fraction) field width.
    bias : int
        Exponent bias.
    subnormals : bool
        ``True`` for IEEE-style gradual underflow; ``False`` for DLFloat style, where every code
        but the all-zero magnitude is normal.
    specials : Specials or str
        Which codes are NaN or Inf.
    name : str
        Preset name, used in messages and reports.
    """
    e: int
    m: int
    bias: int
    subnormals: bool
    specials: Specials
    name: str = ""

    def __post_init__(self):
        if not isinstance(self.specials, Specials):
            try:
                object.__setattr__(self, "specials", Specials(self.specials))
            except ValueError:
                raise ValueError(f"Specials must be one of 'ieee', 'fn', 'single', 'none', "
                                 f"not {self.specials!r}") from None
        if not isinstance(self.e, int) or not 2 <= self.e <= 11:
            raise ValueError(f"Exponent width must be an integer from 2 to 11, not {self.e!r}")
        if not isinstance(self.m, int) or not 1 <= self.m <= 52:
            raise ValueError(f"Mantissa width must be an integer from 1 to 52, not {self.m!r}")
        if not self.name:
            object.__setattr__(self, "name", f"fp{self.width}_e{self.e}m{self.m}")

    def __str__(self):
        return self.name

    # Code layout -----------------------------------------------------------------------------

    @property
    def width(self):
        """Total code width in bits."""
        return 1 + self.e + self.m

    @property
    def layout(self):
        """A :class:`amaranth.lib.data.StructLayout` of a code: mantissa, exponent, sign."""
        return data.StructLayout({"mantissa": self.m, "exponent": self.e, "sign": 1})

    @property
    def sign_mask(self):
        return 1 << (self.e + self.m)

    @property
    def mag_mask(self):
        return self.sign_mask - 1

    @property
    def exp_max_field(self):
        """The all-ones exponent field value."""
        return (1 << self.e) - 1

    # Special codes ---------------------------------------------------------------------------

    @property
    def has_inf(self):
        return self.specials is Specials.IEEE

    @property
    def has_nan(self):
        return self.specials is not Specials.NONE

    @property
    def max_finite_mag(self):
        """Magnitude code (sign bit clear) of the largest finite value."""
        if self.specials is Specials.IEEE:
            return (self.exp_max_field << self.m) - 1
        if self.specials in (Specials.FN, Specials.SINGLE):
            return self.mag_mask - 1
        return self.mag_mask

    @property
    def nan_code(self):
        """Canonical NaN code (sign 0), or ``None`` for a format without NaN."""
        if self.specials is Specials.IEEE:
            return (self.exp_max_field << self.m) | (1 << (self.m - 1))
        if self.specials in (Specials.FN, Specials.SINGLE):
            return self.mag_mask
        return None

    @property
    def inf_mag(self):
        """Magnitude code of Inf, or ``None`` for a format without Inf."""
        return (self.exp_max_field << self.m) if self.has_inf else None

    @property
    def emin(self):
        """Unbiased exponent of the smallest binade that holds normal numbers.

        With subnormals this is ``1 - bias`` (the exponent of subnormals too); without, the
        exponent field 0 is a normal binade, so it is ``-bias``.
        """
        return 1 - self.bias if self.subnormals else -self.bias

    @property
    def emax(self):
        """Unbiased exponent of the largest finite value."""
        return (self.max_finite_mag >> self.m) - self.bias

    def max_finite(self):
        """Largest finite value as a float."""
        frac = self.max_finite_mag & ((1 << self.m) - 1)
        return (1 + frac / (1 << self.m)) * 2.0 ** self.emax


E5M2 = FloatFormat(5, 2, 15, True, Specials.IEEE, "E5M2")
E4M3 = FloatFormat(4, 3, 7, True, Specials.FN, "E4M3")
DLFLOAT16 = FloatFormat(6, 9, 31, False, Specials.SINGLE, "DLFLOAT16")
BINARY16 = FloatFormat(5, 10, 15, True, Specials.IEEE, "BINARY16")
BFLOAT16 = FloatFormat(8, 7, 127, True, Specials.IEEE, "BFLOAT16")
BINARY32 = FloatFormat(8, 23, 127, True, Specials.IEEE, "BINARY32")

#: Every preset by lower-case name.
PRESETS = {f.name.lower(): f for f in (E5M2, E4M3, DLFLOAT16, BINARY16, BFLOAT16, BINARY32)}
#: The formats the GEMM operands and the multiplier inputs may use.
FP8_FORMATS = (E5M2, E4M3)


def format_by_name(name):
    """Return the preset called ``name`` (case-insensitive) or the format itself."""
    if isinstance(name, FloatFormat):
        return name
    try:
        return PRESETS[str(name).lower()]
    except KeyError:
        raise ValueError(f"Unknown format {name!r}; expected one of "
                         f"{', '.join(PRESETS)}") from None


def rounding_by_name(rounding, allowed=tuple(Rounding)):
    """Return the :class:`Rounding` called ``rounding``, checking it is one of ``allowed``."""
    try:
        mode = Rounding(rounding.value if isinstance(rounding, Rounding) else rounding)
    except ValueError:
        raise ValueError(f"Unknown rounding mode {rounding!r}; expected one of "
                         f"{', '.join(r.value for r in allowed)}") from None
    if mode not in allowed:
        raise ValueError(f"Rounding mode {mode.value!r} is not supported here; expected one of "
                         f"{', '.join(r.value for r in allowed)}")
    return mode


def check_rbits(rbits):
    """Check the number of random bits of a stochastic rounding."""
    if isinstance(rbits, bool) or not isinstance(rbits, int) or not 1 <= rbits <= RBITS_MAX:
        raise ValueError(f"rbits must be an integer from 1 to {RBITS_MAX}, not {rbits!r}")
    return rbits
