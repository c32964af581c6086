"""Checks of the NumPy golden model (sim/golden.py) against outside references.

References (docs/numerics.md section 6):

* ``ml_dtypes`` for E5M2/E4M3 decode, encode and convert, ``numpy`` float16/float32 and
  ``ml_dtypes.bfloat16`` for the wider IEEE-style formats;
* Berkeley SoftFloat (``softfloatpy``) for BINARY16 and BINARY32 add and fma in rne, rna and rtz,
  and BINARY16 mul;
* ``tests/fraction_ref.py``, an exact ``fractions.Fraction`` transcription of docs/numerics.md
  sections 2-5, for everything, DLFLOAT16 included, in every rounding mode.

Results are compared as bit patterns (``np.array_equal`` on codes), never with a tolerance, except
in the statistical test of stochastic rounding.
"""

import functools
import math
import pathlib
import sys
import zlib
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
import softfloatpy as sf
from hypothesis import given, settings, strategies as st

from fp8accel.hw.fp.format import (E5M2, E4M3, DLFLOAT16, BINARY16, BFLOAT16, BINARY32, PRESETS,
                          Specials)
from fp8accel.sim import golden as G
from fp8accel.sim.run.units import UnitSpec
from fp8accel.sim.vectors import top_expected, top_operations, top_values

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import fraction_ref as ref  # noqa: E402

FORMATS = (E5M2, E4M3, DLFLOAT16, BINARY16, BFLOAT16, BINARY32)
FP8 = (E5M2, E4M3)
ML_FP8 = {"E5M2": ml_dtypes.float8_e5m2, "E4M3": ml_dtypes.float8_e4m3fn}
#: (mode, rbits) pairs: the three deterministic modes and stochastic rounding with several widths.
MODE_CASES = (("rne", 16), ("rna", 16), ("rtz", 16), ("sr", 1), ("sr", 4), ("sr", 16), ("sr", 32))
MODE_IDS = [m if m != "sr" else f"sr{r}" for m, r in MODE_CASES]

D = DLFLOAT16
ONE = 0x3E00            # DLFLOAT16 1.0: E = 31, M = 0

HYP = settings(max_examples=200, deadline=None)


# Helpers ------------------------------------------------------------------------------------------

def rng_for(*key):
    """A generator seeded from the test parameters, so that every case draws different data."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def codes_dtype(fmt):
    return np.uint8 if fmt.width <= 8 else np.uint16 if fmt.width <= 16 else np.uint32


def cast(x, dtype):
    """``x.astype(dtype)`` for reference values: NaN payloads and overflow are expected here."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(x).astype(dtype)


def as_codes(x, fmt):
    return np.asarray(x, np.int64).astype(codes_dtype(fmt))


def check(got, want, inputs=(), what=""):
    """Assert bit-exact equality of code arrays, listing the first mismatches with their inputs."""
    got = np.asarray(got)
    want = np.asarray(want, np.int64)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype.kind == "u", got.dtype
    got64 = got.astype(np.int64)
    if np.array_equal(got64, want):
        return
    bad = np.flatnonzero(got64.ravel() != want.ravel())
    lines = [f"{what}: {bad.size} of {got.size} results differ"]
    for i in bad[:10]:
        ins = []
        for x in inputs:
            v = np.broadcast_to(np.asarray(x), got.shape).ravel()[i]
            ins.append(f"{int(v):#x}" if np.asarray(x).dtype.kind in "ui" else repr(float(v)))
        lines.append(f"  inputs ({', '.join(ins)}): golden {int(got64.ravel()[i]):#x}, "
                     f"expected {int(want.ravel()[i]):#x}")
    raise AssertionError("\n".join(lines))


def rnd_for(mode, rbits, n, rng):
    return rng.integers(0, 2 ** rbits, n, dtype=np.int64) if mode == "sr" else None


def edge_codes(fmt):
    """Both signs of: zero, the smallest values, the ends of the subnormal/normal ranges, values
    around one, the largest values, and the special codes (non-canonical NaNs included)."""
    m, bias = fmt.m, fmt.bias
    mags = {0, 1, 2, 3, (1 << m) - 1, 1 << m, (1 << m) + 1, (2 << m) - 1, 2 << m,
            bias << m, (bias << m) + 1, (bias << m) - 1, ((bias + 1) << m) - 1,
            ((bias - m - 3) << m) + 5,
            ref.max_finite_code(fmt), ref.max_finite_code(fmt) - 1,
            ref.max_finite_code(fmt) - (1 << m)}
    if fmt.specials is Specials.IEEE:
        mags |= {fmt.exp_max_field << m, (fmt.exp_max_field << m) | 1, fmt.mag_mask}
    else:
        mags |= {fmt.mag_mask}
    mags = sorted(x for x in mags if 0 <= x <= fmt.mag_mask)
    return mags + [x | fmt.sign_mask for x in mags]


def near(mag, spread, fmt, rng):
    """Magnitude codes within ``spread`` of ``mag`` (clipped to the code range)."""
    return np.clip(mag + rng.integers(-spread, spread + 1, mag.shape), 0, fmt.mag_mask)


def random_sign(n, fmt, rng):
    return rng.integers(0, 2, n) * fmt.sign_mask


def mid_codes(fmt, n, rng, span=None):
    """Codes whose exponent lies within ``span`` binades of one; one in eight fully random."""
    span = span if span is not None else max(2, (1 << fmt.e) // 4)
    E = np.clip(fmt.bias + rng.integers(-span, span + 1, n), 0, fmt.exp_max_field)
    mag = (E << fmt.m) | rng.integers(0, 1 << fmt.m, n)
    codes = np.minimum(mag, fmt.mag_mask) | random_sign(n, fmt, rng)
    wild = rng.integers(0, 8, n) == 0
    return np.where(wild, rng.integers(0, 1 << fmt.width, n), codes)


def add_operands(fmt, n, rng):
    """Pairs for addition: uniform, close exponents, near cancellation, and edge codes."""
    a = rng.integers(0, 1 << fmt.width, n)
    amag = a & fmt.mag_mask
    kind = rng.integers(0, 5, n)
    b = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [rng.integers(0, 1 << fmt.width, n),
         near(amag, (fmt.m + 4) << fmt.m, fmt, rng) | random_sign(n, fmt, rng),
         near(amag, 3, fmt, rng) | ((a & fmt.sign_mask) ^ fmt.sign_mask),
         near(amag, (fmt.m + 4) << fmt.m, fmt, rng) | ((a & fmt.sign_mask) ^ fmt.sign_mask)],
        rng.choice(edge_codes(fmt), n))
    return a, b


def fma_operands(fmt, n, rng):
    """Triples for fma: a, b near one; c uniform, near -a*b (cancellation), near |a*b|, or edge."""
    a, b = mid_codes(fmt, n, rng), mid_codes(fmt, n, rng)
    c = rng.integers(0, 1 << fmt.width, n)
    kind = rng.integers(0, 4, n)
    edges = edge_codes(fmt)
    for i in range(n):
        p = ref.exact_mul(ref.decode(int(a[i]), fmt), ref.decode(int(b[i]), fmt))
        if kind[i] == 3:
            c[i] = edges[rng.integers(len(edges))]
        elif kind[i] and p.kind == "num" and p.mag != 0:
            pc = ref.round_to(0, p.mag, fmt, "rtz", saturate=True)
            if kind[i] == 1:      # near cancellation
                mag = pc + rng.integers(-3, 4)
                sign = (p.sign ^ 1) * fmt.sign_mask
            else:                 # within a few binades, either sign
                mag = pc + rng.integers(-(fmt.m + 4) << fmt.m, ((fmt.m + 4) << fmt.m) + 1)
                sign = rng.integers(0, 2) * fmt.sign_mask
            c[i] = int(np.clip(mag, 0, fmt.mag_mask)) | sign
    return a, b, c


def codes_in_range(fmt, lo_exp, hi_exp, n, rng):
    """Codes of ``fmt`` with unbiased exponents in ``[lo_exp, hi_exp]`` (clipped), both signs."""
    E = np.clip(fmt.bias + rng.integers(lo_exp, hi_exp + 1, n), 0, fmt.exp_max_field)
    mag = np.minimum((E << fmt.m) | rng.integers(0, 1 << fmt.m, n), fmt.mag_mask)
    return mag | random_sign(n, fmt, rng)


def ref_codes(fn, *arrays, **kw):
    """Apply a scalar reference function elementwise."""
    cols = [np.broadcast_to(np.asarray(x), np.broadcast(*arrays).shape).ravel() for x in arrays]
    out = [fn(*(int(c[i]) for c in cols), **kw) for i in range(cols[0].size if cols else 0)]
    return np.array(out, np.int64).reshape(np.broadcast(*arrays).shape)


# Format presets -----------------------------------------------------------------------------------

def test_presets_match_spec_table():
    table = {"e5m2": (5, 2, 15, True, "ieee"), "e4m3": (4, 3, 7, True, "fn"),
             "dlfloat16": (6, 9, 31, False, "single"), "binary16": (5, 10, 15, True, "ieee"),
             "bfloat16": (8, 7, 127, True, "ieee"), "binary32": (8, 23, 127, True, "ieee")}
    assert set(PRESETS) == set(table)
    for name, (e, m, bias, sub, sp) in table.items():
        f = PRESETS[name]
        assert (f.e, f.m, f.bias, f.subnormals, f.specials.value) == (e, m, bias, sub, sp)
    # Derived DLFLOAT16 facts of docs/numerics.md section 1.
    assert ref.min_positive(DLFLOAT16) == (1 + Fraction(1, 512)) * ref.pow2(-31)
    assert ref.max_finite(DLFLOAT16) == (2 - Fraction(1, 256)) * ref.pow2(32)
    assert ref.max_finite_code(DLFLOAT16) == 0x7FFE
    assert [ref.decode(c, DLFLOAT16).kind for c in (0x7FFF, 0xFFFF)] == ["nan", "nan"]
    assert [ref.nan_code(f) for f in (E5M2, BINARY16, E4M3, DLFLOAT16)] == [0x7E, 0x7E00,
                                                                           0x7F, 0x7FFF]


def test_result_dtypes():
    for fmt, dt in ((E5M2, np.uint8), (DLFLOAT16, np.uint16), (BINARY32, np.uint32)):
        assert G.add(np.array([1, 2]), np.array([3, 4]), fmt).dtype == dt
        assert G.encode([1.0], fmt).dtype == dt
        assert G.convert(np.array([0x3C], np.uint8), E5M2, fmt).dtype == dt


