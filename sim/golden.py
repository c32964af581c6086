"""Bit-exact NumPy golden model of the accelerator's arithmetic.

Ref: docs/numerics.md sections 1-5.

Every function works on arrays of codes (``uint8`` for FP8 formats, ``uint16`` for 16-bit formats,
``uint32`` for BINARY32) and is vectorised: there is no Python loop over elements. Internally a
finite value is an exact triple ``(sign, sig, exp)`` meaning ``(-1)**sign * sig * 2**exp`` with
``sig`` a non-negative ``int64``. Sums are formed with both significands normalised to bit
:data:`_TOP` and the smaller one shifted right with its lost bits "jammed" (OR-ed) into bit 0;
that keeps at least ``58 - m`` exact bits below the result's last kept bit, more than the
``rbits + 1`` that stochastic rounding needs (``rbits <= 32``).
"""

import numpy as np

from fp8accel.hw.fp.format import (FloatFormat, Rounding, Specials, E5M2, E4M3, DLFLOAT16, BINARY16,
                          BFLOAT16, BINARY32, PRESETS, FP8_FORMATS, format_by_name,
                          rounding_by_name, check_rbits)

__all__ = [
    "FloatFormat", "Rounding", "Specials",
    "E5M2", "E4M3", "DLFLOAT16", "BINARY16", "BFLOAT16", "BINARY32", "PRESETS",
    "decode", "encode", "mul", "add", "fma", "convert", "gemm", "sgd_update",
    "xorshift32", "code_dtype", "mul_table",
]

# Normalised position of a significand's MSB before an addition. Two such numbers sum to less
# than 2**62, so int64 never overflows.
_TOP = 60

# Value classes returned by _unpack.
_ZERO, _FINITE, _INF, _NAN = 0, 1, 2, 3


def code_dtype(fmt):
    """The unsigned NumPy dtype that holds codes of ``fmt``."""
    return np.dtype(np.uint8 if fmt.width <= 8 else np.uint16 if fmt.width <= 16 else np.uint32)


