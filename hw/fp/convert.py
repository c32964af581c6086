"""Format converter: rounds a code of one format into another.

Ref: docs/numerics.md section 3 (``convert``: saturation applies to finite values only).
"""

from amaranth.hdl import Cat, Const
from amaranth.lib.wiring import In, Out

from .common import Rounder, check_unit_rounding, guard_bits, normalize_input, unpack
from .format import Rounding, format_by_name
from .unit import PipelinedUnit

__all__ = ["FPConvert"]


class FPConvert(PipelinedUnit):
    """Pipelined converter ``r = convert(a, in_fmt, out_fmt, rounding, saturate)``.

    Parameters
    ----------
    in_fmt, out_fmt : FloatFormat
    rounding : str
        ``"rne"``, ``"rna"``, ``"rtz"`` or ``"sr"``.
    saturate : bool
        A finite value beyond the output range becomes the largest finite value (with
        ``rounding="rtz"`` it always does); Inf stays Inf (NaN in a format without Inf) and NaN
        stays NaN.
    rbits : int
        Random bits per stochastic rounding (1 to 32).

    Members
    -------
    a : In(in_fmt.width)
    rnd : In(rbits)
        Only when ``rounding == "sr"``.
    r : Out(out_fmt.width)
    """

    def __init__(self, in_fmt, out_fmt, rounding="rne", saturate=True, *, rbits=16):
        self._in_fmt, self._out_fmt = format_by_name(in_fmt), format_by_name(out_fmt)
        self._rounding = check_unit_rounding(rounding, rbits)
        self._saturate = bool(saturate)
        self._rbits = rbits
        ports = {"a": In(self._in_fmt.width), "r": Out(self._out_fmt.width)}
        if self._rounding is Rounding.SR:
            ports["rnd"] = In(rbits)
        super().__init__(ports)

    in_fmt = property(lambda self: self._in_fmt)
    out_fmt = property(lambda self: self._out_fmt)
    rounding = property(lambda self: self._rounding)
    saturate = property(lambda self: self._saturate)
    rbits = property(lambda self: self._rbits)

    def datapath(self, m, pipe):
        fi, fo, mode = self._in_fmt, self._out_fmt, self._rounding
        ua = unpack(fi, self.a)
        sig, exp = ua.sig, ua.exp
        if fi.subnormals:
            sig, exp = normalize_input(sig, exp)
        width = max(fi.m + 1, fo.m + 1 + guard_bits(mode, self._rbits) + 1)
        s = pipe.next(sig=Cat(Const(0, width - fi.m - 1), sig), exp=exp + (fo.bias - fi.bias),
                      sign=ua.sign, zero=ua.zero, inf=ua.inf, nan=ua.nan,
                      rnd=self.rnd if mode is Rounding.SR else None)
        rounder = Rounder(fo, mode, self._rbits, width, saturate=self._saturate)
        code, _ = rounder.stages(pipe, sig=s.sig, exp=s.exp, sign=s.sign, rnd=s.rnd,
                                 zero=s.zero, inf=s.inf, nan=s.nan)
        return code, self.r
