"""The ``A`` streamer: the rows of ``A`` of each pass of a GEMM command into the systolic array,
each with the chunk and total its output row starts from.

Ref: docs/architecture.md ("GEMM array and engine", "Dataflow controller"); docs/numerics.md
section 4.

A pass (pass ``p`` of column tile ``nt``, ``k0 = p * rows``) issues the ``M`` rows of ``A``
one per cycle: row ``i`` reads word ``i * KB + p`` of every ``A`` bank (``A[i, k0 + r]`` in
bank ``r``) and accumulator word ``i * NT + nt``, and enters the array with the pass's row flags
(which ``k`` are inside ``K``, which start a chunk), its weight bank and whether the pass is
the tile's first or last. Passes run in rounds (pass ``p`` of every tile, then ``p + 1``); a
round shorter than the time a row takes through the array and back into the accumulator
memory is followed by a wait, so that the next round reads what this one wrote.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from ..common import CheckedComponent, delay

__all__ = ["AStreamer"]


class AStreamer(CheckedComponent):
    """Issues the rows of ``A`` of every pass of a command, a pass whenever its weights are
    ready.

    Parameters
    ----------
    rows, cols : int
        Array size.
    a_depth : int
        Words per ``A`` bank.
    acc_depth : int
        Accumulator words.
    acc_width : int
        Bits of an accumulator lane's chunk or total.
    gap : int
        Cycles from a row's issue until its accumulator word has been written back: a round
        of passes shorter than this (``M * NT`` rows) is followed by a wait for the rest.
    read_latency : int
        Cycles from ``a_raddr`` and ``acc_raddr`` to their data on ``a_rdata`` and
        ``acc_rdata``: 1 for a block RAM read, more when the addresses are registered again on
        their way to the memories.

    Members
    -------
    start : In(1)
        Begin a command (the inputs below are sampled now and held until it ends).
    m, k : In(16)
        The command's ``M`` and ``K``.
    kb, nt : In(16)
        ``ceil(K / rows)`` (``A`` words per row of ``A``) and ``ceil(N / cols)`` (column tiles).
    chunk_log2, no_chunk : In
        The chunk length ``2**chunk_log2``, or one chunk of all ``K``.
    accumulate, carry_in, carry_out : In(1)
        The command starts from the totals in the accumulator memory, from its chunks and
        totals, and leaves its last chunk unfolded.
    ready : In(1)
        The weights of the next pass are in the array.
    streamed : Out(1)
        The last row of a pass is issued.
    issued : Out(32)
        Rows issued since ``start``.
    a_raddr : Out
        The ``A`` word to read from every bank; the data is expected on ``a_rdata``
        ``read_latency`` cycles later.
    a_rdata : In(8 * rows)
    acc_raddr : Out
        The accumulator word to read (a register); the data is expected on ``acc_rdata``
        ``read_latency`` cycles later. With ``follow`` set it loads ``host_raddr`` instead, so that the host reads
        through the same port while no command runs.
    acc_rdata : In(2 * acc_width * cols)
    follow : In(1)
    host_raddr : In(range(acc_depth))
    valid, a, kvalid, boundary, bank, last, chunk_in, total_in : Out
        The array's row inputs. The rows of a pass enter in consecutive cycles, and a cycle
        at least separates two passes.
    """

    def __init__(self, rows, cols, *, a_depth, acc_depth, acc_width=16, gap=0, read_latency=1):
        for name, v in (("rows", rows), ("cols", cols), ("a_depth", a_depth),
                        ("acc_depth", acc_depth), ("acc_width", acc_width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if isinstance(gap, bool) or not isinstance(gap, int) or not 0 <= gap < 1 << 16:
            raise ValueError(f"gap must be an integer from 0 to 65535, not {gap!r}")
        self._rows, self._cols = rows, cols
        self._a_depth, self._acc_depth, self._w = a_depth, acc_depth, acc_width
        if isinstance(read_latency, bool) or not isinstance(read_latency, int) \
                or not 1 <= read_latency <= 4:
            raise ValueError(f"read_latency must be an integer from 1 to 4, not "
                             f"{read_latency!r}")
        self._gap = gap
        self._read_latency = read_latency
        w = acc_width
        super().__init__({
            "start": In(1), "m": In(16), "k": In(16), "kb": In(16), "nt": In(16),
            "chunk_log2": In(4), "no_chunk": In(1),
            "accumulate": In(1), "carry_in": In(1), "carry_out": In(1),
            "ready": In(1), "streamed": Out(1), "issued": Out(32),
            "a_raddr": Out(range(a_depth + 1)), "a_rdata": In(8 * rows),
            "acc_raddr": Out(range(acc_depth + 1)), "acc_rdata": In(2 * w * cols),
            "follow": In(1), "host_raddr": In(range(acc_depth)),
            "valid": Out(1), "a": Out(8 * rows), "kvalid": Out(rows), "boundary": Out(rows),
            "bank": Out(1), "last": Out(1), "chunk_in": Out(w * cols),
            "total_in": Out(w * cols),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols, w = self._rows, self._cols, self._w
        M, K, KB, NT = self.m, self.k, self.kb, self.nt

        # Loop counters count down to zero, so that "last" is a zero test rather than a
        # comparison through a carry chain.
        active = Signal()      # streaming a pass
        done = Signal()        # every pass streamed
        nt_left = Signal(16)
        p = Signal(16)
        p_left = Signal(16)
        i_left = Signal(16)
        nt = Signal(16)
        k0 = Signal(16)        # first k of the streaming pass
        kleft = Signal(17)     # K - k0
        arow = Signal.like(self.a_raddr)    # A word of row i, pass p
        acc = Signal.like(self.acc_raddr)   # accumulator word of (i, nt)
        gap = Signal(16)       # idle cycles still owed before the next pass
        # What a round still owes: the gap less the rows issued in it so far (counted down,
        # so that no product M * NT is needed).
        owed = Signal(range(self._gap + 1), init=self._gap)
        owed_next = Signal.like(owed)
        m.d.comb += owed_next.eq(Mux(owed != 0, owed - 1, 0))
        bank = Signal()        # weight bank of the pass (pass index % 2)
        issued = Signal(32)
        m.d.comb += [self.a_raddr.eq(arow), self.acc_raddr.eq(acc), self.issued.eq(issued)]
        with m.If(self.follow):
            m.d.sync += acc.eq(self.host_raddr)

        # Flags of the pass, registered: they change a cycle after the pass's counters, which
        # change only at the end of a pass.
        first_pass = Signal()
        last_pass = Signal()
        m.d.sync += first_pass.eq(p == 0)
        cl_mask = Signal(16)
        m.d.comb += cl_mask.eq((Const(1, 17) << self.chunk_log2) - 1)
        kvalid = Signal(rows)
        boundary = Signal(rows)
        m.d.sync += [
            kvalid.eq(Cat(*(kleft > r for r in range(rows)))),
            boundary.eq(Cat(*(~self.no_chunk & (kleft > r) & ((k0 + r) != 0)
                              & (((k0 + r) & cl_mask) == 0) for r in range(rows)))),
        ]
        # End flags of the loop counters, registered. The row counter's is exact (it moves
        # every cycle); the pass and tile counters move only at the end of a pass, and their
        # flags, a cycle late, are read at the end of the next pass at the earliest.
        m_is1 = Signal()
        i_end = Signal()
        nt_last = Signal()
        m.d.sync += [m_is1.eq(M == 1), last_pass.eq(p_left == 0), nt_last.eq(nt_left == 0)]

        with m.If(gap != 0):
            m.d.sync += gap.eq(gap - 1)
        with m.If(self.ready & (gap == 0) & ~active & ~done):
            m.d.sync += [active.eq(1), i_left.eq(M - 1), i_end.eq(m_is1)]
        m.d.comb += self.streamed.eq(active & i_end)
        with m.If(active):
            m.d.sync += [issued.eq(issued + 1), arow.eq(arow + KB), acc.eq(acc + NT),
                         i_left.eq(i_left - 1), i_end.eq(i_left == 1), owed.eq(owed_next)]
            with m.If(i_end):
                # End of the pass.
                m.d.sync += [active.eq(0), bank.eq(~bank)]
                with m.If(nt_last):
                    # End of the round: the next pass of column tile 0 reads what the first
                    # pass of this round wrote, which must be written back first.
                    m.d.sync += [nt.eq(0), nt_left.eq(NT - 1), acc.eq(0), gap.eq(owed_next),
                                 owed.eq(self._gap)]
                    with m.If(last_pass):
                        m.d.sync += done.eq(1)
                    with m.Else():
                        m.d.sync += [p.eq(p + 1), p_left.eq(p_left - 1), k0.eq(k0 + rows),
                                     kleft.eq(kleft - rows), arow.eq(p + 1)]
                with m.Else():
                    m.d.sync += [nt.eq(nt + 1), nt_left.eq(nt_left - 1), arow.eq(p),
                                 acc.eq(nt + 1)]

        # Rows are read from the buffers in read_latency cycles; the row's control waits for
        # the data.
        # Block RAM outputs are slow (about 6 ns on an ECP5 without the output register), and
        # on a large array the block RAMs sit far from the PEs they feed: the data and its
        # control are registered twice, next to the memory, then on the way to the array.
        d_valid = delay(m, active, self._read_latency, "d_valid", reset_less=False)
        d_ctl = delay(m, Cat(kvalid, boundary, bank, first_pass, last_pass),
                      self._read_latency, "d_ctl")
        r_valid = Signal()
        r_ctl = Signal.like(d_ctl)
        r_a = Signal(8 * rows)
        r_acc = Signal.like(self.acc_rdata)
        m.d.sync += [r_valid.eq(d_valid), r_ctl.eq(d_ctl), r_a.eq(self.a_rdata),
                     r_acc.eq(self.acc_rdata)]
        q_valid = Signal()
        q_ctl = Signal.like(d_ctl)
        q_a = Signal(8 * rows)
        q_acc = Signal.like(self.acc_rdata)
        m.d.sync += [q_valid.eq(r_valid), q_ctl.eq(r_ctl), q_a.eq(r_a), q_acc.eq(r_acc)]
        q_first, q_last = q_ctl[2 * rows + 1], q_ctl[2 * rows + 2]
        chunks = Cat(*(q_acc[2 * w * c:2 * w * c + w] for c in range(cols)))
        totals = Cat(*(q_acc[2 * w * c + w:2 * w * c + 2 * w] for c in range(cols)))
        m.d.comb += [
            self.valid.eq(q_valid), self.a.eq(q_a),
            self.kvalid.eq(q_ctl[:rows]), self.boundary.eq(q_ctl[rows:2 * rows]),
            self.bank.eq(q_ctl[2 * rows]),
            self.last.eq(q_last & ~self.carry_out),
            self.chunk_in.eq(Mux(q_first & ~self.carry_in, 0, chunks)),
            self.total_in.eq(Mux(q_first & ~self.accumulate & ~self.carry_in, 0, totals)),
        ]

        # A new command (last: it takes precedence over everything above).
        with m.If(self.start):
            m.d.sync += [
                active.eq(0), done.eq(0), issued.eq(0), nt.eq(0), p.eq(0), arow.eq(0),
                nt_left.eq(NT - 1), p_left.eq(KB - 1), i_left.eq(M - 1),
                k0.eq(0), kleft.eq(self.k), acc.eq(0), gap.eq(0), bank.eq(0), owed.eq(self._gap),
            ]
        return m
