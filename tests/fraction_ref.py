"""Slow, exact reference of docs/numerics.md sections 1-5 built on :class:`fractions.Fraction`.

Written from the text of the specification that docs/numerics.md restates, one scalar at a time,
with no shortcuts: a code is decoded to an exact rational (or a special), every operation forms
its exact result as a rational and rounds it once with a literal transcription of
docs/numerics.md section 2. It is meant to be read next to that text, not to be fast.

A format is any object with the attributes ``e``, ``m``, ``bias``, ``subnormals`` and
``specials`` (a string or an enum whose ``value`` is one of ``ieee``, ``fn``, ``single``,
``none``), e.g. the presets of :mod:`hw.fp.format`. Codes are plain Python ints.
"""

from collections import namedtuple
from fractions import Fraction

#: A decoded code. ``kind`` is ``"num"`` (finite, ``mag`` its exact magnitude, zero included),
#: ``"inf"`` or ``"nan"``; ``sign`` is 0 or 1 (0 for NaN, whose sign carries no meaning).
Val = namedtuple("Val", "kind sign mag")

MODES = ("rne", "rna", "rtz", "sr")


def pow2(k):
    """``2**k`` as an exact Fraction, for any integer ``k``."""
    return Fraction(2) ** k


def floor_log2(x):
    """``floor(log2(x))`` of a positive Fraction, exactly."""
    assert x > 0
    k = x.numerator.bit_length() - x.denominator.bit_length()
    if pow2(k) > x:
        k -= 1
    assert pow2(k) <= x < pow2(k + 1)
    return k


def _specials(fmt):
    s = getattr(fmt.specials, "value", fmt.specials)
    assert s in ("ieee", "fn", "single", "none"), s
    return s


def _mode_name(mode):
    mode = getattr(mode, "value", mode)
    assert mode in MODES, mode
    return mode


# docs/numerics.md section 1: formats --------------------------------------------------------------

def width(fmt):
    return 1 + fmt.e + fmt.m


def split(code, fmt):
    """Fields ``(s, E, M)`` of a code."""
    assert 0 <= code < 2 ** width(fmt), (code, fmt)
    s = code >> (fmt.e + fmt.m)
    E = (code >> fmt.m) & (2 ** fmt.e - 1)
    M = code & (2 ** fmt.m - 1)
    return s, E, M


def join(s, E, M, fmt):
    assert s in (0, 1) and 0 <= E < 2 ** fmt.e and 0 <= M < 2 ** fmt.m
    return (s << (fmt.e + fmt.m)) | (E << fmt.m) | M


def special_kind(code, fmt):
    """``"nan"``, ``"inf"`` or ``None`` for a code, from the ``specials`` list of docs/numerics.md
    section 1."""
    _, E, M = split(code, fmt)
    e_ones, m_ones = 2 ** fmt.e - 1, 2 ** fmt.m - 1
    sp = _specials(fmt)
    if sp == "ieee" and E == e_ones:
        return "inf" if M == 0 else "nan"
    if sp in ("fn", "single") and E == e_ones and M == m_ones:
        return "nan"
    return None


def decode(code, fmt):
    """The :class:`Val` of a code (docs/numerics.md section 1)."""
    s, E, M = split(code, fmt)
    kind = special_kind(code, fmt)
    if kind == "nan":
        return Val("nan", 0, None)
    if kind == "inf":
        return Val("inf", s, None)
    if fmt.subnormals:
        if E == 0:
            mag = Fraction(M, 2 ** fmt.m) * pow2(1 - fmt.bias)
        else:
            mag = (1 + Fraction(M, 2 ** fmt.m)) * pow2(E - fmt.bias)
    else:
        if E == 0 and M == 0:
            mag = Fraction(0)
        else:
            mag = (1 + Fraction(M, 2 ** fmt.m)) * pow2(E - fmt.bias)
    return Val("num", s, mag)