# Decode -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FP8, ids=str)
def test_decode_fp8_all_codes_vs_ml_dtypes(fmt):
    codes = np.arange(256, dtype=np.uint8)
    got = G.decode(codes, fmt)
    want = cast(codes.view(ML_FP8[fmt.name]), np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    ok = ~np.isnan(want)
    assert np.array_equal(got[ok], want[ok])
    assert np.array_equal(np.signbit(got[ok]), np.signbit(want[ok]))   # -0 at 0x80
    assert np.signbit(got[0x80]) and not np.signbit(got[0])
    nans = np.flatnonzero(np.isnan(got))
    if fmt is E5M2:
        assert list(nans) == list(range(0x7D, 0x80)) + list(range(0xFD, 0x100))
        assert got[0x7C] == np.inf and got[0xFC] == -np.inf
    else:
        assert list(nans) == [0x7F, 0xFF]
        assert np.isfinite(got[~np.isnan(got)]).all()


def test_decode_binary16_bfloat16_binary32_vs_numpy():
    codes = np.arange(1 << 16, dtype=np.uint16)
    for fmt, view in ((BINARY16, np.float16), (BFLOAT16, ml_dtypes.bfloat16)):
        got = G.decode(codes, fmt)
        want = cast(codes.view(view), np.float64)
        assert np.array_equal(got, want, equal_nan=True)
        assert np.array_equal(np.signbit(got[~np.isnan(got)]), np.signbit(want[~np.isnan(want)]))
    c32 = rng_for("dec32").integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32)
    c32[:6] = [0, 0x80000000, 1, 0x7F800000, 0xFF800000, 0x7FC00001]
    got = G.decode(c32, BINARY32)
    want = cast(c32.view(np.float32), np.float64)
    assert np.array_equal(got, want, equal_nan=True)
    ok = ~np.isnan(want)
    assert np.array_equal(np.signbit(got[ok]), np.signbit(want[ok]))


def test_decode_dlfloat16_all_codes_vs_ref():
    codes = np.arange(1 << 16, dtype=np.uint16)
    got = G.decode(codes, DLFLOAT16)
    want = np.array([ref.to_float(int(c), DLFLOAT16) for c in codes])
    assert np.array_equal(got, want, equal_nan=True)
    ok = ~np.isnan(want)
    assert np.array_equal(np.signbit(got[ok]), np.signbit(want[ok]))
    assert list(np.flatnonzero(np.isnan(got))) == [0x7FFF, 0xFFFF]
    assert got[0x8000] == 0 and np.signbit(got[0x8000])
    # No subnormals: code 1 is (1 + 2^-9) * 2^-31, code 0x200 is 2^-30.
    assert got[1] == (1 + 2 ** -9) * 2.0 ** -31 and got[0x200] == 2.0 ** -30
    assert got[0x7FFE] == (2 - 2 ** -8) * 2.0 ** 32


# Encode -------------------------------------------------------------------------------------------

def fp8_value_grid(fmt):
    """Every finite FP8 magnitude as float64, in code order."""
    mags = np.arange(1 << (fmt.width - 1), dtype=np.uint8)
    vals = cast(mags.view(ML_FP8[fmt.name]), np.float64)
    return vals[np.isfinite(vals)]


def fp8_encode_inputs(fmt, rng):
    """float32-representable inputs: every code, every midpoint and its float32 neighbours,
    values beyond the largest finite, random values over all binades, subnormals, specials.

    ``ml_dtypes`` (0.6) converts float64 to FP8 through float32 (double rounding), so inputs
    compared with it must be exact float32 values; float64-only inputs are checked against the
    Fraction reference in a separate test."""
    v = fp8_value_grid(fmt)
    mid = (v[:-1] + v[1:]) / 2
    mid32 = mid.astype(np.float32)
    assert np.array_equal(cast(mid32, np.float64), mid)
    beyond = v[-1] * np.array([1.0, 1.0625, 1.07, 1.125, 1.1251, 1.5, 2, 1e3, 1e30])
    rand = (rng.uniform(1, 2, 20000) * 2.0 ** rng.integers(-30, 20, 20000)).astype(np.float32)
    sub = (rng.uniform(0, 1, 5000) * 2.0 ** (1 - fmt.bias)).astype(np.float32)
    xs = np.concatenate([v, mid, np.nextafter(mid32, np.float32(0)),
                         np.nextafter(mid32, np.float32(np.inf)), beyond, rand, sub,
                         [0.0, 2.0 ** -40, np.inf, np.nan]]).astype(np.float32)
    xs = np.concatenate([xs, -xs])
    return xs.astype(np.float64)


@pytest.mark.parametrize("fmt", FP8, ids=str)
def test_encode_fp8_vs_ml_dtypes(fmt):
    xs = fp8_encode_inputs(fmt, rng_for("enc", fmt.name))
    got = G.encode(xs, fmt)
    want = cast(cast(xs, np.float32), ML_FP8[fmt.name]).view(np.uint8)
    want_nan = np.isnan(cast(want.view(ML_FP8[fmt.name]), np.float64))
    # Our NaN is the canonical code (sign 0); ml_dtypes may give 0xFF for E4M3 overflow of -x.
    assert np.array_equal(got[want_nan], np.full(want_nan.sum(), fmt.nan_code, np.uint8))
    check(got[~want_nan], want[~want_nan], [xs[~want_nan]], f"encode {fmt}")
    # Overflow without saturation: Inf for E5M2, NaN for E4M3.
    big = G.encode(np.array([1e6, -1e6]), fmt)
    assert list(big) == ([0x7C, 0xFC] if fmt is E5M2 else [0x7F, 0x7F])


@pytest.mark.parametrize("fmt", FP8, ids=str)
def test_encode_fp8_saturate_vs_ml_dtypes(fmt):
    xs = fp8_encode_inputs(fmt, rng_for("encsat", fmt.name))
    got = G.encode(xs, fmt, saturate=True)
    top = fp8_value_grid(fmt)[-1]
    clipped = np.where(np.isfinite(xs), np.clip(xs, -top, top), xs)
    want = cast(cast(clipped, np.float32), ML_FP8[fmt.name]).view(np.uint8)
    nan_in = np.isnan(xs)
    assert (got[nan_in] == fmt.nan_code).all()
    inf_in = np.isinf(xs)
    inf_out = [0x7C, 0xFC] if fmt is E5M2 else [0x7F, 0x7F]     # Inf stays Inf / becomes NaN
    assert set(got[inf_in & (xs > 0)]) == {inf_out[0]}
    assert set(got[inf_in & (xs < 0)]) == {inf_out[1]}
    ok = np.isfinite(xs)
    check(got[ok], want[ok], [xs[ok]], f"encode saturate {fmt}")
    assert list(G.encode(np.array([1e30, -1e30]), fmt, saturate=True)) == (
        [0x7B, 0xFB] if fmt is E5M2 else [0x7E, 0xFE])


def test_encode_fp8_specific_codes():
    # Ties: 1.125 is halfway between 1.0 (0x3C, even) and 1.25 (0x3D); 1.375 between 0x3D and 0x3E.
    assert list(G.encode([1.125, 1.375, -1.125], E5M2)) == [0x3C, 0x3E, 0xBC]
    assert list(G.encode([1.125, 1.375], E5M2, "rna")) == [0x3D, 0x3E]
    # E5M2 largest finite 57344; 61440 is the tie with 65536 (odd LSB): rne overflows to Inf.
    assert list(G.encode([61439.0, 61440.0, -61440.0], E5M2)) == [0x7B, 0x7C, 0xFC]
    # E4M3 largest finite 448 (M = 110, even); the tie 464 stays at 448, above it overflows.
    assert list(G.encode([464.0, 464.5], E4M3)) == [0x7E, 0x7F]
    # Subnormal ties: 2^-17 is halfway between 0 and 2^-16 -> +0 (even); -2^-17 -> -0.
    assert list(G.encode([2.0 ** -17, -(2.0 ** -17), 3 * 2.0 ** -17], E5M2)) == [0, 0x80, 2]
    assert list(G.encode([np.nan, -np.nan, -0.0], E5M2)) == [0x7E, 0x7E, 0x80]
    assert list(G.encode([np.nan, np.inf, -np.inf], E4M3)) == [0x7F, 0x7F, 0x7F]


