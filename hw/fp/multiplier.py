"""FP8 multiplier: the product of two FP8 codes rounded to the accumulator format.

Ref: NUMERICS.md section 3 (``mul``: exact product, one ``rne`` rounding, no saturation).
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Mux
from amaranth.lib.wiring import In, Out

from .common import Rounder, guard_bits, normalize_input, small_product, to_signed, unpack
from .format import Rounding, format_by_name
from .unit import PipelinedUnit

__all__ = ["FPMultiplier"]


class FPMultiplier(PipelinedUnit):
    """Pipelined multiplier ``p = mul(a, b)``.

    Parameters
    ----------
    a_fmt, b_fmt : FloatFormat
        Operand formats (any preset; the accelerator uses E5M2 and E4M3).
    out_fmt : FloatFormat
        Result format.

    Members
    -------
    a : In(a_fmt.width)
    b : In(b_fmt.width)
    p : Out(out_fmt.width)
        ``mul(a, b)``, ``latency`` cycles after ``a`` and ``b``.
    """

    def __init__(self, a_fmt, b_fmt, out_fmt):
        self._a_fmt, self._b_fmt, self._out_fmt = map(format_by_name, (a_fmt, b_fmt, out_fmt))
        super().__init__({"a": In(self._a_fmt.width), "b": In(self._b_fmt.width),
                          "p": Out(self._out_fmt.width)})

    a_fmt = property(lambda self: self._a_fmt)
    b_fmt = property(lambda self: self._b_fmt)
    out_fmt = property(lambda self: self._out_fmt)

    def datapath(self, m, pipe):
        af, bf, of = self._a_fmt, self._b_fmt, self._out_fmt
        ua, ub = unpack(af, self.a), unpack(bf, self.b)
        nan = ua.nan | ub.nan | (ua.inf & ub.zero) | (ua.zero & ub.inf)
        inf = ua.inf | ub.inf
        zero = ua.zero | ub.zero
        sa, ea = ua.sig, ua.exp
        sb, eb = ub.sig, ub.exp
        if af.subnormals:
            sa, ea = normalize_input(sa, ea)
        if bf.subnormals:
            sb, eb = normalize_input(sb, eb)
        # Fold the constant of the product exponent into the first operand's exponent here.
        ea = to_signed(ea) + (of.bias - af.bias - bf.bias + 1)
        s = pipe.next(sa=sa, ea=ea, sb=sb, eb=eb, sign=ua.sign ^ ub.sign, zero=zero, inf=inf,
                      nan=nan)
        # Both significands are normalised, so the product lies in [1, 4): a one-bit shift
        # normalises it. Its MSB (bit P-1) has the exponent ea + eb - bias_a - bias_b + 1.
        pw = len(s.sa) + len(s.sb)
        prod = small_product(s.sa, s.sb)
        pexp = s.ea + to_signed(s.eb)
        s = pipe.next(prod=prod, exp=pexp, sign=s.sign, zero=s.zero, inf=s.inf, nan=s.nan)
        top = s.prod[pw - 1]
        s = pipe.next(sig=Mux(top, s.prod, s.prod << 1)[:pw], exp=Mux(top, s.exp, s.exp - 1),
                      sign=s.sign, zero=s.zero, inf=s.inf, nan=s.nan)
        sig, exp = s.sig, s.exp
        width = max(pw, of.m + 1 + guard_bits(Rounding.RNE, 0) + 1)
        rounder = Rounder(of, Rounding.RNE, 0, width)
        code, _ = rounder.stages(pipe, sig=Cat(Const(0, width - pw), sig), exp=exp,
                                 sign=s.sign, rnd=None, zero=s.zero, inf=s.inf, nan=s.nan)
        return code, self.p