def signed_value(val):
    """The exact signed Fraction of a finite :class:`Val` (a zero loses its sign)."""
    assert val.kind == "num"
    return -val.mag if val.sign else val.mag


def max_finite_code(fmt):
    """Magnitude code of the largest finite value: the largest magnitude code not special."""
    all_ones = 2 ** (fmt.e + fmt.m) - 1
    below_top_binade = ((2 ** fmt.e - 1) << fmt.m) - 1
    for c in (all_ones, all_ones - 1, below_top_binade):
        if special_kind(c, fmt) is None:
            return c
    raise AssertionError(fmt)


_CONSTANTS = {}


def _constants(fmt):
    """``(largest finite, smallest positive)`` magnitudes of a format, memoised."""
    key = (fmt.e, fmt.m, fmt.bias, fmt.subnormals, _specials(fmt))
    if key not in _CONSTANTS:
        # The smallest positive value is code 1 in both styles of docs/numerics.md section 1.
        _CONSTANTS[key] = (decode(max_finite_code(fmt), fmt).mag, decode(1, fmt).mag)
    return _CONSTANTS[key]


def max_finite(fmt):
    return _constants(fmt)[0]


def min_positive(fmt):
    return _constants(fmt)[1]


def nan_code(fmt):
    """Canonical NaN (docs/numerics.md section 1): sign 0; ``ieee``: E all ones and only the top
    mantissa bit."""
    sp = _specials(fmt)
    if sp == "ieee":
        return join(0, 2 ** fmt.e - 1, 2 ** (fmt.m - 1), fmt)
    if sp in ("fn", "single"):
        return join(0, 2 ** fmt.e - 1, 2 ** fmt.m - 1, fmt)
    return None


def inf_code(sign, fmt):
    assert _specials(fmt) == "ieee"
    return join(sign, 2 ** fmt.e - 1, 0, fmt)


def zero_code(sign, fmt):
    return join(sign, 0, 0, fmt)


def code_of(sign, y, fmt):
    """The code of an exactly representable finite magnitude ``y`` (inverse of :func:`decode`)."""
    if y == 0:
        return zero_code(sign, fmt)
    ey = floor_log2(y)
    if fmt.subnormals and ey < 1 - fmt.bias:
        E = 0
        M = y / pow2(1 - fmt.bias - fmt.m)
    else:
        E = ey + fmt.bias
        M = (y / pow2(ey) - 1) * 2 ** fmt.m
    assert M.denominator == 1, (y, fmt)
    code = join(sign, E, int(M), fmt)
    assert decode(code, fmt) == Val("num", sign, y), (y, fmt)
    return code


# docs/numerics.md section 2: rounding an exact real -----------------------------------------------

def round_to(sign, x, fmt, mode="rne", rnd=None, rbits=16, saturate=False):
    """Round the exact magnitude ``x >= 0`` carrying ``sign`` to a code of ``fmt``."""
    mode = _mode_name(mode)
    x = Fraction(x)
    assert x >= 0 and sign in (0, 1)
    # 1. Zero keeps its sign.
    if x == 0:
        return zero_code(sign, fmt)
    # 2. The quantum.
    q = pow2(floor_log2(x) - fmt.m)
    if fmt.subnormals and x < pow2(1 - fmt.bias):
        q = pow2(1 - fmt.bias - fmt.m)
    # 3. The two neighbours and the discarded fraction.
    n = x / q
    k = n.numerator // n.denominator
    lo, hi = k * q, (k + 1) * q
    f = n - k
    assert 0 <= f < 1
    # 4. The modes.
    if mode == "rne":
        if f > Fraction(1, 2):
            y = hi
        elif f < Fraction(1, 2):
            y = lo
        else:
            # The last mantissa bit of lo is the parity of k (lo = k * q, q its LSB weight).
            y = lo if k % 2 == 0 else hi
    elif mode == "rna":
        y = hi if f >= Fraction(1, 2) else lo
    elif mode == "rtz":
        y = lo
    else:
        assert rnd is not None, "sr needs rnd"
        assert 1 <= rbits <= 32 and 0 <= rnd < 2 ** rbits, (rnd, rbits)
        fR = f * 2 ** rbits
        t = fR.numerator // fR.denominator
        y = hi if t + rnd >= 2 ** rbits else lo
    # 5. Sign, then range checks on the magnitude. In rtz, as whenever saturating, an overflow
    # is the largest finite value of the sign (IEEE 754: rtz never makes an infinity).
    if y > max_finite(fmt):
        sp = _specials(fmt)
        if saturate or mode == "rtz" or sp == "none":
            return code_of(sign, max_finite(fmt), fmt)
        if sp == "ieee":
            return inf_code(sign, fmt)
        return nan_code(fmt)
    if not fmt.subnormals and y < min_positive(fmt):
        return zero_code(sign, fmt)
    return code_of(sign, y, fmt)


