"""Operands for testing the arithmetic units and the accelerator: edge-case codes, directed
cases of each unit kind, structured random operands and random GEMM operands, shared by the
Amaranth-simulator tests, the cocotb testbenches and ``fp8accel gemm --random``."""

import numpy as np

__all__ = ["edge_codes", "make_operations", "TOP_OUTCOMES", "top_values", "top_expected",
           "top_operations", "random_fp8", "random_acc"]


def edge_codes(fmt):
    """Codes at the edges of ``fmt``, both signs: zero, the smallest and largest subnormals and
    normals, one and its neighbours, the largest finite values, Inf and NaNs."""
    m = fmt.m
    one = fmt.bias << m
    mags = {0, 1, 2, (1 << m) - 1, 1 << m, (1 << m) + 1, (2 << m) - 1, 3 << m,
            one - 1, one, one + 1, one | (1 << (m - 1)),
            fmt.max_finite_mag - 1, fmt.max_finite_mag, (fmt.max_finite_mag >> m) << m,
            fmt.mag_mask}
    if fmt.has_inf:
        mags |= {fmt.inf_mag, fmt.inf_mag + 1}
    if fmt.nan_code is not None:
        mags.add(fmt.nan_code)
    mags = sorted(x for x in mags if 0 <= x <= fmt.mag_mask)
    return np.array(mags + [x | fmt.sign_mask for x in mags], np.int64)


# Around the top of the range -----------------------------------------------------------------
#
# Where overflow is decided. M is the largest finite value of the result format and q its ulp;
# the exact results below are M + k * q / 4, k = -1 to 3, and M + q or more (k = 4), which is
# the next binade in an ``ieee`` format and the value the special code would have in ``fn`` and
# ``single`` ones (so those also get M + 2 q, their next binade, and far beyond).

#: What docs/numerics.md section 2 makes of the exact magnitude M + k * q / 4 (k = 4: M + q or
#: more), by k and mode. "below" is the code under M, "max" the code of M, "over" an overflow
#: (Inf or NaN; M when saturating), "tie" the even one of "max" and "over": M's mantissa is all
#: ones, odd, in an ``ieee`` format and even in ``fn`` and ``single`` formats. Stochastic
#: rounding comes twice: ``rnd = 0`` keeps ``lo`` whatever the discarded fraction, and
#: ``rnd = 2**R - 1`` takes ``hi`` for any fraction of at least ``2**-R`` (every k here with
#: ``R >= 2``). Rounding toward zero never overflows.
TOP_OUTCOMES = {
    #    rne      rna      rtz      sr, rnd = 0   sr, rnd = 2**R - 1
    -1: ("max",  "max",  "below", "below",      "max"),
    0:  ("max",  "max",  "max",   "max",        "max"),
    1:  ("max",  "max",  "max",   "max",        "over"),
    2:  ("tie",  "over", "max",   "max",        "over"),
    3:  ("over", "over", "max",   "max",        "over"),
    4:  ("over", "over", "max",   "over",       "over"),
}
_TOP_COLUMNS = {"rne": 0, "rna": 1, "rtz": 2}


def _top(fmt):
    """M and q of ``fmt`` as floats (exact: every preset's M is a float64)."""
    top = fmt.max_finite()
    return top, 2.0 ** (fmt.emax - fmt.m)


def top_values(fmt):
    """Positive float64 values around the top of ``fmt``'s range and their k of
    :data:`TOP_OUTCOMES`: M + k q / 4 for k = -1 to 4, M + 2 q, 2 M and M * 2**20."""
    top, q = _top(fmt)
    values = [top + k * q / 4 for k in range(-1, 5)] + [top + 2 * q, 2 * top, top * 2.0 ** 20]
    return np.array(values), np.array(list(range(-1, 5)) + [4, 4, 4])


def top_expected(fmt, mode, k, sign, *, saturate=False, rnd_high=None):
    """Result codes of :data:`TOP_OUTCOMES` for magnitudes of case ``k`` with sign bit
    ``sign`` (arrays). ``rnd_high`` says, for mode ``sr``, which results were rounded with
    ``rnd = 2**R - 1`` (the others with ``rnd = 0``)."""
    k = np.asarray(k, np.int64)
    sign = np.broadcast_to(np.asarray(sign, np.int64), k.shape) << (fmt.e + fmt.m)
    if mode == "sr":
        column = np.where(np.broadcast_to(rnd_high, k.shape), 4, 3)
    else:
        column = np.full(k.shape, _TOP_COLUMNS[mode])
    top = fmt.max_finite_mag
    if saturate or not fmt.has_nan:
        over = sign | top
    elif fmt.has_inf:
        over = sign | fmt.inf_mag
    else:
        over = np.full(k.shape, fmt.nan_code)
    codes = {"below": sign | (top - 1), "max": sign | top, "over": over}
    codes["tie"] = codes["over"] if top & 1 else codes["max"]
    names = np.array([TOP_OUTCOMES[int(i)][int(c)] for i, c in zip(k.ravel(), column.ravel())])
    out = np.zeros(k.shape, np.int64)
    for name, code in codes.items():
        out = np.where(names.reshape(k.shape) == name, code, out)
    return out


