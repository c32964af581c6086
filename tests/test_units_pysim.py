"""The arithmetic units in Amaranth's simulator against the golden model, bit for bit.

Every run feeds one operation per cycle, so the pipelines are checked at full throughput.
"""

import numpy as np
import pytest
import softfloatpy as sf
from amaranth.hdl import Fragment

from fp8accel.hw.fp import (FPAdder, FPConvert, FPFMA, FPMultiplier, BFLOAT16, BINARY16, BINARY32,
                   DLFLOAT16, E4M3, E5M2)
from fp8accel.sim import golden
from fp8accel.sim.run.pysim import run_unit
from fp8accel.sim.run.units import UnitSpec
from fp8accel.sim.vectors import make_operations, top_operations

from conftest import count_from_env

FORMATS = [DLFLOAT16, BINARY16, BFLOAT16, E5M2, E4M3]
MODES = ["rne", "rna", "rtz", "sr"]
# 5,000 random operations per format and mode (about a second each in Amaranth's simulator),
# besides the edge cases; FP8ACCEL_RANDOM=100000 runs the deeper check.
RANDOM = count_from_env("FP8ACCEL_RANDOM", 5_000)


def cross(*columns):
    """Every combination of the given code arrays, one flat array per operand."""
    return [g.ravel() for g in np.meshgrid(*columns, indexing="ij")]


def check_spec(spec, count, rng):
    """Run ``count`` operations (edge cases first, then structured random ones) of the unit
    described by ``spec`` and compare with the golden model."""
    ops = make_operations(spec, count, rng)
    got = run_unit(spec.build(), ops, spec.output[0])
    assert_codes_equal(got, spec.golden(ops), ops)


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


# The significand product in a DSP block -----------------------------------------------------------

#: BINARY16 magnitudes at the edges: zero, subnormals (smallest, a few, largest), the smallest
#: normals, around 1, the largest finite values, Inf and NaNs.
BINARY16_EDGES = np.array([0x0000, 0x0001, 0x0002, 0x0155, 0x03ff, 0x0400, 0x0401, 0x3bff,
                           0x3c00, 0x3c01, 0x7bfe, 0x7bff, 0x7c00, 0x7c01, 0x7e00])


@pytest.mark.parametrize("fmt_out", [BINARY32, BINARY16], ids=str)
def test_multiplier_dsp_product(fmt_out, rng):
    """``product="dsp"`` (a ``*`` for Yosys to put in a DSP block) gives the golden model's
    bits: every pair of edge operands of both signs, then 20,000 random codes."""
    edges = np.concatenate([BINARY16_EDGES, BINARY16_EDGES | 0x8000])
    a, b = cross(edges, edges)
    a = np.concatenate([a, rng.integers(0, 1 << 16, 20000)])
    b = np.concatenate([b, rng.integers(0, 1 << 16, 20000)])
    unit = FPMultiplier(BINARY16, BINARY16, fmt_out, product="dsp")
    logic = FPMultiplier(BINARY16, BINARY16, fmt_out)
    Fragment.get(logic, None)              # elaborates (and so uses) the unit
    assert unit.latency == logic.latency
    got = run_unit(unit, {"a": a, "b": b}, "p")
    assert_codes_equal(got, golden.mul(a, b, BINARY16, BINARY16, fmt_out), {"a": a, "b": b})


def test_multiplier_dsp_product_exact_path():
    """The exact FP8 -> DLFLOAT16 datapath with the product as a ``*``: every pair of codes."""
    a, b = cross(np.arange(256), np.arange(256))
    got = run_unit(FPMultiplier(E4M3, E5M2, DLFLOAT16, product="dsp"), {"a": a, "b": b}, "p")
    assert_codes_equal(got, golden.mul(a, b, E4M3, E5M2, DLFLOAT16), {"a": a, "b": b})


@pytest.mark.parametrize("product,muls", [("logic", 0), ("dsp", 1)])
def test_multiplier_product_is_a_mul_cell_only_for_dsp(product, muls):
    """Yosys maps a multiplication to a DSP block only where it finds a ``$mul`` cell: the
    LUT product has none, the DSP product exactly one."""
    from amaranth.back import rtlil
    text = rtlil.convert(FPMultiplier(BINARY16, BINARY16, BINARY32, product=product),
                         emit_src=False)
    assert text.count("cell $mul ") == muls


