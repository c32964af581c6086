"""Operands for testing the arithmetic units: edge-case codes, directed cases of each unit
kind and structured random operands, shared by the Amaranth-simulator tests and the cocotb
testbenches."""

import numpy as np

__all__ = ["edge_codes", "make_operations"]


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
    from sim import golden

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
        return {"a": np.concatenate([edge_codes(fi),
                                     golden.encode(vals, fi).astype(np.int64)])}
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
    return ops


def make_operations(spec, count, rng, directed=True):
    """Operand columns (port name -> ``int64`` array) in a random order: the directed edge
    cases (if ``directed``) plus ``count`` structured random operations."""
    from sim import golden

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
