"""Building blocks shared by the floating-point units: unpacking, leading-zero count, the jamming
right shift, the pipelined two-operand add path and the rounder.

Ref: docs/numerics.md sections 1-3 and 7 (how the hardware rounds).

Every unit is built as one pipeline out of these blocks. Internally a finite value travels as a
significand ``sig`` of ``W`` bits, normalised so that its MSB is set (or the value is zero, or, for
formats with subnormals, it sits at the smallest exponent), and a signed *biased* exponent ``exp``
of that MSB: ``value = sig / 2**(W-1) * 2**(exp - bias)``. Bits that a right shift pushes out are
OR-ed ("jammed") into bit 0, which keeps the floor of the value at every higher bit position, so
rounding decisions above bit 0 stay exact.
"""

from types import SimpleNamespace

from amaranth.hdl import Cat, Const, Mux, Signal, signed

from ..common import delay
from .format import Rounding, Specials, check_rbits, rounding_by_name

__all__ = ["Pipeline", "to_signed", "unpack", "lzc", "shift_right_jam", "signed_width",
           "guard_bits", "Rounder", "add_path", "round_sum", "special_code", "normalize_input", "saturate_amount",
           "small_product", "check_unit_rounding"]


def check_unit_rounding(rounding, rbits):
    """Validate a unit's rounding mode and ``rbits``; returns the :class:`Rounding`."""
    mode = rounding_by_name(rounding)
    check_rbits(rbits)
    return mode


def to_signed(value):
    """``value`` as a signed value of the same number, zero-extending an unsigned one."""
    if isinstance(value, int):
        return Const(value, signed(max(1, value.bit_length() + 1)))
    if value.shape().signed:
        return value
    return Cat(value, Const(0, 1)).as_signed()


def signed_width(lo, hi):
    """Width of the smallest signed shape that holds every integer in ``[lo, hi]``."""
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi < (1 << (w - 1))):
        w += 1
    return w


def guard_bits(mode, rbits):
    """Bits a rounder needs right below the kept LSB to decide: ``rbits`` for stochastic
    rounding, the half bit otherwise (everything lower is OR-ed into a sticky bit)."""
    return rbits if mode is Rounding.SR else 1


class Pipeline:
    """Registers values between the stages of a fixed-latency pipeline.

    Datapath registers are ``reset_less``: a pipeline has no state worth resetting, and leaving
    them out of the reset tree saves routing.
    """

    def __init__(self, m):
        self._m = m
        self.stages = 0

    def next(self, **values):
        """Register every keyword value into the next stage; returns them as a namespace."""
        self.stages += 1
        out = {}
        for name, value in values.items():
            if value is None:
                out[name] = None
                continue
            if isinstance(value, int):
                value = Const(value)
            reg = Signal(value.shape(), name=f"p{self.stages}_{name}", reset_less=True)
            self._m.d.sync += reg.eq(value)
            out[name] = reg
        return SimpleNamespace(**out)

    def delay(self, value, n, name):
        """``value`` delayed by ``n`` cycles."""
        return delay(self._m, value, n, name)


def unpack(fmt, code):
    """Split a code into sign, biased exponent, significand (hidden bit included) and classes.

    The exponent of a subnormal (field 0 in a format with subnormals) is 1, its hidden bit 0.
    """
    m = fmt.m
    mag = code[:fmt.e + m]
    E = code[m:m + fmt.e]
    M = code[:m]
    if fmt.subnormals:
        hidden = E != 0
        exp = Mux(hidden, E, 1)
    else:
        hidden = mag != 0
        exp = E
    nan = Const(0)
    inf = Const(0)
    if fmt.specials is Specials.IEEE:
        top = E == fmt.exp_max_field
        nan = top & (M != 0)
        inf = top & (M == 0)
    elif fmt.specials in (Specials.FN, Specials.SINGLE):
        nan = mag == fmt.mag_mask
    return SimpleNamespace(sign=code[-1], exp=to_signed(exp), sig=Cat(M, hidden), mag=mag,
                           zero=mag == 0, nan=nan, inf=inf)


