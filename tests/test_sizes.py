"""hw.sizes: products one bit per cycle, exact for extreme and random operands, ready after
``latency`` cycles and not before; a new start in the middle begins again."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.sizes import SerialProducts


@pytest.mark.parametrize("width", [16, 5])
def test_products(width):
    rng = np.random.default_rng(width)
    top = (1 << width) - 1
    pairs = [(0, 0), (top, top), (1, top), (top, 1), (0, top)]
    pairs += [tuple(int(v) for v in rng.integers(0, top + 1, 2)) for _ in range(20)]
    dut = SerialProducts(3, width)

    async def bench(ctx):
        for i in range(0, len(pairs), 3):
            group = (pairs[i:i + 3] * 3)[:3]
            if i == 3:
                # A start in the middle of another computation: the second one counts.
                ctx.set(dut.x, [7] * 3)
                ctx.set(dut.y, [5] * 3)
                ctx.set(dut.start, 1)
                await ctx.tick().repeat(2)
            ctx.set(dut.x, [x for x, _ in group])
            ctx.set(dut.y, [y for _, y in group])
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.x, [0] * 3)     # the operands need not be held
            ctx.set(dut.y, [0] * 3)
            for _ in range(dut.latency - 1):
                assert not ctx.get(dut.done)
                await ctx.tick()
            assert ctx.get(dut.done)
            assert [int(v) for v in ctx.get(dut.p)] == [x * y for x, y in group], group
            for _ in range(int(rng.integers(0, 3))):
                await ctx.tick()
            assert [int(v) for v in ctx.get(dut.p)] == [x * y for x, y in group]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="count must be a positive integer"):
        SerialProducts(0)
