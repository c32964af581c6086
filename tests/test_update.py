"""The SGD weight-update unit (hw.update) in Amaranth's simulator against sim.golden.sgd_update,
bit for bit, plus statistical tests of stochastic rounding on the golden model.

The statistical tests run on the golden model because it is bit-exact to the RTL (the tests
above them establish that); tests/test_cocotb_update.py repeats the small-increment one on the
RTL under Verilator.
"""

import itertools

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from fp8accel.hw.fp.format import DLFLOAT16
from fp8accel.hw.update import SGDUpdate, XorshiftWords, xorshift32_matrix, xorshift32_step
from fp8accel.sim import golden
from fp8accel.sim.vectors import edge_codes

F = DLFLOAT16


def code(x):
    """DLFLOAT16 code of a float (exactly representable in the tests that use it)."""
    return int(golden.encode(x, F))


# Typical training values: lr 0.01, momentum 0.9, weight decay 1e-4.
TYPICAL = {"lr": code(0.01), "mu": code(0.9), "wd": code(1e-4)}


# Driving the unit ------------------------------------------------------------------------------

def simulate(dut, w, g, v, *, lr, mu, wd, seed, sr=True, src=None, sink=None,
             idle_junk=None):
    """Stream the elements ``(w, g, v)`` through ``dut`` and collect its outputs.

    ``sr`` is one mode for all, or a 0/1 sequence, one per element (``sr`` is sampled with each
    element). ``src`` and ``sink`` are iterables of 0/1, one per cycle: whether the source
    offers an element and whether the sink is ready (always, when ``None``). ``seed`` is
    loaded with a one-cycle ``load`` pulse first (``None``: keep the state). On cycles without
    an element the payload and ``sr`` carry random values from ``idle_junk`` (an
    ``np.random.Generator``), which must be ignored.

    Returns a dict with ``w``, ``v`` (output codes), ``state`` (after the last transfer),
    ``in_edges`` and ``out_edges`` (the clock edge of every transfer, counted from the first
    edge of the run), ``busy_first`` (``busy`` after the first transfer) and ``busy_after``
    (``busy`` once everything is out).
    """
    w, g, v = (np.asarray(x, np.int64).ravel().tolist() for x in (w, g, v))
    n = len(w)
    modes = [int(sr)] * n if np.ndim(sr) == 0 else [int(x) for x in sr]
    src = itertools.repeat(1) if src is None else iter(src)
    sink = itertools.repeat(1) if sink is None else iter(sink)
    res = {"w": [], "v": [], "in_edges": [], "out_edges": [], "state": None,
           "busy_first": None, "busy_after": None}
    first = 0 if seed is None else 1
    limit = 40 * (n + 64)

    async def producer(ctx):
        ctx.set(dut.lr, lr)
        ctx.set(dut.momentum, mu)
        ctx.set(dut.weight_decay, wd)
        if seed is not None:
            ctx.set(dut.seed, seed)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
        edge, j = first, 0
        while j < n:
            valid = next(src)
            ctx.set(dut.i.valid, valid)
            if valid:
                values = (w[j], g[j], v[j], modes[j])
            elif idle_junk is not None:
                values = (*(int(x) for x in idle_junk.integers(0, 1 << 16, 3)),
                          int(idle_junk.integers(0, 2)))
            else:
                values = (w[j], g[j], v[j], modes[j])
            for name, value in zip("wgv", values):
                ctx.set(getattr(dut.i.payload, name), value)
            ctx.set(dut.sr, values[3])
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            if valid and ready:
                res["in_edges"].append(edge)
                if j == 0:
                    res["busy_first"] = ctx.get(dut.busy)
                j += 1
            edge += 1
            assert edge < limit, f"only {j} of {n} elements accepted in {limit} cycles"
        ctx.set(dut.i.valid, 0)
        res["state"] = ctx.get(dut.state)

    async def consumer(ctx):
        edge = 0
        while len(res["w"]) < n:
            ready = next(sink)
            ctx.set(dut.o.ready, ready)
            _, _, valid, ow, ov = await ctx.tick().sample(dut.o.valid, dut.o.payload.w,
                                                          dut.o.payload.v)
            if valid and ready:
                res["w"].append(ow)
                res["v"].append(ov)
                res["out_edges"].append(edge)
            edge += 1
            assert edge < limit, f"only {len(res['w'])} of {n} results in {limit} cycles"
        ctx.set(dut.o.ready, 0)
        await ctx.tick()
        res["busy_after"] = ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    res["w"] = np.array(res["w"], np.int64)
    res["v"] = np.array(res["v"], np.int64)
    return res