def lzc(value):
    """Leading-zero count of ``value`` as a balanced tree; ``len(value)`` when it is zero."""
    n = len(value)
    k = max(1, (n - 1).bit_length())
    # Pad below the LSB with ones so the tree never sees an all-zero input.
    padded = Cat(Const((1 << ((1 << k) - n)) - 1, (1 << k) - n), value)

    def tree(x):
        if len(x) == 1:
            return ~x[0], Const(0, 0)
        half = len(x) // 2
        zh, ch = tree(x[half:])
        zl, cl = tree(x[:half])
        return zh & zl, Cat(Mux(zh, cl, ch), zh)

    return tree(padded)[1]


def shift_right_jam(value, amount):
    """``value >> amount`` with every bit shifted out OR-ed into bit 0 of the result.

    Any ``amount`` of ``width`` or more shifts everything out; no comparison is needed, because
    the mask of lost bits is then all ones.
    """
    width = len(value)
    # Thermometer mask of the lost bits: bit i is lost when amount > i. Each bit is a compare
    # with a constant (one LUT for a small amount), not a carry chain.
    mask = Cat(*(amount > i for i in range(width)))
    sticky = (value & mask).any()
    return (value >> amount) | sticky


def saturate_amount(value, width, *, negative_max=True):
    """``value`` (signed) as an unsigned shift amount of ``bits(width)`` bits: values of
    ``2**bits`` or more become all ones, which shifts ``width`` bits out too; negative values
    become all ones as well, or 0 with ``negative_max=False``. Looking at the high bits costs
    one LUT level instead of a comparator."""
    bits = max(1, width.bit_length())
    value = to_signed(value)
    if len(value) <= bits:
        return Mux(value[-1], (1 << bits) - 1 if negative_max else 0, value[:bits])
    big = Mux(value[bits:].any(), (1 << bits) - 1, value[:bits])
    if negative_max:
        return big
    return Mux(value[-1], 0, big)


def small_product(a, b):
    """``a * b`` as a sum of shifted partial products, for significands of a few bits: Yosys
    maps a ``*`` to a DSP block, which is slower than a handful of LUTs at this size."""
    if len(b) > len(a):
        a, b = b, a
    total = Const(0, len(a) + len(b))
    for i in range(len(b)):
        total = total + Mux(b[i], a << i, 0)
    return total[:len(a) + len(b)]

def normalize_input(sig, exp):
    """Normalise a possibly subnormal significand from :func:`unpack`: shift its MSB to the top
    and lower the exponent. Returns ``(sig, exp)``; a zero significand stays zero.

    Only a subnormal (exponent 1, hidden bit 0) has leading zeros, so its new exponent is
    ``1 - lz``, a function of the count alone rather than a subtraction from ``exp``.
    """
    lz = lzc(sig)
    return (sig << lz)[:len(sig)], Mux(lz == 0, to_signed(exp), 1 - lz)


def special_code(fmt, sign, *, zero, inf, nan, value):
    """Select the output code: NaN, then Inf, then signed zero, else ``value``."""
    nan_code = fmt.nan_code if fmt.has_nan else fmt.max_finite_mag
    inf_code = Cat(Const(fmt.inf_mag if fmt.has_inf else fmt.max_finite_mag, fmt.e + fmt.m), sign)
    if not fmt.has_inf:
        nan = nan | inf
        inf = Const(0)
    return Mux(nan, nan_code, Mux(inf, inf_code, Mux(zero, Cat(Const(0, fmt.e + fmt.m), sign),
                                                     value)))