def _codes(x, fmt, what="codes"):
    arr = np.asarray(x)
    if arr.dtype.kind not in "ui":
        raise TypeError(f"{what} must be an integer array of {fmt} codes, not {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= (1 << fmt.width)):
        raise ValueError(f"{what} out of range for the {fmt.width}-bit format {fmt}")
    return arr


def _msb(x):
    """Index of the most significant set bit of each positive element of ``x`` (0 for 0)."""
    y = np.asarray(x, np.int64)
    r = np.zeros(y.shape, np.int64)
    for s in (32, 16, 8, 4, 2, 1):
        big = y >= (np.int64(1) << s)
        r += np.where(big, s, 0)
        y = np.where(big, y >> s, y)
    return r


def _unpack(codes, fmt):
    """Split codes into ``(sign, sig, exp, cls)``; value ``(-1)**sign * sig * 2**exp``."""
    c = np.asarray(codes, np.int64)
    m = fmt.m
    sign = (c >> (fmt.e + m)) & 1
    mag = c & fmt.mag_mask
    E = mag >> m
    M = mag & ((1 << m) - 1)
    if fmt.subnormals:
        sig = np.where(E == 0, M, M | (1 << m))
        exp = np.maximum(E, 1) - fmt.bias - m
    else:
        sig = np.where(mag == 0, 0, M | (1 << m))
        exp = E - fmt.bias - m
    cls = np.where(mag == 0, _ZERO, _FINITE)
    if fmt.specials is Specials.IEEE:
        top = E == fmt.exp_max_field
        cls = np.where(top & (M == 0), _INF, cls)
        cls = np.where(top & (M != 0), _NAN, cls)
    elif fmt.specials in (Specials.FN, Specials.SINGLE):
        cls = np.where(mag == fmt.mag_mask, _NAN, cls)
    sig = np.where(cls == _FINITE, sig, 0)
    return sign, sig.astype(np.int64), exp.astype(np.int64), cls


def _round(sign, sig, exp, fmt, mode, rnd=None, rbits=16, saturate=False):
    """Round the exact value ``(-1)**sign * sig * 2**exp`` to a code of ``fmt``.

    docs/numerics.md section 2: an overflow gives the largest finite value with ``saturate``, in
    mode ``rtz`` and in a format without specials, otherwise Inf or NaN. ``sig`` must be positive
    and below ``2**62``; if bit 0 of ``sig`` is a jammed sticky bit it must lie more than
    ``rbits`` bits below the kept LSB (see module doc).
    """
    m = fmt.m
    msb = _msb(sig)
    qe = msb + exp - m                                 # step 2: exponent of ulp(x)
    if fmt.subnormals:
        qe = np.maximum(qe, 1 - fmt.bias - m)
    shift = qe - exp                                   # bits of sig below the kept LSB
    s1 = np.clip(shift, 1, 62)
    exact = shift <= 0
    kept = np.where(exact, sig << np.clip(-shift, 0, 62),
                    np.where(shift > 62, 0, sig >> s1))
    rem = np.where(exact, 0, np.where(shift > 62, sig, sig - (kept << s1)))
    half = np.where(shift > 62, np.int64(1) << 62, np.int64(1) << (s1 - 1))
    if mode is Rounding.RNE:
        up = (rem > half) | ((rem == half) & ((kept & 1) == 1))
    elif mode is Rounding.RNA:
        up = rem >= half
    elif mode is Rounding.RTZ:
        up = np.zeros(sig.shape, bool)
    else:
        if rnd is None:
            raise ValueError("Stochastic rounding needs the random integers 'rnd'")
        r = np.broadcast_to(np.asarray(rnd, np.int64) & ((1 << rbits) - 1), sig.shape)
        t = np.where(shift >= rbits,
                     np.where(shift - rbits > 62, 0, rem >> np.clip(shift - rbits, 0, 62)),
                     rem << np.clip(rbits - shift, 0, 62))
        up = (t + r) >= (np.int64(1) << rbits)
    up &= ~exact
    kept = kept + up
    # Magnitude code; a carry out of the mantissa moves into the exponent field by itself.
    eb = qe + m + fmt.bias - 1
    mag = eb * (1 << m) + kept
    under = mag <= 0                                   # step 5: zero code or below
    over = mag > fmt.max_finite_mag
    mag = np.where(under, 0, mag)
    nan = np.zeros(sig.shape, bool)
    # Rounding toward zero never produces an infinity from a finite value (IEEE 754 7.4): its
    # overflow gives the largest finite value, in every format and whatever ``saturate`` says.
    if saturate or mode is Rounding.RTZ or fmt.specials is Specials.NONE:
        mag = np.where(over, fmt.max_finite_mag, mag)
    elif fmt.has_inf:
        mag = np.where(over, fmt.inf_mag, mag)
    else:
        nan = over
    code = (np.asarray(sign, np.int64) << (fmt.e + m)) | mag
    return np.where(nan, fmt.nan_code if fmt.has_nan else 0, code)


def _finish(code, cls, sign, fmt):
    """Apply special results: ``cls`` is the class of the exact result."""
    zero = np.asarray(sign, np.int64) << (fmt.e + fmt.m)
    code = np.where(cls == _ZERO, zero, code)
    if fmt.has_inf:
        inf = (np.asarray(sign, np.int64) << (fmt.e + fmt.m)) | fmt.inf_mag
        code = np.where(cls == _INF, inf, code)
        code = np.where(cls == _NAN, fmt.nan_code, code)
    elif fmt.has_nan:
        code = np.where((cls == _INF) | (cls == _NAN), fmt.nan_code, code)
    else:
        big = (np.asarray(sign, np.int64) << (fmt.e + fmt.m)) | fmt.max_finite_mag
        code = np.where((cls == _INF) | (cls == _NAN), big, code)
    return code.astype(code_dtype(fmt))


def _safe_sig(sig):
    """``sig`` with zeros replaced by 1, so that _round can run on every lane."""
    return np.where(sig == 0, 1, sig)


def _rounding_args(rounding, rnd, rbits):
    mode = rounding_by_name(rounding)
    check_rbits(rbits)
    if mode is Rounding.SR:
        if rnd is None:
            raise ValueError("Stochastic rounding needs the random integers 'rnd'")
        rnd = np.asarray(rnd)
        if rnd.dtype.kind not in "ui":
            raise TypeError(f"rnd must be an integer array, not {rnd.dtype}")
    return mode, rnd


# Public API -----------------------------------------------------------------------------------

def decode(codes, fmt):
    """Value of each code as ``float64`` (docs/numerics.md section 1)."""
    fmt = format_by_name(fmt)
    sign, sig, exp, cls = _unpack(_codes(codes, fmt), fmt)
    val = np.ldexp(sig.astype(np.float64), exp.astype(np.int32))
    val = np.where(cls == _INF, np.inf, val)
    val = np.where(cls == _NAN, np.nan, val)
    return np.where(sign == 1, -val, val)


def encode(values, fmt, rounding="rne", saturate=False, rnd=None, rbits=16):
    """Round ``float64`` values to codes of ``fmt`` (docs/numerics.md section 2).

    A finite value beyond the range becomes the largest finite value with ``saturate`` or in mode
    ``rtz``. Inf stays Inf (NaN in formats without Inf) even then; NaN becomes the canonical NaN.
    """
    fmt = format_by_name(fmt)
    mode, rnd = _rounding_args(rounding, rnd, rbits)
    v = np.asarray(values)
    # Real numbers only: NumPy would drop an imaginary part, or parse strings, in silence.
    if v.dtype.kind not in "biuf":
        raise TypeError(f"values must be real numbers, not {v.dtype}")
    v = v.astype(np.float64)
    sign = np.signbit(v).astype(np.int64)
    fr, ex = np.frexp(np.abs(np.where(np.isfinite(v), v, 0.0)))
    sig = (fr * 2.0 ** 53).astype(np.int64)
    exp = ex.astype(np.int64) - 53
    cls = np.where(np.isnan(v), _NAN, np.where(np.isinf(v), _INF,
                                                 np.where(v == 0, _ZERO, _FINITE)))
    code = _round(sign, _safe_sig(sig), exp, fmt, mode, rnd, rbits, saturate)
    return _finish(code, cls, sign, fmt)


def mul(a, b, a_fmt=E5M2, b_fmt=E5M2, out_fmt=DLFLOAT16):
    """Product of two codes rounded ``rne`` to ``out_fmt``, no saturation (docs/numerics.md
    section 3)."""
    a_fmt, b_fmt, out_fmt = map(format_by_name, (a_fmt, b_fmt, out_fmt))
    sa, ma, ea, ca = _unpack(_codes(a, a_fmt, "a"), a_fmt)
    sb, mb, eb, cb = _unpack(_codes(b, b_fmt, "b"), b_fmt)
    sign = sa ^ sb
    cls = np.where((ca == _ZERO) | (cb == _ZERO), _ZERO, _FINITE)
    cls = np.where((ca == _INF) | (cb == _INF), np.where(cls == _ZERO, _NAN, _INF), cls)
    cls = np.where((ca == _NAN) | (cb == _NAN), _NAN, cls)
    sig = ma * mb
    code = _round(sign, _safe_sig(sig), ea + eb, out_fmt, Rounding.RNE)
    return _finish(code, cls, sign, out_fmt)


def _exact_sum(s1, m1, e1, s2, m2, e2):
    """Exact-enough sum of two finite values (either may be zero, ``m == 0``).

    Returns ``(sign, sig, exp, zero)``; ``zero`` marks an exact zero sum, whose sign the caller
    decides. Significands may be up to 61 bits wide.
    """
    n1 = np.where(m1 == 0, 0, _TOP - _msb(m1))
    n2 = np.where(m2 == 0, 0, _TOP - _msb(m2))
    m1, e1 = m1 << n1, np.where(m1 == 0, np.iinfo(np.int64).min // 2, e1 - n1)
    m2, e2 = m2 << n2, np.where(m2 == 0, np.iinfo(np.int64).min // 2, e2 - n2)
    first = (e1 > e2) | ((e1 == e2) & (m1 >= m2))
    sb, mb, eb = np.where(first, s1, s2), np.where(first, m1, m2), np.where(first, e1, e2)
    ss, ms = np.where(first, s2, s1), np.where(first, m2, m1)
    es = np.where(first, e2, e1)
    d = np.minimum(eb - es, 63)
    dc = np.clip(d, 0, 62)
    al = np.where(d > 62, 0, ms >> dc)
    lost = np.where(d > 62, ms != 0, (al << dc) != ms)
    al = al | lost
    sig = np.where(sb == ss, mb + al, mb - al)
    # A zero sum keeps a harmless exponent (not the sentinel of a zero operand).
    return sb, sig, np.where(sig == 0, 0, eb), sig == 0


def add(a, b, fmt=DLFLOAT16, rounding="rne", rnd=None, rbits=16):
    """``a + b`` in one format, rounded once (docs/numerics.md section 3)."""
    fmt = format_by_name(fmt)
    mode, rnd = _rounding_args(rounding, rnd, rbits)
    sa, ma, ea, ca = _unpack(_codes(a, fmt, "a"), fmt)
    sb, mb, eb, cb = _unpack(_codes(b, fmt, "b"), fmt)
    sign, sig, exp, zero = _exact_sum(sa, ma, ea, sb, mb, eb)
    cls = np.where(zero, _ZERO, _FINITE)
    sign = np.where(zero, sa & sb, sign)
    cls = np.where(ca == _INF, _INF, cls)
    sign = np.where(ca == _INF, sa, sign)
    cls = np.where(cb == _INF, np.where((ca == _INF) & (sa != sb), _NAN, _INF), cls)
    sign = np.where((cb == _INF) & (ca != _INF), sb, sign)
    cls = np.where((ca == _NAN) | (cb == _NAN), _NAN, cls)
    code = _round(sign, _safe_sig(sig), exp, fmt, mode, rnd, rbits)
    return _finish(code, cls, sign, fmt)


def fma(a, b, c, fmt=DLFLOAT16, rounding="rne", rnd=None, rbits=16):
    """``a * b + c`` in one format with a single rounding (docs/numerics.md section 3)."""
    fmt = format_by_name(fmt)
    mode, rnd = _rounding_args(rounding, rnd, rbits)
    sa, ma, ea, ca = _unpack(_codes(a, fmt, "a"), fmt)
    sb, mb, eb, cb = _unpack(_codes(b, fmt, "b"), fmt)
    sc, mc, ec, cc = _unpack(_codes(c, fmt, "c"), fmt)
    sp = sa ^ sb
    cp = np.where((ca == _ZERO) | (cb == _ZERO), _ZERO, _FINITE)
    cp = np.where((ca == _INF) | (cb == _INF), np.where(cp == _ZERO, _NAN, _INF), cp)
    cp = np.where((ca == _NAN) | (cb == _NAN), _NAN, cp)
    sign, sig, exp, zero = _exact_sum(sp, ma * mb, ea + eb, sc, mc, ec)
    cls = np.where(zero, _ZERO, _FINITE)
    sign = np.where(zero, sp & sc, sign)
    cls = np.where(cp == _INF, _INF, cls)
    sign = np.where(cp == _INF, sp, sign)
    cls = np.where(cc == _INF, np.where((cp == _INF) & (sp != sc), _NAN, _INF), cls)
    sign = np.where((cc == _INF) & (cp != _INF), sc, sign)
    cls = np.where((cp == _NAN) | (cc == _NAN), _NAN, cls)
    code = _round(sign, _safe_sig(sig), exp, fmt, mode, rnd, rbits)
    return _finish(code, cls, sign, fmt)


def convert(a, in_fmt, out_fmt, rounding="rne", saturate=True, rnd=None, rbits=16):
    """Round codes of ``in_fmt`` into ``out_fmt`` (docs/numerics.md section 3).

    Saturation (which mode ``rtz`` implies) applies to finite values only: Inf stays Inf (or
    becomes NaN in a format without Inf) and NaN stays NaN.
    """
    in_fmt, out_fmt = format_by_name(in_fmt), format_by_name(out_fmt)
    mode, rnd = _rounding_args(rounding, rnd, rbits)
    sign, sig, exp, cls = _unpack(_codes(a, in_fmt, "a"), in_fmt)
    code = _round(sign, _safe_sig(sig), exp, out_fmt, mode, rnd, rbits, saturate)
    return _finish(code, cls, sign, out_fmt)


_MUL_TABLES = {}


def mul_table(a_fmt=E5M2, b_fmt=E5M2, out_fmt=DLFLOAT16):
    """All 256 x 256 products ``mul(a, b)`` as a table indexed ``[a, b]`` (cached)."""
    key = (a_fmt, b_fmt, out_fmt)
    if key not in _MUL_TABLES:
        codes = np.arange(256, dtype=np.uint8)
        table = mul(codes[:, None], codes[None, :], a_fmt, b_fmt, out_fmt)
        table.setflags(write=False)
        _MUL_TABLES[key] = table
    return _MUL_TABLES[key]


# The fast GEMM path ---------------------------------------------------------------------------
#
# docs/numerics.md section 4 with DLFLOAT16 accumulation, emulated in float64 and compiled with
# numba. Why it is bit-exact:
#
# * An FP8 product has at most 8 significant bits, and E5M2 x E5M2 stays below 3.3e9, inside
#   DLFLOAT16's range (max 1.996 * 2**32): ``mul`` rounds it only when it is tiny (see below).
# * The sum of two DLFLOAT16 values is exact in float64 whenever their exponents differ by at
#   most 43; otherwise the smaller is below 2**-33 ulp of the larger, so the float64 rounding
#   cannot move the sum onto a DLFLOAT16 rounding boundary: RNE (or RNA) of the float64 sum to 10
#   significant bits, done on the bit pattern, equals the rounding of the exact sum.
# * DLFLOAT16 has no subnormals and code 0 is zero, so a result whose rounded magnitude is at
#   most 2**-31 becomes a zero with the sign of the exact result (the ``mag <= 0`` step of
#   :func:`_round`, docs/numerics.md section 2); float64 zeros then follow the same sign rules
#   as ``add`` (``+0`` unless both operands are ``-0``).
# * Anything the float64 path does not model, Inf or NaN operands and overflow to NaN, sends the
#   GEMM to :func:`_gemm_reference`.

_DL_TINY = int(np.float64(2.0 ** -31).view(np.int64))
_DL_MAX = int(np.float64((1 + 510 / 512) * 2.0 ** 32).view(np.int64))
_KERNELS = {}


def _numba_kernels():
    """Compile the kernels on first use (a second or two; numba caches them on disk)."""
    if not _KERNELS:
        import numba

        @numba.njit(cache=True, nogil=True)
        def gemm_f64(Ad, Bd, Cd, cl, rna):
            M, K = Ad.shape
            N = Bd.shape[1]
            out = np.empty((M, N), np.float64)
            acc = np.empty(N, np.float64)
            acc_i = acc.view(np.int64)
            tot = np.empty(N, np.float64)
            tot_i = tot.view(np.int64)
            half = (np.int64(1) << 42) - (0 if rna else 1)
            keep = ~((np.int64(1) << 43) - 1)
            absm = np.int64(0x7FFFFFFFFFFFFFFF)
            sgn = ~absm
            tiny = np.float64(2.0 ** -31)
            over = False
            for i in range(M):
                for j in range(N):
                    tot[j] = Cd[i, j]
                for k0 in range(0, K, cl):
                    for j in range(N):
                        acc[j] = 0.0
                    for k in range(k0, min(k0 + cl, K)):
                        a = Ad[i, k]
                        for j in range(N):
                            p = a * Bd[k, j]
                            # mul: a product of at most 2**-31 rounds to a signed zero.
                            acc[j] += p if abs(p) > tiny else p * 0.0
                        for j in range(N):
                            x = acc_i[j]
                            x = (x + half + (0 if rna else (x >> 43) & 1)) & keep
                            mag = x & absm
                            over |= mag > _DL_MAX
                            acc_i[j] = x if mag > _DL_TINY else x & sgn
                    for j in range(N):
                        tot[j] += acc[j]
                    for j in range(N):
                        x = tot_i[j]
                        x = (x + half + (0 if rna else (x >> 43) & 1)) & keep
                        mag = x & absm
                        over |= mag > _DL_MAX
                        tot_i[j] = x if mag > _DL_TINY else x & sgn
                for j in range(N):
                    out[i, j] = tot[j]
            return out, over

        @numba.njit(cache=True, nogil=True)
        def to_dlfloat16(x):
            bits = x.view(np.int64).ravel()
            out = np.empty(bits.size, np.int64)
            for n in range(bits.size):
                b = bits[n]
                s = (b >> 48) & 0x8000
                mag = b & 0x7FFFFFFFFFFFFFFF
                if mag == 0:
                    out[n] = s
                else:
                    e = (mag >> 52) - 1023 + 31
                    out[n] = s | (e << 9) | ((mag >> 43) & 511)
            return out

        @numba.njit(cache=True, nogil=True)
        def xorshift(seed, count):
            out = np.empty(count, np.uint32)
            s = np.int64(seed)
            for i in range(count):
                s ^= (s << 13) & 0xFFFFFFFF
                s ^= s >> 17
                s ^= (s << 5) & 0xFFFFFFFF
                out[i] = s
            return out

        _KERNELS.update(gemm=gemm_f64, to_dl=to_dlfloat16, xorshift=xorshift)
    return _KERNELS


_FP8_VALUES = {}


def _fp8_values(fmt):
    """float64 value of every code of an FP8 format (NaN and Inf included; cached, read-only)."""
    if fmt not in _FP8_VALUES:
        values = decode(np.arange(256, dtype=np.uint8), fmt)
        values.setflags(write=False)
        _FP8_VALUES[fmt] = values
    return _FP8_VALUES[fmt]


def _gemm_values(A, B, a_fmt, b_fmt, cl, mode, Cd):
    """Totals of docs/numerics.md section 4 for FP8 codes ``A``, ``B`` (any integer dtype) and
    float64 values ``Cd`` of the DLFLOAT16 codes accumulated into, as float64 values (each the
    exact value of its DLFLOAT16 code, signed zeros included); ``None`` when the fast path does
    not apply (Inf or NaN among the operands or in ``C``, or a sum overflows). The entry point
    of :mod:`sim.pt`, which skips the codes when it wants values."""
    Ad = _fp8_values(a_fmt)[A]
    Bd = _fp8_values(b_fmt)[B]
    if not (np.isfinite(Ad).all() and np.isfinite(Bd).all() and np.isfinite(Cd).all()):
        return None
    out, over = _numba_kernels()["gemm"](Ad, np.ascontiguousarray(Bd), Cd, cl,
                                         mode is Rounding.RNA)
    return None if over else out


def _gemm_fast(A, B, a_fmt, b_fmt, cl, mode, total):
    """Totals of docs/numerics.md section 4 as DLFLOAT16 codes (``int64``), or ``None`` when this
    path does not apply (see :func:`_gemm_values`)."""
    out = _gemm_values(A, B, a_fmt, b_fmt, cl, mode, decode(total, DLFLOAT16))
    if out is None:
        return None
    return _numba_kernels()["to_dl"](out).reshape(out.shape)


def _gemm_reference(A, B, a_fmt, b_fmt, acc_fmt, cl, mode, total):
    """docs/numerics.md section 4 step by step on codes: one vectorised :func:`add` per position
    in the chunk, all chunks and output elements at once. Any formats, specials and overflow."""
    M, K = A.shape
    N = B.shape[1]
    # FP8 operands look their products up in a 256 x 256 table; wider ones multiply.
    if a_fmt.width <= 8 and b_fmt.width <= 8:
        table = mul_table(a_fmt, b_fmt, acc_fmt)

        def products(a, b):
            return table[a, b]
    else:
        def products(a, b):
            return mul(*np.broadcast_arrays(a, b), a_fmt, b_fmt, acc_fmt)
    nch = -(-K // cl)
    # Pad K to whole chunks with +0 products: add(chunk, +0) == chunk, because a chunk sum that
    # starts at +0 is never -0.
    A_pad = np.zeros((M, nch * cl), np.int64)
    A_pad[:, :K] = A
    B_pad = np.zeros((nch * cl, N), np.int64)
    B_pad[:K] = B
    zero_k = np.arange(nch * cl) >= K
    A3 = A_pad.reshape(M, nch, cl)
    B3 = B_pad.reshape(nch, cl, N)
    acc = np.zeros((M, nch, N), np.int64)
    for k in range(cl):
        p = products(A3[:, :, k][:, :, None], B3[:, k, :][None, :, :]).astype(np.int64)
        p = np.where(zero_k.reshape(nch, cl)[:, k][None, :, None], 0, p)
        acc = add(acc, p, acc_fmt, mode).astype(np.int64)
    for c in range(nch):
        total = add(total, acc[:, c, :], acc_fmt, mode).astype(np.int64)
    return total


def gemm(A, B, a_fmt=E5M2, b_fmt=E5M2, acc_fmt=DLFLOAT16, chunk=64, rounding="rne", C=None,
         out_fmt=None):
    """Chunk-based GEMM ``C = A . B`` (docs/numerics.md section 4).

    Parameters
    ----------
    A, B : array of uint8
        FP8 codes of shape ``(M, K)`` and ``(K, N)``.
    a_fmt, b_fmt, acc_fmt : FloatFormat
        The accelerator multiplies E5M2 or E4M3 operands into a 16-bit accumulator format;
        any presets are accepted (the area study's BINARY16 x BINARY16 -> BINARY32 array, for
        one), then ``A`` and ``B`` hold codes of ``a_fmt`` and ``b_fmt``.
    chunk : int or None
        Chunk length ``CL >= 1``; ``None`` means one chunk of all ``K`` (no chunking).
    rounding : str
        Accumulation rounding, ``"rne"`` or ``"rna"``.
    C : array, optional
        Accumulator codes ``(M, N)`` to accumulate into; ``+0`` when omitted.
    out_fmt : FloatFormat, optional
        Convert the totals to this FP8 format (``rne``, saturating) instead of returning
        accumulator codes.
    """
    a_fmt, b_fmt, acc_fmt = map(format_by_name, (a_fmt, b_fmt, acc_fmt))
    mode = rounding_by_name(rounding, (Rounding.RNE, Rounding.RNA))
    A = _codes(A, a_fmt, "A")
    B = _codes(B, b_fmt, "B")
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[0]:
        raise ValueError(f"Shapes {A.shape} and {B.shape} do not form a matrix product")
    M, K = A.shape
    N = B.shape[1]
    if chunk is None:
        cl = max(K, 1)
    elif (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer))
          or chunk < 1):
        raise ValueError(f"Chunk length must be a positive integer or None, not {chunk!r}")
    else:
        cl = min(int(chunk), max(K, 1))
    if C is None:
        total_in = np.zeros((M, N), np.int64)
    else:
        total_in = _codes(C, acc_fmt, "C")
        if total_in.shape != (M, N):
            raise ValueError(f"C has shape {total_in.shape}, expected {(M, N)}")
    total = None
    if acc_fmt is DLFLOAT16 and K > 0 and M > 0 and N > 0:
        total = _gemm_fast(A, B, a_fmt, b_fmt, cl, mode, total_in)
    if total is None:
        total = _gemm_reference(A, B, a_fmt, b_fmt, acc_fmt, cl, mode, total_in)
    total = total.astype(code_dtype(acc_fmt))
    if out_fmt is not None:
        out_fmt = format_by_name(out_fmt)
        if out_fmt is acc_fmt:
            return total
        if out_fmt not in FP8_FORMATS:
            raise ValueError(f"out_fmt must be the accumulator format, E5M2 or E4M3, not {out_fmt}")
        return convert(total, acc_fmt, out_fmt, "rne", saturate=True)
    return total


def xorshift32(seed, count):
    """The first ``count`` words of the xorshift32 stream started at ``seed`` (docs/numerics.md
    section 5)."""
    if isinstance(seed, bool) or int(seed) != seed or not 0 < int(seed) < (1 << 32):
        raise ValueError(f"Seed must be an integer from 1 to 2**32 - 1, not {seed!r}")
    return _numba_kernels()["xorshift"](int(seed), int(count))


def sgd_update(w, g, v, lr, momentum, weight_decay, seed, rounding="sr", rbits=16):
    """SGD with momentum and weight decay on DLFLOAT16 codes (docs/numerics.md section 5).

    ``lr``, ``momentum`` and ``weight_decay`` are DLFLOAT16 codes; returns ``(w, v)``.
    """
    mode = rounding_by_name(rounding, (Rounding.SR, Rounding.RNE))
    check_rbits(rbits)
    fmt = DLFLOAT16
    w = _codes(w, fmt, "w")
    g = _codes(g, fmt, "g")
    v = _codes(v, fmt, "v")
    if not (w.shape == g.shape == v.shape):
        raise ValueError(f"w, g and v must have one shape, not {w.shape}, {g.shape}, {v.shape}")
    scal = [_codes(x, fmt, name) for x, name in
            ((lr, "lr"), (momentum, "momentum"), (weight_decay, "weight_decay"))]
    if any(x.ndim != 0 for x in scal):
        raise ValueError("lr, momentum and weight_decay must be scalar DLFLOAT16 codes")
    lr, mu, wd = scal
    u = xorshift32(seed, 3 * w.size).astype(np.int64).reshape(w.shape + (3,))
    mode_s = mode.value
    g1 = fma(np.broadcast_to(wd, w.shape), w, g, fmt, mode_s, u[..., 0], rbits)
    v1 = fma(np.broadcast_to(mu, w.shape), v, g1, fmt, mode_s, u[..., 1], rbits)
    w1 = fma(np.broadcast_to(lr ^ fmt.sign_mask, w.shape), v1, w, fmt, mode_s, u[..., 2], rbits)
    return w1, v1
