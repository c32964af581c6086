"""GEMM engine: operand buffers, accumulator memory and the dataflow controller around the
systolic array.

Ref: docs/numerics.md section 4; docs/architecture.md ("GEMM array and engine", "Dataflow
controller").

Schedule. The output is computed in column tiles of ``cols`` (``nt``, ``NT = ceil(N / cols)`` of
them), ``K`` in passes of ``rows`` (``p``, ``KB = ceil(K / rows)`` of them). A pass streams the
``M`` rows of ``A`` through the array, one per cycle, with the chunk and total that the pass
before it for the same tile left in the accumulator memory; the array writes back the new chunk
and total, or on the last pass the final total. The passes run in rounds: pass 0 of every tile,
then pass 1 of every tile, and so on, so that two passes of the same tile are ``NT`` passes apart
and the accumulator words of one have been written back before the other reads them: only when
``M * NT`` is shorter than the array's latency does the streamer wait, once per round. While a
pass streams, the weights of the next pass are written into the array's other bank, which the
pass before it used; so passes follow each other without a gap when ``M`` covers the weight
load (``rows * cols`` cycles) and the time the last row of a pass takes through the array.

Buffer layouts (the streamer and the writeback step through them with counters):

* ``A``: ``rows`` banks of bytes; ``A[i, k]`` is in bank ``k % rows`` at word
  ``i * ceil(K / rows) + k // rows``, so a pass reads one word of every bank per row of ``A``.
* ``B``: bytes; ``B[k, j]`` at ``k * N + j``, or ``j * K + k`` when stored transposed.
* Accumulator memory: ``cols`` lanes of (chunk, total); output ``C[i, j]`` is the total of lane
  ``j % cols`` in word ``i * ceil(N / cols) + j // cols``.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import memory
from amaranth.lib.wiring import In, Out

from ..fp.format import DLFLOAT16, format_by_name
from ..common import CheckedComponent
from .array import SystolicArray

__all__ = ["GemmEngine", "Error"]


class Error:
    """Error codes of a rejected command."""
    NONE = 0
    #: ``M``, ``N`` or ``K`` is zero.
    ZERO_DIM = 1
    #: An operand or the result does not fit its buffer.
    TOO_LARGE = 2
    # 3 is not used: the 4-bit chunk field has no invalid value.
    #: ``start`` while a command runs.
    BUSY = 4


class GemmEngine(CheckedComponent):
    """Runs one GEMM command on data already in the buffers.

    Parameters
    ----------
    rows, cols : int
        Array size.
    a_depth : int
        Words per ``A`` bank (so ``M * ceil(K / rows) <= a_depth``).
    b_depth : int
        Bytes of ``B`` (``K * N <= b_depth``).
    acc_depth : int
        Accumulator words (``M * ceil(N / cols) <= acc_depth``).
    acc_fmt : FloatFormat
        16-bit accumulator format.
    ram : str
        Where the array's delay lines go, ``"lutram"`` or ``"bram"`` (see
        :class:`~hw.gemm.array.SystolicArray`).
    buffers : int
        1, or 2 for double buffering: two of each buffer (``A``, ``B``, the accumulator), so
        that the host loads one and reads one while a command uses the other. A command
        names its three (``a_buf``, ``b_buf``, ``c_buf``), the host's accesses theirs
        (``a_wbuf``, ``b_wbuf``, ``c_wbuf``, ``c_rbuf``); the host must not touch a buffer a
        running command uses.
    b_width : int
        Bytes per word of the ``B`` buffer, a power of two (the host writes a word at once;
        the weight loader reads a byte).
    check : bool
        Check each command (zero dimensions: error 1; operands or result beyond the buffers:
        error 2). ``False`` when the caller has checked it already (the accelerator top checks
        every action before it is taken): the engine then runs what it is given.

    Members
    -------
    start : In(1)
        Start the command given by the other command inputs (sampled in this cycle).
    m, n, k : In(16)
    a_e4m3, b_e4m3 : In(1)
        Operand formats: E4M3, else E5M2.
    chunk_log2 : In(4)
        Chunk length ``2**chunk_log2``; ignored with ``no_chunk``.
    no_chunk : In(1)
        One chunk of all ``K``.
    rna : In(1)
        Accumulation rounds ties away from zero, else to even.
    trans_b : In(1)
        ``B`` is stored transposed (``N x K``).
    accumulate : In(1)
        Start from the totals in the accumulator memory (``C``), else from +0.
    carry_in : In(1)
        Start from the chunks and totals in the accumulator memory, which a command with
        ``carry_out`` left there: the command continues the running chunk of the one before
        (a ``K`` tile that begins inside a chunk).
    carry_out : In(1)
        Leave the last running chunk and the total unfolded in the accumulator memory (a ``K``
        tile that ends inside a chunk), for a command with ``carry_in``.
    busy, done, error : Out
        ``done`` pulses when a command finishes; ``error`` holds the code of the last rejected
        start (0: none) until the next start.
    cycles, active : Out(32)
        Cycles of the last command, and those in which a row of ``A`` entered the array.
    a_we, a_addr, a_data
        Host writes of ``A``, a word of every bank at once (bank ``r`` in byte ``r``).
    b_we, b_addr, b_data
        Host writes of ``B``, ``b_width`` bytes at once (byte ``b`` of word ``w`` is
        ``B`` byte ``w * b_width + b``).
    c_we, c_addr, c_data; c_raddr, c_rdata
        Host access to the totals of an accumulator word, every lane at once (lane ``c`` in
        bits ``16c`` to ``16c + 15``); ``c_rdata`` follows ``c_raddr`` by three cycles. Only
        while the engine is idle.
    """

    def __init__(self, rows=4, cols=4, *, a_depth=1024, b_depth=4096, acc_depth=1024,
                 acc_fmt=DLFLOAT16, ram="lutram", b_width=1, buffers=1, check=True):
        if format_by_name(acc_fmt).width != 16:
            raise ValueError(f"The accumulator format must be a 16-bit format, not {acc_fmt}")
        self._array = SystolicArray(rows, cols, acc_fmt, ram=ram)
        for name, v in (("a_depth", a_depth), ("b_depth", b_depth), ("acc_depth", acc_depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if (isinstance(b_width, bool) or not isinstance(b_width, int) or b_width < 1
                or b_width & (b_width - 1)):
            raise ValueError(f"b_width must be a power of two, not {b_width!r}")
        if buffers not in (1, 2):
            raise ValueError(f"buffers must be 1 or 2, not {buffers!r}")
        self._rows, self._cols = rows, cols
        self._buffers = buffers
        self._b_width = b_width
        self._b_words = -(-b_depth // b_width)
        self._check = bool(check)
        self._a_depth, self._b_depth, self._acc_depth = a_depth, b_depth, acc_depth
        self._acc_fmt = format_by_name(acc_fmt)
        w = self._acc_fmt.width
        super().__init__({
            "start": In(1), "m": In(16), "n": In(16), "k": In(16),
            "a_e4m3": In(1), "b_e4m3": In(1), "chunk_log2": In(4), "no_chunk": In(1),
            "rna": In(1), "trans_b": In(1), "accumulate": In(1),
            "carry_in": In(1), "carry_out": In(1),
            "busy": Out(1), "done": Out(1), "error": Out(3),
            "cycles": Out(32), "active": Out(32),
            "a_we": In(1), "a_addr": In(range(a_depth)), "a_data": In(8 * rows),
            "b_we": In(1), "b_addr": In(range(self._b_words)), "b_data": In(8 * b_width),
            "c_we": In(1), "c_addr": In(range(acc_depth)), "c_data": In(w * cols),
            "c_raddr": In(range(acc_depth)), "c_rdata": Out(w * cols),
            "a_buf": In(1), "b_buf": In(1), "c_buf": In(1),
            "a_wbuf": In(1), "b_wbuf": In(1), "c_wbuf": In(1), "c_rbuf": In(1),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    array = property(lambda self: self._array)
    b_width = property(lambda self: self._b_width)
    buffers = property(lambda self: self._buffers)

    def elaborate(self, platform):
        m = Module()
        rows, cols, w = self._rows, self._cols, self._acc_fmt.width
        m.submodules.array = array = self._array

        # Buffers ---------------------------------------------------------------------------
        # With two buffers, A and B are memories of twice the depth, the buffer's number the
        # top address bit (the host writes one while the engine reads the other, through the
        # two ports every memory has); the accumulator is two memories, each with its own
        # read and write port.
        two = self._buffers == 2

        def addr(a, depth, buf):
            """The memory address of word ``a`` of buffer ``buf``."""
            if not two:
                return a
            bits = max(1, (depth - 1).bit_length())
            return Cat(a[:bits], buf)

        def depth_of(depth):
            return 2 << max(1, (depth - 1).bit_length()) if two else depth

        cmd_buf = Cat(self.a_buf, self.b_buf, self.c_buf)
        bufs = Signal(3)       # a_buf, b_buf, c_buf of the running command
        a_buf, b_buf, c_buf = bufs[0], bufs[1], bufs[2]
        a_banks = []
        a_rd = []
        for r in range(rows):
            mem = memory.Memory(shape=8, depth=depth_of(self._a_depth), init=[])
            m.submodules[f"a_bank{r}"] = mem
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(addr(self.a_addr, self._a_depth, self.a_wbuf)),
                         wp.data.eq(self.a_data[8 * r:8 * r + 8]), wp.en.eq(self.a_we)]
            a_rd.append(mem.read_port())
            a_banks.append(mem)
        bw = self._b_width
        b_mem = memory.Memory(shape=8 * bw, depth=depth_of(self._b_words), init=[])
        m.submodules.b_mem = b_mem
        b_wp = b_mem.write_port()
        b_rd = b_mem.read_port()
        m.d.comb += [b_wp.addr.eq(addr(self.b_addr, self._b_words, self.b_wbuf)),
                     b_wp.data.eq(self.b_data), b_wp.en.eq(self.b_we)]
        # Accumulator: per lane a chunk half and a total half, written with 16-bit granularity.
        accs, acc_wps, acc_rds = [], [], []
        for b in range(self._buffers):
            acc = memory.Memory(shape=2 * w * cols, depth=self._acc_depth, init=[])
            m.submodules[f"acc{b}" if two else "acc"] = acc
            accs.append(acc)
            acc_wps.append(acc.write_port(granularity=w))
            # One read port, shared: the streamer reads while a command uses the memory, the
            # host at other times. (A second read port would double its block RAMs.)
            acc_rds.append(acc.read_port())
        acc_rd, acc_wp = acc_rds[0], acc_wps[0]

        # Command registers -------------------------------------------------------------------
        M = Signal(16)
        N = Signal(16)
        K = Signal(16)
        cmd_in = Cat(self.a_e4m3, self.b_e4m3, self.chunk_log2, self.no_chunk, self.rna,
                     self.trans_b, self.accumulate, self.carry_in, self.carry_out)
        cmd = Signal.like(cmd_in)
        (a_e4m3, b_e4m3, chunk_log2, no_chunk, rna, trans_b, accumulate, carry_in,
         carry_out) = (cmd[0], cmd[1], cmd[2:6], cmd[6], cmd[7], cmd[8], cmd[9], cmd[10],
                       cmd[11])
        KB = Signal(16)        # ceil(K / rows): A words per row of A
        NT = Signal(16)        # ceil(N / cols): column tiles
        busy = Signal()
        m.d.sync += self.done.eq(0)

        # Host access to the accumulator memory, while idle.
        # The read word is registered: block RAM outputs are slow.
        host_word = Signal.like(acc_rd.data)
        if two:
            rbuf_q, rbuf_qq = Signal(), Signal()
            m.d.sync += [rbuf_q.eq(self.c_rbuf), rbuf_qq.eq(rbuf_q),
                         host_word.eq(Mux(rbuf_qq, acc_rds[1].data, acc_rds[0].data))]
        else:
            m.d.sync += host_word.eq(acc_rd.data)
        m.d.comb += self.c_rdata.eq(Cat(*(host_word[2 * w * c + w:2 * w * c + 2 * w]
                                          for c in range(cols))))

        # Pass bookkeeping shared by the streamer and the weight loader.

        # Streamer ----------------------------------------------------------------------------
        s_active = Signal()    # streaming a pass
        # Loop counters count down to zero, so that "last" is a zero test rather than a
        # comparison through a carry chain.
        s_nt_left = Signal(16)
        s_p = Signal(16)
        s_p_left = Signal(16)
        s_i_left = Signal(16)
        s_nt = Signal(16)
        k0 = Signal(16)        # first k of the streaming pass
        kleft = Signal(17)     # K - k0
        s_arow = Signal(range(self._a_depth + 1))     # A word of row i, pass p
        s_acc = Signal(range(self._acc_depth + 1))    # accumulator word of (i, nt)
        s_gap = Signal(16)     # idle cycles still owed before the next pass
        # A row's accumulator word may be read again (by the next pass of its column tile) this
        # many cycles after it was read: the array's latency and the writeback, with a margin.
        # The passes of a round take M * NT cycles at least; the streamer waits the rest, if
        # any, at the end of the round.
        gap = array.latency + 8
        gap_fill = Signal(16)
        s_bank = Signal()      # weight bank of the pass the streamer is on (pass index % 2)
        w_bank = Signal()      # weight bank the loader fills next
        ahead = Signal(2)      # passes loaded but not yet streamed: 0, 1 or 2

        # Weight loader -------------------------------------------------------------------------
        l_active = Signal()
        l_nt_left = Signal(16)
        l_p_left = Signal(16)
        l_k0 = Signal(16)
        l_n0 = Signal(16)
        l_r = Signal(range(rows + 1))
        l_c = Signal(range(cols + 1))
        l_row_addr = Signal(range(self._b_depth + 1))
        l_addr = Signal(range(self._b_depth + 1))
        l_row = Signal(8 * cols)
        l_pass_base = Signal(range(self._b_depth + 1))    # B address of (k0, n0) of this pass
        l_rd_valid = Signal()
        l_rd_c = Signal.like(l_c)
        l_rd_r = Signal.like(l_r)
        l_rd_last = Signal()
        # Per weight bank: cycles until the last row of the pass that used it has passed
        # every PE, so that the bank may be overwritten.
        bank_timer = [Signal(16, name=f"bank{b}_timer") for b in range(2)]

        all_streamed = Signal()
        l_round_base = Signal(range(self._b_depth + 1))   # B address of (k0, column 0)

        # Writeback ---------------------------------------------------------------------------
        wb_i_left = Signal(16)
        wb_p_left = Signal(16)
        wb_nt_left = Signal(16)
        wb_nt = Signal(16)
        wb_acc = Signal(range(self._acc_depth + 1))
        cycles = Signal(32)
        active = Signal(32)
        m.d.comb += [self.cycles.eq(cycles), self.active.eq(active)]

        # Command start and checks -------------------------------------------------------------
        # A start latches the command, then checks it over four cycles (a division by the
        # array size, products of dimensions, comparisons: each gets a stage of its own), then
        # runs it or ends it with an error code and a done pulse.
        check = Signal(3)      # 0: idle, else the check stage
        zero_dim = Signal()
        sizes = [Signal(33, name=f"size_{n}") for n in ("a", "b", "acc")]
        too_large = Signal()
        rows_n = Signal(24)    # rows * N: B address step between rounds of passes
        cols_k = Signal(24)    # cols * K: B address step between column tiles, transposed
        m_nt = Signal(32)      # M * NT: rows streamed in a round of passes
        m.d.comb += self.busy.eq(busy | (check != 0))
        with m.If(self.start):
            with m.If(busy | (check != 0)):
                m.d.sync += self.error.eq(Error.BUSY)
            with m.Else():
                m.d.sync += [
                    check.eq(1), M.eq(self.m), N.eq(self.n), K.eq(self.k),
                    cmd.eq(cmd_in), bufs.eq(cmd_buf),
                ]
        with m.Switch(check):
            with m.Case(1):
                m.d.sync += [
                    KB.eq((K + rows - 1) // rows if rows > 1 else K),
                    NT.eq((N + cols - 1) // cols if cols > 1 else N),
                    check.eq(2),
                ]
                if self._check:
                    m.d.sync += zero_dim.eq((M == 0) | (N == 0) | (K == 0))
            with m.Case(2):
                m.d.sync += [rows_n.eq(N * rows), cols_k.eq(K * cols), m_nt.eq(M * NT),
                             check.eq(3)]
                if self._check:
                    m.d.sync += [sizes[0].eq(M * KB), sizes[1].eq(K * N), sizes[2].eq(M * NT)]
            with m.Case(3):
                m.d.sync += [check.eq(4), gap_fill.eq(Mux(m_nt >= gap, 0, gap - m_nt))]
                if self._check:
                    m.d.sync += too_large.eq((sizes[0] > self._a_depth)
                                             | (sizes[1] > self._b_depth)
                                             | (sizes[2] > self._acc_depth))
            with m.Case(4):
                m.d.sync += check.eq(0)
                with m.If(zero_dim):
                    m.d.sync += [self.error.eq(Error.ZERO_DIM), self.done.eq(1)]
                with m.Elif(too_large):
                    m.d.sync += [self.error.eq(Error.TOO_LARGE), self.done.eq(1)]
                with m.Else():
                    m.d.sync += [
                        self.error.eq(Error.NONE), busy.eq(1),
                        cycles.eq(4), active.eq(0),
                        s_active.eq(0), s_nt.eq(0), s_p.eq(0), s_arow.eq(0),
                        s_nt_left.eq(NT - 1), s_p_left.eq(KB - 1), s_i_left.eq(M - 1),
                        k0.eq(0), kleft.eq(K),
                        s_acc.eq(0), s_gap.eq(0), s_bank.eq(0), w_bank.eq(0), ahead.eq(0),
                        all_streamed.eq(0),
                        l_active.eq(1), l_nt_left.eq(NT - 1), l_p_left.eq(KB - 1),
                        l_k0.eq(0), l_n0.eq(0), l_r.eq(0), l_c.eq(0),
                        l_row_addr.eq(0), l_addr.eq(0), l_round_base.eq(0), l_pass_base.eq(0),
                        wb_i_left.eq(M - 1), wb_p_left.eq(KB - 1), wb_nt_left.eq(NT - 1),
                        wb_acc.eq(0), wb_nt.eq(0),
                        bank_timer[0].eq(0), bank_timer[1].eq(0),
                    ]
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)

        # Weight loader: B[k0 + r, n0 + c] for one pass into bank (pass index % 2) ------------
        # B address of (r, c): non-transposed row_base + c, transposed row_base + c*K.
        b_step_c = Mux(trans_b, K, 1)
        b_step_r = Mux(trans_b, 1, N)
        # B is read a word at a time; the byte is selected two registers later.
        b_sel = Signal(range(bw))
        m.d.comb += b_rd.addr.eq(addr(l_addr >> (bw.bit_length() - 1), self._b_words, b_buf))
        if bw > 1:
            m.d.comb += b_sel.eq(l_addr[:bw.bit_length() - 1])
        k_of_row = Signal(16)
        n_of_col = Signal(16)
        m.d.comb += [k_of_row.eq(l_k0 + l_r), n_of_col.eq(l_n0 + l_c)]
        # The bank being written was last used by the pass before the one now streaming: each
        # row of it may be written once that pass's last row of A has passed the PEs of that
        # array row. The last row of A reaches array row r about r * v_lat + c cycles after it
        # is issued (column c), and the loader writes array row r about (r + 1) * cols cycles
        # after it starts, so the start waits for the row where v_lat - cols adds up most,
        # with m_lat and a few cycles of margin.
        flush = 3 + array._m_lat + (rows - 1) * max(0, array._v_lat - cols)
        for t in bank_timer:
            with m.If(t != 0):
                m.d.sync += t.eq(t - 1)
        # Pass q goes into bank q % 2 once pass q - 2, the bank's last user, has streamed and
        # flushed: at most one pass ahead of the streamer.
        bank_free = Mux(w_bank, bank_timer[1] == 0, bank_timer[0] == 0)
        can_load = busy & l_active & (ahead <= 1) & bank_free
        m.d.sync += l_rd_valid.eq(0)
        with m.If(can_load):
            m.d.sync += [l_rd_valid.eq(1), l_rd_c.eq(l_c), l_rd_r.eq(l_r),
                         l_rd_last.eq(0)]
            with m.If(l_c == cols - 1):
                m.d.sync += [l_c.eq(0), l_rd_last.eq(1)]
                with m.If(l_r == rows - 1):
                    m.d.sync += [l_r.eq(0), l_active.eq(0)]
                with m.Else():
                    m.d.sync += [l_r.eq(l_r + 1), l_row_addr.eq(l_row_addr + b_step_r),
                                 l_addr.eq(l_row_addr + b_step_r)]
            with m.Else():
                m.d.sync += [l_c.eq(l_c + 1), l_addr.eq(l_addr + b_step_c)]
        # Read data arrives one cycle later and is registered once more (block RAM outputs are
        # slow); then it is collected into a row, which is written into the array.
        # With a deep B buffer the read data comes through a multiplexer of block RAMs, so it
        # is registered as it is, and masked in the next stage.
        rd_inside = Signal()
        m.d.sync += rd_inside.eq((k_of_row < K) & (n_of_col < N))
        r_byte = Signal(8 * bw)
        r_inside = Signal()
        sel_d, sel_r = Signal.like(b_sel), Signal.like(b_sel)
        m.d.sync += [sel_d.eq(b_sel), sel_r.eq(sel_d)]
        r_rd_valid = Signal()
        r_rd_c = Signal.like(l_rd_c)
        r_rd_r = Signal.like(l_rd_r)
        r_rd_last = Signal()
        m.d.sync += [r_byte.eq(b_rd.data), r_inside.eq(rd_inside),
                     r_rd_valid.eq(l_rd_valid), r_rd_c.eq(l_rd_c), r_rd_r.eq(l_rd_r),
                     r_rd_last.eq(l_rd_valid & l_rd_last)]
        q_byte = Signal(8)
        q_rd_valid = Signal()
        q_rd_c = Signal.like(l_rd_c)
        q_rd_r = Signal.like(l_rd_r)
        q_rd_last = Signal()
        m.d.sync += [q_byte.eq(Mux(r_inside, r_byte.word_select(sel_r, 8) if bw > 1 else r_byte,
                                   0)),
                     q_rd_valid.eq(r_rd_valid), q_rd_c.eq(r_rd_c), q_rd_r.eq(r_rd_r),
                     q_rd_last.eq(r_rd_last)]
        new_row = Signal.like(l_row)
        m.d.comb += new_row.eq(l_row)
        for c in range(cols):
            with m.If(q_rd_valid & (q_rd_c == c)):
                m.d.comb += new_row[8 * c:8 * c + 8].eq(q_byte)
        m.d.sync += l_row.eq(new_row)
        m.d.comb += [
            array.w_data.eq(new_row), array.w_row.eq(q_rd_r), array.w_e4m3.eq(b_e4m3),
            array.w_bank.eq(w_bank), array.w_we.eq(q_rd_last),
        ]
        # The end of a pass's loading and what follows it are registered ahead: these
        # registers change only at the end of a pass, at least four cycles apart, so a flag or
        # sum computed from them a cycle late is always ready when it is used.
        q_loaded = Signal()    # q_rd_last & (q_rd_r == rows - 1)
        m.d.sync += q_loaded.eq(r_rd_last & (r_rd_r == rows - 1))
        l_last_nt = Signal()   # l_nt_left == 0: the round's last column tile
        l_last_all = Signal()  # and the last pass
        next_tile_base = Signal.like(l_addr)
        next_round_base = Signal.like(l_addr)
        m.d.sync += [
            l_last_nt.eq(l_nt_left == 0), l_last_all.eq((l_p_left == 0) & (l_nt_left == 0)),
            # Next column tile: cols columns further on; next round: back to column 0, rows
            # further down B.
            next_tile_base.eq((l_pass_base + Mux(trans_b, cols_k, cols))[:len(l_addr)]),
            next_round_base.eq((l_round_base + Mux(trans_b, rows, rows_n))[:len(l_addr)]),
        ]
        with m.If(q_loaded):
            # This pass's weights are in; set up the next pass's loading.
            m.d.sync += w_bank.eq(~w_bank)
            with m.If(~l_last_all):
                with m.If(l_last_nt):
                    base = next_round_base
                    m.d.sync += [l_nt_left.eq(NT - 1), l_n0.eq(0), l_p_left.eq(l_p_left - 1),
                                 l_k0.eq(l_k0 + rows), l_round_base.eq(base),
                                 l_pass_base.eq(base), l_row_addr.eq(base), l_addr.eq(base)]
                with m.Else():
                    base = next_tile_base
                    m.d.sync += [l_nt_left.eq(l_nt_left - 1), l_n0.eq(l_n0 + cols),
                                 l_pass_base.eq(base), l_row_addr.eq(base), l_addr.eq(base)]
                m.d.sync += l_active.eq(1)

        # Streamer ----------------------------------------------------------------------------
        # Rows of a pass are read from the buffers in one cycle and enter the array the next.
        # Registered a cycle after s_p and s_p_left change at the end of a pass (see below).
        first_pass = Signal()
        last_pass = Signal()
        m.d.sync += first_pass.eq(s_p == 0)
        # Per-pass row flags, registered from k0: they settle in the cycle between passes.
        cl_mask = Signal(16)
        m.d.comb += cl_mask.eq((Const(1, 17) << chunk_log2) - 1)
        kvalid = Signal(rows)
        boundary = Signal(rows)
        m.d.sync += [
            kvalid.eq(Cat(*(kleft > r for r in range(rows)))),
            boundary.eq(Cat(*(~no_chunk & (kleft > r) & ((k0 + r) != 0)
                              & (((k0 + r) & cl_mask) == 0) for r in range(rows)))),
        ]
        for r in range(rows):
            m.d.comb += a_rd[r].addr.eq(addr(s_arow, self._a_depth, a_buf))
        if two:
            # Each memory is read at the streamer's address while the running command uses
            # it, else at the host's (registered, three cycles as with one buffer).
            host_raddr = Signal.like(self.c_raddr)
            m.d.sync += host_raddr.eq(self.c_raddr)
            for b, rd in enumerate(acc_rds):
                m.d.comb += rd.addr.eq(Mux(busy & (c_buf == b), s_acc, host_raddr))
        else:
            # The read address comes straight from a register, which follows the host's
            # address while the engine is idle: a read beside a write is checked for a
            # collision by logic that compares the two addresses, and a multiplexer in front
            # would lengthen it.
            m.d.comb += acc_rd.addr.eq(s_acc)
            with m.If(~busy & (check == 0)):
                m.d.sync += s_acc.eq(self.c_raddr)

        # End flags of the loop counters, registered. The row counter's is exact (it moves every
        # cycle); the pass and tile counters move only at the end of a pass, and their flags,
        # a cycle late, are read at the end of the next pass at the earliest.
        m_is1 = Signal()
        s_i_end = Signal()
        s_nt_last = Signal()
        m.d.sync += [m_is1.eq(M == 1),
                     last_pass.eq(s_p_left == 0), s_nt_last.eq(s_nt_left == 0)]
        ready = busy & (ahead != 0) & (s_gap == 0) & ~s_active
        with m.If(s_gap != 0):
            m.d.sync += s_gap.eq(s_gap - 1)
        with m.If(ready & ~all_streamed):
            m.d.sync += [s_active.eq(1), s_i_left.eq(M - 1), s_i_end.eq(m_is1)]
        issue = s_active
        # Per-row control, delayed one cycle to meet the memory data.
        d_valid = Signal()
        d_ctl = Signal(2 * rows + 3)
        m.d.sync += [d_valid.eq(issue),
                     d_ctl.eq(Cat(kvalid, boundary, s_bank, first_pass, last_pass))]
        with m.If(issue):
            m.d.sync += [active.eq(active + 1), s_arow.eq(s_arow + KB), s_acc.eq(s_acc + NT),
                         s_i_left.eq(s_i_left - 1), s_i_end.eq(s_i_left == 1)]
            with m.If(s_i_end):
                # End of the pass.
                m.d.sync += [s_active.eq(0), s_bank.eq(~s_bank)]
                for b, t in enumerate(bank_timer):
                    with m.If(s_bank == b):
                        m.d.sync += t.eq(flush)
                with m.If(s_nt_last):
                    # End of the round: the next pass of column tile 0 reads what the first
                    # pass of this round wrote, which must be written back first.
                    m.d.sync += [s_nt.eq(0), s_nt_left.eq(NT - 1), s_acc.eq(0),
                                 s_gap.eq(gap_fill)]
                    with m.If(last_pass):
                        m.d.sync += all_streamed.eq(1)
                    with m.Else():
                        m.d.sync += [s_p.eq(s_p + 1), s_p_left.eq(s_p_left - 1),
                                     k0.eq(k0 + rows), kleft.eq(kleft - rows),
                                     s_arow.eq(s_p + 1)]
                with m.Else():
                    m.d.sync += [s_nt.eq(s_nt + 1), s_nt_left.eq(s_nt_left - 1),
                                 s_arow.eq(s_p), s_acc.eq(s_nt + 1)]

        # Block RAM outputs are slow (about 6 ns on an ECP5 without the output register): the
        # data and its control get one more register before the array.
        # On a large array the block RAMs sit far from the PEs they feed, so the data is
        # registered twice: next to the memory, then on the way to the array.
        r_valid = Signal()
        r_ctl = Signal.like(d_ctl)
        r_a = Signal(8 * rows)
        r_acc = Signal.like(acc_rd.data)
        m.d.sync += [r_valid.eq(d_valid), r_ctl.eq(d_ctl),
                     r_a.eq(Cat(*(rd.data for rd in a_rd))),
                     r_acc.eq(Mux(c_buf, acc_rds[-1].data, acc_rds[0].data))]
        q_valid = Signal()
        q_ctl = Signal.like(d_ctl)
        q_a = Signal(8 * rows)
        q_acc = Signal.like(acc_rd.data)
        m.d.sync += [q_valid.eq(r_valid), q_ctl.eq(r_ctl), q_a.eq(r_a), q_acc.eq(r_acc)]
        d_kvalid, d_boundary = q_ctl[:rows], q_ctl[rows:2 * rows]
        d_bank, d_first, d_last = q_ctl[2 * rows], q_ctl[2 * rows + 1], q_ctl[2 * rows + 2]
        chunk_lanes = [q_acc[2 * w * c:2 * w * c + w] for c in range(cols)]
        total_lanes = [q_acc[2 * w * c + w:2 * w * c + 2 * w] for c in range(cols)]
        m.d.comb += [
            array.valid.eq(q_valid),
            array.a.eq(q_a),
            array.kvalid.eq(d_kvalid), array.boundary.eq(d_boundary),
            array.a_e4m3.eq(a_e4m3), array.bank.eq(d_bank), array.rna.eq(rna),
            array.last.eq(d_last & ~carry_out),
            array.chunk_in.eq(Mux(d_first & ~carry_in, 0, Cat(*chunk_lanes))),
            array.total_in.eq(Mux(d_first & ~accumulate & ~carry_in, 0, Cat(*total_lanes))),
        ]

        loaded = q_loaded
        streamed = issue & s_i_end
        with m.If(busy):
            m.d.sync += ahead.eq(ahead + loaded - streamed)

        # Writeback: results come out in the order rows went in -----------------------------
        # The command ends when the last result is in the (registered) write port's memory.
        wb_end = Signal()
        m.d.sync += wb_end.eq(0)
        with m.If(wb_end):
            m.d.sync += [busy.eq(0), self.done.eq(1)]
        # The array's outputs leave from its bottom edge, far from the controller: they are
        # registered first, and the writeback counts the registered valid.
        o_valid = Signal()
        o_data = Signal(2 * w * cols)
        m.d.sync += [
            o_valid.eq(array.out_valid),
            o_data.eq(Cat(*(Cat(array.chunk_out[w * c:w * c + w],
                                array.total_out[w * c:w * c + w]) for c in range(cols)))),
        ]
        wb_i_end = Signal()
        wb_p_last = Signal()
        wb_nt_last = Signal()
        m.d.sync += [wb_p_last.eq(wb_p_left == 0), wb_nt_last.eq(wb_nt_left == 0)]
        with m.If(check == 4):
            m.d.sync += wb_i_end.eq(M == 1)
        with m.If(o_valid):
            m.d.sync += [wb_i_left.eq(wb_i_left - 1), wb_acc.eq(wb_acc + NT),
                         wb_i_end.eq(wb_i_left == 1)]
            with m.If(wb_i_end):
                m.d.sync += [wb_i_left.eq(M - 1), wb_i_end.eq(m_is1)]
                with m.If(wb_nt_last):
                    m.d.sync += [wb_nt.eq(0), wb_nt_left.eq(NT - 1), wb_acc.eq(0),
                                 wb_p_left.eq(wb_p_left - 1)]
                    with m.If(wb_p_last):
                        m.d.sync += wb_end.eq(1)
                with m.Else():
                    m.d.sync += [wb_nt.eq(wb_nt + 1), wb_nt_left.eq(wb_nt_left - 1),
                                 wb_acc.eq(wb_nt + 1)]
        host_data = Cat(*(Cat(Const(0, w), self.c_data[w * c:w * c + w]) for c in range(cols)))
        for b, wp in enumerate(acc_wps):
            # The engine writes a memory while the running command uses it, the host at
            # other times.
            mine = busy & (c_buf == b) if two else busy
            host_we = Signal(2 * cols, name=f"host_we{b}")
            for c in range(cols):
                m.d.comb += host_we[2 * c + 1].eq(
                    ~mine & self.c_we & ((self.c_wbuf == b) if two else 1))
            # Registered: the select fans out to every bit of a 2 * cols * 16-bit word.
            m.d.sync += [
                wp.addr.eq(Mux(mine, wb_acc, self.c_addr)),
                wp.data.eq(Mux(mine, o_data, host_data)),
                wp.en.eq(Mux(mine, Mux(o_valid, (1 << (2 * cols)) - 1, 0), host_we)),
            ]
        return m
