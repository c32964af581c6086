"""``fp8accel study accumulation``: swamping in long DLFLOAT16 dot products, and what chunking
does about it.

Ref: docs/numerics.md section 4; docs/training.md ("The swamping study").

For each length ``K = 2**4 .. 2**16`` a number of random dot products of E5M2 vectors are
accumulated by :func:`sim.golden.gemm` (bit-exact to the accelerator) sequentially in DLFLOAT16
(``chunk=None``) and in chunks of 16, 64 and 256, and in float32 (sequentially, ``cumsum``), and
compared with float64 on the same FP8 values (exact: every product and partial sum of at most
65536 of them fits float64). Two kinds of data: positive (``|N(0, 1)|``, where every addition
grows the sum and a sequential sum stops growing once the terms fall below half its ulp, the
paper's swamping) and zero-mean (``N(0, 1)``, where the sum grows like ``sqrt(K)`` and swamping is
milder). The paper's analysis: the error of chunked accumulation grows with
``max(chunk, K / chunk)``, so the best chunk is near ``sqrt(K)``.
"""

import json
import time
from pathlib import Path

import numpy as np

from fp8accel.sim import golden
from fp8accel.sim.files import save_figure, write_text

__all__ = ["METHODS", "CHUNKS", "accumulation_errors", "run_study", "add_study_parser"]

CHUNKS = (16, 64, 256)
METHODS = ("sequential DLFLOAT16",) + tuple(f"chunk {c}" for c in CHUNKS) + ("float32",)
DATA = ("positive", "zero-mean")


def accumulation_errors(k, data, trials, rng):
    """Mean relative error of each method (:data:`METHODS`) for dot products of length ``k``."""
    x = rng.standard_normal((trials, k))
    y = rng.standard_normal((k, 1))
    if data == "positive":
        x, y = np.abs(x), np.abs(y)
    A = golden.encode(x, golden.E5M2, "rne", saturate=True)
    B = golden.encode(y, golden.E5M2, "rne", saturate=True)
    av, bv = golden.decode(A, golden.E5M2), golden.decode(B, golden.E5M2)
    exact = (av @ bv)[:, 0]
    denom = np.maximum(np.abs(exact), 1e-300)
    errs = {}
    for method, chunk in zip(METHODS, (None,) + CHUNKS):
        got = golden.decode(golden.gemm(A, B, chunk=chunk), golden.DLFLOAT16)[:, 0]
        errs[method] = float(np.mean(np.abs(got - exact) / denom))
    f32 = np.cumsum((av * bv[:, 0]).astype(np.float32), axis=1, dtype=np.float32)[:, -1]
    errs["float32"] = float(np.mean(np.abs(f32.astype(np.float64) - exact) / denom))
    return errs


def run_study(out_dir, max_log2=16, trials=32, seed=1):
    """Run the study, write ``accumulation.{md,json,png}`` to ``out_dir``; returns the results
    ``{data: {k: {method: error}}}``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lengths = [2 ** e for e in range(4, max_log2 + 1)]
    t0 = time.perf_counter()
    results = {d: {k: accumulation_errors(k, d, trials, rng) for k in lengths} for d in DATA}
    elapsed = time.perf_counter() - t0
    best = {d: {k: min(CHUNKS, key=lambda c: results[d][k][f"chunk {c}"]) for k in lengths}
            for d in DATA}
    lines = ["# Accumulation study", "",
             f"Produced by `fp8accel study accumulation` ({trials} dot products of E5M2 "
             f"vectors per length and kind of data, seed {seed}, {elapsed:.0f} s). Mean "
             f"relative error against float64 on the same FP8 values; **bold**: the best "
             f"chunk length for that length.", ""]
    for d in DATA:
        lines += [f"## {d} data", "", "| K | " + " | ".join(METHODS) + " | best chunk |",
                  "|---" * (len(METHODS) + 2) + "|"]
        for k in lengths:
            cells = []
            for m in METHODS:
                cell = f"{results[d][k][m]:.2e}"
                cells.append(f"**{cell}**" if m == f"chunk {best[d][k]}" else cell)
            lines.append(f"| {k} | " + " | ".join(cells) + f" | {best[d][k]} |")
        lines.append("")
    write_text(out_dir / "accumulation.md", "\n".join(lines))
    write_text(out_dir / "accumulation.json", json.dumps(
        {"trials": trials, "seed": seed, "seconds": elapsed, "best_chunk": best,
         "errors": results}, indent=1) + "\n")
    _plot(results, best, lengths, out_dir / "accumulation.png")
    return results, best


def _plot(results, best, lengths, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, d in zip(axes, DATA):
        for m in METHODS:
            ax.loglog(lengths, [max(results[d][k][m], 1e-12) for k in lengths], "o-",
                      ms=3, label=m)
        for k in lengths:
            c = best[d][k]
            ax.plot(k, results[d][k][f"chunk {c}"], "k*", ms=11, mfc="none")
        ax.plot([], [], "k*", ms=11, mfc="none", label="best chunk")
        ax.set_xscale("log", base=2)
        ax.set(title=f"{d} data", xlabel="dot product length K",
               ylabel="mean relative error vs float64")
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


#: Random products per kind of data and length at most (``--trials`` times the longest
#: length): 2**24 float64 values are 128 MiB, and the study holds a few such arrays at once.
PRODUCTS_MAX = 1 << 24