def _exact_codes(values, fmt):
    """Codes of ``fmt`` for float64 ``values`` and a mask of those it holds exactly."""
    from fp8accel.sim import golden

    codes = golden.encode(values, fmt, "rtz").astype(np.int64)
    return codes, golden.decode(codes, fmt) == values


def top_operations(spec):
    """Directed operations of an adder, FMA or converter whose exact results lie around the top
    of the output format's range, both signs, and the codes :data:`TOP_OUTCOMES` gives for them.

    The adder adds M and -q/4, 0, q/4, ..., q, 2 q or M, in both orders. The FMA computes
    M * 1 + c with the same c; M * 2 - M, which overflows only before the addition; (M / 2) * 2
    + q / 4; and the far overflows M * M + 0, M * M - M and M * (1 + 2**-m). The converter
    rounds the values of :func:`top_values` that its input format holds. With stochastic
    rounding every operation comes twice, with ``rnd = 0`` and ``rnd = 2**R - 1``.

    Returns
    -------
    ops : dict
        Port name -> ``int64`` array, as :func:`make_operations` returns.
    expected : array of int64
        The result codes.
    """

    kind, o = spec.kind, spec.options
    fmt = spec.output[1]
    if kind == "convert":
        fi = spec.fmt("in_fmt")
        values, k = top_values(fmt)
        codes, exact = _exact_codes(values, fi)
        cols = {"a": codes[exact]}
        k = k[exact]
    else:
        top, q = _top(fmt)
        sm = fmt.sign_mask
        values = np.array([top / 2, 1.0, 2.0, q / 4, q / 2, 3 * q / 4, q, 2 * q])
        codes, exact = _exact_codes(values, fmt)
        assert exact.all(), (fmt, values[~exact])
        code = dict(zip(values.tolist(), codes.tolist()))
        big = fmt.max_finite_mag
        one, two, half = code[1.0], code[2.0], code[top / 2]
        # (addend, k of M + addend)
        addends = [(code[q / 4] | sm, -1), (0, 0), (code[q / 4], 1), (code[q / 2], 2),
                   (code[3 * q / 4], 3), (code[q], 4), (code[2 * q], 4), (big, 4)]
        if kind == "adder":
            a = [big] * len(addends) + [c for c, _ in addends]
            b = [c for c, _ in addends] + [big] * len(addends)
            cols = {"a": a, "b": b}
            k = [i for _, i in addends] * 2
        else:
            rows = [(big, one, c, i) for c, i in addends] + [
                (one, big, code[q / 2], 2),               # the large factor second
                (big, two, big | sm, 0),                  # 2 M - M = M
                (big, two, (big - 1) | sm, 4),            # 2 M - (M - q) = M + q
                (half, two, code[q / 4], 1),              # (M / 2) * 2 + q / 4
                (big, big, 0, 4), (big, big, big | sm, 4), (big, one + 1, 0, 4)]
            cols = {n: [r[i] for r in rows] for i, n in enumerate("abc")}
            k = [r[3] for r in rows]
        cols = {n: np.array(v, np.int64) for n, v in cols.items()}
    k = np.asarray(k, np.int64)
    # The negative results: flip the signs of the operands that make the result's sign
    # (-(a + b) = -a + -b, -(a * b + c) = (-a) * b + -c).
    flip = {"adder": "ab", "fma": "ac", "convert": "a"}[kind]
    mask = (spec.fmt("in_fmt") if kind == "convert" else fmt).sign_mask
    ops = {n: np.concatenate([v, v ^ mask if n in flip else v]) for n, v in cols.items()}
    sign = np.repeat([0, 1], len(k))
    k = np.tile(k, 2)
    rnd_high = None
    if spec.stochastic:
        ops = {n: np.tile(v, 2) for n, v in ops.items()}
        ops["rnd"] = np.repeat([0, (1 << o["rbits"]) - 1], len(k))
        rnd_high = ops["rnd"] != 0
        sign, k = np.tile(sign, 2), np.tile(k, 2)
    return ops, top_expected(fmt, o["rounding"], k, sign, saturate=o.get("saturate", False),
                             rnd_high=rnd_high)


