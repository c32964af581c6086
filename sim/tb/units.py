"""cocotb tests for a fixed-latency arithmetic unit, checked bit-exactly against sim.golden.

The unit has no handshake: an operation applied to the inputs before a rising edge has its
result on the output ``latency`` edges later. A driver applies operations, a monitor samples the
output every cycle, and the recorded results are compared in bulk with :mod:`sim.golden` after
the run (one vectorised call instead of Python work per cycle).

Configuration comes from the JSON file named by ``$FP8ACCEL_TB_CONFIG`` (see
:func:`sim.runner.run_cocotb`)::

    {"unit": {"kind": "adder", "options": {...}},   # a sim.tb.UnitSpec
     "latency": 5,                                  # the component's latency property
     "widths": {"a": 16, "b": 16, "rnd": 16, "s": 16},
     "vectors": 5000,                               # operations in the back-to-back test
     "idle_vectors": 1000,                          # operations in the idle-cycle test
     "idle_pattern": [1, 0, 1, 1, 0, 0],            # 1: an operation enters on that cycle
     "seed": 1}
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from sim.runner import CONFIG_ENV
from sim.tb import UnitSpec

__all__ = ["load_config", "edge_codes", "make_operations"]

# How many mismatches a failure lists.
_REPORT = 12


def load_config():
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set; run this module through "
                           f"sim.runner.run_cocotb")
    with open(path) as f:
        cfg = json.load(f)
    cfg["spec"] = UnitSpec.from_json(cfg["unit"])
    cfg.setdefault("vectors", 1000)
    cfg.setdefault("idle_vectors", max(1, cfg["vectors"] // 4))
    cfg.setdefault("idle_pattern", [1, 0, 1, 1, 0, 0, 1, 0, 0, 0])
    cfg.setdefault("seed", 1)
    if cfg["latency"] < 1:
        raise ValueError(f"The unit must have registered outputs, latency {cfg['latency']}")
    return cfg


# Operands ------------------------------------------------------------------------------------

def edge_codes(fmt):
    """Codes at the edges of ``fmt``, both signs: zero, the smallest and largest subnormals and
    normals, one and its neighbours, the largest finite values, Inf and NaNs."""
    m = fmt.m
    one = fmt.bias << m
    mags = {0, 1, 2, (1 << m) - 1, 1 << m, (1 << m) + 1, one - 1, one, one + 1,
            fmt.max_finite_mag - 1, fmt.max_finite_mag, fmt.mag_mask}
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


def make_operations(spec, widths, count, rng, directed=True):
    """Operand columns (port name -> ``int64`` array) of at least ``count`` operations in a
    random order: the directed edge cases (if ``directed``), then structured random ones."""
    from sim import golden

    ops = _directed(spec, rng) if directed else {}
    n_dir = len(next(iter(ops.values()))) if ops else 0
    n = max(count - n_dir, count // 4, 1)
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
        top = (1 << widths["rnd"]) - 1
        rnd = rng.integers(0, top + 1, total, dtype=np.int64)
        pick = rng.random(total)
        rnd = np.where(pick < 0.125, 0, np.where(pick < 0.25, top, rnd))
        ops["rnd"] = rnd
    order = rng.permutation(total)
    return {name: np.asarray(col, np.int64)[order] for name, col in ops.items()}


# Driving and checking ------------------------------------------------------------------------

async def _reset(dut, names):
    Clock(dut.clk, 10, unit="ns").start(start_high=False)
    dut.rst.value = 1
    for name in names:
        getattr(dut, name).value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0


async def _run(dut, cfg, ops, enters, idle_inputs):
    """Apply operation ``i`` on cycle ``enters[i]``; on the other cycles apply
    ``idle_inputs[cycle]`` (a tuple of values, or ``None`` to hold the inputs). Returns the
    output sampled ``latency`` cycles after each operation entered (``None`` for X or Z)."""
    spec, lat = cfg["spec"], cfg["latency"]
    names = [n for n, _ in spec.inputs]
    out = getattr(dut, spec.output[0])
    ports = [getattr(dut, n) for n in names]
    cols = [ops[n].tolist() for n in names]
    n_cycles = (enters[-1] + 1) if enters else 0
    per_cycle = list(idle_inputs) + [None] * (n_cycles - len(idle_inputs))
    for i, cycle in enumerate(enters):
        per_cycle[cycle] = tuple(col[i] for col in cols)
    # Operands applied on cycle k (right after edge k) enter the first stage at edge k + 1;
    # the result is in the output register after edge k + lat, which the monitor's iteration
    # k + lat - 1 reads in that edge's ReadOnly phase.
    samples = [False] * (n_cycles + lat)
    for cycle in enters:
        samples[cycle + lat - 1] = True
    results = []

    async def monitor():
        for sample in samples:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if sample:
                try:
                    results.append(out.value.to_unsigned())
                except ValueError:
                    results.append(None)

    await _reset(dut, names)
    task = cocotb.start_soon(monitor())
    for values in per_cycle:                # the driver: writes right after each rising edge
        if values is not None:
            for port, value in zip(ports, values):
                port.value = value
        await RisingEdge(dut.clk)
    await task
    return results


def _check(cfg, ops, got, what):
    spec = cfg["spec"]
    expected = np.asarray(spec.golden(ops), np.int64)
    x_val = -1
    got = np.array([x_val if g is None else g for g in got], np.int64)
    bad = np.flatnonzero(got != expected)
    if not len(bad):
        cocotb.log.info("%s: %d operations of %s match sim.golden", what, len(got), spec.name)
        return
    out_name, out_fmt = spec.output
    digits = {n: -(-(f.width if f else cfg["widths"][n]) // 4) for n, f in spec.inputs}
    od = -(-out_fmt.width // 4)
    lines = [f"{len(bad)} of {len(got)} results of {spec.name} (latency {cfg['latency']}) differ "
             f"from sim.golden in {what}; the first ones (operation index: operands -> {out_name}"
             f", expected):"]
    for i in bad[:_REPORT]:
        operands = " ".join(f"{n}=0x{int(ops[n][i]):0{digits[n]}x}" for n in digits)
        value = "X" if got[i] == x_val else f"0x{int(got[i]):0{od}x}"
        lines.append(f"  #{i}: {operands} -> {value}, expected 0x{int(expected[i]):0{od}x}")
    raise AssertionError("\n".join(lines))


@cocotb.test()
async def test_back_to_back(dut):
    """One operation every cycle: random and directed operands at full throughput."""
    cfg = load_config()
    rng = np.random.default_rng(cfg["seed"])
    ops = make_operations(cfg["spec"], cfg["widths"], cfg["vectors"], rng)
    count = len(next(iter(ops.values())))
    got = await _run(dut, cfg, ops, list(range(count)), [])
    _check(cfg, ops, got, "back-to-back operations")


@cocotb.test()
async def test_idle_cycles(dut):
    """Operations enter only on some cycles (the pattern of ``idle_pattern``); between them the
    inputs hold or carry random codes. Each result is sampled exactly ``latency`` cycles after
    its operation entered."""
    cfg = load_config()
    spec = cfg["spec"]
    rng = np.random.default_rng(cfg["seed"] + 1)
    ops = make_operations(spec, cfg["widths"], cfg["idle_vectors"], rng, directed=False)
    count = len(next(iter(ops.values())))
    pattern = [bool(p) for p in cfg["idle_pattern"]]
    if not any(pattern):
        raise ValueError("idle_pattern must let some operations in")
    enters, cycle = [], 0
    while len(enters) < count:
        if pattern[cycle % len(pattern)]:
            enters.append(cycle)
        cycle += 1
    names = [n for n, _ in spec.inputs]
    widths = [cfg["widths"][n] for n in names]
    idle = []
    for _ in range(enters[-1] + 1):
        if rng.random() < 0.5:
            idle.append(None)                                   # hold the last operation
        else:
            idle.append(tuple(int(rng.integers(0, 1 << w)) for w in widths))
    got = await _run(dut, cfg, ops, enters, idle)
    _check(cfg, ops, got, f"operations with idle cycles (pattern {cfg['idle_pattern']})")
