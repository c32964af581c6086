"""cocotb tests of the SGD weight-update unit (hw.update.SGDUpdate), checked bit-exactly against
sim.golden.sgd_update.

A driver offers elements on ``i`` (with idle cycles from a pause pattern), a monitor takes
results from ``o`` (with backpressure from another), and a scoreboard compares them in order
with the golden model once the run is over. Every cycle each of them writes right after the
rising edge and reads the handshake in that cycle's ``ReadOnly`` phase: a transfer happens at
the next edge exactly when both ``valid`` and ``ready`` were then 1.

Configuration comes from the JSON file named by ``$FP8ACCEL_TB_CONFIG`` (see
:func:`sim.runner.run_cocotb`)::

    {"latency": 34,              # the component's latency property
     "rbits": 16,
     "vector": 2000,             # elements of the random bit-exact test
     "weights": 48,              # weights updated together in the small-increment test
     "steps": 10000,             # its sequential steps with sr
     "rne_steps": 1000,          # and with rne (default: steps)
     "seed": 1}
"""

import collections
import itertools

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from fp8accel.sim import golden
from fp8accel.sim.run.runner import read_tb_config
from fp8accel.sim.vectors import edge_codes

__all__ = ["load_config", "small_increment_sigma"]

_F = golden.DLFLOAT16
# How many mismatches a failure lists.
_REPORT = 8


def load_config():
    cfg = read_tb_config()
    cfg.setdefault("rbits", 16)
    cfg.setdefault("vector", 1000)
    cfg.setdefault("weights", 48)
    cfg.setdefault("steps", 1000)
    cfg.setdefault("seed", 1)
    return cfg


def _code(x):
    return int(golden.encode(x, _F))


def small_increment_sigma(steps):
    """Standard deviation of one weight's total movement in the small-increment test: each
    step moves it up one ulp of [1, 2) (2**-9) with probability 2**-14 / 2**-9 = 1/32, so the
    movement is 2**-9 times a Binomial(steps, 1/32)."""
    return 2.0 ** -9 * np.sqrt(steps * (1 / 32) * (31 / 32))


class UpdateTB:
    """Driver, monitor and the cycle loop around one ``SGDUpdate``."""

    def __init__(self, dut):
        self.dut = dut

    async def reset(self, *, lr, mu, wd, seed):
        dut = self.dut
        Clock(dut.clk, 10, unit="ns").start(start_high=False)
        dut.rst.value = 1
        for port in (dut.i__valid, dut.i__payload, dut.o__ready, dut.sr, dut.load, dut.seed):
            port.value = 0
        dut.lr.value, dut.momentum.value, dut.weight_decay.value = lr, mu, wd
        await ClockCycles(dut.clk, 3)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        dut.seed.value = seed
        dut.load.value = 1
        await RisingEdge(dut.clk)
        dut.load.value = 0

    async def stream(self, source, count, *, pause=None, backpressure=None, junk=None):
        """Run until ``count`` results are out. ``source()`` returns the next element
        ``(w, g, v, sr)`` or ``None`` if none is ready yet; it is called only when the previous
        one was taken, and at most ``count`` times with a result. ``pause`` and
        ``backpressure`` are iterators of 0/1 per cycle (1: the source idles, the sink
        stalls). On idle cycles the payload carries codes from ``junk`` (a NumPy generator),
        which the unit must ignore. Returns the results
        ``(w, v)`` in order; ``self.on_result`` (if set) sees each as it arrives."""
        dut = self.dut
        pause = pause or itertools.repeat(0)
        backpressure = backpressure or itertools.repeat(0)
        results = []
        pending = None
        taken = cycles = 0
        limit = 50 * (count + 100)
        while len(results) < count:
            await RisingEdge(dut.clk)
            # Writes for this cycle.
            if pending is None and taken < count:
                pending = source()
                taken += pending is not None
            offer = pending is not None and not next(pause)
            if offer:
                w, g, v, sr = pending
                dut.i__payload.value = w | (g << 16) | (v << 32)
                dut.sr.value = sr
            elif junk is not None:
                dut.i__payload.value = int(junk.integers(0, 1 << 48))
                dut.sr.value = int(junk.integers(0, 2))
            dut.i__valid.value = int(offer)
            ready = 0 if next(backpressure) else 1
            dut.o__ready.value = ready
            # The handshakes of this cycle, settled.
            await ReadOnly()
            if offer and dut.i__ready.value:
                pending = None
            if ready and dut.o__valid.value:
                word = dut.o__payload.value.to_unsigned()
                result = (word & 0xFFFF, word >> 16)
                results.append(result)
                if getattr(self, "on_result", None):
                    self.on_result(result)
            cycles += 1
            assert cycles < limit, f"{len(results)} of {count} results after {cycles} cycles"
        await RisingEdge(self.dut.clk)
        self.dut.i__valid.value = 0
        self.dut.o__ready.value = 0
        self.cycles = cycles
        return results

    async def idle_state(self):
        """``state`` and ``busy`` once the last result has left."""
        await ReadOnly()
        return self.dut.state.value.to_unsigned(), int(self.dut.busy.value)


def _elements(n, rng):
    edges = edge_codes(_F)
    cols = []
    for scale in (0.05, 1e-3, 1e-2):
        real = golden.encode(rng.normal(0.0, scale, n), _F).astype(np.int64)
        kind = rng.random(n)
        cols.append(np.where(kind < 0.6, real, np.where(kind < 0.8, rng.integers(0, 1 << 16, n),
                                                         rng.choice(edges, n))))
    return cols


