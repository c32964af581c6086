"""FP8 multiplier: the product of two FP8 codes rounded to the accumulator format.

Ref: docs/numerics.md section 3 (``mul``: exact product, one ``rne`` rounding, no saturation).
"""

from amaranth.hdl import Cat, Const, Mux
from amaranth.lib.wiring import In, Out

from .common import (Rounder, guard_bits, normalize_input, small_product, special_code,
                     to_signed, unpack)
from .format import Rounding, format_by_name
from .unit import PipelinedUnit

__all__ = ["FPMultiplier", "PRODUCTS", "check_product"]

#: How a multiplier may build its significand product (see :class:`FPMultiplier`).
PRODUCTS = ("logic", "dsp")


def check_product(product):
    """Check the ``product`` parameter of a multiplier; returns it."""
    if product not in PRODUCTS:
        raise ValueError(f"product must be one of {', '.join(map(repr, PRODUCTS))}, "
                         f"not {product!r}")
    return product


class FPMultiplier(PipelinedUnit):
    """Pipelined multiplier ``p = mul(a, b)``.

    Parameters
    ----------
    a_fmt, b_fmt : FloatFormat
        Operand formats (any preset; the accelerator uses E5M2 and E4M3).
    out_fmt : FloatFormat
        Result format.
    product : str
        How the significand product is built: ``"logic"`` (the default), a sum of shifted
        partial products in LUTs and carry chains; ``"dsp"``, a ``*`` that Yosys maps to a
        multiplier block (an ECP5 ``MULT18X18D``). Both give the same bits. Yosys maps a
        multiplication to a DSP block only where it sees one, so with ``"logic"`` it maps none.

    Members
    -------
    a : In(a_fmt.width)
    b : In(b_fmt.width)
    p : Out(out_fmt.width)
        ``mul(a, b)``, ``latency`` cycles after ``a`` and ``b``.
    """

    def __init__(self, a_fmt, b_fmt, out_fmt, *, product="logic"):
        self._a_fmt, self._b_fmt, self._out_fmt = map(format_by_name, (a_fmt, b_fmt, out_fmt))
        self._product = check_product(product)
        super().__init__({"a": In(self._a_fmt.width), "b": In(self._b_fmt.width),
                          "p": Out(self._out_fmt.width)})

    a_fmt = property(lambda self: self._a_fmt)
    b_fmt = property(lambda self: self._b_fmt)
    out_fmt = property(lambda self: self._out_fmt)
    product = property(lambda self: self._product)

    def _multiply(self, a, b):
        """The significand product ``a * b``, ``len(a) + len(b)`` bits wide."""
        if self._product == "dsp":
            return (a * b)[:len(a) + len(b)]
        return small_product(a, b)

    @property
    def exact(self):
        """Whether every product is exact in ``out_fmt`` short of underflow, so the unit needs
        no rounding and no overflow logic: the case of FP8 products into DLFLOAT16."""
        af, bf, of = self._a_fmt, self._b_fmt, self._out_fmt
        return (of.m >= af.m + bf.m + 1 and not of.subnormals
                and self._max_field() < of.max_finite_mag >> of.m)

    def _max_field(self):
        """The largest exponent field of a product (the normalisation carry included)."""
        af, bf, of = self._a_fmt, self._b_fmt, self._out_fmt
        emax = (af.max_finite_mag >> af.m) + (bf.max_finite_mag >> bf.m)
        return emax + of.bias - af.bias - bf.bias + 1

    def _operands(self):
        """Normalised significands and exponents of both operands, the product's sign and
        its special classes."""
        af, bf = self._a_fmt, self._b_fmt
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
        return sa, ea, sb, eb, ua.sign ^ ub.sign, zero, inf, nan

    def datapath(self, m, pipe):
        if self.exact:
            return self._exact_datapath(m, pipe)
        af, bf, of = self._a_fmt, self._b_fmt, self._out_fmt
        sa, ea, sb, eb, sign, zero, inf, nan = self._operands()
        # Fold the constant of the product exponent into the first operand's exponent here.
        ea = to_signed(ea) + (of.bias - af.bias - bf.bias + 1)
        s = pipe.next(sa=sa, ea=ea, sb=sb, eb=eb, sign=sign, zero=zero, inf=inf, nan=nan)
        # Both significands are normalised, so the product lies in [1, 4): a one-bit shift
        # normalises it. Its MSB (bit P-1) has the exponent ea + eb - bias_a - bias_b + 1.
        pw = len(s.sa) + len(s.sb)
        prod = self._multiply(s.sa, s.sb)
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

    def _exact_datapath(self, m, pipe):
        """Four stages, no rounding: every product fits the output's mantissa and can only
        leave its range downwards.

        Stage 1 normalises subnormal inputs; a normalised exponent is a function of that
        operand's bits alone (LUTs, no adder). Stage 2 forms the significand product (partial
        products in LUTs) and the exponent sum. Stage 3 normalises the product by one bit and
        adds that carry and the bias change to the exponent field in one adder. Stage 4
        flushes underflows to zero and selects the special results.
        """
        af, bf, of = self._a_fmt, self._b_fmt, self._out_fmt
        sa, ea, sb, eb, sign, zero, inf, nan = self._operands()
        s = pipe.next(fa=sa[:af.m], fb=sb[:bf.m],
                      ea=ea, eb=eb,
                      sign=sign, zero=zero, inf=inf, nan=nan)

        pw = af.m + bf.m + 2
        s = pipe.next(prod=self._multiply(Cat(s.fa, 1), Cat(s.fb, 1)),
                      esum=s.ea + to_signed(s.eb), sign=s.sign, zero=s.zero, inf=s.inf,
                      nan=s.nan)
        top = s.prod[pw - 1]
        frac = Mux(top, s.prod[:pw - 1], s.prod[:pw - 2] << 1)[:pw - 1]
        # The bias change rides on the normalisation carry: one adder for both.
        bias = of.bias - af.bias - bf.bias
        s = pipe.next(frac=Cat(Const(0, of.m - (pw - 1)), frac),
                      field=s.esum + Mux(top, bias + 1, bias),
                      sign=s.sign, zero=s.zero, inf=s.inf, nan=s.nan)

        # The zero code and everything below it flush to zero (no subnormals in out_fmt).
        under = s.field[-1] | ((s.field == 0) & ~s.frac.any())
        finite = Cat(s.frac, s.field[:of.e], s.sign)
        code = special_code(of, s.sign, zero=s.zero | under, inf=s.inf, nan=s.nan,
                            value=finite)
        return pipe.next(code=code).code, self.p
