"""Floating-point adder in one format.

Ref: docs/numerics.md section 3 (``add``: exact sum, one rounding; signed zeros; specials).
"""

from types import SimpleNamespace

from amaranth.hdl import Mux
from amaranth.lib.wiring import In, Out

from .common import (add_path, round_sum, check_unit_rounding, guard_bits, normalize_input,
                     unpack)
from .format import Rounding, format_by_name
from .unit import PipelinedUnit

__all__ = ["FPAdder"]


class FPAdder(PipelinedUnit):
    """Pipelined adder ``s = add(a, b)``.

    Stages: operand order and exponent difference; alignment shift with sticky jam; add or
    subtract; leading-zero count; normalisation shift; (subnormal alignment); round; pack.

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
        ua, ub = unpack(fmt, self.a), unpack(fmt, self.b)
        nan = ua.nan | ub.nan | (ua.inf & ub.inf & (ua.sign != ub.sign))
        inf = ua.inf | ub.inf
        isign = Mux(ua.inf, ua.sign, ub.sign)
        # Magnitude codes order finite values, subnormals included.
        a_big = ua.mag >= ub.mag
        rnd = self.rnd if mode is Rounding.SR else None
        rna = self.rna if self._runtime_rna else None
        sa, ea, sb, eb = ua.sig, ua.exp, ub.sig, ub.exp
        exp_lo = 0
        if fmt.subnormals:
            sa, ea = normalize_input(sa, ea)
            sb, eb = normalize_input(sb, eb)
            exp_lo = 1 - fmt.m
            s = pipe.next(sa=sa, ea=ea, sb=sb, eb=eb, a_sign=ua.sign, b_sign=ub.sign,
                          a_big=a_big, nan=nan, inf=inf, isign=isign, rnd=rnd, rna=rna)
            sa, ea, sb, eb, a_big = s.sa, s.ea, s.sb, s.eb, s.a_big
            sign_a, sign_b = s.a_sign, s.b_sign
            nan, inf, isign, rnd, rna = s.nan, s.inf, s.isign, s.rnd, s.rna
        else:
            sign_a, sign_b = ua.sign, ub.sign
        extra = {"nan": nan, "inf": inf, "isign": isign}
        for name, value in (("rnd", rnd), ("rna", rna)):
            if value is not None:
                extra[name] = value
        x = SimpleNamespace(sign=sign_a, sig=sa, exp=ea, extra=extra)
        y = SimpleNamespace(sign=sign_b, sig=sb, exp=eb, extra={})
        guard = guard_bits(mode, self._rbits)
        r = add_path(pipe, x=x, y=y, exp_lo=exp_lo, exp_hi=fmt.exp_max_field, guard=guard,
                     x_big=a_big)
        code = round_sum(pipe, fmt, mode, self._rbits, r)
        return code, self.s
