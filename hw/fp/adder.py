"""Floating-point adder in one format.

Ref: docs/numerics.md section 3 (``add``: exact sum, one rounding; signed zeros; specials).
"""

from amaranth.hdl import Cat, Const, Mux
from amaranth.lib.wiring import In, Out

from .common import (check_unit_rounding, guard_bits, lzc, shift_right_jam, signed_width,
                     special_code, to_signed, unpack)
from .format import Rounding, Specials, format_by_name
from .unit import PipelinedUnit

__all__ = ["FPAdder"]


def _above(value, const):
    """Whether unsigned ``value > const``, as logic on the bits rather than a carry chain:
    a comparison with a constant is a few LUTs."""
    if const >> len(value):
        return Const(0)
    result = Const(0)
    for i in range(len(value)):
        result = (value[i] & result) if (const >> i) & 1 else (value[i] | result)
    return result


def _equal(value, const):
    """Whether unsigned ``value == const``."""
    if const >> len(value):
        return Const(0)
    return value == const


class FPAdder(PipelinedUnit):
    """Pipelined adder ``s = add(a, b)``.

    Stages: magnitude comparison and both exponent differences; swap; alignment shift with
    sticky jam; add or subtract; leading-zero count; (with subnormals: the count limited by the
    exponent); normalisation shift; rounding increment with the range checks; specials and
    pack. Subnormal operands are not normalised and a subnormal sum is exact, so no stage
    shifts onto the subnormal grid.

    Parameters
    ----------
    fmt : FloatFormat
        Operand and result format.
    rounding : str
        ``"rne"``, ``"rna"``, ``"rtz"`` or ``"sr"``.
    rbits : int
        Random bits per stochastic rounding (1 to 32).
    runtime_rna : bool
        With ``rounding="rne"``: add an ``rna`` input that selects ties away from zero per
        operation (the GEMM engine's runtime accumulation rounding).

    Members
    -------
    a, b : In(fmt.width)
    rnd : In(rbits)
        Random integer for stochastic rounding, applied with ``a`` and ``b``; only when
        ``rounding == "sr"``.
    rna : In(1)
        Only with ``runtime_rna``: 1 rounds this operation ``rna``, 0 ``rne``.
    s : Out(fmt.width)
        ``add(a, b)``, ``latency`` cycles after the operands.
    """

    def __init__(self, fmt, rounding="rne", *, rbits=16, runtime_rna=False):
        self._fmt = format_by_name(fmt)
        self._rounding = check_unit_rounding(rounding, rbits)
        self._rbits = rbits
        self._runtime_rna = bool(runtime_rna)
        if self._runtime_rna and self._rounding is not Rounding.RNE:
            raise ValueError(f"runtime_rna needs rounding 'rne', not "
                             f"{self._rounding.value!r}")
        ports = {"a": In(self._fmt.width), "b": In(self._fmt.width), "s": Out(self._fmt.width)}
        if self._rounding is Rounding.SR:
            ports["rnd"] = In(rbits)
        if self._runtime_rna:
            ports["rna"] = In(1)
        super().__init__(ports)

    fmt = property(lambda self: self._fmt)
    rounding = property(lambda self: self._rounding)
    rbits = property(lambda self: self._rbits)

    def datapath(self, m, pipe):
        fmt, mode = self._fmt, self._rounding
        e, mb = fmt.e, fmt.m
        p = mb + 1
        guard = guard_bits(mode, self._rbits)
        # Below the aligned significands: the decision bits of the rounding, one bit for the
        # normalisation shift after a cancelling subtraction, and a jammed sticky bit.
        wa = p + guard + 2
        ws = wa + 1                                   # the sum, with its carry bit
        ua, ub = unpack(fmt, self.a), unpack(fmt, self.b)
        nan = ua.nan | ub.nan | (ua.inf & ub.inf & (ua.sign != ub.sign))
        inf = ua.inf | ub.inf
        rnd = self.rnd if mode is Rounding.SR else None
        rna = self.rna if self._runtime_rna else None

        # Order the operands. Magnitude codes order finite values, subnormals included, so
        # the larger operand also has the larger exponent. A subnormal is not normalised: it
        # enters with exponent 1 and hidden bit 0, on the grid of the smallest normal binade.
        # The sign of ea - eb picks the larger exponent and the difference that is not
        # negative (both choices agree when the exponents are equal) without waiting for the
        # wide comparison; both differences, saturated to the shift range, are registered.
        # An infinite operand is the larger one (the sum of two of opposite signs is NaN),
        # so the larger operand's sign is that of an infinite result too.
        ea, eb = ua.exp.as_unsigned()[:e], ub.exp.as_unsigned()[:e]
        dbits = max(1, wa.bit_length())

        def saturate(diff):
            diff = diff[:e]
            if e <= dbits:
                return diff
            return Mux(diff[dbits:].any(), (1 << dbits) - 1, diff[:dbits])

        dab = ea - eb
        s = pipe.next(a_big=ua.mag >= ub.mag, sa=ua.sig, sb=ub.sig, exp=Mux(dab[-1], eb, ea),
                      dab=saturate(dab), dba=saturate(eb - ea), b_exp=dab[-1], a_sign=ua.sign,
                      sub=ua.sign ^ ub.sign, nan=nan, inf=inf, rnd=rnd, rna=rna)

        def ride(ns, *names):
            return {k: getattr(ns, k) for k in ("nan", "inf", "rnd", "rna", *names)}

        # Swap: the larger significand, the smaller one and their distance.
        s = pipe.next(big=Mux(s.a_big, s.sa, s.sb), small=Mux(s.a_big, s.sb, s.sa),
                      d=Mux(s.b_exp, s.dba, s.dab), sign=s.a_sign ^ (s.sub & ~s.a_big),
                      **ride(s, "exp", "sub"))

        # Align the smaller significand; every bit shifted out is jammed into bit 0.
        small = shift_right_jam(Cat(Const(0, wa - p), s.small), s.d)
        s = pipe.next(big=s.big, small=small, **ride(s, "exp", "sign", "sub"))

        # Add or subtract in one adder: for a subtraction the aligned significand is inverted
        # and the 1 of the two's complement enters through an extra low bit, whose own sum is
        # dropped.
        big = Cat(Const(0, wa - p), s.big, Const(0, 1))
        small = Cat(s.small, Const(0, 1)) ^ s.sub.replicate(ws)
        total = (Cat(s.sub, big) + Cat(s.sub, small))[1:ws + 1]
        s = pipe.next(sum=total, **ride(s, "exp", "sign", "sub"))

        # Count the leading zeros. An exact zero sum is +0 unless both operands are negative
        # (then both have the larger one's sign).
        zero = ~s.sum.any()
        s = pipe.next(sum=s.sum, shift=lzc(s.sum), zero=zero, sign=s.sign & ~(zero & s.sub),
                      **ride(s, "exp"))
        if fmt.subnormals:
            # The shift stops where the exponent reaches 1: a sum of two values on the
            # subnormal grid is on that grid, so a subnormal result is exact and needs no shift
            # to the right. The carry bit has exponent exp + 1, so the shift may go up to exp.
            s = pipe.next(sum=s.sum, shift=Mux(s.shift > s.exp, s.exp, s.shift),
                          **ride(s, "exp", "zero", "sign"))

        # Normalise; the exponent of the MSB goes down by the shift.
        norm = (s.sum << s.shift)[:ws]
        if fmt.subnormals:
            exp = (s.exp + 1 - s.shift)[:e + 1]       # from 1 to 2**e
        else:
            ew = signed_width(1 - ws, 1 << e)
            exp = (to_signed(s.exp) + 1 - to_signed(s.shift))[:ew].as_signed()
        # Below the kept bits only the decision bits and whether anything lower is set count.
        low = norm[:ws - p]
        s = pipe.next(kept=norm[ws - p:], dec=low[-guard:], sticky=low[:-guard].any(), exp=exp,
                      **ride(s, "zero", "sign"))

        # Round. The magnitude code is Cat(mantissa, exponent field) + up: a carry
        # out of the mantissa moves into the exponent field by itself. A result without its
        # hidden bit is subnormal, with exponent 1 and field 0.
        kept, lsb, half, sticky = s.kept, s.kept[0], s.dec[-1], s.sticky
        if mode is Rounding.RNE:
            up = half & (sticky | lsb)
            if s.rna is not None:
                up = Mux(s.rna, half, up)
        elif mode is Rounding.RNA:
            up = half
        elif mode is Rounding.RTZ:
            up = Const(0)
        else:
            up = (s.dec + s.rnd[:self._rbits])[self._rbits]
        # The range checks look at the code before the increment, in parallel with it: a
        # result above the largest finite magnitude M is one above it already or one at M that
        # rounds up; without subnormals, one at zero or below that does not round up to the
        # smallest normal value underflows.
        maxf = fmt.max_finite_mag
        if fmt.subnormals:
            pre = Cat(kept[:mb], s.exp[0] & kept[-1], s.exp[1:])
            over = _above(pre, maxf) | (_equal(pre, maxf) & up)
            under = Const(0)
        else:
            pre = Cat(kept[:mb], s.exp)
            neg = pre[-1]
            over = ~neg & (_above(pre[:-1], maxf) | (_equal(pre[:-1], maxf) & up))
            under = neg | (~pre.any() & ~up)
        # Rounding toward zero never makes an infinity of a finite value (IEEE 754 7.4): its
        # overflow gives the largest finite value, as in a format without specials.
        zero, nan, inf, sat = s.zero | under, s.nan, s.inf, Const(0)
        if mode is Rounding.RTZ or fmt.specials is Specials.NONE:
            sat = over
        elif fmt.has_inf:
            inf = inf | over
        else:
            nan = nan | over
        s = pipe.next(mag=(pre + up)[:e + mb], sat=sat, zero=zero, nan=nan, inf=inf,
                      sign=s.sign)
        mag = Mux(s.sat, maxf, s.mag)
        code = special_code(fmt, s.sign, zero=s.zero, inf=s.inf, nan=s.nan,
                            value=Cat(mag, s.sign))
        return pipe.next(code=code).code, self.s