# Converter: every DLFLOAT16 code --------------------------------------------------------------

@pytest.mark.parametrize("fmt_out", [E5M2, E4M3], ids=str)
@pytest.mark.parametrize("saturate", [True, False], ids=["saturate", "overflow"])
def test_convert_every_dlfloat16_code(fmt_out, saturate):
    a = np.arange(1 << 16)
    unit = FPConvert(DLFLOAT16, fmt_out, "rne", saturate)
    got = run_unit(unit, {"a": a}, "r")
    assert_codes_equal(got, golden.convert(a, DLFLOAT16, fmt_out, "rne", saturate), {"a": a})


def test_convert_runtime_format_every_dlfloat16_code():
    """One converter for both FP8 formats, chosen per operation (as READ_C does): every
    DLFLOAT16 code into each format, the format switching at random from cycle to cycle."""
    rng = np.random.default_rng(5)
    codes = np.arange(1 << 16)
    first = rng.integers(0, 2, codes.size)
    a, sel = np.concatenate([codes, codes]), np.concatenate([first, 1 - first])
    got = run_unit(FPConvert(DLFLOAT16, (E5M2, E4M3), "rne", True), {"a": a, "sel": sel}, "r")
    ref = np.where(sel == 1, golden.convert(a, DLFLOAT16, E4M3, "rne", True),
                   golden.convert(a, DLFLOAT16, E5M2, "rne", True))
    assert_codes_equal(got, ref, {"a": a, "sel": sel})


@pytest.mark.parametrize("saturate", [True, False], ids=["saturate", "overflow"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt_in,fmts", [(DLFLOAT16, (E4M3, E5M2)), (BINARY16, (E5M2, E4M3))],
                         ids=str)
def test_convert_runtime_format_modes(fmt_in, fmts, mode, saturate, rng):
    """The runtime choice of format in every rounding mode, with and without saturation, from
    a format with subnormals too."""
    n = 6000
    a = rng.integers(0, 1 << 16, n)
    sel = rng.integers(0, 2, n)
    ops = {"a": a, "sel": sel}
    if mode == "sr":
        ops["rnd"] = rng.integers(0, 1 << 16, n)
    got = run_unit(FPConvert(fmt_in, fmts, mode, saturate), ops, "r")
    ref = [golden.convert(a, fmt_in, f, mode, saturate, rnd=ops.get("rnd")) for f in fmts]
    assert_codes_equal(got, np.where(sel == 1, ref[1], ref[0]), ops)


@pytest.mark.parametrize("saturate", [True, False], ids=["saturate", "overflow"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt_in,fmt_out", [(DLFLOAT16, E5M2), (DLFLOAT16, E4M3),
                                            (BINARY16, DLFLOAT16), (DLFLOAT16, BINARY16),
                                            (BFLOAT16, E5M2), (E5M2, BFLOAT16),
                                            (BINARY16, E4M3), (E4M3, E5M2)], ids=str)
def test_convert_modes(fmt_in, fmt_out, mode, saturate, rng):
    spec = UnitSpec("convert", {"in_fmt": fmt_in, "out_fmt": fmt_out, "rounding": mode,
                                "saturate": saturate})
    check_spec(spec, 20000, rng)


# Adder and FMA: random plus directed ------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_adder(fmt, mode, rng):
    check_spec(UnitSpec("adder", {"fmt": fmt, "rounding": mode}), RANDOM, rng)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS, ids=str)
def test_fma(fmt, mode, rng):
    check_spec(UnitSpec("fma", {"fmt": fmt, "rounding": mode}), RANDOM, rng)


# Around the overflow threshold, every format and mode -------------------------------------------

#: Converters with results around the top of the output's range: (input, output) formats.
TOP_CONVERSIONS = [(BINARY32, E5M2), (BINARY32, E4M3), (BINARY32, DLFLOAT16),
                   (BINARY32, BINARY16), (BINARY32, BFLOAT16), (DLFLOAT16, E5M2),
                   (BINARY16, E4M3)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS + [BINARY32], ids=str)
@pytest.mark.parametrize("kind", ["adder", "fma"])
def test_around_the_top(kind, fmt, mode):
    """Exact results just below the largest finite value M, between it and the next binade, and
    far beyond, both signs, against the outcomes spelled out in sim.vectors.TOP_OUTCOMES (rtz:
    never beyond M)."""
    spec = UnitSpec(kind, {"fmt": fmt, "rounding": mode})
    ops, want = top_operations(spec)
    assert_codes_equal(run_unit(spec.build(), ops, spec.output[0]), want, ops)