def final_state(seed, n):
    """The generator state after ``n`` elements (3n words) from ``seed``."""
    return seed if n == 0 else int(golden.xorshift32(seed, 3 * n)[-1])


def assert_matches_golden(res, w, g, v, *, lr, mu, wd, seed, sr=True, rbits=16):
    ref_w, ref_v = golden.sgd_update(w, g, v, lr, mu, wd, seed, "sr" if sr else "rne", rbits)
    ref_w, ref_v = np.asarray(ref_w, np.int64), np.asarray(ref_v, np.int64)
    assert len(res["w"]) == len(w)
    bad = np.flatnonzero((res["w"] != ref_w) | (res["v"] != ref_v))
    if bad.size:
        rows = [f"#{i}: w={int(w[i]):#06x} g={int(g[i]):#06x} v={int(v[i]):#06x} -> "
                f"w={int(res['w'][i]):#06x} v={int(res['v'][i]):#06x}, expected "
                f"w={int(ref_w[i]):#06x} v={int(ref_v[i]):#06x}" for i in bad[:8]]
        pytest.fail(f"{bad.size} of {len(w)} elements differ (lr={lr:#06x} mu={mu:#06x} "
                    f"wd={wd:#06x} seed={seed:#x} sr={sr} rbits={rbits}):\n" + "\n".join(rows))
    assert res["state"] == final_state(seed, len(w))


def make_elements(n, rng):
    """``n`` elements: mostly realistic weights, gradients and momenta, plus uniform random
    codes and the edge codes of DLFLOAT16 (both zeros, smallest and largest normals, one and
    its neighbours, NaN of both signs; DLFLOAT16 has no Inf and no subnormals)."""
    edges = edge_codes(F)
    cols = []
    for scale in (0.05, 1e-3, 1e-2):                 # w, g, v
        real = golden.encode(rng.normal(0.0, scale, n), F).astype(np.int64)
        uniform = rng.integers(0, 1 << 16, n)
        edge = rng.choice(edges, n)
        kind = rng.random(n)
        cols.append(np.where(kind < 0.6, real, np.where(kind < 0.8, uniform, edge)))
    return cols


# Parameter sets: typical values, then the edges (NaN, the largest normal, both zeros, the
# smallest normal) on each parameter.
PARAMS = [
    TYPICAL,
    {"lr": code(2.0 ** -7), "mu": code(0.5), "wd": code(0.0)},
    {"lr": 0x7FFF, "mu": code(0.9), "wd": code(1e-4)},                 # lr NaN
    {"lr": 0x7FFE, "mu": 0x8000, "wd": 0x0001},                        # max, -0, min normal
    {"lr": 0xFFFE, "mu": 0xFFFF, "wd": 0x8001},                        # -max, -NaN, -min
]


@pytest.fixture(scope="module")
def unit16():
    unit = SGDUpdate()
    Fragment.get(unit, None)        # used, even where a worker runs no simulation of it
    return unit


# Generator matrices ---------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 3])
def test_matrices_match_xorshift32(k, rng):
    rows = xorshift32_matrix(k)
    seeds = [1, 2, 0x8000_0000, 0xFFFF_FFFF, *rng.integers(1, 1 << 32, 200).tolist()]
    for s in seeds:
        # The matrix as a parity of masked bits, against the golden stream's k-th word.
        got = sum((bin(s & row).count("1") & 1) << i for i, row in enumerate(rows))
        assert got == int(golden.xorshift32(s, k)[-1]), (k, hex(s))
        expected = s
        for _ in range(k):
            expected = xorshift32_step(expected)
        assert got == expected