def _pack(fmt, sign, exp, man):
    exp = np.clip(exp, 0, fmt.exp_max_field)
    mag = np.minimum((exp << fmt.m) | (man & ((1 << fmt.m) - 1)), fmt.mag_mask)
    return (np.asarray(sign, np.int64) << (fmt.e + fmt.m)) | mag


def _random_codes(fmt, n, rng, exp_lo=0, exp_hi=None, tie_bits=0):
    """``n`` codes: a quarter uniform, the rest with an exponent field in ``[exp_lo, exp_hi]``
    and mantissas biased toward rounding cases (zero, all ones, and, when the unit drops
    ``tie_bits`` mantissa bits, exact ties and their neighbours)."""
    exp_hi = fmt.exp_max_field if exp_hi is None else exp_hi
    sign = rng.integers(0, 2, n)
    exp = rng.integers(exp_lo, exp_hi + 1, n)
    man = rng.integers(0, 1 << fmt.m, n)
    kind = rng.integers(0, 8, n)
    man = np.where(kind == 0, 0, man)
    man = np.where(kind == 1, (1 << fmt.m) - 1, man)
    if 0 < tie_bits <= fmt.m:
        tie = (man & ~((1 << tie_bits) - 1)) | (1 << (tie_bits - 1))
        man = np.where(kind == 2, tie, man)
        man = np.where(kind == 3, tie + rng.choice([-1, 1], n), man)
    codes = _pack(fmt, sign, exp, man & ((1 << fmt.m) - 1))
    uniform = rng.integers(0, 1 << fmt.width, n)
    return np.where(rng.random(n) < 0.25, uniform, codes)


def _near(fmt, codes, rng, spread):
    """Codes whose exponent field is within ``spread`` of that of ``codes``, random sign."""
    exp = ((codes & fmt.mag_mask) >> fmt.m) + rng.integers(-spread, spread + 1, len(codes))
    return _pack(fmt, rng.integers(0, 2, len(codes)), exp,
                 rng.integers(0, 1 << fmt.m, len(codes)))


def _negate_nudged(fmt, codes, rng):
    """``-codes`` with the magnitude moved by at most 2 ulps: sums that (nearly) cancel."""
    mag = np.clip((codes & fmt.mag_mask) + rng.integers(-2, 3, len(codes)), 0, fmt.mag_mask)
    return ((codes & fmt.sign_mask) ^ fmt.sign_mask) | mag


def _directed(spec, rng):
    """Edge cases of the unit: every pair of edge codes, and what each kind needs besides."""
    from fp8accel.sim import golden

    kind = spec.kind
    if kind == "convert":
        fi, fo = spec.fmt("in_fmt"), spec.fmt("out_fmt")
        # Edges of the output format and the midpoints between neighbouring output codes,
        # carried into the input format: overflow thresholds and ties at the boundaries.
        eo = edge_codes(fo)
        lo = golden.decode(eo, fo)
        hi = golden.decode(np.minimum((eo & fo.mag_mask) + 1, fo.mag_mask) | (eo & fo.sign_mask),
                           fo)
        with np.errstate(invalid="ignore", over="ignore"):
            vals = np.concatenate([lo, (lo + hi) / 2, lo * 0.75])
        return {"a": np.concatenate([edge_codes(fi), golden.encode(vals, fi).astype(np.int64),
                                     top_operations(spec)[0]["a"]])}
    names = [n for n, f in spec.inputs if f is not None]
    fmts = [f for n, f in spec.inputs if f is not None]
    ea, eb = edge_codes(fmts[0]), edge_codes(fmts[1])
    a, b = (x.ravel() for x in np.meshgrid(ea, eb, indexing="ij"))
    ops = {names[0]: a, names[1]: b}
    if kind == "adder":
        f = fmts[0]
        ops["a"] = np.concatenate([a, ea])
        ops["b"] = np.concatenate([b, ea ^ f.sign_mask])         # x + -x
    elif kind == "fma":
        f = fmts[0]
        ec = edge_codes(f)
        c = rng.choice(ec, len(a))
        # c sweeps the edges against products 1 * x, and against zero products of both signs.
        one = np.full(len(ec), f.bias << f.m)
        zeros = np.array([0, f.sign_mask] * len(ec))
        ops["a"] = np.concatenate([a, one, zeros])
        ops["b"] = np.concatenate([b, ec, np.zeros(2 * len(ec), np.int64)])
        ops["c"] = np.concatenate([c, ec, np.repeat(ec, 2)])
    if kind in ("adder", "fma"):
        # Results around the overflow threshold (the random rnd of make_operations applies).
        top, _ = top_operations(spec)
        ops = {n: np.concatenate([v, top[n]]) for n, v in ops.items()}
    return ops