class Rounder:
    """The last stages of every unit: optional subnormal alignment, rounding, packing.

    Parameters
    ----------
    fmt : FloatFormat or tuple of FloatFormat
        Output format; or several of one width, all with or all without subnormals, one of
        which a signal chooses per operation (``sel`` of :meth:`stages`).
    mode : Rounding
    rbits : int
        Random bits consumed by stochastic rounding.
    width : int
        Width ``W`` of the incoming significand. It must hold the ``m + 1`` kept bits, the
        decision bits (:func:`guard_bits`) and one more bit below them for a jammed sticky bit.
    saturate : bool
        Overflow gives the largest finite value instead of Inf or NaN. Mode ``rtz`` always
        does so (docs/numerics.md section 2).
    """

    def __init__(self, fmt, mode, rbits, width, *, saturate=False):
        fmts = tuple(fmt) if isinstance(fmt, (tuple, list)) else (fmt,)
        assert fmts and len({f.width for f in fmts}) == 1, fmts
        assert len({f.subnormals for f in fmts}) == 1, fmts
        need = max(f.m for f in fmts) + 1 + guard_bits(mode, rbits) + 1
        assert width >= need, (width, need)
        self.fmts, self.mode, self.rbits, self.width, self.saturate = \
            fmts, mode, rbits, width, saturate
        self.fmt = fmts[0] if len(fmts) == 1 else fmts

    def _select(self, sel, values):
        """The value of the selected format among ``values`` (one per format)."""
        value = values[0]
        for i, v in enumerate(values[1:], 1):
            value = Mux(sel == i, v, value)
        return value

    def _up(self, kept, low, rnd, rna, rne):
        """Whether ``kept`` rounds up, ``low`` being the bits below it."""
        lsb = kept[0]
        if self.mode is Rounding.RNE:
            half = low[-1]
            sticky = low[:-1].any()
            up = half & (sticky | lsb)
            if rna is not None:
                up = Mux(rna, half, up)
        elif self.mode is Rounding.RNA:
            up = low[-1]
        elif self.mode is Rounding.RTZ:
            up = Const(0)
        else:
            t = low[-self.rbits:]
            up = (t + rnd[:self.rbits])[self.rbits]
            if rne is not None:
                # The decision bits and the jammed sticky bit below them hold everything that
                # nearest rounding looks at: the half bit is the top decision bit, and the
                # rest, sticky included, is zero exactly when the discarded part is.
                half = low[-1]
                sticky = low[:-1].any()
                up = Mux(rne, half & (sticky | lsb), up)
        return up

    def _code(self, fmt, *, hi, lo, lo_zero, lo_over, sign, zero, inf, nan):
        """The output code in ``fmt`` from the packed exponent ``hi`` and mantissa ``lo``."""
        m = fmt.m
        max_hi = fmt.max_finite_mag >> m
        under = hi[-1] | ((hi == 0) & lo_zero)
        over = ~hi[-1] & ((hi > max_hi) | ((hi == max_hi) & lo_over))
        mag_u = Cat(lo[:m], hi[:fmt.e])
        # Rounding toward zero never makes an infinity of a finite value (IEEE 754 7.4): its
        # overflow is the largest finite value, whatever the format and ``saturate``.
        if self.saturate or self.mode is Rounding.RTZ or fmt.specials is Specials.NONE:
            mag_u = Mux(over, fmt.max_finite_mag, mag_u)
        elif fmt.has_inf:
            mag_u = Mux(over, fmt.inf_mag, mag_u)
        else:
            nan = nan | over
        finite = Cat(mag_u, sign)
        return special_code(fmt, sign, zero=zero | under, inf=inf, nan=nan, value=finite)

    def stages(self, pipe, *, sig, exp, sign, rnd, zero, inf, nan, rna=None, rne=None,
               sel=None):
        """Build the stages; ``exp`` is the signed biased exponent (of the selected format) of
        ``sig``'s MSB, which is set unless the value is zero. ``rna``, for mode ``rne`` only,
        is a signal that selects ties away from zero per operation; ``rne``, for mode ``sr``
        only, one that selects nearest rounding (ties to even) per operation, ``rnd`` then
        being ignored; ``sel``, with several formats only, the index of the output format.
        Returns the output code (registered) and the latency added."""
        fmts, W = self.fmts, self.width
        assert rna is None or self.mode is Rounding.RNE, self.mode
        assert rne is None or self.mode is Rounding.SR, self.mode
        assert (sel is None) == (len(fmts) == 1), "sel selects among several formats"
        start = pipe.stages
        if fmts[0].subnormals:
            # Below the smallest exponent the value is shifted right onto the subnormal grid:
            # the shift amount in one stage, the shift itself in the next.
            short = 1 - to_signed(exp)
            s = pipe.next(sig=sig, amount=saturate_amount(short, W, negative_max=False),
                          exp=Mux(~short[-1] & short.any(), 1, to_signed(exp)),
                          sign=sign, rnd=rnd, rna=rna, rne=rne, sel=sel, zero=zero, inf=inf,
                          nan=nan)
            s = pipe.next(sig=shift_right_jam(s.sig, s.amount), exp=s.exp, sign=s.sign,
                          rnd=s.rnd, rna=s.rna, rne=s.rne, sel=s.sel, zero=s.zero, inf=s.inf,
                          nan=s.nan)
            sig, exp, sign, rnd, zero, inf, nan = s.sig, s.exp, s.sign, s.rnd, s.zero, s.inf, s.nan
            rna, rne, sel = s.rna, s.rne, s.sel

        # Per format: the kept bits and whether they round up; the selected pair is added.
        kept = [sig[W - 1 - f.m:] for f in fmts]
        ups = [self._up(k, sig[:W - 1 - f.m], rnd, rna, rne) for k, f in zip(kept, fmts)]
        width = max(len(k) for k in kept)
        s = pipe.next(kept=(self._select(sel, kept) + self._select(sel, ups))[:width + 1],
                      eb=to_signed(exp) - 1, sign=sign, sel=sel, zero=zero, inf=inf, nan=nan)

        # The magnitude code is Cat(kept[:m], eb + kept[m:]) with eb = exp - 1: the exponent
        # field adds to the kept bits above the binary point, so a carry out of the mantissa
        # and a subnormal's missing hidden bit both come out right. The sum gets a stage of its
        # own; the range checks on it are then a sign bit and comparisons with constants.
        m_max = max(f.m for f in fmts)
        los = [s.kept[:f.m] for f in fmts]
        s = pipe.next(hi=s.eb + self._select(s.sel, [s.kept[f.m:] for f in fmts]),
                      lo=self._select(s.sel, los),
                      lo_zero=self._select(s.sel, [~lo.any() for lo in los]),
                      lo_over=self._select(s.sel, [
                          lo > (f.max_finite_mag & ((1 << f.m) - 1)) for lo, f in zip(los, fmts)]),
                      sign=s.sign, sel=s.sel, zero=s.zero, inf=s.inf, nan=s.nan)
        assert len(s.lo) == m_max
        code = self._select(s.sel, [
            self._code(f, hi=s.hi, lo=s.lo, lo_zero=s.lo_zero, lo_over=s.lo_over, sign=s.sign,
                       zero=s.zero, inf=s.inf, nan=s.nan) for f in fmts])
        out = pipe.next(code=code)
        return out.code, pipe.stages - start


