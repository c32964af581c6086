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


import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from fp8accel.sim.run.runner import read_tb_config
from fp8accel.sim.run.units import UnitSpec
from fp8accel.sim.vectors import make_operations

__all__ = ["load_config"]

# How many mismatches a failure lists.
_REPORT = 12


def load_config():
    cfg = read_tb_config()
    cfg["spec"] = UnitSpec.from_json(cfg["unit"])
    cfg.setdefault("vectors", 1000)
    cfg.setdefault("idle_vectors", max(1, cfg["vectors"] // 4))
    cfg.setdefault("idle_pattern", [1, 0, 1, 1, 0, 0, 1, 0, 0, 0])
    cfg.setdefault("seed", 1)
    if cfg["latency"] < 1:
        raise ValueError(f"The unit must have registered outputs, latency {cfg['latency']}")
    return cfg


# Operands ------------------------------------------------------------------------------------

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
    ops = make_operations(cfg["spec"], cfg["vectors"], rng)
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
    ops = make_operations(spec, cfg["idle_vectors"], rng, directed=False)
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
