"""Verification summary of the arithmetic units: generate their Verilog, then run each against
the golden model in Amaranth's simulator and print a table of results."""

import sys
import time
from pathlib import Path

import numpy as np

from hw.fp import (DLFLOAT16, E4M3, E5M2, FPAdder, FPConvert, FPFMA, FPMultiplier)
from sim import golden
from sim.pysim import run_unit
from sim.vectors import cross, edge_codes, random_pairs, random_triples

__all__ = ["CHECKS", "generate_verilog", "run_checks"]


def _products(fmt):
    a, b = cross(np.arange(256), np.arange(256))
    unit = FPMultiplier(fmt, fmt, DLFLOAT16)
    return unit, {"a": a, "b": b}, "p", golden.mul(a, b, fmt, fmt, DLFLOAT16)


def _conversions(fmt):
    a = np.arange(1 << 16)
    unit = FPConvert(DLFLOAT16, fmt, "rne", True)
    return unit, {"a": a}, "r", golden.convert(a, DLFLOAT16, fmt, "rne", True)


def _adds(mode, count, rng):
    ea, eb = cross(edge_codes(DLFLOAT16), edge_codes(DLFLOAT16))
    ra, rb = random_pairs(DLFLOAT16, count, rng)
    a, b = np.concatenate([ea, ra]), np.concatenate([eb, rb])
    rnd = rng.integers(0, 1 << 16, a.size)
    ins = {"a": a, "b": b} | ({"rnd": rnd} if mode == "sr" else {})
    return FPAdder(DLFLOAT16, mode), ins, "s", golden.add(a, b, DLFLOAT16, mode, rnd=rnd)


def _fmas(mode, count, rng):
    a, b, c = random_triples(DLFLOAT16, count, rng,
                             lambda x, y: golden.mul(x, y, DLFLOAT16, DLFLOAT16, DLFLOAT16))
    rnd = rng.integers(0, 1 << 16, a.size)
    ins = {"a": a, "b": b, "c": c} | ({"rnd": rnd} if mode == "sr" else {})
    return FPFMA(DLFLOAT16, mode), ins, "r", golden.fma(a, b, c, DLFLOAT16, mode, rnd=rnd)


#: (name, builder(count, rng)) of every check in the summary.
CHECKS = [
    ("mul E5M2 x E5M2 -> DLFLOAT16, all 65,536 pairs", lambda n, r: _products(E5M2)),
    ("mul E4M3 x E4M3 -> DLFLOAT16, all 65,536 pairs", lambda n, r: _products(E4M3)),
    ("convert every DLFLOAT16 code -> E5M2 (rne, sat)", lambda n, r: _conversions(E5M2)),
    ("convert every DLFLOAT16 code -> E4M3 (rne, sat)", lambda n, r: _conversions(E4M3)),
] + [(f"add DLFLOAT16 {mode}", lambda n, r, mode=mode: _adds(mode, n, r))
     for mode in ("rne", "rna", "rtz", "sr")] + [
    (f"fma DLFLOAT16 {mode}", lambda n, r, mode=mode: _fmas(mode, n, r))
    for mode in ("rne", "rna", "rtz", "sr")]

#: Units written out as Verilog: (file stem, factory).
VERILOG = [
    ("fp_mul_e5m2_e5m2_dlfloat16", lambda: FPMultiplier(E5M2, E5M2, DLFLOAT16)),
    ("fp_mul_e4m3_e4m3_dlfloat16", lambda: FPMultiplier(E4M3, E4M3, DLFLOAT16)),
    ("fp_add_dlfloat16_rne", lambda: FPAdder(DLFLOAT16, "rne")),
    ("fp_fma_dlfloat16_sr", lambda: FPFMA(DLFLOAT16, "sr")),
    ("fp_convert_dlfloat16_e5m2", lambda: FPConvert(DLFLOAT16, E5M2)),
    ("fp_convert_dlfloat16_e4m3", lambda: FPConvert(DLFLOAT16, E4M3)),
]


def generate_verilog(out_dir):
    """Write the Verilog of the standard unit configurations; returns the paths."""
    from sim.runner import write_verilog
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, make in VERILOG:
        path = out / f"{stem}.v"
        write_verilog(make(), path, stem)
        paths.append(path)
    return paths


def run_checks(count=20000, seed=1, out=sys.stdout):
    """Run every check; prints one line each and returns the number of mismatching results."""
    rng = np.random.default_rng(seed)
    total_bad = 0
    print(f"{'check':52} {'vectors':>9} {'mismatches':>10} {'latency':>7} {'time':>7}",
          file=out)
    for name, build in CHECKS:
        start = time.monotonic()
        unit, ins, port, ref = build(count, rng)
        got = run_unit(unit, ins, port)
        bad = int(np.count_nonzero(got != np.asarray(ref, np.int64)))
        total_bad += bad
        print(f"{name:52} {got.size:9,} {bad:10,} {unit.latency:7} "
              f"{time.monotonic() - start:6.1f}s", file=out, flush=True)
    return total_bad