@cocotb.test()
async def test_random_vector_with_backpressure(dut):
    """Random and edge-case elements, the mode chosen per element, with random idle cycles on
    the source and stalls on the sink (the sink slower on average, so the FIFO fills up):
    every result and the final generator state equal the golden model's."""
    cfg = load_config()
    rng = np.random.default_rng(cfg["seed"])
    n = cfg["vector"]
    w, g, v = _elements(n, rng)
    modes = rng.integers(0, 2, n)
    lr, mu, wd = _code(0.01), _code(0.9), _code(1e-4)
    seed = int(rng.integers(1, 1 << 32))
    tb = UpdateTB(dut)
    await tb.reset(lr=lr, mu=mu, wd=wd, seed=seed)
    elements = iter(zip(w.tolist(), g.tolist(), v.tolist(), modes.tolist()))
    pause = iter((rng.random(60 * n + 1000) < 0.2).astype(int).tolist())
    stall = iter((rng.random(60 * n + 1000) < 0.45).astype(int).tolist())
    got = await tb.stream(lambda: next(elements, None), n, pause=pause, backpressure=stall,
                          junk=rng)
    state, busy = await tb.idle_state()

    sr = golden.sgd_update(w, g, v, lr, mu, wd, seed, "sr", cfg["rbits"])
    rne = golden.sgd_update(w, g, v, lr, mu, wd, seed, "rne", cfg["rbits"])
    ref_w = np.where(modes == 1, sr[0], rne[0])
    ref_v = np.where(modes == 1, sr[1], rne[1])
    got_w = np.array([r[0] for r in got])
    got_v = np.array([r[1] for r in got])
    bad = np.flatnonzero((got_w != ref_w) | (got_v != ref_v))
    if bad.size:
        lines = [f"{bad.size} of {n} results differ from sim.golden.sgd_update:"]
        for i in bad[:_REPORT]:
            lines.append(f"  #{i}: w={int(w[i]):#06x} g={int(g[i]):#06x} v={int(v[i]):#06x} "
                         f"sr={int(modes[i])} -> w={int(got_w[i]):#06x} v={int(got_v[i]):#06x}, "
                         f"expected w={int(ref_w[i]):#06x} v={int(ref_v[i]):#06x}")
        raise AssertionError("\n".join(lines))
    expected_state = int(golden.xorshift32(seed, 3 * n)[-1])
    assert state == expected_state, f"state {state:#x}, expected {expected_state:#x}"
    assert busy == 0, "busy after the last result"
    cocotb.log.info("%d elements match sim.golden in %d cycles", n, tb.cycles)


@cocotb.test()
async def test_small_increments_kept(dut):
    """The reason docs/weight-update.md ("What it computes") gives for stochastic rounding, on the
    RTL: ``weights`` weights 1.0, each updated ``steps`` times by +2**-14 (lr = 2**-7,
    g = -2**-7, mu = wd = v = 0), every result fed back as the next step's input, the random
    stream never reloaded. The weights form a ring longer than the pipeline, so the unit runs at
    full throughput while each weight's updates stay sequential. With sr the movement must be
    the exact total ``steps * 2**-14`` within the band derived in :func:`small_increment_sigma`
    (5 sigma per weight, 4 sigma / sqrt(weights) for their mean); with rne (run second, for
    ``rne_steps`` steps) no weight moves."""
    cfg = load_config()
    n, steps = cfg["weights"], cfg["steps"]
    lr, zero = _code(2.0 ** -7), _code(0.0)
    g = _code(-(2.0 ** -7))
    one = _code(1.0)
    tb = UpdateTB(dut)
    await tb.reset(lr=lr, mu=zero, wd=zero, seed=cfg["seed"])
    moved = {}
    for sr, count in ((1, steps), (0, cfg.get("rne_steps", steps))):
        queue = collections.deque((one, g, zero, sr) for _ in range(n))

        def take():
            return queue.popleft() if queue else None

        def feed_back(result):
            queue.append((result[0], g, result[1], sr))

        tb.on_result = feed_back
        got = await tb.stream(take, n * count)
        final = np.array([r[0] for r in got[-n:]])
        moved[sr] = golden.decode(final, _F) - 1.0
        cocotb.log.info("%s: %d steps of %d weights in %d cycles; mean movement %.5f",
                        "sr" if sr else "rne", count, n, tb.cycles, moved[sr].mean())
        if sr:
            # Exactly one stream from the seed, so the same code as the golden model's loop.
            w_ref = np.full(n, one, np.uint16)
            v_ref = np.full(n, zero, np.uint16)
            state = cfg["seed"]
            for _ in range(steps):
                w_ref, v_ref = golden.sgd_update(w_ref, np.full(n, g, np.uint16), v_ref,
                                                 lr, zero, zero, state, "sr")
                state = int(golden.xorshift32(state, 3 * n)[-1])
            assert (final == w_ref).all(), \
                f"the weights after {steps} steps differ from sim.golden.sgd_update's"
        tb.on_result = None
        # Reload the seed for the rne run; nothing is in flight now.
        await RisingEdge(dut.clk)
        dut.seed.value = cfg["seed"]
        dut.load.value = 1
        await RisingEdge(dut.clk)
        dut.load.value = 0

    total = steps * 2.0 ** -14
    sigma = small_increment_sigma(steps)
    assert (np.abs(moved[1] - total) < 5 * sigma).all(), \
        f"sr: movements {moved[1]} not within 5 sigma ({sigma:.4f}) of {total}"
    assert abs(moved[1].mean() - total) < 4 * sigma / np.sqrt(n), \
        f"sr: mean movement {moved[1].mean()} not within 4 sigma/sqrt({n}) of {total}"
    assert (moved[0] == 0).all(), f"rne moved the weights: {moved[0]}"
