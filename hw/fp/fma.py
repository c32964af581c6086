"""Fused multiply-add in one format: ``a * b + c`` with a single rounding.

Ref: docs/numerics.md sections 3 (``fma``) and 5 (the weight update is three FMAs rounded
``sr``).
"""

from types import SimpleNamespace

from amaranth.hdl import Mux
from amaranth.lib.wiring import In, Out

from .common import (add_path, round_sum, check_unit_rounding, guard_bits, normalize_input,
                     to_signed, unpack)
from .format import Rounding, format_by_name
from .unit import PipelinedUnit

__all__ = ["FPFMA"]


class FPFMA(PipelinedUnit):
    """Pipelined fused multiply-add ``r = fma(a, b, c)``.

    Stages: (subnormal normalisation); significand product; one-bit product normalisation;
    then the add path of :class:`~hw.fp.adder.FPAdder` with the exact ``2m + 2``-bit product as
    one operand, so nothing is rounded before the final rounding.

    Parameters
    ----------
    fmt : FloatFormat
        Operand and result format.
    rounding : str
        ``"rne"``, ``"rna"``, ``"rtz"`` or ``"sr"``.
    rbits : int
        Random bits per stochastic rounding (1 to 32).
    runtime_rne : bool
        With ``rounding="sr"``: add an ``rne`` input that selects nearest rounding (ties to
        even) per operation instead (the weight update's ablation mode).

    Members
    -------
    a, b, c : In(fmt.width)
    rnd : In(rbits)
        Random integer for stochastic rounding, applied with the operands; only when
        ``rounding == "sr"``.
    rne : In(1)
        Only with ``runtime_rne``: 1 rounds this operation ``rne`` (``rnd`` is then ignored),
        0 ``sr``. Applied with the operands.
    r : Out(fmt.width)
        ``fma(a, b, c)``, ``latency`` cycles after the operands.
    """

    def __init__(self, fmt, rounding="rne", *, rbits=16, runtime_rne=False):
        self._fmt = format_by_name(fmt)
        self._rounding = check_unit_rounding(rounding, rbits)
        self._rbits = rbits
        self._runtime_rne = bool(runtime_rne)
        if self._runtime_rne and self._rounding is not Rounding.SR:
            raise ValueError(f"runtime_rne needs rounding 'sr', not "
                             f"{self._rounding.value!r}")
        w = self._fmt.width
        ports = {"a": In(w), "b": In(w), "c": In(w), "r": Out(w)}
        if self._rounding is Rounding.SR:
            ports["rnd"] = In(rbits)
        if self._runtime_rne:
            ports["rne"] = In(1)
        super().__init__(ports)

    fmt = property(lambda self: self._fmt)
    rounding = property(lambda self: self._rounding)
    rbits = property(lambda self: self._rbits)

    def datapath(self, m, pipe):
        fmt, mode = self._fmt, self._rounding
        ua, ub, uc = unpack(fmt, self.a), unpack(fmt, self.b), unpack(fmt, self.c)
        psign = ua.sign ^ ub.sign
        pinf = ua.inf | ub.inf
        nan = (ua.nan | ub.nan | uc.nan | (ua.inf & ub.zero) | (ua.zero & ub.inf)
               | (pinf & uc.inf & (psign != uc.sign)))
        inf = pinf | uc.inf
        isign = Mux(pinf, psign, uc.sign)
        rnd = self.rnd if mode is Rounding.SR else None
        rne = self.rne if self._runtime_rne else None
        sa, ea, sb, eb, sc, ec = ua.sig, ua.exp, ub.sig, ub.exp, uc.sig, uc.exp
        exp_lo = 0
        if fmt.subnormals:
            sa, ea = normalize_input(sa, ea)
            sb, eb = normalize_input(sb, eb)
            sc, ec = normalize_input(sc, ec)
            exp_lo = 1 - fmt.m
        s = pipe.next(sa=sa, ea=ea, sb=sb, eb=eb, sc=sc, ec=ec, psign=psign, csign=uc.sign,
                      nan=nan, inf=inf, isign=isign, rnd=rnd, rne=rne)
        # The product of two normalised significands lies in [1, 4); its bit 2m+1 has the
        # exponent ea + eb - bias + 1.
        s = pipe.next(prod=s.sa * s.sb, pexp=to_signed(s.ea) + s.eb + (1 - fmt.bias),
                      sc=s.sc, ec=s.ec, psign=s.psign, csign=s.csign, nan=s.nan, inf=s.inf,
                      isign=s.isign, rnd=s.rnd, rne=s.rne)
        # The product is normalised in a stage of its own: the sum's ordering of its operands
        # (a wide comparison) follows.
        pw = len(s.prod)
        top = s.prod[pw - 1]
        s = pipe.next(psig=Mux(top, s.prod, s.prod << 1)[:pw],
                      pexp=Mux(top, s.pexp, s.pexp - 1), sc=s.sc, ec=s.ec, psign=s.psign,
                      csign=s.csign, nan=s.nan, inf=s.inf, isign=s.isign, rnd=s.rnd, rne=s.rne)
        extra = {"nan": s.nan, "inf": s.inf, "isign": s.isign}
        for name in ("rnd", "rne"):
            if getattr(s, name) is not None:
                extra[name] = getattr(s, name)
        x = SimpleNamespace(sign=s.psign, sig=s.psig, exp=s.pexp, extra=extra)
        y = SimpleNamespace(sign=s.csign, sig=s.sc, exp=s.ec, extra={})
        guard = guard_bits(mode, self._rbits)
        r = add_path(pipe, x=x, y=y, exp_lo=2 * exp_lo - fmt.bias - 1,
                     exp_hi=2 * fmt.exp_max_field - fmt.bias + 1, guard=guard)
        code = round_sum(pipe, fmt, mode, self._rbits, r)
        return code, self.r