def test_encode_numpy_float16_float32_bfloat16():
    """Direct float64 rounding against numpy's correctly rounded casts (and ml_dtypes bfloat16
    from float32 inputs)."""
    rng = rng_for("enc16")
    n = 50000
    x = rng.uniform(1, 2, n) * 2.0 ** rng.integers(-30, 18, n) * rng.choice([-1, 1], n)
    grid = np.arange(0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    ties = (grid[:-1] + grid[1:]) / 2
    x = np.concatenate([x, ties, -ties, np.nextafter(ties, 0), np.nextafter(ties, np.inf),
                        [65519.99, 65520.0, 70000.0, 1e300, -1e300, 5e-324, 2.0 ** -25,
                         2.0 ** -25 * (1 + 2 ** -40), 0.0, -0.0, np.inf, -np.inf]])
    want16 = cast(x, np.float16).view(np.uint16)
    check(G.encode(x, BINARY16), want16, [x], "encode binary16 vs numpy")
    y = np.concatenate([x, rng.uniform(1, 2, n) * 2.0 ** rng.integers(-160, 129, n)])
    want32 = cast(y, np.float32).view(np.uint32)
    check(G.encode(y, BINARY32), want32, [y], "encode binary32 vs numpy")
    y32 = cast(y, np.float32)
    y32 = y32[np.isfinite(y32)].astype(np.float64)
    check(G.encode(y32, BFLOAT16), cast(y32.astype(np.float32), ml_dtypes.bfloat16)
          .view(np.uint16), [y32], "encode bfloat16 vs ml_dtypes")


@pytest.mark.parametrize("mode,rbits", MODE_CASES, ids=MODE_IDS)
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_encode_vs_ref(fmt, mode, rbits):
    """float64 inputs with bits far below the format's precision (no double rounding allowed)."""
    rng = rng_for("encref", fmt.name, mode, rbits)
    n = 400
    lo, hi = ref.floor_log2(ref.min_positive(fmt)) - 3, ref.floor_log2(ref.max_finite(fmt)) + 2
    x = rng.uniform(1, 2, n) * 2.0 ** rng.integers(lo, hi + 1, n) * rng.choice([-1, 1], n)
    # Exact midpoints nudged by one float64 ulp, and exact values.
    v = np.array([ref.to_float(int(c), fmt) for c in codes_in_range(fmt, lo, hi, 50, rng)])
    v = v[np.isfinite(v)]
    x = np.concatenate([x, v, np.nextafter(v, 0), np.nextafter(v, np.inf), [0.0, -0.0]])
    rnd = rnd_for(mode, rbits, x.size, rng)
    for sat in (False, True):
        got = G.encode(x, fmt, mode, saturate=sat, rnd=rnd, rbits=rbits)
        want = [ref.encode_float(x[i], fmt, mode, sat, None if rnd is None else int(rnd[i]),
                                 rbits) for i in range(x.size)]
        check(got, want, [x], f"encode {fmt} {mode} rbits={rbits} saturate={sat}")


# BINARY16 and BINARY32 against Berkeley SoftFloat ------------------------------------------------

SF_MODES = {"rne": sf.RoundingMode.NEAR_EVEN, "rna": sf.RoundingMode.NEAR_MAX_MAG,
            "rtz": sf.RoundingMode.MIN_MAG}
#: Per IEEE format: SoftFloat's type, its add, mul and fma, and NumPy's type.
SF_FORMATS = {
    BINARY16: (sf.Float16, {"add": sf.f16_add, "mul": sf.f16_mul, "fma": sf.f16_mul_add},
               np.float16),
    BINARY32: (sf.Float32, {"add": sf.f32_add, "mul": sf.f32_mul, "fma": sf.f32_mul_add},
               np.float32),
}
SF_N = 100_000
SF_ARITY = {"add": 2, "mul": 2, "fma": 3}


def sf_float(code, fmt):
    return SF_FORMATS[fmt][0].from_bytes(int(code).to_bytes(fmt.width // 8, "big"))


def sf_bits(x):
    return int.from_bytes(x.to_bytes(), "big")


def ieee_operands(fmt, n, rng, arity):
    """Random codes; one fifth from a list of edge codes; close exponents, cancellation, and
    results around the overflow threshold (where rtz differs from the other modes)."""
    m, sm, mag, top = fmt.m, fmt.sign_mask, fmt.mag_mask, fmt.max_finite_mag
    one = fmt.bias << m
    ops = [rng.integers(0, 1 << fmt.width, n) for _ in range(arity)]
    edges = np.array(edge_codes(fmt) + [1, (1 << m) - 1, 1 << m, one, one | sm, top, top | sm])
    for x in ops:
        pick = rng.integers(0, 5, n) == 0
        x[pick] = rng.choice(edges, pick.sum())
    last = ops[-1]
    kind = rng.integers(0, 4, n)
    over = kind == 3

    def top_codes(binades, sign):
        """Finite codes in the top ``binades`` binades, with the given sign bits."""
        return (top - rng.integers(0, binades << m, n)) | sign

    if arity == 2:
        a = ops[0]
        close = near(a & mag, 12 << m, fmt, rng) | random_sign(n, fmt, rng)
        cancel = near(a & mag, 2, fmt, rng) | ((a & sm) ^ sm)
        # Two values of one sign in the top two binades: sums from 2**emax to 2 M.
        a[over] = top_codes(2, random_sign(n, fmt, rng))[over]
        ops[1] = np.select([kind == 1, kind == 2, over], [close, cancel, top_codes(2, a & sm)],
                           last)
    elif arity == 3:
        a, b = ops[0], ops[1]
        mid = rng.integers(0, 2, n).astype(bool)
        for x in (a, b):   # keep many products in range
            x[mid] = codes_in_range(fmt, -8, 7, mid.sum(), rng)
        # A large factor times one within a binade of one, plus a large c of either sign.
        a[over] = top_codes(2, random_sign(n, fmt, rng))[over]
        b[over] = codes_in_range(fmt, -1, 0, n, rng)[over]
        dt = SF_FORMATS[fmt][2]
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            # Exact in float64: the significand product has at most 2 * 24 bits.
            p = (a.astype(codes_dtype(fmt)).view(dt).astype(np.float64)
                 * b.astype(codes_dtype(fmt)).view(dt).astype(np.float64))
            pc = (-p).astype(dt).view(codes_dtype(fmt)).astype(np.int64)
        cancel = np.where(np.isfinite(p), near(pc & mag, 2, fmt, rng) | (pc & sm), last)
        ops[2] = np.select([kind == 1, over], [cancel, top_codes(4, random_sign(n, fmt, rng))],
                           last)
    return [x.astype(codes_dtype(fmt)) for x in ops]


def softfloat_run(fmt, op, mode, ops):
    """SoftFloat's result codes and overflow flags."""
    fn = SF_FORMATS[fmt][1][op]
    xs = [[sf_float(c, fmt) for c in col] for col in ops]
    out, ovf = [], []
    sf.set_rounding_mode(SF_MODES[mode])
    try:
        for args in zip(*xs):
            sf.set_exception_flags(0)
            out.append(sf_bits(fn(*args)))
            ovf.append(sf.test_exception_flags(sf.ExceptionFlag.OVERFLOW))
    finally:
        sf.set_rounding_mode(sf.RoundingMode.NEAR_EVEN)
    return np.array(out, np.int64), np.array(ovf, bool)


def golden_ieee(fmt, op, mode, ops):
    if op == "add":
        return G.add(ops[0], ops[1], fmt, mode)
    if op == "fma":
        return G.fma(ops[0], ops[1], ops[2], fmt, mode)
    assert mode == "rne"
    return G.mul(ops[0], ops[1], fmt, fmt, fmt)


def is_nan_code(codes, fmt):
    return (np.asarray(codes, np.int64) & fmt.mag_mask) > fmt.inf_mag


SF_CASES = [(BINARY16, "mul", "rne")] + [(fmt, op, mode) for fmt in (BINARY16, BINARY32)
                                         for op in ("add", "fma") for mode in SF_MODES]


@pytest.mark.parametrize("fmt,op,mode", SF_CASES,
                         ids=[f"{f.name.lower()}-{op}-{mode}" for f, op, mode in SF_CASES])
def test_ieee_vs_softfloat(fmt, op, mode):
    """Bit for bit with SoftFloat in each IEEE mode, NaN payloads aside (our NaN is always the
    canonical one). In rtz an overflow gives the largest finite value in both."""
    ops = ieee_operands(fmt, SF_N, rng_for("sf", fmt.name, op, mode), SF_ARITY[op])
    want, ovf = softfloat_run(fmt, op, mode, ops)
    got = golden_ieee(fmt, op, mode, ops)
    sf_nan = is_nan_code(want, fmt)
    assert sf_nan.any() and (~sf_nan).any()
    assert (got[sf_nan] == fmt.nan_code).all(), f"NaN results must be {fmt.nan_code:#x}"
    check(got[~sf_nan], want[~sf_nan], [o[~sf_nan] for o in ops], f"{fmt} {op} {mode}")
    # The operands did exercise the interesting classes: zeros, subnormals, Inf and overflow,
    # the last in both signs and as SoftFloat rounds it in this mode.
    mag = want & fmt.mag_mask
    assert (mag[~sf_nan] == 0).sum() > 100
    assert ((mag > 0) & (mag < 1 << fmt.m)).sum() > 100
    assert (mag == fmt.inf_mag).sum() > 100
    negative = want >= fmt.sign_mask
    assert (ovf & ~negative).sum() > 100 and (ovf & negative).sum() > 100
    over = fmt.max_finite_mag if mode == "rtz" else fmt.inf_mag
    assert (mag[ovf] == over).all()


def test_reference_itself_vs_outside_references():
    """The Fraction reference agrees with SoftFloat and ml_dtypes on a sample, so that the
    formats where only it checks the golden model (DLFLOAT16, rna/rtz/sr) rest on tested code."""
    rng = rng_for("refself")
    for fmt, op, mode in SF_CASES:
        ops = ieee_operands(fmt, 1000, rng, SF_ARITY[op])
        want, _ = softfloat_run(fmt, op, mode, ops)
        fn = {"add": lambda x, y: ref.add(x, y, fmt, mode),
              "mul": lambda x, y: ref.mul(x, y, fmt, fmt, fmt),
              "fma": lambda x, y, z: ref.fma(x, y, z, fmt, mode)}[op]
        got = ref_codes(fn, *ops)
        sf_nan = is_nan_code(want, fmt)
        assert (got[sf_nan] == fmt.nan_code).all()
        assert np.array_equal(got[~sf_nan], want[~sf_nan]), (fmt, op, mode)
    for fmt in FP8:
        xs = fp8_encode_inputs(fmt, rng)[::10]
        want = cast(cast(xs, np.float32), ML_FP8[fmt.name])
        nan = np.isnan(cast(want, np.float64))
        got = np.array([ref.encode_float(x, fmt) for x in xs])
        assert (got[nan] == ref.nan_code(fmt)).all()
        assert np.array_equal(got[~nan], want.view(np.uint8)[~nan]), fmt


# All formats and modes against the Fraction reference ---------------------------------------------

@pytest.mark.parametrize("mode,rbits", MODE_CASES, ids=MODE_IDS)
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_add_vs_ref(fmt, mode, rbits):
    rng = rng_for("add", fmt.name, mode, rbits)
    a, b = add_operands(fmt, 1500 if mode != "sr" else 800, rng)
    rnd = rnd_for(mode, rbits, a.size, rng)
    got = G.add(as_codes(a, fmt), as_codes(b, fmt), fmt, mode, rnd, rbits)
    if rnd is None:
        want = ref_codes(ref.add, a, b, fmt=fmt, mode=mode)
    else:
        want = ref_codes(lambda x, y, r: ref.add(x, y, fmt, mode, r, rbits), a, b, rnd)
    check(got, want, [a, b] + ([rnd] if rnd is not None else []), f"add {fmt} {mode}{rbits}")


@pytest.mark.parametrize("mode,rbits", MODE_CASES, ids=MODE_IDS)
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_fma_vs_ref(fmt, mode, rbits):
    rng = rng_for("fma", fmt.name, mode, rbits)
    a, b, c = fma_operands(fmt, 1200 if mode != "sr" else 500, rng)
    rnd = rnd_for(mode, rbits, a.size, rng)
    got = G.fma(as_codes(a, fmt), as_codes(b, fmt), as_codes(c, fmt), fmt, mode, rnd, rbits)
    if rnd is None:
        want = ref_codes(ref.fma, a, b, c, fmt=fmt, mode=mode)
    else:
        want = ref_codes(lambda x, y, z, r: ref.fma(x, y, z, fmt, mode, r, rbits), a, b, c, rnd)
    check(got, want, [a, b, c] + ([rnd] if rnd is not None else []), f"fma {fmt} {mode}{rbits}")


EDGE_MODES = (("rne", 16), ("rna", 16), ("rtz", 16), ("sr", 1), ("sr", 16))


@pytest.mark.parametrize("mode,rbits", EDGE_MODES, ids=["rne", "rna", "rtz", "sr1", "sr16"])
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_add_edge_pairs_vs_ref(fmt, mode, rbits):
    edges = np.array(edge_codes(fmt))
    a, b = [x.ravel() for x in np.meshgrid(edges, edges)]
    rng = rng_for("addedge", fmt.name, mode, rbits)
    rnd = rnd_for(mode, rbits, a.size, rng)
    got = G.add(as_codes(a, fmt), as_codes(b, fmt), fmt, mode, rnd, rbits)
    want = [ref.add(int(x), int(y), fmt, mode, None if rnd is None else int(rnd[i]), rbits)
            for i, (x, y) in enumerate(zip(a, b))]
    check(got, want, [a, b], f"add edges {fmt} {mode}{rbits}")


@pytest.mark.parametrize("mode,rbits", MODE_CASES[:3] + (("sr", 16),), ids=MODE_IDS[:3] + ["sr16"])
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_fma_edge_triples_vs_ref(fmt, mode, rbits):
    # Zero, smallest, one and its neighbour, largest finite, Inf or NaN, both signs: enough for
    # 0 * Inf, Inf - Inf, overflow, underflow, cancellation and far alignment.
    special = (fmt.exp_max_field << fmt.m) if fmt.has_inf else fmt.mag_mask
    pick = [0, 1, fmt.bias << fmt.m, (fmt.bias << fmt.m) + 1, ref.max_finite_code(fmt), special]
    pick = np.array(pick + [x | fmt.sign_mask for x in pick])
    a, b, c = [x.ravel() for x in np.meshgrid(pick, pick, pick)]
    rnd = rnd_for(mode, rbits, a.size, rng_for("fmaedge", fmt.name, mode))
    got = G.fma(as_codes(a, fmt), as_codes(b, fmt), as_codes(c, fmt), fmt, mode, rnd, rbits)
    want = [ref.fma(int(x), int(y), int(z), fmt, mode, None if rnd is None else int(rnd[i]),
                    rbits) for i, (x, y, z) in enumerate(zip(a, b, c))]
    check(got, want, [a, b, c], f"fma edges {fmt} {mode}")


@pytest.mark.parametrize("mode,rbits", MODE_CASES, ids=MODE_IDS)
@pytest.mark.parametrize("out_fmt", FORMATS, ids=str)
def test_convert_vs_ref(out_fmt, mode, rbits):
    rng = rng_for("conv", out_fmt.name, mode, rbits)
    lo = ref.floor_log2(ref.min_positive(out_fmt)) - 3
    hi = ref.floor_log2(ref.max_finite(out_fmt)) + 2
    for in_fmt in FORMATS:
        n = 80
        a = np.concatenate([codes_in_range(in_fmt, lo, hi, n, rng),
                            rng.integers(0, 1 << in_fmt.width, n // 4), edge_codes(in_fmt)])
        rnd = rnd_for(mode, rbits, a.size, rng)
        for sat in (False, True):
            got = G.convert(as_codes(a, in_fmt), in_fmt, out_fmt, mode, sat, rnd, rbits)
            want = [ref.convert(int(x), in_fmt, out_fmt, mode, sat,
                                None if rnd is None else int(rnd[i]), rbits)
                    for i, x in enumerate(a)]
            check(got, want, [a], f"convert {in_fmt}->{out_fmt} {mode}{rbits} sat={sat}")


@pytest.mark.parametrize("mode,rbits", MODE_CASES, ids=MODE_IDS)
@pytest.mark.parametrize("out_fmt", [E5M2, E4M3, DLFLOAT16, BINARY16, BFLOAT16], ids=str)
def test_convert_ties_vs_ref(out_fmt, mode, rbits):
    """BINARY32 inputs exactly halfway between neighbouring codes (and one binary32 ulp either
    side): ties, carries out of the mantissa into the exponent, overflow at the top."""
    rng = rng_for("convtie", out_fmt.name, mode, rbits)
    mags = np.arange(0, ref.max_finite_code(out_fmt) + 1)
    if mags.size > 256:       # 16-bit formats: both ends, binade ends (carries), random
        ends = (np.arange(1, 1 << out_fmt.e) << out_fmt.m) - 1
        mags = np.unique(np.concatenate([mags[:40], mags[-40:], rng.choice(mags, 60),
                                         rng.choice(ends, 30)]))
        mags = mags[mags <= ref.max_finite_code(out_fmt)]
    a = []
    top = ref.max_finite(out_fmt)
    for c in mags:
        v = ref.decode(int(c), out_fmt).mag
        if c == ref.max_finite_code(out_fmt):
            nxt = top + ref.pow2(ref.floor_log2(top) - out_fmt.m)     # the grid continues
        else:
            nxt = ref.decode(int(c) + 1, out_fmt).mag
        mid = (v + nxt) / 2
        m32 = ref.code_of(0, mid, BINARY32)
        for code in (m32 - 1, m32, m32 + 1):
            a += [code, code | 0x80000000]
    a = np.array(a, np.int64)
    rnd = rnd_for(mode, rbits, a.size, rng)
    for sat in (False, True):
        got = G.convert(as_codes(a, BINARY32), BINARY32, out_fmt, mode, sat, rnd, rbits)
        want = [ref.convert(int(x), BINARY32, out_fmt, mode, sat,
                            None if rnd is None else int(rnd[i]), rbits) for i, x in enumerate(a)]
        check(got, want, [a], f"convert ties ->{out_fmt} {mode}{rbits} sat={sat}")


@pytest.mark.parametrize("in_fmt", [DLFLOAT16, BINARY16], ids=str)
@pytest.mark.parametrize("fmt", FP8, ids=str)
def test_convert_16bit_to_fp8_all_codes_vs_ml_dtypes(in_fmt, fmt):
    codes = np.arange(1 << 16, dtype=np.uint16)
    vals = np.array([ref.to_float(int(c), in_fmt) for c in codes]) if in_fmt is DLFLOAT16 \
        else cast(codes.view(np.float16), np.float64)
    v32 = cast(vals, np.float32)       # every DLFLOAT16 / binary16 value is a float32
    want = cast(v32, ML_FP8[fmt.name]).view(np.uint8)
    want_nan = np.isnan(cast(want.view(ML_FP8[fmt.name]), np.float64))
    got = G.convert(codes, in_fmt, fmt, saturate=False)
    assert (got[want_nan] == fmt.nan_code).all()
    check(got[~want_nan], want[~want_nan], [codes[~want_nan]], f"convert {in_fmt}->{fmt}")
    # Default saturate=True: finite values clip to the largest finite value first.
    top = fp8_value_grid(fmt)[-1]
    fin = np.isfinite(vals)
    want_sat = np.clip(v32[fin], -top, top).astype(ML_FP8[fmt.name]).view(np.uint8)
    check(G.convert(codes, in_fmt, fmt)[fin], want_sat, [codes[fin]], f"sat {in_fmt}->{fmt}")
    if in_fmt is BINARY16:
        inf = G.convert(np.array([0x7C00, 0xFC00], np.uint16), in_fmt, fmt)
        assert list(inf) == ([0x7C, 0xFC] if fmt is E5M2 else [0x7F, 0x7F])


def test_convert_binary32_vs_numpy_ml_dtypes():
    rng = rng_for("conv32")
    c = rng.integers(0, 1 << 32, 100_000, dtype=np.uint64).astype(np.uint32)
    c[:1000] = codes_in_range(BINARY32, -30, 20, 1000, rng)
    x = c.view(np.float32)
    want16 = cast(x, np.float16).view(np.uint16)
    fin = ~np.isnan(x)
    check(G.convert(c, BINARY32, BINARY16, saturate=False)[fin], want16[fin], [c[fin]], "->b16")
    check(G.convert(c, BINARY32, BFLOAT16, saturate=False)[fin],
          cast(x, ml_dtypes.bfloat16).view(np.uint16)[fin], [c[fin]], "->bf16")
    for fmt in FP8:
        want = cast(x, ML_FP8[fmt.name]).view(np.uint8)
        nan = np.isnan(cast(want.view(ML_FP8[fmt.name]), np.float64))
        got = G.convert(c, BINARY32, fmt, saturate=False)
        assert (got[nan] == fmt.nan_code).all()
        check(got[~nan], want[~nan], [c[~nan]], f"binary32->{fmt}")


@pytest.mark.parametrize("a_fmt,b_fmt", [(E5M2, E4M3), (E4M3, E5M2), (E4M3, E4M3)],
                         ids=["e5m2xe4m3", "e4m3xe5m2", "e4m3xe4m3"])
@pytest.mark.parametrize("out_fmt", [DLFLOAT16, BINARY16, BFLOAT16, BINARY32], ids=str)
def test_mul_vs_ref(a_fmt, b_fmt, out_fmt):
    rng = rng_for("mul", a_fmt.name, b_fmt.name, out_fmt.name)
    a = rng.integers(0, 256, 2500)
    b = rng.integers(0, 256, 2500)
    got = G.mul(as_codes(a, E5M2), as_codes(b, E5M2), a_fmt, b_fmt, out_fmt)
    want = ref_codes(ref.mul, a, b, a_fmt=a_fmt, b_fmt=b_fmt, out_fmt=out_fmt)
    check(got, want, [a, b], f"mul {a_fmt}x{b_fmt}->{out_fmt}")


def test_mul_e5m2_all_pairs_vs_ref():
    """All E5M2 x E5M2 -> DLFLOAT16 products (the paper's multiplier): every pair of positive
    codes against the reference, then the signs (XOR, NaN canonical) over all 65536 pairs."""
    pos = np.arange(128)
    a, b = [x.ravel() for x in np.meshgrid(pos, pos)]
    got = G.mul(as_codes(a, E5M2), as_codes(b, E5M2), E5M2, E5M2, D)
    want = ref_codes(ref.mul, a, b, a_fmt=E5M2, b_fmt=E5M2, out_fmt=D)
    check(got, want, [a, b], "mul E5M2xE5M2 positive")
    table = np.zeros((256, 256), np.int64)
    for sa in (0, 128):
        for sb in (0, 128):
            signed = np.where(want == 0x7FFF, 0x7FFF, want | (((sa ^ sb) >> 7) << 15))
            table[np.ix_(pos + sb, pos + sa)] = signed.reshape(128, 128)
    codes = np.arange(256)
    a, b = [x.ravel() for x in np.meshgrid(codes, codes)]
    check(G.mul(as_codes(a, E5M2), as_codes(b, E5M2)), table.ravel(), [a, b], "mul signed")
    check(G.mul_table(E5M2, E5M2, D), table.T, [], "mul_table")


# Directed DLFLOAT16 cases with hand-computed codes ------------------------------------------------



# The directed helpers pass one-element arrays; 0-d inputs are covered by
# test_zero_d_inputs_do_not_warn.

def u16(*codes):
    return np.array(codes, np.uint16)


def d_add(a, b, mode="rne", rnd=None, rbits=16):
    return int(G.add(u16(a), u16(b), D, mode, rnd, rbits)[0])


def d_fma(a, b, c, mode="rne", rnd=None, rbits=16):
    return int(G.fma(u16(a), u16(b), u16(c), D, mode, rnd, rbits)[0])


def b32(x):
    return int(np.float32(x).view(np.uint32))


def d_conv(x, mode="rne", saturate=True, rnd=None, rbits=16):
    return int(G.convert(np.array([b32(x)], np.uint32), BINARY32, D, mode, saturate, rnd,
                         rbits)[0])


@pytest.mark.parametrize("mode", ["rne", "rna", "rtz", "sr"])
def test_dlfloat16_signed_zeros_and_cancellation(mode):
    r = 0xFFFF if mode == "sr" else None
    assert d_add(ONE, ONE | 0x8000, mode, r) == 0x0000
    assert d_add(ONE | 0x8000, ONE, mode, r) == 0x0000
    assert d_add(0x8000, 0x8000, mode, r) == 0x8000
    assert d_add(0x0000, 0x8000, mode, r) == 0x0000
    assert d_add(0x8000, 0x0000, mode, r) == 0x0000
    assert d_add(0x8000, 0x0123, mode, r) == 0x0123
    assert d_fma(0x8000, ONE, 0x8000, mode, r) == 0x8000          # (-0)*(+1) + (-0)
    assert d_fma(0x0000, ONE | 0x8000, 0x8000, mode, r) == 0x8000  # (+0)*(-1) + (-0)
    assert d_fma(0x8000, ONE, 0x0000, mode, r) == 0x0000
    assert d_fma(0x8000, 0x8000, 0x8000, mode, r) == 0x0000        # (-0)*(-0) = +0
    assert d_fma(ONE, 0x4000, 0xC000, mode, r) == 0x0000           # 1*2 - 2


@pytest.mark.parametrize("mode", ["rne", "rna", "rtz", "sr"])
def test_dlfloat16_underflow_at_two_to_minus_bias(mode):
    r = 0xFFFF if mode == "sr" else None
    # 0x0201 = (1 + 2^-9) 2^-30, 0x0002 = (1 + 2^-8) 2^-31: the difference is exactly 2^-31,
    # whose code would be the zero code: it underflows to zero with the sign of the result.
    assert d_add(0x0201, 0x8002, mode, r) == 0x0000
    assert d_add(0x8201, 0x0002, mode, r) == 0x8000
    # 2^-16 * 2^-15 = 2^-31 exactly.
    assert d_fma(15 << 9, 16 << 9, 0x0000, mode, r) == 0x0000
    assert d_fma(15 << 9, (16 << 9) | 0x8000, 0x0000, mode, r) == 0x8000
    assert d_conv(2.0 ** -31, mode, rnd=r) == 0
    assert d_conv(-(2.0 ** -31), mode, rnd=r) == 0x8000
    # The smallest positive value survives.
    assert d_add(0x0001, 0x0000, mode, r) == 0x0001


def test_dlfloat16_rounding_near_smallest():
    x = (1 + 2 ** -10) * 2.0 ** -31        # halfway between 2^-31 (even) and code 1
    assert d_conv(x, "rne") == 0            # tie -> 2^-31 -> underflow
    assert d_conv(x, "rna") == 0x0001
    assert d_conv(x, "rtz") == 0
    assert d_conv(x, "sr", rnd=1, rbits=1) == 0x0001    # f = 1/2, t = 1: up iff rnd >= 1
    assert d_conv(x, "sr", rnd=0, rbits=1) == 0
    y = (1 + 3 * 2 ** -11) * 2.0 ** -31     # above the tie
    assert d_conv(y, "rne") == 0x0001 and d_conv(-y, "rne") == 0x8001
    assert d_conv(1.9 * 2.0 ** -32, "rne") == 0         # rounds to 2^-31 on the continued grid
    assert d_conv(1.9 * 2.0 ** -32, "rtz") == 0
    assert d_conv(2.0 ** -40, "rna") == 0


def test_dlfloat16_overflow_and_specials():
    top = 0x7FFE
    assert d_add(top, top) == 0x7FFF and d_add(top | 0x8000, top | 0x8000) == 0x7FFF
    # rtz never overflows to the special code: 2 * max is the largest finite value.
    assert d_add(top, top, "rtz") == 0x7FFE and d_add(top | 0x8000, top | 0x8000, "rtz") == 0xFFFE
    assert d_add(0x7FFF, ONE) == 0x7FFF and d_add(0xFFFF, ONE) == 0x7FFF
    assert d_fma(0xFFFF, 0, 0) == 0x7FFF
    # Above the largest finite value 1022 * 2^23 the grid continues with 1023 * 2^23 (the value
    # the special code 0x7FFF would have if it were a number), then 2^33.
    tie = (1022 + 0.5) * 2.0 ** 23           # halfway between max (even LSB) and 1023 * 2^23
    assert d_conv(tie, "rne", saturate=False) == 0x7FFE
    assert d_conv(tie, "rna", saturate=False) == 0x7FFF
    assert d_conv(tie, "rna", saturate=True) == 0x7FFE
    assert d_conv(tie, "rtz", saturate=False) == 0x7FFE
    assert d_conv(1023 * 2.0 ** 23, "rne", saturate=False) == 0x7FFF     # exact, but > max
    assert d_conv(1023 * 2.0 ** 23, "rtz", saturate=False) == 0x7FFE     # rtz: the largest
    assert d_conv(-1023 * 2.0 ** 23, "rtz", saturate=False) == 0xFFFE
    assert d_conv(1023 * 2.0 ** 23, "rtz") == 0x7FFE
    assert d_conv(-(2.0 ** 40), saturate=False) == 0x7FFF
    assert d_conv(-(2.0 ** 40)) == 0xFFFE
    assert d_conv(np.inf) == 0x7FFF and d_conv(-np.inf) == 0x7FFF and d_conv(np.nan) == 0x7FFF
    assert list(G.convert(np.array([0x7C, 0xFC], np.uint8), E5M2, D)) == [0x7FFF] * 2
    m = G.mul(np.array([0x7C, 0x7C, 0xFC], np.uint8), np.array([0x3C, 0x80, 0x3C], np.uint8))
    assert list(m) == [0x7FFF] * 3                     # Inf * 1, Inf * -0: the special code


# Around the overflow threshold, every format and mode ---------------------------------------------

#: The largest finite codes of the presets, positive and negative, written out.
MAX_CODES = {E5M2: (0x7B, 0xFB), E4M3: (0x7E, 0xFE), DLFLOAT16: (0x7FFE, 0xFFFE),
             BINARY16: (0x7BFF, 0xFBFF), BFLOAT16: (0x7F7F, 0xFF7F),
             BINARY32: (0x7F7FFFFF, 0xFF7FFFFF)}
TOP_MODES = ("rne", "rna", "rtz", "sr")
#: Converters with results around the top of the output's range: (input, output) formats.
TOP_CONVERSIONS = [(BINARY32, E5M2), (BINARY32, E4M3), (BINARY32, DLFLOAT16),
                   (BINARY32, BINARY16), (BINARY32, BFLOAT16), (DLFLOAT16, E5M2),
                   (DLFLOAT16, E4M3), (BINARY16, E5M2), (BINARY16, E4M3)]


def top_rnd(mode, n):
    """``rnd`` for the results of :func:`sim.vectors.top_expected`: all 0, then all 2**16 - 1."""
    if mode != "sr":
        return None, None
    rnd = np.repeat([0, 0xFFFF], n)
    return rnd, rnd != 0


@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_rtz_overflow_gives_the_largest_finite_value(fmt):
    """docs/numerics.md section 2: in rtz an overflow is the largest finite value of its sign, in
    every format (DLFLOAT16: 0x7FFE, not the special code); the other modes overflow."""
    top, neg = MAX_CODES[fmt]
    dt = codes_dtype(fmt)
    a, b = np.array([top, neg], dt), np.array([top, neg], dt)
    one = np.full(2, fmt.bias << fmt.m, dt)
    for mode in ("rtz", "rne"):
        want = [top, neg] if mode == "rtz" else (
            [fmt.inf_mag, fmt.inf_mag | fmt.sign_mask] if fmt.has_inf else [fmt.nan_code] * 2)
        check(G.add(a, b, fmt, mode), want, [a, b], f"add {fmt} {mode}")
        check(G.fma(a, one, b, fmt, mode), want, [a, b], f"fma {fmt} {mode}")
        check(G.fma(a, a, np.zeros(2, dt), fmt, mode), [want[0], want[0]], [a],
              f"fma square {fmt} {mode}")
        check(G.encode([1e300, -1e300], fmt, mode), want, [], f"encode {fmt} {mode}")
    # 62400 + 4094 = 66494 lies beyond 65520, halfway between 65504 (the largest binary16 value)
    # and 65536: rne overflows to Inf, rtz gives 65504 with both signs.
    if fmt is BINARY16:
        assert int(G.add(np.uint16(0x7B9E), np.uint16(0x6BFF), fmt, "rtz")) == 0x7BFF
        assert int(G.add(np.uint16(0xFB9E), np.uint16(0xEBFF), fmt, "rtz")) == 0xFBFF
        assert int(G.add(np.uint16(0x7B9E), np.uint16(0x6BFF), fmt, "rne")) == 0x7C00


@pytest.mark.parametrize("saturate", [False, True], ids=["overflow", "saturate"])
@pytest.mark.parametrize("mode", TOP_MODES)
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_encode_around_the_top(fmt, mode, saturate):
    """M - q/4, M, M + q/4, the tie M + q/2, M + 3q/4, M + q, M + 2q and far beyond, both signs
    (the outcomes are spelled out in sim.vectors.TOP_OUTCOMES)."""
    values, k = top_values(fmt)
    x = np.concatenate([values, -values])
    k, sign = np.tile(k, 2), np.repeat([0, 1], len(values))
    rnd, high = top_rnd(mode, len(x))
    if rnd is not None:
        x, k, sign = np.tile(x, 2), np.tile(k, 2), np.tile(sign, 2)
    got = G.encode(x, fmt, mode, saturate, rnd)
    want = top_expected(fmt, mode, k, sign, saturate=saturate, rnd_high=high)
    check(got, want, [x], f"encode {fmt} {mode} saturate={saturate}")
    # The Fraction reference says the same.
    rnds = [None] * len(x) if rnd is None else [int(r) for r in rnd]
    ref_want = [ref.encode_float(v, fmt, mode, saturate, r) for v, r in zip(x, rnds)]
    check(got, ref_want, [x], f"encode {fmt} {mode} saturate={saturate} (Fraction)")


@pytest.mark.parametrize("mode", TOP_MODES)
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
@pytest.mark.parametrize("kind", ["adder", "fma"])
def test_add_fma_around_the_top(kind, fmt, mode):
    """Sums and FMAs whose exact results lie around the largest finite value M: just below it,
    between it and the next binade, and far beyond, both signs (sim.vectors.top_operations)."""
    spec = UnitSpec(kind, {"fmt": fmt, "rounding": mode})
    ops, want = top_operations(spec)
    dt = codes_dtype(fmt)
    names = "ab" if kind == "adder" else "abc"
    args = [ops[n].astype(dt) for n in names]
    fn = G.add if kind == "adder" else G.fma
    got = fn(*args, fmt, mode, ops.get("rnd"))
    check(got, want, args, f"{kind} {fmt} {mode}")
    ref_fn = ref.add if kind == "adder" else ref.fma
    rnd = ops.get("rnd", np.zeros(len(want), np.int64))
    ref_want = [ref_fn(*(int(a[i]) for a in args), fmt=fmt, mode=mode,
                       rnd=int(rnd[i]) if mode == "sr" else None) for i in range(len(want))]
    check(got, ref_want, args, f"{kind} {fmt} {mode} (Fraction)")


@pytest.mark.parametrize("saturate", [False, True], ids=["overflow", "saturate"])
@pytest.mark.parametrize("mode", TOP_MODES)
@pytest.mark.parametrize("in_fmt,out_fmt", TOP_CONVERSIONS, ids=str)
def test_convert_around_the_top(in_fmt, out_fmt, mode, saturate):
    """The values of sim.vectors.top_values that the input format holds, converted."""
    spec = UnitSpec("convert", {"in_fmt": in_fmt, "out_fmt": out_fmt, "rounding": mode,
                                "saturate": saturate})
    ops, want = top_operations(spec)
    # At least M - q/4 to M + 3q/4, both signs (and both rnd for sr): BINARY32 holds no more
    # of BFLOAT16's top.
    assert len(want) >= (20 if mode == "sr" else 10)
    a = ops["a"].astype(codes_dtype(in_fmt))
    got = G.convert(a, in_fmt, out_fmt, mode, saturate, ops.get("rnd"))
    check(got, want, [a], f"convert {in_fmt}->{out_fmt} {mode} saturate={saturate}")


def test_dlfloat16_carry_and_alignment():
    # 0x3FFF = 2 - 2^-9 (M all ones, odd); + 2^-10 (0x2A00) is a tie: rne carries into 2.0.
    assert d_add(0x3FFF, 0x2A00, "rne") == 0x4000
    assert d_add(0x3FFF, 0x2A00, "rna") == 0x4000
    assert d_add(0x3FFF, 0x2A00, "rtz") == 0x3FFF
    assert d_add(0x3FFE, 0x2A00, "rne") == 0x3FFE          # tie, even LSB stays
    # 1 + smallest: alignment far beyond any guard bits.
    assert d_add(ONE, 0x0001, "rne") == ONE and d_add(ONE, 0x0001, "rna") == ONE
    assert d_add(ONE, 0x0001, "rtz") == ONE
    assert d_add(ONE, 0x8001, "rne") == ONE
    assert d_add(ONE, 0x8001, "rtz") == 0x3DFF              # 1 - 2^-10
    # Stochastic: f = 1 - tiny, t = 2^R - 1: rounds up for every rnd but 0.
    assert d_add(ONE, 0x8001, "sr", 0, 16) == 0x3DFF
    assert d_add(ONE, 0x8001, "sr", 1, 16) == ONE
    assert d_add(ONE, 0x0001, "sr", 0xFFFF, 16) == ONE     # t = 0: never moved up
    # With 32 bits: f = (1 + 2^-9) 2^-22, t = floor(f 2^32) = 1026: up iff rnd >= 2^32 - 1026.
    assert d_add(ONE, 0x0001, "sr", 2 ** 32 - 1026, 32) == ONE + 1
    assert d_add(ONE, 0x0001, "sr", 2 ** 32 - 1027, 32) == ONE


def test_e5m2_subnormal_products():
    """The products of E5M2 subnormals follow docs/numerics.md section 2: not all of them
    underflow (docs/numerics.md section 8)."""
    m = lambda a, b: int(G.mul(np.array([a], np.uint8), np.array([b], np.uint8))[0])  # noqa
    assert m(0x03, 0x03) == (2 << 9) | 64        # 9 * 2^-32 = 1.125 * 2^-29
    assert m(0x01, 0x01) == 0                    # 2^-32 underflows
    assert m(0x01, 0x02) == 0                    # 2^-31 = 2^-bias underflows
    assert m(0x01, 0x03) == 0x0100               # 1.5 * 2^-31
    assert m(0x81, 0x01) == 0x8000
    assert m(0x81, 0x00) == 0x8000 and m(0x81, 0x80) == 0x0000


def test_zero_d_inputs_do_not_warn():
    """0-d (scalar) operands must work like arrays, without NumPy warnings (pytest turns them
    into errors). Both operands zero (or a NaN and a zero) is the case that matters."""
    z, nz, nan = np.uint16(0), np.uint16(0x8000), np.uint16(0x7FFF)
    assert int(G.add(nz, nz)) == 0x8000
    assert int(G.add(z, nz)) == 0
    assert int(G.add(nan, z)) == 0x7FFF
    assert int(G.fma(z, z, nz)) == 0
    assert int(G.fma(nz, np.uint16(ONE), nz, "dlfloat16", "sr", 0)) == 0x8000


# Stochastic rounding properties -------------------------------------------------------------------

@functools.cache
def sr_cases():
    """(fmt, op, operands, exact Fraction) for a few inexact results."""
    cases = []
    x32 = 1 + 4915 * 2 ** -23                 # DLFLOAT16: f = 4915 / 2^14 = 0.2999877...
    cases.append((D, "convert", (b32(x32),), Fraction(x32)))
    rng = rng_for("srcases")
    for fmt in (D, BINARY16, E5M2, BFLOAT16, BINARY32):
        found = 0
        for _ in range(100_000):
            a, b = [int(x) for x in mid_codes(fmt, 2, rng, span=fmt.m + 12)]
            va, vb = ref.decode(a, fmt), ref.decode(b, fmt)
            s = ref.exact_add(va, vb)
            if s.kind != "num" or s.mag == 0 or s.mag > ref.max_finite(fmt) / 2:
                continue
            x = ref.signed_value(va) + ref.signed_value(vb)
            if (lo_hi_f(fmt, x)[2] * 2 ** 8).denominator == 1:
                continue          # want a fraction with bits beyond the 8 random ones
            cases.append((fmt, "add", (a, b), x))
            found += 1
            if found == 2:
                break
        assert found == 2, fmt
    return tuple(cases)


def run_sr(fmt, op, operands, rnd, rbits):
    if op == "convert":
        a = np.full(rnd.shape, operands[0], np.uint32)
        return G.convert(a, BINARY32, fmt, "sr", rnd=rnd, rbits=rbits)
    a, b = (np.full(rnd.shape, x, codes_dtype(fmt)) for x in operands)
    return G.add(a, b, fmt, "sr", rnd, rbits)


def lo_hi_f(fmt, x):
    """Neighbours and discarded fraction of an exact x, computed directly from docs/numerics.md
    section 2."""
    mag = abs(x)
    q = ref.pow2(ref.floor_log2(mag) - fmt.m)
    if fmt.subnormals and mag < ref.pow2(1 - fmt.bias):
        q = ref.pow2(1 - fmt.bias - fmt.m)
    k = math.floor(mag / q)
    sign = 1 if x < 0 else 0
    return ref.code_of(sign, k * q, fmt), ref.code_of(sign, (k + 1) * q, fmt), mag / q - k, q


@pytest.mark.parametrize("rbits", [8, 16])
@pytest.mark.parametrize("case", range(11))
def test_sr_sweep_rounds_up_exactly_t_times(case, rbits):
    fmt, op, operands, x = sr_cases()[case]
    lo, hi, f, _ = lo_hi_f(fmt, x)
    t = math.floor(f * 2 ** rbits)
    rnd = np.arange(2 ** rbits, dtype=np.int64)
    res = run_sr(fmt, op, operands, rnd, rbits).astype(np.int64)
    assert set(np.unique(res)) <= {lo, hi}
    assert int((res == hi).sum()) == t
    # The ups are exactly the rnd values with t + rnd >= 2^R.
    assert np.array_equal(res == hi, rnd >= 2 ** rbits - t)
    if case == 0:
        assert t == (19660 if rbits == 16 else 76)


@pytest.mark.parametrize("fmt", [BINARY32, BFLOAT16], ids=str)
def test_sr32_far_alignment(fmt):
    """1 + k * ulp(1) * 2^-32 with 32 random bits: t = k, so exactly rnd >= 2^32 - k rounds up.
    The small addend lies 32 + m bits below one: far beyond any fixed guard bits."""
    one = fmt.bias << fmt.m
    cases = []
    for k in (1, 2, 3):
        tiny = ref.code_of(0, k * ref.pow2(-fmt.m - 32), fmt)
        cases += [(tiny, 2 ** 32 - k, one + 1), (tiny, 2 ** 32 - k - 1, one)]
    half_tiny = ref.code_of(0, ref.pow2(-fmt.m - 33), fmt)           # t = 0
    cases += [(half_tiny, 2 ** 32 - 1, one)]
    tiny, rnd, want = (np.array(x, np.int64) for x in zip(*cases))
    ones = np.full(tiny.shape, one)
    check(G.add(as_codes(ones, fmt), as_codes(tiny, fmt), fmt, "sr", rnd, 32), want, [tiny, rnd],
          "add sr32")
    check(G.fma(as_codes(tiny, fmt), as_codes(ones, fmt), as_codes(ones, fmt), fmt, "sr", rnd,
                32), want, [tiny, rnd], "fma sr32")
    # 1 - tiny: f = 1 - k 2^-33 (ulp below one is half as large), checked against the reference.
    check(G.add(as_codes(ones, fmt), as_codes(tiny | fmt.sign_mask, fmt), fmt, "sr", rnd, 32),
          [ref.add(one, int(t) | fmt.sign_mask, fmt, "sr", int(r), 32) for t, r in zip(tiny, rnd)],
          [tiny, rnd], "add sr32 negative")


def test_sr_exact_values_never_move():
    rng = rng_for("srexact")
    for fmt in FORMATS:
        c = mid_codes(fmt, 2000, rng)
        c = c[[ref.special_kind(int(x), fmt) is None for x in c]]
        zero = np.full_like(c, fmt.sign_mask)        # x + (-0) == x, -0 included
        rnd = np.full(c.size, (1 << 16) - 1)
        check(G.add(as_codes(c, fmt), as_codes(zero, fmt), fmt, "sr", rnd), c, [c],
              f"sr exact add {fmt}")
        check(G.convert(as_codes(c, fmt), fmt, fmt, "sr", rnd=rnd), c, [c], f"sr exact {fmt}")


def test_sr_ignores_bits_beyond_rbits():
    """With R random bits, a fraction below 2^-R never rounds up, even with rnd = 2^R - 1."""
    for rbits in (1, 4, 8, 16, 32):
        below = 1 + (2.0 ** -rbits - 2.0 ** -40) * 2 ** -9      # f = 2^-R - 2^-40: t = 0
        at = 1 + 2.0 ** -rbits * 2 ** -9                        # f = 2^-R: t = 1
        for sign in (1, -1):
            out = G.encode([sign * below, sign * at], D, "sr", rnd=2 ** rbits - 1, rbits=rbits)
            s = 0x8000 if sign < 0 else 0
            assert list(out) == [ONE | s, (ONE + 1) | s], rbits
            out = G.encode([sign * below, sign * at], D, "sr", rnd=2 ** rbits - 2, rbits=rbits)
            assert list(out) == [ONE | s, ONE | s], rbits


def test_sr_mean_is_unbiased():
    """100,000 stochastic roundings of one exact value with random 16-bit rnd.

    The result is lo or hi = lo + q; the number of ups is Binomial(n, p) with p = t / 2^16, so
    the mean is lo + q * ups / n with standard deviation q * sqrt(p (1 - p) / n). Its expectation
    lo + q p differs from the exact x by q (f - t / 2^16), in [0, q 2^-16). A correct model lies
    within 4 standard deviations (two-sided probability 6e-5 of failing by chance; the seed is
    fixed, so the test is deterministic) plus that truncation bias. A biased rounding, e.g.
    always rtz or rne, is off by about 0.3 q here, i.e. more than 200 standard deviations.
    """
    n = 100_000
    for fmt, op, operands, x in sr_cases()[:4]:
        lo, hi, f, q = lo_hi_f(fmt, x)
        p = Fraction(math.floor(f * 2 ** 16), 2 ** 16)
        rnd = rng_for("srmean", fmt.name).integers(0, 2 ** 16, n)
        res = run_sr(fmt, op, operands, rnd, 16).astype(np.int64)
        assert set(np.unique(res)) <= {lo, hi}
        ups = int((res == hi).sum())
        mean = abs(ref.signed_value(ref.decode(lo, fmt))) + q * Fraction(ups, n)
        sigma = float(q) * math.sqrt(float(p * (1 - p)) / n)
        assert abs(float(mean - abs(x))) <= 4 * sigma + float(q) * 2 ** -16, (fmt, ups, n * p)
        assert abs(ups - n * float(p)) <= 4 * math.sqrt(n * float(p * (1 - p)))


# GEMM ---------------------------------------------------------------------------------------------

def fp8_operands(fmt, shape, rng, wild=0.02):
    """FP8 codes with exponents near one (realistic activations/weights); some fully random."""
    n = int(np.prod(shape))
    c = codes_in_range(fmt, -4, 4, n, rng)
    w = rng.random(n) < wild
    c[w] = rng.integers(0, 256, w.sum())
    return c.reshape(shape).astype(np.uint8)


GEMM_CASES = [
    # (M, K, N, a_fmt, b_fmt, acc_fmt, chunk, rounding, with_C, out_fmt)
    (2, 7, 3, E5M2, E5M2, D, 3, "rne", False, None),
    (3, 13, 2, E5M2, E5M2, D, 4, "rna", False, None),
    (2, 16, 2, E5M2, E5M2, D, 4, "rne", True, None),
    (2, 9, 2, E5M2, E5M2, D, None, "rne", False, None),
    (2, 9, 3, E5M2, E5M2, D, 1, "rne", False, None),
    (3, 11, 2, E4M3, E4M3, D, 5, "rne", True, None),
    (2, 10, 2, E5M2, E4M3, D, 64, "rna", False, E5M2),
    (2, 12, 3, E4M3, E5M2, D, 2, "rne", True, E4M3),
    (2, 8, 2, E5M2, E5M2, BINARY16, 3, "rne", True, None),
    (2, 8, 2, E4M3, E4M3, BFLOAT16, 3, "rna", False, E5M2),
    (1, 1, 1, E5M2, E5M2, D, 8, "rne", False, None),
    (3, 20, 3, E5M2, E5M2, D, 7, "rne", False, E4M3),
]


@pytest.mark.parametrize("case", GEMM_CASES, ids=[f"case{i}" for i in range(len(GEMM_CASES))])
def test_gemm_vs_ref(case):
    M, K, N, a_fmt, b_fmt, acc, chunk, rounding, with_c, out_fmt = case
    rng = rng_for("gemm", repr(case))
    for wild in (0.02, 1.0):          # realistic operands, then fully random codes (specials)
        A = fp8_operands(a_fmt, (M, K), rng, wild)
        B = fp8_operands(b_fmt, (K, N), rng, wild)
        C = None
        if with_c:
            C = np.array([[ref.round_to(int(s), Fraction(float(v)), acc, "rne") for s, v in
                           zip(rng.integers(0, 2, N), rng.uniform(0, 4, N))] for _ in range(M)],
                         np.int64).astype(codes_dtype(acc))
            C.flat[0] = acc.sign_mask                      # -0 + a +0 chunk gives +0
        got = G.gemm(A, B, a_fmt, b_fmt, acc, chunk, rounding, C, out_fmt)
        want = ref.gemm(A.tolist(), B.tolist(), a_fmt, b_fmt, acc, chunk, rounding,
                        None if C is None else C.tolist(), out_fmt)
        check(got, np.array(want), [], f"gemm {case} wild={wild}")


def test_gemm_chunk_at_least_k_is_sequential_then_final_add():
    rng = rng_for("gemmseq")
    M, K, N = 4, 37, 5
    A = fp8_operands(E5M2, (M, K), rng)
    B = fp8_operands(E5M2, (K, N), rng)
    for rounding in ("rne", "rna"):
        acc = np.zeros((M, N), np.uint16)
        for k in range(K):
            acc = G.add(acc, G.mul(A[:, k:k + 1], B[k:k + 1, :]), D, rounding)
        want = G.add(np.zeros((M, N), np.uint16), acc, D, rounding)
        for chunk in (None, K, K + 1, 1000):
            check(G.gemm(A, B, chunk=chunk, rounding=rounding), want, [], f"chunk={chunk}")
    # Chunking does change bits here (otherwise this test would not show anything).
    assert not np.array_equal(G.gemm(A, B, chunk=4), G.gemm(A, B, chunk=None))


def test_gemm_order_invariances():
    """docs/numerics.md section 4: tiling, transposition and splitting K at chunk boundaries
    change no bit."""
    rng = rng_for("gemminv")
    M, K, N, cl = 5, 24, 6, 4
    A = fp8_operands(E5M2, (M, K), rng)
    B = fp8_operands(E5M2, (K, N), rng)
    full = G.gemm(A, B, chunk=cl)
    check(G.gemm(B.T, A.T, chunk=cl).T, full, [], "transposed")
    tiled = np.block([[G.gemm(A[i:i + 2], B[:, j:j + 4], chunk=cl) for j in range(0, N, 4)]
                      for i in range(0, M, 2)])
    check(tiled, full, [], "tiled")
    part = G.gemm(A[:, :8], B[:8], chunk=cl)
    part = G.gemm(A[:, 8:20], B[8:20], chunk=cl, C=part)
    check(G.gemm(A[:, 20:], B[20:], chunk=cl, C=part), full, [], "split K")


def test_gemm_empty_k_and_errors():
    A = np.zeros((2, 0), np.uint8)
    B = np.zeros((0, 3), np.uint8)
    check(G.gemm(A, B), np.zeros((2, 3)), [], "K = 0")
    C = np.full((2, 3), 0x8000, np.uint16)
    check(G.gemm(A, B, C=C), C, [], "K = 0 with C")
    A1 = np.zeros((2, 4), np.uint8)
    with pytest.raises(ValueError, match="do not form a matrix product"):
        G.gemm(A1, np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="Chunk length must be a positive integer"):
        G.gemm(A1, A1.T, chunk=0)
    with pytest.raises(ValueError, match="not supported here"):
        G.gemm(A1, A1.T, rounding="sr")
    with pytest.raises(ValueError, match="Unknown format 'e3m4'"):
        G.gemm(A1, A1.T, a_fmt="e3m4")
    with pytest.raises(ValueError, match="out_fmt must be the accumulator format"):
        G.gemm(A1, A1.T, acc_fmt=BFLOAT16, out_fmt=D)
    with pytest.raises(ValueError, match="C has shape"):
        G.gemm(A1, A1.T, C=np.zeros((3, 3), np.uint16))
    for chunk in ("x", "8", 2.5, 8.0, True):
        with pytest.raises(ValueError, match=r"Chunk length must be a positive integer or None, "
                                             r"not " + repr(chunk).replace(".", r"\.")):
            G.gemm(A1, A1.T, chunk=chunk)


@pytest.mark.parametrize("values, dtype", [(np.array([1 + 2j]), "complex128"),
                                           (["1.5"], "<U3"), (np.array([None]), "object")])
def test_encode_takes_real_numbers_only(values, dtype):
    """NumPy would drop an imaginary part, or parse a string, without a word."""
    with pytest.raises(TypeError, match=f"values must be real numbers, not {dtype}"):
        G.encode(values, "e5m2")


# SGD update ---------------------------------------------------------------------------------------

def test_xorshift32_known_words():
    # By hand for seed 1: s ^= s << 13 -> 1 ^ 8192 = 8193; s ^= s >> 17 -> 8193 (8193 >> 17 = 0);
    # s ^= s << 5 -> 8193 ^ 262176 = 270369.
    assert 1 ^ (1 << 13) == 8193 and 8193 >> 17 == 0 and 8193 ^ (8193 << 5) == 270369
    # Next word: s = 270369; s ^= s << 13 (mod 2^32); s ^= s >> 17; s ^= s << 5 (mod 2^32).
    s = 270369
    s = (s ^ (s << 13)) & 0xFFFFFFFF
    s ^= s >> 17
    s = (s ^ (s << 5)) & 0xFFFFFFFF
    assert s == 67634689
    words = G.xorshift32(1, 5)
    assert words.dtype == np.uint32
    assert list(words) == [270369, 67634689, 2647435461, 307599695, 2398689233]
    for seed in (2, 0xDEADBEEF, 0xFFFFFFFF):
        assert list(G.xorshift32(seed, 300)) == ref.xorshift32_words(seed, 300)


@pytest.mark.parametrize("seed", [0, -1, 2 ** 32, 1.5, True])
def test_xorshift32_bad_seed(seed):
    with pytest.raises(ValueError, match="Seed must be an integer from 1 to 2\\*\\*32 - 1"):
        G.xorshift32(seed, 3)


def d(x):
    return ref.round_to(1 if x < 0 else 0, abs(Fraction(x)), D, "rne")


def sgd_inputs(n, rng):
    w = codes_in_range(D, -6, 1, n, rng)
    g = codes_in_range(D, -12, -4, n, rng)
    v = codes_in_range(D, -10, -3, n, rng)
    specials = [0x0000, 0x8000, 0x7FFF, 0xFFFF, 0x7FFE, 0xFFFE, 0x0001, 0x8001]
    for arr in (w, g, v):
        idx = rng.integers(0, n, 6)
        arr[idx] = rng.choice(specials, 6)
    return w.astype(np.uint16), g.astype(np.uint16), v.astype(np.uint16)


@pytest.mark.parametrize("mode,rbits", [("sr", 1), ("sr", 8), ("sr", 16), ("sr", 32), ("rne", 16)])
def test_sgd_update_vs_ref(mode, rbits):
    rng = rng_for("sgd", mode, rbits)
    n = 300
    w, g, v = sgd_inputs(n, rng)
    scalars = [(d(0.01), d(0.9), d(1e-4)), (d(0.5), d(0), d(0)), (d(-0.125), d(0.99), d(0.01)),
               tuple(int(x) for x in codes_in_range(D, -8, 0, 3, rng))]
    for seed, (lr, mu, wd) in zip((1, 12345, 0xFFFFFFFF, 7), scalars):
        gw, gv = G.sgd_update(w, g, v, np.uint16(lr), np.uint16(mu), np.uint16(wd), seed, mode,
                              rbits)
        rw, rv = ref.sgd_update(w.tolist(), g.tolist(), v.tolist(), lr, mu, wd, seed, D, mode,
                                rbits)
        check(gv, rv, [w, g, v], f"sgd v {mode}{rbits} seed={seed}")
        check(gw, rw, [w, g, v], f"sgd w {mode}{rbits} seed={seed}")


def test_sgd_update_shapes_seeds_and_modes():
    rng = rng_for("sgd2")
    w, g, v = sgd_inputs(12, rng)
    lr, mu, wd = (np.uint16(x) for x in (d(0.01), d(0.9), d(1e-4)))
    w2, v2 = G.sgd_update(w.reshape(3, 4), g.reshape(3, 4), v.reshape(3, 4), lr, mu, wd, 5)
    w1, v1 = G.sgd_update(w, g, v, lr, mu, wd, 5)
    assert w2.shape == (3, 4) and w2.dtype == np.uint16
    check(w2.ravel(), w1, [], "2-D w")
    check(v2.ravel(), v1, [], "2-D v")
    # rne ignores the random words; sr depends on them.
    a = G.sgd_update(w, g, v, lr, mu, wd, 5, "rne")
    b = G.sgd_update(w, g, v, lr, mu, wd, 6, "rne")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    big = sgd_inputs(500, rng)
    s1 = G.sgd_update(*big, lr, mu, wd, 5)
    s2 = G.sgd_update(*big, lr, mu, wd, 6)
    assert not np.array_equal(s1[0], s2[0])
    check(G.sgd_update(*big, lr, mu, wd, 5)[0], s1[0], [], "deterministic")


def test_sgd_update_errors():
    w = np.zeros(4, np.uint16)
    one = np.uint16(ONE)
    with pytest.raises(ValueError, match="Seed must be an integer"):
        G.sgd_update(w, w, w, one, one, one, 0)
    with pytest.raises(ValueError, match="not supported here"):
        G.sgd_update(w, w, w, one, one, one, 1, "rtz")
    with pytest.raises(ValueError, match="rbits must be an integer from 1 to 32"):
        G.sgd_update(w, w, w, one, one, one, 1, "sr", 33)
    with pytest.raises(ValueError, match="one shape"):
        G.sgd_update(w, w[:3], w, one, one, one, 1)
    with pytest.raises(ValueError, match="must be scalar"):
        G.sgd_update(w, w, w, w, one, one, 1)


# Hypothesis properties ----------------------------------------------------------------------------

formats = st.sampled_from(FORMATS)
mode_cases = st.sampled_from(MODE_CASES)


def code_of_fmt(fmt):
    return st.integers(0, (1 << fmt.width) - 1)


@HYP
@given(st.data(), formats, mode_cases)
def test_prop_add_commutative(data, fmt, mode_case):
    mode, rbits = mode_case
    a, b = data.draw(st.lists(code_of_fmt(fmt), min_size=8, max_size=8), label="a"), \
        data.draw(st.lists(code_of_fmt(fmt), min_size=8, max_size=8), label="b")
    rnd = data.draw(st.integers(0, 2 ** rbits - 1)) if mode == "sr" else None
    a, b = as_codes(a, fmt), as_codes(b, fmt)
    check(G.add(a, b, fmt, mode, rnd, rbits), G.add(b, a, fmt, mode, rnd, rbits), [a, b], "comm")


@HYP
@given(st.data(), formats, mode_cases)
def test_prop_fma_times_one_is_add(data, fmt, mode_case):
    mode, rbits = mode_case
    a = as_codes(data.draw(st.lists(code_of_fmt(fmt), min_size=8, max_size=8)), fmt)
    c = as_codes(data.draw(st.lists(code_of_fmt(fmt), min_size=8, max_size=8)), fmt)
    one = np.full(8, fmt.bias << fmt.m, codes_dtype(fmt))
    rnd = data.draw(st.integers(0, 2 ** rbits - 1)) if mode == "sr" else None
    check(G.fma(a, one, c, fmt, mode, rnd, rbits), G.add(a, c, fmt, mode, rnd, rbits), [a, c],
          "fma(a, 1, c)")
    # x + (-x) is +0 in every mode for finite x.
    fin = np.array([ref.special_kind(int(x), fmt) is None for x in a])
    s = G.add(a[fin], a[fin] ^ fmt.sign_mask, fmt, mode, rnd, rbits)
    assert (s == 0).all()


@HYP
@given(st.data(), formats, mode_cases, st.booleans())
def test_prop_encode_decode_roundtrip(data, fmt, mode_case, saturate):
    mode, rbits = mode_case
    c = as_codes(data.draw(st.lists(code_of_fmt(fmt), min_size=16, max_size=16)), fmt)
    c = c[[ref.special_kind(int(x), fmt) != "nan" for x in c]]
    rnd = data.draw(st.integers(0, 2 ** rbits - 1)) if mode == "sr" else None
    check(G.encode(G.decode(c, fmt), fmt, mode, saturate, rnd, rbits), c, [c], "roundtrip")


WIDER = [(E5M2, BINARY16), (E5M2, D), (E5M2, BFLOAT16), (E4M3, BINARY16), (E4M3, D),
         (E4M3, BFLOAT16), (BINARY16, BINARY32), (BFLOAT16, BINARY32), (D, BINARY32),
         (E5M2, BINARY32), (E4M3, BINARY32)]


@HYP
@given(st.data(), st.sampled_from(WIDER), mode_cases, st.booleans())
def test_prop_convert_to_wider_is_exact(data, pair, mode_case, saturate):
    src, dst = pair
    mode, rbits = mode_case
    c = as_codes(data.draw(st.lists(code_of_fmt(src), min_size=16, max_size=16)), src)
    rnd = data.draw(st.integers(0, 2 ** rbits - 1)) if mode == "sr" else None
    out = G.convert(c, src, dst, mode, saturate, rnd, rbits)
    vin, vout = G.decode(c, src), G.decode(out, dst)
    inf_to_nan = np.isinf(vin) & (dst.specials is not Specials.IEEE)
    assert np.isnan(vout[inf_to_nan]).all()
    keep = ~inf_to_nan
    assert np.array_equal(vin[keep], vout[keep], equal_nan=True)
    assert np.array_equal(np.signbit(vin[keep & ~np.isnan(vin)]),
                          np.signbit(vout[keep & ~np.isnan(vin)]))
    assert (out[np.isnan(vin)] == dst.nan_code).all()


# Error messages -----------------------------------------------------------------------------------

def test_error_unknown_format():
    with pytest.raises(ValueError, match="Unknown format 'fp9'; expected one of e5m2"):
        G.decode([0], "fp9")
    with pytest.raises(ValueError, match="Unknown format 'nope'"):
        G.add(np.uint16(0), np.uint16(0), "nope")
    with pytest.raises(ValueError, match="Unknown format"):
        G.convert(np.uint8(0), E5M2, "e3m4")
    # Names are case-insensitive.
    assert int(G.add(np.uint16(ONE), np.uint16(ONE), "dlfloat16")) == 0x4000


def test_error_unknown_rounding():
    for fn in (lambda: G.add(np.uint16(0), np.uint16(0), D, "rnx"),
               lambda: G.fma(np.uint16(0), np.uint16(0), np.uint16(0), D, "up"),
               lambda: G.encode([1.0], D, "nearest"),
               lambda: G.convert(np.uint16(0), D, E5M2, "rn")):
        with pytest.raises(ValueError, match="Unknown rounding mode .*; expected one of rne, rna"):
            fn()


@pytest.mark.parametrize("rbits", [0, 33, -1, 2.0, True])
def test_error_rbits_out_of_range(rbits):
    z = np.uint16(0)
    with pytest.raises(ValueError, match="rbits must be an integer from 1 to 32"):
        G.add(z, z, D, "sr", rnd=0, rbits=rbits)
    with pytest.raises(ValueError, match="rbits must be an integer from 1 to 32"):
        G.fma(z, z, z, D, "sr", rnd=0, rbits=rbits)
    with pytest.raises(ValueError, match="rbits must be an integer from 1 to 32"):
        G.convert(z, D, E5M2, "sr", rnd=0, rbits=rbits)


def test_error_sr_without_rnd():
    z = np.uint16(0)
    msg = "Stochastic rounding needs the random integers 'rnd'"
    for fn in (lambda: G.add(z, z, D, "sr"), lambda: G.fma(z, z, z, D, "sr"),
               lambda: G.convert(z, D, E5M2, "sr"), lambda: G.encode([1.0], D, "sr")):
        with pytest.raises(ValueError, match=msg):
            fn()


def test_error_bad_codes():
    with pytest.raises(ValueError, match="out of range"):
        G.add(np.array([0x10000]), np.array([0]), D)
    with pytest.raises(ValueError, match="out of range"):
        G.decode([256], E5M2)
    with pytest.raises(TypeError, match="integer array"):
        G.add(np.array([1.0]), np.array([0]), D)
    with pytest.raises(TypeError, match="rnd must be an integer array"):
        G.add(np.uint16(0), np.uint16(0), D, "sr", rnd=0.5)


def test_gemm_binary16_into_binary32_is_float32_accumulation(rng):
    """The area study's baseline GEMM: BINARY16 products are exact in BINARY32, so one chunk of
    all K is numpy's float32 running sum of float16 products, added in order of k."""
    M, K, N = 5, 37, 4
    A = rng.standard_normal((M, K)).astype(np.float16)
    B = (rng.standard_normal((K, N)) * 2.0 ** rng.integers(-12, 12, (K, N))).astype(np.float16)
    want = np.zeros((M, N), np.float32)
    for k in range(K):
        want = want + A[:, k:k + 1].astype(np.float32) * B[k:k + 1, :].astype(np.float32)
    got = G.gemm(A.view(np.uint16), B.view(np.uint16), BINARY16, BINARY16, BINARY32, chunk=None)
    assert got.dtype == np.uint32
    check(got, want.view(np.uint32), [A, B], "binary16 x binary16 -> binary32")
    # Chunks of 4 (docs/numerics.md section 4): each chunk summed from +0, then added into the
    # total.
    total = np.zeros((M, N), np.float32)
    for k0 in range(0, K, 4):
        part = np.zeros((M, N), np.float32)
        for k in range(k0, min(k0 + 4, K)):
            part = part + A[:, k:k + 1].astype(np.float32) * B[k:k + 1, :].astype(np.float32)
        total = total + part
    got = G.gemm(A.view(np.uint16), B.view(np.uint16), BINARY16, BINARY16, BINARY32, chunk=4)
    check(got, total.view(np.uint32), [A, B], "chunked binary16 x binary16 -> binary32")
