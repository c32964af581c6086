"""The arithmetic units in Amaranth's simulator against the golden model, bit for bit.

Every run feeds one operation per cycle, so the pipelines are checked at full throughput.
"""

import numpy as np
import pytest

from hw.fp import (FPAdder, FPConvert, FPFMA, FPMultiplier, BFLOAT16, BINARY16, DLFLOAT16,
                   E4M3, E5M2)
from sim import golden
from sim.pysim import run_unit
from sim.vectors import cross, edge_codes, random_pairs, random_triples

from conftest import count_from_env

FORMATS = [DLFLOAT16, BINARY16, BFLOAT16, E5M2, E4M3]
MODES = ["rne", "rna", "rtz", "sr"]
# 100,000 random operations per format and mode; FP8ACCEL_RANDOM scales it.
RANDOM = count_from_env("FP8ACCEL_RANDOM", 100_000)


def assert_codes_equal(got, ref, operands):
    got, ref = np.asarray(got, np.int64), np.asarray(ref, np.int64)
    bad = np.nonzero(got != ref)[0]
    if bad.size:
        rows = [" ".join(f"{k}={int(v[i]):#x}" for k, v in operands.items())
                + f" -> {int(got[i]):#x}, expected {int(ref[i]):#x}" for i in bad[:8]]
        pytest.fail(f"{bad.size} of {got.size} results differ:\n" + "\n".join(rows))


# Multiplier: exhaustive ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt_in", [E5M2, E4M3], ids=str)
@pytest.mark.parametrize("fmt_out", [DLFLOAT16, BINARY16], ids=str)
def test_multiplier_exhaustive(fmt_in, fmt_out):
    a, b = cross(np.arange(256), np.arange(256))
    unit = FPMultiplier(fmt_in, fmt_in, fmt_out)
    got = run_unit(unit, {"a": a, "b": b}, "p")
    assert_codes_equal(got, golden.mul(a, b, fmt_in, fmt_in, fmt_out), {"a": a, "b": b})


def test_multiplier_mixed_formats_exhaustive():
    a, b = cross(np.arange(256), np.arange(256))
    unit = FPMultiplier(E4M3, E5M2, DLFLOAT16)
    got = run_unit(unit, {"a": a, "b": b}, "p")
    assert_codes_equal(got, golden.mul(a, b, E4M3, E5M2, DLFLOAT16), {"a": a, "b": b})


@pytest.mark.parametrize("fmt_out", [BFLOAT16, E5M2, E4M3], ids=str)
def test_multiplier_rounding_outputs(fmt_out, rng):
    """Outputs narrower than the exact product round (rne) and overflow."""
    a = rng.integers(0, 256, 20000)
    b = rng.integers(0, 256, 20000)
    unit = FPMultiplier(E4M3, E5M2, fmt_out)
    got = run_unit(unit, {"a": a, "b": b}, "p")
    assert_codes_equal(got, golden.mul(a, b, E4M3, E5M2, fmt_out), {"a": a, "b": b})


# Converter: every DLFLOAT16 code --------------------------------------------------------------

@pytest.mark.parametrize("fmt_out", [E5M2, E4M3], ids=str)
@pytest.mark.parametrize("saturate", [True, False], ids=["saturate", "overflow"])
def test_convert_every_dlfloat16_code(fmt_out, saturate):
    a = np.arange(1 << 16)
    unit = FPConvert(DLFLOAT16, fmt_out, "rne", saturate)
    got = run_unit(unit, {"a": a}, "r")
    assert_codes_equal(got, golden.convert(a, DLFLOAT16, fmt_out, "rne", saturate), {"a": a})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt_in,fmt_out", [(DLFLOAT16, E5M2), (DLFLOAT16, E4M3),
                                            (BINARY16, DLFLOAT16), (DLFLOAT16, BINARY16),
                                            (BFLOAT16, E5M2), (E5M2, BFLOAT16),
                                            (BINARY16, E4M3)], ids=str)
def test_convert_modes(fmt_in, fmt_out, mode, rng):
    a = np.arange(1 << fmt_in.width)
    if a.size > 20000:
        a = np.concatenate([edge_codes(fmt_in), rng.integers(0, a.size, 20000)])
    rnd = rng.integers(0, 1 << 16, a.size)
    unit = FPConvert(fmt_in, fmt_out, mode, saturate=bool(a.size % 2))
    ins = {"a": a} | ({"rnd": rnd} if mode == "sr" else {})
    got = run_unit(unit, ins, "r")
    ref = golden.convert(a, fmt_in, fmt_out, mode, unit.saturate, rnd=rnd)
    assert_codes_equal(got, ref, ins)