def round_val(val, fmt, mode="rne", rnd=None, rbits=16, saturate=False):
    """Code of an exact :class:`Val` result: specials as in docs/numerics.md section 3, finite
    ones rounded.

    ``saturate``, like the overflow rule of ``rtz``, applies to finite values only. An Inf
    result stays Inf in an ``ieee`` format and is NaN in ``fn`` and ``single`` formats (a
    ``none`` format saturates).
    """
    sp = _specials(fmt)
    if val.kind == "nan":
        return nan_code(fmt) if sp != "none" else code_of(0, max_finite(fmt), fmt)
    if val.kind == "inf":
        if sp == "ieee":
            return inf_code(val.sign, fmt)
        if sp in ("fn", "single"):
            return nan_code(fmt)
        return code_of(val.sign, max_finite(fmt), fmt)
    return round_to(val.sign, val.mag, fmt, mode, rnd, rbits, saturate)


# docs/numerics.md section 3: operations -----------------------------------------------------------

def exact_mul(va, vb):
    """Exact product of two :class:`Val` (specials and the XOR sign of docs/numerics.md
    section 3)."""
    if va.kind == "nan" or vb.kind == "nan":
        return Val("nan", 0, None)
    sign = va.sign ^ vb.sign
    if va.kind == "inf" or vb.kind == "inf":
        other = vb if va.kind == "inf" else va
        if other.kind == "num" and other.mag == 0:
            return Val("nan", 0, None)                 # 0 * Inf
        return Val("inf", sign, None)
    return Val("num", sign, va.mag * vb.mag)


def exact_add(va, vb):
    """Exact sum of two :class:`Val` (specials and the signed-zero rule of docs/numerics.md
    section 3)."""
    if va.kind == "nan" or vb.kind == "nan":
        return Val("nan", 0, None)
    if va.kind == "inf" and vb.kind == "inf":
        return Val("inf", va.sign, None) if va.sign == vb.sign else Val("nan", 0, None)
    if va.kind == "inf":
        return va
    if vb.kind == "inf":
        return vb
    s = signed_value(va) + signed_value(vb)
    if s == 0:
        # -0 only if every addend is -0.
        every_minus_zero = all(v.mag == 0 and v.sign == 1 for v in (va, vb))
        return Val("num", 1 if every_minus_zero else 0, Fraction(0))
    return Val("num", 1 if s < 0 else 0, abs(s))


def mul(a, b, a_fmt, b_fmt, out_fmt):
    """``mul`` of docs/numerics.md section 3: rounded ``rne`` to ``out_fmt``, no saturation."""
    return round_val(exact_mul(decode(a, a_fmt), decode(b, b_fmt)), out_fmt, "rne")


def add(a, b, fmt, mode="rne", rnd=None, rbits=16):
    return round_val(exact_add(decode(a, fmt), decode(b, fmt)), fmt, mode, rnd, rbits)


def fma(a, b, c, fmt, mode="rne", rnd=None, rbits=16):
    p = exact_mul(decode(a, fmt), decode(b, fmt))
    return round_val(exact_add(p, decode(c, fmt)), fmt, mode, rnd, rbits)


