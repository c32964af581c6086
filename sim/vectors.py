"""Test vectors for the arithmetic units: edge-case codes and biased random operands."""

import numpy as np

from hw.fp.format import Specials

__all__ = ["edge_codes", "random_pairs", "random_triples", "cross"]


def edge_codes(fmt):
    """Codes every unit must get right: zeros, one, the ends of the normal and subnormal
    ranges, their neighbours, Inf and NaN where the format has them; both signs."""
    m, e = fmt.m, fmt.e
    one = fmt.bias << m
    mags = {0, 1, 2, (1 << m) - 1, 1 << m, (1 << m) + 1, one, one + 1, one - 1, one | (1 << (m - 1)),
            fmt.max_finite_mag, fmt.max_finite_mag - 1, (fmt.max_finite_mag >> m) << m,
            (2 << m) - 1, 3 << m}
    if fmt.has_inf:
        mags.add(fmt.inf_mag)
    if fmt.has_nan:
        mags.add(fmt.nan_code & fmt.mag_mask)
    if fmt.specials is Specials.IEEE:
        mags.add(fmt.mag_mask)                        # NaN with every mantissa bit set
    mags = sorted(x for x in mags if 0 <= x <= fmt.mag_mask)
    return np.array(mags + [x | fmt.sign_mask for x in mags], np.int64)


def cross(*columns):
    """Every combination of the given code arrays, as one array per operand."""
    grids = np.meshgrid(*columns, indexing="ij")
    return [g.ravel() for g in grids]


def random_pairs(fmt, n, rng):
    """``n`` operand pairs: a quarter uniform codes, the rest with nearby exponents (to
    exercise cancellation and rounding rather than one operand swamping the other)."""
    w = fmt.width
    a = rng.integers(0, 1 << w, n)
    b = rng.integers(0, 1 << w, n)
    near = np.arange(n) % 4 != 0
    # Flip low mantissa and exponent bits and the sign of a: exponents differ by a few binades.
    flip = rng.integers(0, 1 << (fmt.m + 2), n) | (rng.integers(0, 2, n) << (w - 1))
    return a, np.where(near, a ^ flip, b)


def random_triples(fmt, n, rng, product):
    """``n`` FMA operand triples; for half of them ``c`` is close to ``-a*b``, where
    ``product(a, b)`` gives the product codes, so the sum cancels."""
    w = fmt.width
    a = rng.integers(0, 1 << w, n)
    b = rng.integers(0, 1 << w, n)
    c = rng.integers(0, 1 << w, n)
    half = np.arange(n) % 2 == 0
    p = np.asarray(product(a, b), np.int64)
    near = p ^ rng.integers(0, 1 << (fmt.m + 1), n) ^ (rng.integers(0, 2, n) << (w - 1))
    return a, b, np.where(half, near, c)