# Adder and FMA: random plus directed ------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_adder(fmt, mode, rng):
    ea, eb = cross(edge_codes(fmt), edge_codes(fmt))
    ra, rb = random_pairs(fmt, RANDOM, rng)
    a, b = np.concatenate([ea, ra]), np.concatenate([eb, rb])
    rnd = rng.integers(0, 1 << 16, a.size)
    ins = {"a": a, "b": b} | ({"rnd": rnd} if mode == "sr" else {})
    got = run_unit(FPAdder(fmt, mode), ins, "s")
    assert_codes_equal(got, golden.add(a, b, fmt, mode, rnd=rnd), ins)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_fma(fmt, mode, rng):
    edges = edge_codes(fmt)
    ea, eb, ec = cross(edges, edges[::2], edges[1::2])
    ra, rb, rc = random_triples(fmt, RANDOM, rng,
                                lambda x, y: golden.mul(x, y, fmt, fmt, fmt))
    a, b, c = (np.concatenate(p) for p in ((ea, ra), (eb, rb), (ec, rc)))
    rnd = rng.integers(0, 1 << 16, a.size)
    ins = {"a": a, "b": b, "c": c} | ({"rnd": rnd} if mode == "sr" else {})
    got = run_unit(FPFMA(fmt, mode), ins, "r")
    assert_codes_equal(got, golden.fma(a, b, c, fmt, mode, rnd=rnd), ins)


@pytest.mark.parametrize("rbits", [1, 5, 32])
def test_sr_rbits(rbits, rng):
    """Unusual random-word widths, including the full 32-bit generator word."""
    fmt = DLFLOAT16
    a, b = random_pairs(fmt, 5000, rng)
    c = rng.integers(0, 1 << 16, a.size)
    rnd = rng.integers(0, 1 << rbits, a.size, dtype=np.uint64).astype(np.int64)
    got = run_unit(FPAdder(fmt, "sr", rbits=rbits), {"a": a, "b": b, "rnd": rnd}, "s")
    assert_codes_equal(got, golden.add(a, b, fmt, "sr", rnd=rnd, rbits=rbits),
                       {"a": a, "b": b, "rnd": rnd})
    got = run_unit(FPFMA(fmt, "sr", rbits=rbits), {"a": a, "b": b, "c": c, "rnd": rnd}, "r")
    assert_codes_equal(got, golden.fma(a, b, c, fmt, "sr", rnd=rnd, rbits=rbits),
                       {"a": a, "b": b, "c": c, "rnd": rnd})


# Stochastic rounding statistics on the RTL ------------------------------------------------------

def test_sr_sweep_rounds_up_exactly_t_times():
    """Section 2: over all 2**R values of rnd, the result is ``hi`` exactly t times, with
    t = floor(f * 2**R) for the discarded fraction f."""
    fmt, rbits = DLFLOAT16, 8
    one = golden.encode(1.0, fmt)
    # 1 + x with x = 2**-10 * 0.6875 = 0.1011 (binary) of an ulp of 1.0: t = 176 of 256.
    x = golden.encode(2.0 ** -9 * 0.6875, fmt)
    rnd = np.arange(1 << rbits)
    got = run_unit(FPAdder(fmt, "sr", rbits=rbits),
                   {"a": np.full(rnd.size, one), "b": np.full(rnd.size, x), "rnd": rnd}, "s")
    lo = int(one)
    assert set(np.unique(got)) <= {lo, lo + 1}
    assert np.count_nonzero(got == lo + 1) == 176


def test_sr_mean_is_unbiased(rng):
    """The mean of 100,000 stochastic roundings of 1 + x is within 4 binomial standard
    deviations of the exact 1 + x (a true mean misses that band with probability 6e-5)."""
    fmt, n = DLFLOAT16, 100_000
    one = golden.encode(1.0, fmt)
    frac = 0.3
    x = golden.encode(2.0 ** -9 * frac, fmt)
    exact = 1.0 + golden.decode(x, fmt)
    rnd = rng.integers(0, 1 << 16, n)
    got = run_unit(FPAdder(fmt, "sr"), {"a": np.full(n, one), "b": np.full(n, x), "rnd": rnd},
                   "s")
    vals = golden.decode(got, fmt)
    ulp = 2.0 ** -9
    p = (exact - 1.0) / ulp
    sigma = ulp * np.sqrt(p * (1 - p) / n)
    assert abs(vals.mean() - exact) < 4 * sigma


# Interfaces and parameter checks ----------------------------------------------------------------

def test_latency_and_ports():
    unit = FPAdder(DLFLOAT16, "sr", rbits=12)
    assert unit.latency >= 1
    assert unit.rnd.shape().width == 12
    assert not hasattr(FPAdder(DLFLOAT16, "rne"), "rnd")
    assert FPFMA(BINARY16).r.shape().width == 16
    assert FPMultiplier(E5M2, E4M3, DLFLOAT16).p.shape().width == 16


@pytest.mark.parametrize("make,message", [
    (lambda: FPAdder("fp17"), "Unknown format 'fp17'"),
    (lambda: FPAdder(DLFLOAT16, "nearest"), "Unknown rounding mode 'nearest'"),
    (lambda: FPAdder(DLFLOAT16, "sr", rbits=0), "rbits must be an integer from 1 to 32, not 0"),
    (lambda: FPFMA(DLFLOAT16, "sr", rbits=33), "rbits must be an integer from 1 to 32, not 33"),
    (lambda: FPConvert(DLFLOAT16, "e3m4"), "Unknown format 'e3m4'"),
])
def test_constructor_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()