def make_operations(spec, count, rng, directed=True):
    """Operand columns (port name -> ``int64`` array) in a random order: the directed edge
    cases (if ``directed``) plus ``count`` structured random operations."""
    from fp8accel.sim import golden

    ops = _directed(spec, rng) if directed else {}
    n = max(count, 1)
    kind = spec.kind
    rand = {}
    if kind == "multiplier":
        rand["a"] = _random_codes(spec.fmt("a_fmt"), n, rng)
        rand["b"] = _random_codes(spec.fmt("b_fmt"), n, rng)
    elif kind == "convert":
        fi, fo = spec.fmt("in_fmt"), spec.fmt("out_fmt")
        # Half the codes lie around the output's range (its subnormals up to overflow).
        lo = fo.emin - fo.m - 2 + fi.bias
        hi = fo.emax + 2 + fi.bias
        near = _random_codes(fi, n, rng, max(lo, 0), min(hi, fi.exp_max_field),
                             tie_bits=max(fi.m - fo.m, 0))
        rand["a"] = np.where(rng.random(n) < 0.5, near, _random_codes(fi, n, rng))
    elif kind == "adder":
        f = spec.fmt("fmt")
        a = _random_codes(f, n, rng)
        pick = rng.random(n)
        b = np.where(pick < 0.5, _near(f, a, rng, f.m + 3), _random_codes(f, n, rng))
        rand["a"], rand["b"] = a, np.where(pick < 0.125, _negate_nudged(f, a, rng), b)
    else:
        f = spec.fmt("fmt")
        # Keep most products in range: factors within a quarter of the exponent range of one.
        q = max(f.exp_max_field // 4, 1)
        a = np.where(rng.random(n) < 0.75, _random_codes(f, n, rng, f.bias - q, f.bias + q),
                     _random_codes(f, n, rng))
        b = np.where(rng.random(n) < 0.75, _random_codes(f, n, rng, f.bias - q, f.bias + q),
                     _random_codes(f, n, rng))
        # Rounded toward zero, an overflowing product stays finite (the largest value), so c is
        # still drawn near its magnitude.
        prod = golden.fma(a, b, np.zeros(n, np.int64), f, "rtz").astype(np.int64)
        pick = rng.random(n)
        c = np.where(pick < 0.5, _near(f, prod, rng, f.m + 3), _random_codes(f, n, rng))
        c = np.where(pick < 0.125, _negate_nudged(f, prod, rng), c)
        rand["a"], rand["b"], rand["c"] = a, b, c
    for name in rand:
        ops[name] = np.concatenate([ops[name], rand[name]]) if name in ops else rand[name]
    total = len(next(iter(ops.values())))
    if spec.stochastic:
        top = (1 << spec.options["rbits"]) - 1
        rnd = rng.integers(0, top + 1, total, dtype=np.int64)
        pick = rng.random(total)
        rnd = np.where(pick < 0.125, 0, np.where(pick < 0.25, top, rnd))
        ops["rnd"] = rnd
    order = rng.permutation(total)
    return {name: np.asarray(col, np.int64)[order] for name, col in ops.items()}


def random_fp8(rng, shape, fmt, edge_rate=0.03, specials=True):
    """FP8 codes: normal-distributed values over about 2**-6 to 2**6 (most products and sums
    stay finite), ``edge_rate`` of them replaced by finite edge codes (zeros of both signs,
    subnormals, the largest values) and, with ``specials``, one NaN or Inf in half the
    matrices: a NaN in every element would make every result NaN and check nothing."""
    from fp8accel.sim import golden
    fmt = golden.format_by_name(fmt)
    vals = rng.standard_normal(shape) * 2.0 ** rng.integers(-4, 5, shape)
    codes = golden.encode(vals, fmt, saturate=True).astype(np.int64)
    edges = edge_codes(fmt)
    finite = edges[np.isfinite(golden.decode(edges, fmt))]
    mask = rng.random(shape) < edge_rate
    codes[mask] = rng.choice(finite, int(mask.sum()))
    if specials and rng.random() < 0.5:
        special = edges[~np.isfinite(golden.decode(edges, fmt))]
        codes[tuple(rng.integers(0, s) for s in shape)] = rng.choice(special)
    return codes.astype(np.uint8)


def random_acc(rng, shape, fmt="dlfloat16"):
    """Accumulator codes for ``C``: values like those of a GEMM result, a few edge codes."""
    from fp8accel.sim import golden

    fmt = golden.format_by_name(fmt)
    vals = rng.standard_normal(shape) * 2.0 ** rng.integers(-6, 10, shape)
    codes = golden.encode(vals, fmt).astype(np.int64)
    edges = edge_codes(fmt)
    mask = rng.random(shape) < 0.03
    codes[mask] = rng.choice(edges, int(mask.sum()))
    return codes.astype(np.uint16)
