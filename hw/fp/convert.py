"""Format converter: rounds a code of one format into another.

Ref: docs/numerics.md section 3 (``convert``: saturation applies to finite values only).
"""

from amaranth.hdl import Cat, Const, Mux
from amaranth.lib.wiring import In, Out

from .common import Rounder, check_unit_rounding, guard_bits, normalize_input, unpack
from .format import Rounding, format_by_name
from .unit import PipelinedUnit

__all__ = ["FPConvert"]


class FPConvert(PipelinedUnit):
    """Pipelined converter ``r = convert(a, in_fmt, out_fmt, rounding, saturate)``.

    Parameters
    ----------
    in_fmt : FloatFormat
    out_fmt : FloatFormat or tuple of FloatFormat
        The output format; or several of one width (all with or all without subnormals), of
        which ``sel`` chooses one per operation: one converter for what would take one per
        format. A tuple of one format is that format.
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
    sel : In(range(len(out_fmt)))
        Only with several output formats: the index of this operation's in ``out_fmt``.
    r : Out(out_fmt.width)
    """

    def __init__(self, in_fmt, out_fmt, rounding="rne", saturate=True, *, rbits=16):
        self._in_fmt = format_by_name(in_fmt)
        listed = isinstance(out_fmt, (tuple, list))
        fmts = tuple(format_by_name(f) for f in (out_fmt if listed else (out_fmt,)))
        several = len(fmts) > 1
        if not fmts:
            raise ValueError("out_fmt must name at least one format")
        if len({f.width for f in fmts}) != 1 or len({f.subnormals for f in fmts}) != 1:
            raise ValueError("The output formats must have one width and all or none of them "
                             f"subnormals, not {', '.join(map(str, fmts))}")
        self._out_fmts = fmts
        self._out_fmt = fmts if several else fmts[0]
        self._rounding = check_unit_rounding(rounding, rbits)
        self._saturate = bool(saturate)
        self._rbits = rbits
        ports = {"a": In(self._in_fmt.width), "r": Out(fmts[0].width)}
        if self._rounding is Rounding.SR:
            ports["rnd"] = In(rbits)
        if several:
            ports["sel"] = In(range(len(fmts)))
        super().__init__(ports)

    in_fmt = property(lambda self: self._in_fmt)
    out_fmt = property(lambda self: self._out_fmt)
    #: The output formats as a tuple (one for a single format).
    out_fmts = property(lambda self: self._out_fmts)
    rounding = property(lambda self: self._rounding)
    saturate = property(lambda self: self._saturate)
    rbits = property(lambda self: self._rbits)

    def datapath(self, m, pipe):
        fi, fos, mode = self._in_fmt, self._out_fmts, self._rounding
        sel = self.sel if len(fos) > 1 else None
        ua = unpack(fi, self.a)
        sig, exp = ua.sig, ua.exp
        if fi.subnormals:
            sig, exp = normalize_input(sig, exp)
        width = max(fi.m + 1, max(fo.m for fo in fos) + 1 + guard_bits(mode, self._rbits) + 1)
        # The exponent rebiased for the selected format.
        offset = fos[0].bias - fi.bias
        for i, fo in enumerate(fos[1:], 1):
            offset = Mux(sel == i, fo.bias - fi.bias, offset)
        s = pipe.next(sig=Cat(Const(0, width - fi.m - 1), sig), exp=exp + offset,
                      sign=ua.sign, zero=ua.zero, inf=ua.inf, nan=ua.nan, sel=sel,
                      rnd=self.rnd if mode is Rounding.SR else None)
        rounder = Rounder(fos if len(fos) > 1 else fos[0], mode, self._rbits, width,
                          saturate=self._saturate)
        code, _ = rounder.stages(pipe, sig=s.sig, exp=s.exp, sign=s.sign, rnd=s.rnd,
                                 zero=s.zero, inf=s.inf, nan=s.nan, sel=s.sel)
        return code, self.r