@pytest.mark.parametrize("rbits", [16, 32, 5])
def test_generator_component(rbits, rng):
    """The XOR networks of the generator give the low bits of T, T^2 and T^3 of the state, and
    ``advance`` steps three words, ``load`` wins over it."""
    dut = XorshiftWords(rbits=rbits)
    seeds = [1, 0xFFFF_FFFF, *rng.integers(1, 1 << 32, 20).tolist()]
    mask = (1 << rbits) - 1

    async def bench(ctx):
        assert ctx.get(dut.state) == 1                      # after reset
        for seed in seeds:
            ctx.set(dut.seed, seed)
            ctx.set(dut.load, 1)
            ctx.set(dut.advance, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            assert ctx.get(dut.state) == seed
            stream = golden.xorshift32(seed, 9)
            for step in range(3):
                got = [ctx.get(dut.u[k]) for k in range(3)]
                assert got == [int(x) & mask for x in stream[3 * step:3 * step + 3]], hex(seed)
                await ctx.tick()
                assert ctx.get(dut.state) == int(stream[3 * step + 2])
            ctx.set(dut.advance, 0)
            await ctx.tick()
            assert ctx.get(dut.state) == int(stream[8])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_matrix_rows_are_small():
    # The one-cycle claim of the design rests on these widths: at most 18 inputs per XOR.
    assert max(bin(r).count("1") for r in xorshift32_matrix(3)) == 18
    assert xorshift32_matrix(0) == [1 << i for i in range(32)]


# Bit-exact against the golden model ------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3, 17, 100, 500])
@pytest.mark.parametrize("sr", [True, False], ids=["sr", "rne"])
def test_vector_lengths(unit16, n, sr, rng):
    w, g, v = make_elements(n, rng)
    seed = int(rng.integers(1, 1 << 32))
    res = simulate(unit16, w, g, v, **TYPICAL, seed=seed, sr=sr)
    assert_matches_golden(res, w, g, v, **TYPICAL, seed=seed, sr=sr)
    assert res["busy_first"] == 1 and res["busy_after"] == 0


@pytest.mark.parametrize("index", range(len(PARAMS)))
def test_parameter_edges(unit16, index, rng):
    params = PARAMS[index]
    w, g, v = make_elements(120, rng)
    for sr in (True, False):
        seed = int(rng.integers(1, 1 << 32))
        res = simulate(unit16, w, g, v, **params, seed=seed, sr=sr)
        assert_matches_golden(res, w, g, v, **params, seed=seed, sr=sr)


@pytest.mark.parametrize("rbits", [4, 32, 1])
@pytest.mark.parametrize("sr", [True, False], ids=["sr", "rne"])
def test_other_rbits(rbits, sr, rng):
    dut = SGDUpdate(rbits=rbits)
    w, g, v = make_elements(150, rng)
    seed = int(rng.integers(1, 1 << 32))
    res = simulate(dut, w, g, v, **TYPICAL, seed=seed, sr=sr)
    assert_matches_golden(res, w, g, v, **TYPICAL, seed=seed, sr=sr, rbits=rbits)


PATTERNS = {
    "source_idle": ([1, 0, 1, 1, 0, 0, 1], None),
    "sink_every_third": (None, [1, 1, 0]),
    "sink_mostly_stalled": (None, [0, 0, 0, 0, 1]),
    "both": ([1, 1, 0, 1], [0, 1, 1, 0, 1]),
}


@pytest.mark.parametrize("name", list(PATTERNS))
def test_backpressure_patterns(unit16, name, rng):
    src, sink = PATTERNS[name]
    w, g, v = make_elements(300, rng)
    seed = int(rng.integers(1, 1 << 32))
    res = simulate(unit16, w, g, v, **TYPICAL, seed=seed,
                   src=None if src is None else itertools.cycle(src),
                   sink=None if sink is None else itertools.cycle(sink),
                   idle_junk=rng)
    assert_matches_golden(res, w, g, v, **TYPICAL, seed=seed)
    assert res["busy_after"] == 0


def test_random_stalls_both_sides(unit16, rng):
    """Random source gaps and sink stalls, with the sink slower on average than the source,
    so the credits run out and the FIFO fills up to its depth."""
    n = 400
    w, g, v = make_elements(n, rng)
    seed = int(rng.integers(1, 1 << 32))
    src = (rng.random(40 * n) < 0.8).astype(int).tolist()
    sink = (rng.random(40 * n) < 0.5).astype(int).tolist()
    for sr in (True, False):
        res = simulate(unit16, w, g, v, **TYPICAL, seed=seed, sr=sr, src=src, sink=sink,
                       idle_junk=rng)
        assert_matches_golden(res, w, g, v, **TYPICAL, seed=seed, sr=sr)


def test_mode_sampled_with_each_element(unit16, rng):
    """``sr`` changes from element to element, with idle cycles and stalls between them: each
    element is rounded in the mode it entered with, all three of its roundings (its random
    words are taken in either mode, so the stream position stays that of one mode)."""
    n = 300
    w, g, v = make_elements(n, rng)
    modes = rng.integers(0, 2, n)
    seed = int(rng.integers(1, 1 << 32))
    res = simulate(unit16, w, g, v, **TYPICAL, seed=seed, sr=modes,
                   src=itertools.cycle([1, 1, 0]), sink=itertools.cycle([1, 0, 1, 1]),
                   idle_junk=rng)
    sr_w, sr_v = golden.sgd_update(w, g, v, TYPICAL["lr"], TYPICAL["mu"], TYPICAL["wd"], seed)
    rne_w, rne_v = golden.sgd_update(w, g, v, TYPICAL["lr"], TYPICAL["mu"], TYPICAL["wd"],
                                     seed, "rne")
    np.testing.assert_array_equal(res["w"], np.where(modes == 1, sr_w, rne_w))
    np.testing.assert_array_equal(res["v"], np.where(modes == 1, sr_v, rne_v))
    assert np.count_nonzero(sr_w != rne_w) > 20
    assert res["state"] == final_state(seed, n)


def test_sink_stalled_until_full(unit16, rng):
    """With the sink stalled the unit accepts exactly ``fifo_depth`` elements and stops; the
    rest follow once the sink drains it."""
    n = unit16.fifo_depth + 30
    w, g, v = make_elements(n, rng)
    stall = 3 * unit16.latency
    sink = [0] * stall + [1] * (40 * n)
    res = simulate(unit16, w, g, v, **TYPICAL, seed=5, sink=sink)
    assert_matches_golden(res, w, g, v, **TYPICAL, seed=5)
    accepted_in_stall = sum(1 for e in res["in_edges"] if e <= stall)
    assert accepted_in_stall == unit16.fifo_depth


# Throughput, latency, state -------------------------------------------------------------------

def test_full_throughput_and_latency(unit16, rng):
    """Source always valid, sink always ready: N elements in N + latency cycles, no gap, and
    each output exactly ``latency`` edges after its input."""
    n = 200
    w, g, v = make_elements(n, rng)
    res = simulate(unit16, w, g, v, **TYPICAL, seed=99)
    assert_matches_golden(res, w, g, v, **TYPICAL, seed=99)
    first_in = res["in_edges"][0]
    assert res["in_edges"] == list(range(first_in, first_in + n))
    lat = unit16.latency
    assert res["out_edges"] == [e + lat for e in res["in_edges"]]
    assert res["out_edges"][-1] - first_in + 1 == n + lat


def test_latency_value(unit16):
    Fragment.get(unit16, None)
    from fp8accel.hw.fp.fma import FPFMA
    fma = FPFMA(F, "sr", runtime_rne=True)
    Fragment.get(fma, None)
    assert unit16.latency == 3 * fma.latency + 1 == 37
    assert unit16.fifo_depth == unit16.latency + 4


def test_state_continues_the_stream(unit16, rng):
    """``sgd_update`` over a vector equals two calls where the second's seed is the first's
    final state: in the RTL, the ``state`` after part one is the seed of part two."""
    n1, n2 = 37, 55
    w, g, v = make_elements(n1 + n2, rng)
    seed = int(rng.integers(1, 1 << 32))
    whole = golden.sgd_update(w, g, v, TYPICAL["lr"], TYPICAL["mu"], TYPICAL["wd"], seed)
    part1 = simulate(unit16, w[:n1], g[:n1], v[:n1], **TYPICAL, seed=seed)
    part2 = simulate(unit16, w[n1:], g[n1:], v[n1:], **TYPICAL, seed=part1["state"])
    assert part1["state"] == final_state(seed, n1)
    got_w = np.concatenate([part1["w"], part2["w"]])
    got_v = np.concatenate([part1["v"], part2["v"]])
    np.testing.assert_array_equal(got_w, whole[0])
    np.testing.assert_array_equal(got_v, whole[1])
    # And in the golden model alone.
    a = golden.sgd_update(w[:n1], g[:n1], v[:n1], TYPICAL["lr"], TYPICAL["mu"], TYPICAL["wd"],
                          seed)
    b = golden.sgd_update(w[n1:], g[n1:], v[n1:], TYPICAL["lr"], TYPICAL["mu"], TYPICAL["wd"],
                          final_state(seed, n1))
    np.testing.assert_array_equal(np.concatenate([a[0], b[0]]), whole[0])


def test_without_load_the_state_carries_on(rng):
    """Two vectors back to back without a load in between use one stream; after reset the
    state is 1."""
    dut = SGDUpdate()
    w, g, v = make_elements(40, rng)
    res = simulate(dut, w, g, v, **TYPICAL, seed=None)
    assert_matches_golden(res, w, g, v, **TYPICAL, seed=1)


def test_load_blocks_input_for_that_cycle(unit16):
    """An element offered while ``load`` is set is not accepted; it goes in on the next cycle
    with the new seed's words."""
    seen = {}

    async def bench(ctx):
        for name, value in TYPICAL.items():
            ctx.set({"lr": unit16.lr, "mu": unit16.momentum, "wd": unit16.weight_decay}[name],
                    value)
        ctx.set(unit16.sr, 1)
        ctx.set(unit16.i.payload.w, code(1.0))
        ctx.set(unit16.i.payload.g, code(0.5))
        ctx.set(unit16.i.payload.v, code(0.25))
        ctx.set(unit16.i.valid, 1)
        ctx.set(unit16.seed, 1234)
        ctx.set(unit16.load, 1)
        seen["ready_during_load"] = ctx.get(unit16.i.ready)
        await ctx.tick()
        seen["state_after_load"] = ctx.get(unit16.state)
        ctx.set(unit16.load, 0)
        seen["ready_after"] = ctx.get(unit16.i.ready)
        await ctx.tick()
        ctx.set(unit16.i.valid, 0)
        seen["state_after_element"] = ctx.get(unit16.state)

    sim = Simulator(unit16)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == {"ready_during_load": 0, "state_after_load": 1234, "ready_after": 1,
                    "state_after_element": final_state(1234, 1)}


# Interface and parameters ---------------------------------------------------------------------

def test_ports(unit16):
    members = unit16.signature.members
    assert set(members) == {"i", "o", "lr", "momentum", "weight_decay", "sr", "seed", "load",
                            "state", "busy"}
    assert list(unit16.i.payload.shape().members) == ["w", "g", "v"]
    assert [unit16.i.payload.shape()[k].offset for k in "wgv"] == [0, 16, 32]
    assert list(unit16.o.payload.shape().members) == ["w", "v"]
    assert len(unit16.seed) == len(unit16.state) == 32
    assert unit16.rbits == 16


@pytest.mark.parametrize("rbits,message", [
    (0, "rbits must be an integer from 1 to 32, not 0"),
    (33, "rbits must be an integer from 1 to 32, not 33"),
    ("16", "rbits must be an integer from 1 to 32, not '16'"),
])
def test_constructor_errors(rbits, message):
    with pytest.raises((ValueError, TypeError), match=message):
        SGDUpdate(rbits=rbits)


def test_matrix_steps_checked():
    with pytest.raises(ValueError, match="Number of steps must be a non-negative integer, "
                                         "not -1"):
        xorshift32_matrix(-1)


# Statistics of stochastic rounding (golden model) ---------------------------------------------

def sequential(w0, g, v0, lr, mu, wd, seed, steps, rounding):
    """``steps`` updates of a vector, each step's ``w`` and ``v`` feeding the next, with the
    random stream continued across steps (seed of step t+1 = final state of step t, so all
    steps together use one stream). Returns the final ``w`` codes."""
    w, v, g = (np.asarray(x, np.uint16) for x in (w0, v0, g))
    state = seed
    for _ in range(steps):
        w, v = golden.sgd_update(w, g, v, lr, mu, wd, state, rounding)
        state = final_state(state, w.size)
    return w


# A vector of 16 weights 1.0 takes 10,000 steps of +2**-14 each (lr = 2**-7, g = -2**-7,
# mu = wd = v = 0; g1 and v1 are then exact). 2**-14 is 1/32 of an ulp of [1, 2), 2**-9, far
# below the half ulp that rne needs to move: rne leaves every weight at exactly 1.0. With sr a
# step moves a weight up one ulp with probability p = 1/32, else not at all (the weights stay
# in [1, 2): the expected end is 1 + 10000 * 2**-14 = 1.61), so a weight's total movement is
# ulp * Binomial(10000, p): mean 10000 * 2**-14 exactly, sigma = 2**-9 * sqrt(10000 * p *
# (1 - p)) = 0.034. Per weight a 5-sigma band (a correct unit fails one of 16 with probability
# 1e-5); their mean within 4 sigma / sqrt(16) (6e-5). The rne result, no movement at all, is
# 18 sigma from one weight's band and 72 from the mean's.
STEPS = 10_000
SMALL = {"lr": code(2.0 ** -7), "mu": code(0.0), "wd": code(0.0)}
SMALL_G = code(-(2.0 ** -7))
SMALL_SIGMA = 2.0 ** -9 * np.sqrt(STEPS * (1 / 32) * (31 / 32))
SMALL_N = 16


def small_increments(rounding, seed=7):
    ones = np.full(SMALL_N, code(1.0))
    w = sequential(ones, np.full(SMALL_N, SMALL_G), np.zeros(SMALL_N), **SMALL, seed=seed,
                   steps=STEPS, rounding=rounding)
    return golden.decode(w, F) - 1.0


def test_small_increments_lost_with_rne():
    assert (small_increments("rne") == 0.0).all()


def test_small_increments_kept_with_sr():
    moved = small_increments("sr")
    total = STEPS * 2.0 ** -14
    assert (np.abs(moved - total) < 5 * SMALL_SIGMA).all(), (moved, SMALL_SIGMA)
    assert abs(moved.mean() - total) < 4 * SMALL_SIGMA / np.sqrt(SMALL_N), moved.mean()


def test_sr_update_is_unbiased(rng):
    """Mean over 2,000 seeds of the sr-updated weight of 64 random elements against the exact
    real update ``w - lr * (mu * v + wd * w + g)`` in float64 (whose terms are exact products
    of 10-bit significands; the float64 sum is off by at most 2**-52 relative, far below the
    tolerance).

    Each sr rounding is unbiased, and the update is linear in the rounded g1 and v1, so the
    expected result equals the exact update. Each element's tolerance is 5 standard errors of
    its mean (sample standard deviation / sqrt(2000)): a correct unit fails one of the 64
    with probability below 64 * 6e-7. rne, deterministic, misses the exact value by up to half
    an ulp: on this data its error exceeds that band for most elements."""
    n, seeds = 64, 2000
    w = golden.encode(rng.uniform(-1, 1, n), F)
    g = golden.encode(rng.normal(0, 0.05, n), F)
    v = golden.encode(rng.normal(0, 0.05, n), F)
    lr, mu, wd = code(0.1), code(0.9), code(0.01)
    d = {k: golden.decode(np.asarray(x), F) for k, x in
         (("w", w), ("g", g), ("v", v), ("lr", lr), ("mu", mu), ("wd", wd))}
    exact = d["w"] - d["lr"] * (d["mu"] * d["v"] + d["wd"] * d["w"] + d["g"])
    results = np.empty((seeds, n))
    for k, seed in enumerate(rng.integers(1, 1 << 32, seeds).tolist()):
        results[k] = golden.decode(golden.sgd_update(w, g, v, lr, mu, wd, seed)[0], F)
    mean = results.mean(axis=0)
    se = results.std(axis=0, ddof=1) / np.sqrt(seeds)
    ok = np.abs(mean - exact) <= 5 * se
    assert ok.all(), np.flatnonzero(~ok)
    rne = golden.decode(golden.sgd_update(w, g, v, lr, mu, wd, 1, "rne")[0], F)
    assert np.count_nonzero(np.abs(rne - exact) > 5 * se) > n // 2
