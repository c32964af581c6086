"""The weight loader: the weights of each pass of a GEMM command from the ``B`` buffer into the
systolic array's spare weight bank.

Ref: docs/architecture.md ("GEMM array and engine", "Dataflow controller").

Pass ``q`` of a command (passes in rounds: pass ``p`` of every column tile ``nt``, then pass
``p + 1`` of every tile) needs ``B[k0 + r, n0 + c]`` for ``r < rows``, ``c < cols``, with
``k0 = p * rows`` and ``n0 = nt * cols``, +0 outside ``K x N``. The loader reads them a byte
per cycle, collects each row of the array and writes it into weight bank ``q % 2``. A bank may
be overwritten once the pass that last used it (``q - 2``) has streamed and its last row of
``A`` has passed the PEs: the loader keeps at most one pass ahead of the streamer.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from ..common import CheckedComponent

__all__ = ["WeightLoader"]


class WeightLoader(CheckedComponent):
    """Loads the weights of every pass of a command, one pass ahead of the streamer.

    Parameters
    ----------
    rows, cols : int
        Array size.
    b_depth : int
        Bytes of ``B``.
    b_width : int
        Bytes per ``B`` buffer word, a power of two.
    flush : int
        Cycles from the end of a pass's streaming until its weight bank may be rewritten.

    Members
    -------
    start : In(1)
        Begin a command (the inputs below are sampled now and held until it ends).
    n, k : In(16)
        The command's ``N`` and ``K``.
    nt, kb : In(16)
        Its column tiles ``ceil(N / cols)`` and passes per tile ``ceil(K / rows)``.
    rows_n, cols_k : In(24)
        ``rows * N`` and ``cols * K``: the ``B`` address steps between rounds and (stored
        transposed) between column tiles.
    trans_b : In(1)
        ``B`` is stored transposed: ``B[k, n]`` at byte ``n * K + k``, else ``k * N + n``.
    streamed : In(1)
        The streamer issued the last row of a pass.
    ready : Out(1)
        The weights of a pass the streamer has not issued yet are in the array.
    b_raddr : Out
        The ``B`` word to read; its data is expected on ``b_rdata`` a cycle later.
    b_rdata : In(8 * b_width)
    w_data, w_row, w_we, w_bank : Out
        The array's weight write port.
    """

    def __init__(self, rows, cols, *, b_depth, b_width=1, flush=0):
        for name, v in (("rows", rows), ("cols", cols), ("b_depth", b_depth),
                        ("b_width", b_width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if b_width & (b_width - 1):
            raise ValueError(f"b_width must be a power of two, not {b_width!r}")
        if isinstance(flush, bool) or not isinstance(flush, int) or not 0 <= flush < 1 << 16:
            raise ValueError(f"flush must be an integer from 0 to 65535, not {flush!r}")
        self._rows, self._cols = rows, cols
        self._b_depth, self._b_width, self._flush = b_depth, b_width, flush
        b_words = -(-b_depth // b_width)
        super().__init__({
            "start": In(1), "n": In(16), "k": In(16), "nt": In(16), "kb": In(16),
            "rows_n": In(24), "cols_k": In(24), "trans_b": In(1),
            "streamed": In(1), "ready": Out(1),
            "b_raddr": Out(range(b_words)), "b_rdata": In(8 * b_width),
            "w_data": Out(8 * cols), "w_row": Out(range(max(rows, 2))), "w_we": Out(1),
            "w_bank": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols, bw = self._rows, self._cols, self._b_width
        N, K, NT, KB, trans_b = self.n, self.k, self.nt, self.kb, self.trans_b

        # Position of the byte being read: pass (k0, n0), array row r and column c.
        active = Signal()      # reading the pass's bytes
        nt_left = Signal(16)   # column tiles left in this round after this one
        p_left = Signal(16)    # rounds left after this one
        k0 = Signal(16)
        n0 = Signal(16)
        r = Signal(range(rows + 1))
        c = Signal(range(cols + 1))
        addr_bits = range(self._b_depth + 1)
        row_addr = Signal(addr_bits)     # B address of (k0 + r, n0)
        addr = Signal(addr_bits)         # B address of (k0 + r, n0 + c)
        pass_base = Signal(addr_bits)    # of (k0, n0)
        round_base = Signal(addr_bits)   # of (k0, 0)
        bank = Signal()        # bank the pass being loaded goes into
        s_bank = Signal()      # bank of the pass the streamer is on
        ahead = Signal(2)      # passes loaded but not yet streamed: 0, 1 or 2
        # Per weight bank: cycles until the last row of the pass that used it has passed
        # every PE, so that the bank may be overwritten.
        bank_timer = [Signal(16, name=f"bank{b}_timer") for b in range(2)]
        # bank_timer[b] == 0, registered: the loads' enable comes from flip-flops.
        bank_idle = [Signal(init=1, name=f"bank{b}_idle") for b in range(2)]
        m.d.comb += [self.ready.eq(ahead != 0), self.w_bank.eq(bank)]

        # Reads: a byte per cycle, row by row of the array ------------------------------------
        b_step_c = Mux(trans_b, K, 1)
        b_step_r = Mux(trans_b, 1, N)
        sel_bits = bw.bit_length() - 1
        m.d.comb += self.b_raddr.eq(addr >> sel_bits)
        sel = Signal(range(bw))
        if bw > 1:
            m.d.comb += sel.eq(addr[:sel_bits])
        for t, idle in zip(bank_timer, bank_idle):
            with m.If(~idle):
                m.d.sync += [t.eq(t - 1), idle.eq(t == 1)]
        bank_free = Mux(bank, bank_idle[1], bank_idle[0])
        can_load = active & (ahead <= 1) & bank_free
        rd_valid = Signal()
        rd_c = Signal.like(c)
        rd_r = Signal.like(r)
        rd_last = Signal()     # the last byte of an array row
        m.d.sync += rd_valid.eq(0)
        with m.If(can_load):
            m.d.sync += [rd_valid.eq(1), rd_c.eq(c), rd_r.eq(r), rd_last.eq(0)]
            with m.If(c == cols - 1):
                m.d.sync += [c.eq(0), rd_last.eq(1)]
                with m.If(r == rows - 1):
                    m.d.sync += [r.eq(0), active.eq(0)]
                with m.Else():
                    m.d.sync += [r.eq(r + 1), row_addr.eq(row_addr + b_step_r),
                                 addr.eq(row_addr + b_step_r)]
            with m.Else():
                m.d.sync += [c.eq(c + 1), addr.eq(addr + b_step_c)]

        # Read data arrives one cycle later and is registered once more (block RAM outputs
        # are slow); then it is collected into a row, which is written into the array.
        # With a deep B buffer the read data comes through a multiplexer of block RAMs, so it
        # is registered as it is, and masked (outside K x N) in the next stage.
        rd_inside = Signal()
        m.d.sync += rd_inside.eq((k0 + r < K) & (n0 + c < N))
        r_byte = Signal(8 * bw)
        r_inside = Signal()
        sel_d, sel_r = Signal.like(sel), Signal.like(sel)
        m.d.sync += [sel_d.eq(sel), sel_r.eq(sel_d)]
        r_valid = Signal()
        r_c = Signal.like(rd_c)
        r_r = Signal.like(rd_r)
        r_last = Signal()
        m.d.sync += [r_byte.eq(self.b_rdata), r_inside.eq(rd_inside),
                     r_valid.eq(rd_valid), r_c.eq(rd_c), r_r.eq(rd_r),
                     r_last.eq(rd_valid & rd_last)]
        q_byte = Signal(8)
        q_valid = Signal()
        q_c = Signal.like(rd_c)
        q_r = Signal.like(rd_r)
        q_last = Signal()
        m.d.sync += [q_byte.eq(Mux(r_inside, r_byte.word_select(sel_r, 8) if bw > 1 else r_byte,
                                   0)),
                     q_valid.eq(r_valid), q_c.eq(r_c), q_r.eq(r_r), q_last.eq(r_last)]
        # The byte travels once more on its own, from beside the B buffer's block RAMs to the
        # array's top edge, where the row is collected: a route across the chip would
        # otherwise share a cycle with the collection and the array's widening.
        t_byte = Signal(8)
        t_valid = Signal()
        t_c = Signal.like(rd_c)
        t_r = Signal.like(rd_r)
        t_last = Signal()
        m.d.sync += [t_byte.eq(q_byte), t_valid.eq(q_valid), t_c.eq(q_c), t_r.eq(q_r),
                     t_last.eq(q_last)]
        row = Signal(8 * cols)
        new_row = Signal.like(row)
        m.d.comb += new_row.eq(row)
        for col in range(cols):
            with m.If(t_valid & (t_c == col)):
                m.d.comb += new_row[8 * col:8 * col + 8].eq(t_byte)
        # The complete row is written from registers, a cycle after its last byte: the
        # array widens it before its first register.
        w_r = Signal.like(t_r)
        w_we = Signal()
        m.d.sync += [row.eq(new_row), w_r.eq(t_r), w_we.eq(t_last)]
        m.d.comb += [self.w_data.eq(row), self.w_row.eq(w_r), self.w_we.eq(w_we)]

        # The next pass ---------------------------------------------------------------------
        # The end of a pass's loading and what follows it are registered ahead: these
        # registers change only at the end of a pass, at least four cycles apart, so a flag or
        # sum computed from them a cycle late is always ready when it is used.
        loaded = Signal()      # the write of the array's last row: the pass is in its bank
        m.d.sync += loaded.eq(t_last & (t_r == rows - 1))
        last_nt = Signal()     # nt_left == 0: the round's last column tile
        last_all = Signal()    # and the last round
        next_tile_base = Signal.like(addr)
        next_round_base = Signal.like(addr)
        m.d.sync += [
            last_nt.eq(nt_left == 0), last_all.eq((p_left == 0) & (nt_left == 0)),
            # Next column tile: cols columns further on; next round: back to column 0, rows
            # further down B.
            next_tile_base.eq((pass_base + Mux(trans_b, self.cols_k, cols))[:len(addr)]),
            next_round_base.eq((round_base + Mux(trans_b, rows, self.rows_n))[:len(addr)]),
        ]
        with m.If(loaded):
            m.d.sync += bank.eq(~bank)
            with m.If(~last_all):
                with m.If(last_nt):
                    base = next_round_base
                    m.d.sync += [nt_left.eq(NT - 1), n0.eq(0), p_left.eq(p_left - 1),
                                 k0.eq(k0 + rows), round_base.eq(base),
                                 pass_base.eq(base), row_addr.eq(base), addr.eq(base)]
                with m.Else():
                    base = next_tile_base
                    m.d.sync += [nt_left.eq(nt_left - 1), n0.eq(n0 + cols),
                                 pass_base.eq(base), row_addr.eq(base), addr.eq(base)]
                m.d.sync += active.eq(1)

        # Passes ahead of the streamer, and the banks it releases.
        with m.If(self.streamed):
            m.d.sync += s_bank.eq(~s_bank)
            for b, (t, idle) in enumerate(zip(bank_timer, bank_idle)):
                with m.If(s_bank == b):
                    m.d.sync += [t.eq(self._flush), idle.eq(self._flush == 0)]
        m.d.sync += ahead.eq(ahead + loaded - self.streamed)

        # A new command (last: it takes precedence over everything above).
        with m.If(self.start):
            m.d.sync += [
                active.eq(1), nt_left.eq(NT - 1), p_left.eq(KB - 1), k0.eq(0), n0.eq(0),
                r.eq(0), c.eq(0), row_addr.eq(0), addr.eq(0), pass_base.eq(0),
                round_base.eq(0), bank.eq(0), s_bank.eq(0), ahead.eq(0),
                bank_timer[0].eq(0), bank_timer[1].eq(0),
                bank_idle[0].eq(1), bank_idle[1].eq(1),
            ]
        return m