def convert(a, in_fmt, out_fmt, mode="rne", saturate=True, rnd=None, rbits=16):
    return round_val(decode(a, in_fmt), out_fmt, mode, rnd, rbits, saturate)


def encode_float(v, fmt, mode="rne", saturate=False, rnd=None, rbits=16):
    """Round a Python/NumPy float (exactly its binary value) as :func:`convert` would."""
    v = float(v)
    if v != v:
        val = Val("nan", 0, None)
    elif v in (float("inf"), float("-inf")):
        val = Val("inf", 1 if v < 0 else 0, None)
    else:
        sign = 1 if (v < 0 or (v == 0 and str(v).startswith("-"))) else 0
        val = Val("num", sign, abs(Fraction(v)))
    return round_val(val, fmt, mode, rnd, rbits, saturate)


def to_float(code, fmt):
    """Value of a code as a Python float (exact for every preset); NaN for NaN."""
    val = decode(code, fmt)
    if val.kind == "nan":
        return float("nan")
    if val.kind == "inf":
        return float("-inf") if val.sign else float("inf")
    f = float(val.mag)
    assert Fraction(f) == val.mag
    return -f if val.sign else f


# docs/numerics.md section 4: chunk-based GEMM -----------------------------------------------------

def gemm(A, B, a_fmt, b_fmt, acc_fmt, chunk=64, rounding="rne", C=None, out_fmt=None):
    """Scalar chunked GEMM of docs/numerics.md section 4 on nested sequences of codes; returns a
    list of lists."""
    M, K = len(A), len(B)
    N = len(B[0]) if K else (len(C[0]) if C is not None else 0)
    assert all(len(row) == K for row in A)
    cl = K if chunk is None else chunk
    assert cl >= 1 or K == 0
    out = []
    for i in range(M):
        row = []
        for j in range(N):
            total = zero_code(0, acc_fmt) if C is None else int(C[i][j])
            for k0 in range(0, K, max(cl, 1)):
                part = zero_code(0, acc_fmt)
                for k in range(k0, min(k0 + cl, K)):
                    p = mul(int(A[i][k]), int(B[k][j]), a_fmt, b_fmt, acc_fmt)
                    part = add(part, p, acc_fmt, rounding)
                total = add(total, part, acc_fmt, rounding)
            if out_fmt is not None:
                total = convert(total, acc_fmt, out_fmt, "rne", saturate=True)
            row.append(total)
        out.append(row)
    return out


# docs/numerics.md section 5: stochastic rounding weight update ------------------------------------

def xorshift32_words(seed, count):
    """The first ``count`` words of xorshift32 from ``seed``: each word is the new state."""
    assert 0 < seed < 2 ** 32
    s = seed
    words = []
    for _ in range(count):
        s = (s ^ (s << 13)) % 2 ** 32
        s = (s ^ (s >> 17)) % 2 ** 32
        s = (s ^ (s << 5)) % 2 ** 32
        words.append(s)
    return words


def sgd_update(w, g, v, lr, mu, wd, seed, fmt, mode="sr", rbits=16):
    """docs/numerics.md section 5 on flat sequences of codes of ``fmt``; returns ``(w_new,
    v_new)`` lists."""
    n = len(w)
    assert len(g) == n and len(v) == n
    u = xorshift32_words(seed, 3 * n)
    neg_lr = lr ^ (1 << (fmt.e + fmt.m))
    w_out, v_out = [], []
    for j in range(n):
        r0, r1, r2 = (x % 2 ** rbits for x in u[3 * j:3 * j + 3])
        g1 = fma(wd, int(w[j]), int(g[j]), fmt, mode, r0, rbits)
        vj = fma(mu, int(v[j]), g1, fmt, mode, r1, rbits)
        wj = fma(neg_lr, vj, int(w[j]), fmt, mode, r2, rbits)
        w_out.append(wj)
        v_out.append(vj)
    return w_out, v_out