def add_path(pipe, *, x, y, exp_lo, exp_hi, guard, x_big=None):
    """Pipelined exact-enough sum of two normalised operands, up to normalisation.

    ``x`` and ``y`` are namespaces with ``sign``, ``sig`` (MSB set unless zero) and signed biased
    ``exp``; extra fields named in ``carry`` of each stage ride along. ``x_big``, when given, says
    ``|x| >= |y|`` (the adder takes it from the codes); otherwise it is computed here.

    Returns a namespace with ``sig`` (``W`` bits, MSB set unless zero), ``exp``, ``sign``,
    ``zero`` (exact zero sum) and the registered ``extra`` fields; plus ``width``.
    """
    wmax = max(len(x.sig), len(y.sig))
    wa = wmax + guard + 3
    ws = wa + 1
    ew = signed_width(exp_lo - ws - 2, exp_hi + 2)

    def top(sig):
        return Cat(Const(0, wa - len(sig)), sig)

    xs, ys = top(x.sig), top(y.sig)
    dx = to_signed(x.exp) - to_signed(y.exp)
    dy = to_signed(y.exp) - to_signed(x.exp)
    if x_big is None:
        # Order by (exponent, significand); a zero operand has the smallest key. The wide
        # comparison gets a stage of its own, the swap happens in the next one.
        off = -exp_lo + 1
        kx = Cat(xs, Mux(x.sig.any(), (x.exp + off).as_unsigned(), 0))
        ky = Cat(ys, Mux(y.sig.any(), (y.exp + off).as_unsigned(), 0))
        s = pipe.next(x_big=kx >= ky, xs=xs, ys=ys, dx=dx, dy=dy, x_exp=x.exp, y_exp=y.exp,
                      x_sign=x.sign, y_sign=y.sign, **x.extra)
        x_big, xs, ys, dx, dy = s.x_big, s.xs, s.ys, s.dx, s.dy
        x = SimpleNamespace(sign=s.x_sign, exp=s.x_exp,
                            extra={k: getattr(s, k) for k in x.extra})
        y = SimpleNamespace(sign=s.y_sign, exp=s.y_exp)
    d = Mux(x_big, dx, dy)
    s = pipe.next(big=Mux(x_big, xs, ys), small=Mux(x_big, ys, xs), d=saturate_amount(d, wa),
                  exp=Mux(x_big, x.exp, y.exp), sign=Mux(x_big, x.sign, y.sign),
                  sub=x.sign ^ y.sign, zsign=x.sign & y.sign, **x.extra)
    extra_names = list(x.extra)

    def extras(ns):
        return {k: getattr(ns, k) for k in extra_names}

    s = pipe.next(big=s.big, small=shift_right_jam(s.small, s.d), exp=s.exp, sign=s.sign,
                  sub=s.sub, zsign=s.zsign, **extras(s))
    total = Mux(s.sub, s.big - s.small, s.big + s.small)[:ws]
    s = pipe.next(sum=total, exp=to_signed(s.exp) + 1, sign=s.sign, zsign=s.zsign,
                  **extras(s))
    lz = lzc(s.sum)
    s = pipe.next(sum=s.sum, lz=lz, zero=~s.sum.any(), exp=s.exp, sign=s.sign, zsign=s.zsign,
                  **extras(s))
    norm = (s.sum << s.lz)[:ws]
    exp = Signal(signed(ew), name="add_exp_norm")
    pipe._m.d.comb += exp.eq(s.exp - s.lz)
    s = pipe.next(sig=norm, exp=exp, sign=Mux(s.zero, s.zsign, s.sign), zero=s.zero,
                  **extras(s))
    return SimpleNamespace(sig=s.sig, exp=s.exp, sign=s.sign, zero=s.zero, extra=extras(s),
                           width=ws)


def round_sum(pipe, fmt, mode, rbits, r):
    """Round the result of :func:`add_path` whose ``extra`` fields carry the special-case flags
    ``nan``, ``inf``, ``isign`` (the sign of an infinite result) and, for stochastic rounding,
    ``rnd`` and optionally ``rne`` (a runtime choice of nearest rounding instead); for a runtime
    choice between ``rne`` and ``rna``, ``rna``. Returns the registered output code."""
    inf = r.extra["inf"]
    code, _ = Rounder(fmt, mode, rbits, r.width).stages(
        pipe, sig=r.sig, exp=r.exp, sign=Mux(inf, r.extra["isign"], r.sign),
        rnd=r.extra.get("rnd"), rna=r.extra.get("rna"), rne=r.extra.get("rne"), zero=r.zero,
        inf=inf, nan=r.extra["nan"])
    return code
