"""Products of command dimensions, one bit per cycle: the size checks of a command without a
multiplier on any path.

Ref: docs/architecture.md ("Dataflow controller").

A command's checks compare products of its dimensions (``M * ceil(K / rows)`` words of ``A``,
``K * N`` bytes of ``B``, ...) against the buffer sizes. A multiplier, in LUTs or in a DSP block
with the routing to and from it, is the slowest path of the control logic; the decision of a
command may take a few more cycles instead. Each product here is a shift-and-add: a
``width``-bit adder and three registers.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

from .common import CheckedComponent

__all__ = ["SerialProducts"]


class SerialProducts(CheckedComponent):
    """``count`` products ``x[i] * y[i]`` of ``width``-bit operands, ``latency`` cycles after
    ``start``.

    Members
    -------
    start : In(1)
        Take ``x`` and ``y`` (sampled in this cycle).
    x, y : In(ArrayLayout(unsigned(width), count))
    p : Out(ArrayLayout(unsigned(2 * width), count))
        The products, valid from :attr:`latency` cycles after ``start`` until the next start.
    done : Out(1)
        High while ``p`` holds the products of the last start.
    """

    def __init__(self, count, width=16):
        for name, v in (("count", count), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._count, self._width = count, width
        operands = data.ArrayLayout(unsigned(width), count)
        super().__init__({
            "start": In(1), "x": In(operands), "y": In(operands),
            "p": Out(data.ArrayLayout(unsigned(2 * width), count)), "done": Out(1),
        })

    @property
    def latency(self):
        """Cycles from ``start`` to the products: the load, then a step per bit of ``y``."""
        return self._width + 1

    def elaborate(self, platform):
        m = Module()
        width = self._width
        steps = Signal(range(width + 1))
        m.d.comb += self.done.eq(steps == 0)
        with m.If(steps != 0):
            m.d.sync += steps.eq(steps - 1)
        for i in range(self._count):
            x = Signal(width, name=f"x{i}")
            hi = Signal(width, name=f"hi{i}")   # the partial product's high half
            lo = Signal(width, name=f"lo{i}")   # y's bits still to use, then the low half
            m.d.comb += self.p[i].eq(Cat(lo, hi))
            # A step adds x (if y's next bit is set) to the high half and shifts the two
            # halves right by one: after `width` steps lo is the product's low half.
            total = Signal(width + 1, name=f"sum{i}")
            m.d.comb += total.eq(hi + Mux(lo[0], x, 0))
            with m.If(steps != 0):
                m.d.sync += [hi.eq(total[1:]), lo.eq(Cat(lo[1:], total[0]))]
            with m.If(self.start):
                m.d.sync += [x.eq(self.x[i]), hi.eq(0), lo.eq(self.y[i])]
        with m.If(self.start):
            m.d.sync += steps.eq(width)
        return m