@pytest.mark.parametrize("saturate", [True, False], ids=["saturate", "overflow"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt_in,fmt_out", TOP_CONVERSIONS, ids=str)
def test_convert_around_the_top(fmt_in, fmt_out, mode, saturate):
    spec = UnitSpec("convert", {"in_fmt": fmt_in, "out_fmt": fmt_out, "rounding": mode,
                                "saturate": saturate})
    ops, want = top_operations(spec)
    assert len(want) >= (20 if mode == "sr" else 10)
    assert_codes_equal(run_unit(spec.build(), ops, "r"), want, ops)


# IEEE formats against Berkeley SoftFloat --------------------------------------------------------

SF_MODES = {"rne": sf.RoundingMode.NEAR_EVEN, "rna": sf.RoundingMode.NEAR_MAX_MAG,
            "rtz": sf.RoundingMode.MIN_MAG}
SF_FUNCTIONS = {(BINARY16, "adder"): (sf.Float16, sf.f16_add),
                (BINARY16, "fma"): (sf.Float16, sf.f16_mul_add),
                (BINARY32, "adder"): (sf.Float32, sf.f32_add),
                (BINARY32, "fma"): (sf.Float32, sf.f32_mul_add)}


def softfloat(fmt, kind, mode, columns):
    """SoftFloat's result codes of ``kind`` over the operand ``columns``."""
    typ, fn = SF_FUNCTIONS[fmt, kind]
    nbytes = fmt.width // 8
    args = [[typ.from_bytes(int(c).to_bytes(nbytes, "big")) for c in col] for col in columns]
    sf.set_rounding_mode(SF_MODES[mode])
    try:
        out = [int.from_bytes(fn(*xs).to_bytes(), "big") for xs in zip(*args)]
    finally:
        sf.set_rounding_mode(sf.RoundingMode.NEAR_EVEN)
    return np.array(out, np.int64)


@pytest.mark.parametrize("mode", list(SF_MODES))
@pytest.mark.parametrize("fmt", [BINARY16, BINARY32], ids=str)
@pytest.mark.parametrize("kind", ["adder", "fma"])
def test_ieee_vs_softfloat(kind, fmt, mode, rng):
    """The RTL against Berkeley SoftFloat directly, bit for bit, NaN payloads aside (ours is
    always the canonical NaN): directed operands, overflow thresholds included, and 10,000
    structured random ones."""
    spec = UnitSpec(kind, {"fmt": fmt, "rounding": mode})
    ops = make_operations(spec, 10000, rng)
    got = run_unit(spec.build(), ops, spec.output[0])
    want = softfloat(fmt, kind, mode, [ops[n] for n, _ in spec.inputs])
    nan = (want & fmt.mag_mask) > fmt.inf_mag
    assert (got[nan] == fmt.nan_code).all()
    assert_codes_equal(got[~nan], want[~nan], {n: v[~nan] for n, v in ops.items()})
    # Not vacuous: results at the top of the range (the largest finite value, of either sign,
    # and Inf) are among them.
    mag = want & fmt.mag_mask
    assert (mag == fmt.max_finite_mag).sum() > 50 and (mag == fmt.inf_mag).sum() > 50


@pytest.mark.parametrize("kind", ["adder", "fma"])
@pytest.mark.parametrize("rbits", [1, 5, 32])
def test_sr_rbits(kind, rbits, rng):
    """Unusual random-word widths, including the full 32-bit generator word."""
    check_spec(UnitSpec(kind, {"fmt": DLFLOAT16, "rounding": "sr", "rbits": rbits}), 5000, rng)


# Stochastic rounding statistics on the RTL ------------------------------------------------------

def test_sr_sweep_rounds_up_exactly_t_times():
    """docs/numerics.md section 2: over all 2**R values of rnd, the result is ``hi`` exactly
    t times, with t = floor(f * 2**R) for the discarded fraction f."""
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
    units = [FPAdder(DLFLOAT16, "sr", rbits=12), FPAdder(DLFLOAT16, "rne"), FPFMA(BINARY16),
             FPMultiplier(E5M2, E4M3, DLFLOAT16)]
    for unit in units:
        Fragment.get(unit, None)           # elaborates (and so uses) the unit
        assert unit.latency >= 1
    assert units[0].rnd.shape().width == 12
    assert not hasattr(units[1], "rnd")
    assert units[2].r.shape().width == 16
    assert units[3].p.shape().width == 16


@pytest.mark.parametrize("make,message", [
    (lambda: FPAdder("fp17"), "Unknown format 'fp17'"),
    (lambda: FPAdder(DLFLOAT16, "nearest"), "Unknown rounding mode 'nearest'"),
    (lambda: FPAdder(DLFLOAT16, "sr", rbits=0), "rbits must be an integer from 1 to 32, not 0"),
    (lambda: FPFMA(DLFLOAT16, "sr", rbits=33), "rbits must be an integer from 1 to 32, not 33"),
    (lambda: FPConvert(DLFLOAT16, "e3m4"), "Unknown format 'e3m4'"),
    (lambda: FPConvert(DLFLOAT16, (E5M2, BINARY16)), "one width"),
    (lambda: FPConvert(DLFLOAT16, ()), "at least one format"),
    (lambda: FPMultiplier(E5M2, E5M2, DLFLOAT16, product="lut"),
     "product must be one of 'logic', 'dsp', not 'lut'"),
])
def test_constructor_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("fmt", [DLFLOAT16, BINARY16], ids=str)
def test_adder_runtime_rna(fmt, rng):
    """``runtime_rna`` chooses rne or rna per operation, as the GEMM engine's command does."""
    spec = UnitSpec("adder", {"fmt": fmt, "rounding": "rne"})
    ops = make_operations(spec, 20000, rng)
    ops["rna"] = rng.integers(0, 2, len(ops["a"]))
    unit = FPAdder(fmt, "rne", runtime_rna=True)
    got = run_unit(unit, ops, "s")
    ref = np.where(ops["rna"] == 1, golden.add(ops["a"], ops["b"], fmt, "rna"),
                   golden.add(ops["a"], ops["b"], fmt, "rne"))
    assert_codes_equal(got, ref, ops)


def test_adder_runtime_rna_needs_rne():
    with pytest.raises(ValueError, match="runtime_rna needs rounding 'rne', not 'sr'"):
        FPAdder(DLFLOAT16, "sr", runtime_rna=True)


@pytest.mark.parametrize("fmt,rbits", [(DLFLOAT16, 16), (DLFLOAT16, 3), (BINARY16, 16)],
                         ids=["dlfloat16", "dlfloat16-r3", "binary16"])
def test_fma_runtime_rne(fmt, rbits, rng):
    """``runtime_rne`` chooses rne or sr per operation (the weight update's ablation): mixed in
    one run, each result matches the golden model in its own mode, and ``rnd`` is ignored by
    the rne operations."""
    spec = UnitSpec("fma", {"fmt": fmt, "rounding": "sr", "rbits": rbits})
    ops = make_operations(spec, 20000, rng)
    ops["rne"] = rng.integers(0, 2, len(ops["a"]))
    unit = FPFMA(fmt, "sr", rbits=rbits, runtime_rne=True)
    got = run_unit(unit, ops, "r")
    sr = golden.fma(ops["a"], ops["b"], ops["c"], fmt, "sr", ops["rnd"], rbits)
    rne = golden.fma(ops["a"], ops["b"], ops["c"], fmt, "rne")
    assert_codes_equal(got, np.where(ops["rne"] == 1, rne, sr), ops)
    # Not vacuous: the two modes differ on many of these operations.
    assert np.count_nonzero(sr != rne) > 1000


def test_fma_runtime_rne_same_latency():
    units = [FPFMA(DLFLOAT16, "sr"), FPFMA(DLFLOAT16, "sr", runtime_rne=True),
             FPFMA(BINARY16, "sr"), FPFMA(BINARY16, "sr", runtime_rne=True)]
    for unit in units:
        Fragment.get(unit, None)
    assert units[0].latency == units[1].latency
    assert units[2].latency == units[3].latency
    assert not hasattr(units[0], "rne")
    assert units[1].rne.shape().width == 1


@pytest.mark.parametrize("rounding", ["rne", "rna", "rtz"])
def test_fma_runtime_rne_needs_sr(rounding):
    with pytest.raises(ValueError, match=f"runtime_rne needs rounding 'sr', not '{rounding}'"):
        FPFMA(DLFLOAT16, rounding, runtime_rne=True)
