"""The writeback: the array's output rows back into the accumulator memory, and the end of a
GEMM command.

Ref: docs/architecture.md ("GEMM array and engine", "Dataflow controller").

Rows leave the array in the order they went in: the passes in rounds (pass ``p`` of every
column tile ``nt``, then pass ``p + 1``), the ``M`` rows of each in order. Row ``i`` of the
pass of tile ``nt`` goes to accumulator word ``i * NT + nt``.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib.wiring import In, Out

from ..common import CheckedComponent

__all__ = ["Writeback"]


class Writeback(CheckedComponent):
    """Writes every output row of a command to its accumulator word and says when the last one
    is written.

    Parameters
    ----------
    cols : int
        Array columns (lanes of an accumulator word).
    acc_depth : int
        Accumulator words.
    acc_width : int
        Bits of a lane's chunk or total.

    Members
    -------
    start : In(1)
        Begin a command (the inputs below are sampled now and held until it ends).
    m, kb, nt : In(16)
        The command's ``M``, passes per column tile ``ceil(K / rows)`` and column tiles
        ``ceil(N / cols)``.
    valid, chunk, total : In
        The array's output row: its lanes' chunks and totals. The rows of two passes are at
        least a cycle apart (as the streamer issues them).
    we, addr, data : Out
        The accumulator write (registered outputs): lane ``c``'s chunk in bits ``2wc`` to
        ``2wc + w - 1``, its total in the ``w`` bits above.
    end : Out(1)
        Pulses the cycle after the last row's write.
    """

    def __init__(self, cols, *, acc_depth, acc_width=16):
        for name, v in (("cols", cols), ("acc_depth", acc_depth), ("acc_width", acc_width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        self._cols, self._acc_depth, self._w = cols, acc_depth, acc_width
        w = acc_width
        super().__init__({
            "start": In(1), "m": In(16), "kb": In(16), "nt": In(16),
            "valid": In(1), "chunk": In(w * cols), "total": In(w * cols),
            "we": Out(1), "addr": Out(range(acc_depth + 1)), "data": Out(2 * w * cols),
            "end": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cols, w = self._cols, self._w
        M, KB, NT = self.m, self.kb, self.nt

        # The array's outputs leave from its bottom edge, far from the controller: they are
        # registered first, and the counters count the registered valid.
        m.d.sync += [
            self.we.eq(self.valid),
            self.data.eq(Cat(*(Cat(self.chunk[w * c:w * c + w], self.total[w * c:w * c + w])
                               for c in range(cols)))),
        ]
        i_left = Signal(16)
        p_left = Signal(16)
        nt_left = Signal(16)
        nt = Signal(16)
        # End flags of the loop counters, registered: the row counter's is exact, the pass
        # and tile counters move only at the end of a pass and their flags are read at the
        # end of the next one at the earliest.
        i_end = Signal()
        p_last = Signal()
        nt_last = Signal()
        m_is1 = Signal()
        m.d.sync += [m_is1.eq(M == 1), p_last.eq(p_left == 0), nt_last.eq(nt_left == 0),
                     self.end.eq(0)]
        addr = self.addr
        with m.If(self.we):
            m.d.sync += [i_left.eq(i_left - 1), addr.eq(addr + NT), i_end.eq(i_left == 1)]
            with m.If(i_end):
                m.d.sync += [i_left.eq(M - 1), i_end.eq(m_is1)]
                with m.If(nt_last):
                    m.d.sync += [nt.eq(0), nt_left.eq(NT - 1), addr.eq(0),
                                 p_left.eq(p_left - 1)]
                    with m.If(p_last):
                        m.d.sync += self.end.eq(1)
                with m.Else():
                    m.d.sync += [nt.eq(nt + 1), nt_left.eq(nt_left - 1), addr.eq(nt + 1)]

        # A new command (last: it takes precedence over everything above).
        with m.If(self.start):
            m.d.sync += [i_left.eq(M - 1), p_left.eq(KB - 1), nt_left.eq(NT - 1),
                         addr.eq(0), nt.eq(0), i_end.eq(M == 1)]
        return m
