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

The engine holds the buffers, checks each command (a state machine: divide, multiply,
compare, decide) and runs it with three parts, each with one job: the weight loader
(:class:`~hw.gemm.weights.WeightLoader`) fills the array's spare weight bank, the ``A``
streamer (:class:`~hw.gemm.streamer.AStreamer`) issues the rows of each pass once its weights
are in, and the writeback (:class:`~hw.gemm.writeback.Writeback`) puts the results back into
the accumulator memory and ends the command.

Buffer layouts (the streamer and the writeback step through them with counters):

* ``A``: ``rows`` banks of bytes; ``A[i, k]`` is in bank ``k % rows`` at word
  ``i * ceil(K / rows) + k // rows``, so a pass reads one word of every bank per row of ``A``.
* ``B``: bytes; ``B[k, j]`` at ``k * N + j``, or ``j * K + k`` when stored transposed.
* Accumulator memory: ``cols`` lanes of (chunk, total); output ``C[i, j]`` is the total of lane
  ``j % cols`` in word ``i * ceil(N / cols) + j // cols``.
"""

import operator
from functools import reduce

from amaranth.hdl import Cat, Const, Module, Mux, ResetSignal, Signal
from amaranth.lib import enum, memory
from amaranth.lib.wiring import In, Out

from ..fp.format import DLFLOAT16, format_by_name
from ..common import CheckedComponent, delay, fanout
from .array import SystolicArray
from .streamer import AStreamer
from .weights import WeightLoader
from .writeback import Writeback

__all__ = ["GemmEngine", "Error", "C_READ_LATENCY"]

#: Cycles from the host's accumulator read address ``c_raddr`` to its word on ``c_rdata``: the
#: address register, its copy beside each lane's block RAM, the read, the block RAM's output
#: register, the data register.
C_READ_LATENCY = 5

#: The buffers' memories are never read and written at one address in one cycle where the read
#: is used: the streamer reads the accumulator only for rows it issues, and a round that would
#: read what the one before still writes waits for it; the weight loader and the streamer read
#: only buffers no host writes meanwhile; the host's reads and writes are never at the same
#: time. So Yosys is told that such a collision needs no defined result, and builds none of the
#: logic (registers and a multiplexer per bit, in the path from every block RAM's output) that
#: would return the old word. ``tests/test_gemm_engine.py`` checks the claim on every run.
NO_RW_CHECK = {"no_rw_check": 1}


def _read_port(m, mem, name, collisions):
    """A read port of ``mem`` (a :data:`NO_RW_CHECK` memory) whose data comes a cycle after its
    address, as from a synchronous port: an asynchronous read and a register, which Yosys
    merges into the block RAM's read. (On a synchronous port itself, Yosys keeps the logic
    for collisions whatever ``no_rw_check`` says; on the merged register it applies it.)
    Appends ``(name, flag)`` to ``collisions``, the flag high in a cycle in which the memory is
    read and written at one address (for the tests; nothing reads it, so synthesis removes
    it). Returns the port (its ``addr`` to drive) and the register."""
    rp = mem.read_port(domain="comb")
    data = Signal(mem.shape, name=f"{name}_rdata", reset_less=True)
    m.d.sync += data.eq(rp.data)
    flag = Signal(name=f"{name}_collision")
    m.d.comb += flag.eq(reduce(operator.or_, ((wp.en != 0) & (wp.addr == rp.addr)
                                               for wp in mem.write_ports)))
    collisions.append((name, flag))
    return rp, data


class Error(enum.IntEnum, shape=3):
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
        bits ``16c`` to ``16c + 15``); ``c_rdata`` follows ``c_raddr`` by
        :data:`C_READ_LATENCY` cycles. Only while the engine is idle. A read of a
        word in the cycle it is written returns an undefined word on an FPGA (the memories
        have no read-during-write logic, :data:`NO_RW_CHECK`); the simulators return the old
        one.
    """

    def __init__(self, rows=4, cols=4, *, a_depth=1024, b_depth=4096, acc_depth=1024,
                 acc_fmt=DLFLOAT16, ram="lutram", b_width=1, buffers=1, check=True):
        if format_by_name(acc_fmt).width != 16:
            raise ValueError(f"The accumulator format must be a 16-bit format, not {acc_fmt}")
        self._array = SystolicArray(rows, cols, acc_fmt, ram=ram)
        # The command's settings reach the array when it is latched; the four cycles of checks
        # and the weight loader's first read pass before its first weight enters.
        if self._array.settle_latency > 5:
            raise ValueError(f"A {rows}x{cols} array takes {self._array.settle_latency} cycles "
                             "to settle a command, more than the engine's checks leave it (5)")
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
        #: For the tests, after elaboration: ``(name, flag)`` per block RAM memory, the flag
        #: high in a cycle in which it is read and written at one address (:data:`NO_RW_CHECK`).
        self.collisions = []
        rows, cols, w = self._rows, self._cols, self._acc_fmt.width
        m.submodules.array = array = self._array
        two = self._buffers == 2
        # The last row of a pass reaches array row r about r * v_lat + c cycles after it is
        # issued (column c), and the loader writes array row r about (r + 1) * cols cycles
        # after it starts: a bank may be rewritten once the row where v_lat - cols adds up
        # most has passed, with m_lat, the registers at the array's edge and a few cycles of
        # margin. (Plus the cycles by which the streamer's reads are registered again.)
        flush = (4 + array.edge_latency + array.m_latency
                 + (rows - 1) * max(0, array.v_latency - cols))
        m.submodules.loader = loader = WeightLoader(
            rows, cols, b_depth=self._b_depth, b_width=self._b_width, flush=flush)
        # A row's accumulator word may be read again (by the next pass of its column tile) this
        # many cycles after it was read: the array's latency and the writeback, with a margin.
        # The passes of a round take M * NT cycles at least; the streamer waits the rest, if
        # any, at the end of the round.
        m.submodules.streamer = streamer = AStreamer(
            rows, cols, a_depth=self._a_depth, acc_depth=self._acc_depth, acc_width=w,
            gap=array.latency + 8, read_latency=3)
        m.submodules.writeback = wb = Writeback(cols, acc_depth=self._acc_depth, acc_width=w)

        # Buffers ---------------------------------------------------------------------------
        # With two buffers, A and B are memories of twice the depth, the buffer's number the
        # top address bit (the host writes one while the engine reads the other, through the
        # two ports every memory has); the accumulator is two memories, each with its own
        # read and write port.
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
        # The read addresses of the A banks and of the accumulator's block RAMs, which spread
        # over the chip beside the array's rows and columns, are registered once more on the
        # way, a copy per bank or column; and the block RAMs' outputs, slow (5.8 ns from the
        # clock on an ECP5), are registered as they are, before any logic (the streamer's
        # read_latency is 3).
        a_data = []
        a_raddrs = fanout(m, addr(streamer.a_raddr, self._a_depth, a_buf), rows, "a_raddr")
        for r in range(rows):
            mem = memory.Memory(shape=8, depth=depth_of(self._a_depth), init=[],
                                attrs=NO_RW_CHECK)
            m.submodules[f"a_bank{r}"] = mem
            wp = mem.write_port()
            rp, rdata = _read_port(m, mem, f"a_bank{r}", self.collisions)
            m.d.comb += [wp.addr.eq(addr(self.a_addr, self._a_depth, self.a_wbuf)),
                         wp.data.eq(self.a_data[8 * r:8 * r + 8]), wp.en.eq(self.a_we),
                         rp.addr.eq(a_raddrs[r])]
            a_data.append(rdata)
        a_q = Signal(8 * rows, reset_less=True)
        m.d.sync += a_q.eq(Cat(*a_data))
        m.d.comb += streamer.a_rdata.eq(a_q)
        b_mem = memory.Memory(shape=8 * self._b_width, depth=depth_of(self._b_words), init=[],
                              attrs=NO_RW_CHECK)
        m.submodules.b_mem = b_mem
        b_wp = b_mem.write_port()
        b_rd, b_rdata = _read_port(m, b_mem, "b_mem", self.collisions)
        m.d.comb += [b_wp.addr.eq(addr(self.b_addr, self._b_words, self.b_wbuf)),
                     b_wp.data.eq(self.b_data), b_wp.en.eq(self.b_we),
                     b_rd.addr.eq(addr(loader.b_raddr, self._b_words, b_buf)),
                     loader.b_rdata.eq(b_rdata)]
        # Accumulator: per lane a chunk half and a total half, written with 16-bit granularity;
        # a memory per lane, so that each has its own address registers.
        acc_wps, acc_rds = [], []
        for b in range(self._buffers):
            wps, rds = [], []
            for c in range(cols):
                acc = memory.Memory(shape=2 * w, depth=self._acc_depth, init=[],
                                    attrs=NO_RW_CHECK)
                m.submodules[f"acc{b}_{c}" if two else f"acc_{c}"] = acc
                wps.append(acc.write_port(granularity=w))
                # One read port, shared: the streamer reads while a command uses the memory,
                # the host at other times. (A second read port would double its block RAMs.)
                rds.append(_read_port(m, acc, f"acc{b}_{c}", self.collisions))
            acc_wps.append(wps)
            acc_rds.append(rds)
        acc_rdata = [Signal(2 * w * cols, name=f"acc{b}_rdata", reset_less=True)
                     for b in range(self._buffers)]
        for q, rds in zip(acc_rdata, acc_rds):
            m.d.sync += q.eq(Cat(*(data for _, data in rds)))

        # Command registers and checks ------------------------------------------------------
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
        zero_dim = Signal()
        sizes = [Signal(33, name=f"size_{n}") for n in ("a", "b", "acc")]
        too_large = Signal()
        rows_n = Signal(24)    # rows * N: B address step between rounds of passes
        cols_k = Signal(24)    # cols * K: B address step between column tiles, transposed
        go = Signal()          # the command passed its checks: the parts start it
        # Per accumulator memory: the running command uses it. Registers (set with the run,
        # cleared at its end), not decoded from the state: they select the address, data and
        # enables of every block RAM of the memory.
        mine = [Signal(name=f"mine{b}") for b in range(self._buffers)]
        # Their next values, from which each lane's copy is registered too (below): the copies
        # change in the same cycle as ``mine``, and a reset clears them with it.
        mine_next = [Signal(name=f"mine{b}_next") for b in range(self._buffers)]
        m.d.comb += [mn.eq(mb) for mn, mb in zip(mine_next, mine)]
        m.d.sync += [mb.eq(mn) for mb, mn in zip(mine, mine_next)]
        cycles = Signal(32)
        m.d.comb += [self.cycles.eq(cycles), self.active.eq(streamer.issued)]
        m.d.sync += self.done.eq(0)

        # A start latches the command, then checks it over four cycles (a division by the
        # array size, products of dimensions, comparisons: each gets a state of its own), then
        # runs it or ends it with an error code and a done pulse.
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [M.eq(self.m), N.eq(self.n), K.eq(self.k), cmd.eq(cmd_in),
                                 bufs.eq(cmd_buf)]
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                m.d.sync += [
                    KB.eq((K + rows - 1) // rows if rows > 1 else K),
                    NT.eq((N + cols - 1) // cols if cols > 1 else N),
                ]
                if self._check:
                    m.d.sync += zero_dim.eq((M == 0) | (N == 0) | (K == 0))
                m.next = "MULTIPLY"
            with m.State("MULTIPLY"):
                m.d.sync += [rows_n.eq(N * rows), cols_k.eq(K * cols)]
                if self._check:
                    m.d.sync += [sizes[0].eq(M * KB), sizes[1].eq(K * N), sizes[2].eq(M * NT)]
                m.next = "COMPARE"
            with m.State("COMPARE"):
                if self._check:
                    m.d.sync += too_large.eq((sizes[0] > self._a_depth)
                                             | (sizes[1] > self._b_depth)
                                             | (sizes[2] > self._acc_depth))
                m.next = "DECIDE"
            with m.State("DECIDE"):
                with m.If(zero_dim):
                    m.d.sync += [self.error.eq(Error.ZERO_DIM), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Elif(too_large):
                    m.d.sync += [self.error.eq(Error.TOO_LARGE), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += go.eq(1)
                    m.d.sync += [self.error.eq(Error.NONE), cycles.eq(4)]
                    m.d.comb += [mn.eq(c_buf == b if two else 1)
                                 for b, mn in enumerate(mine_next)]
                    m.next = "RUN"
            with m.State("RUN"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(wb.end):
                    m.d.sync += self.done.eq(1)
                    m.d.comb += [mn.eq(0) for mn in mine_next]
                    m.next = "IDLE"
        idle = fsm.ongoing("IDLE")
        m.d.comb += self.busy.eq(~idle)
        with m.If(self.start & ~idle):
            m.d.sync += self.error.eq(Error.BUSY)

        # The parts: the weight loader, the A streamer and the writeback --------------------
        m.d.comb += [
            loader.start.eq(go), loader.n.eq(N), loader.k.eq(K), loader.nt.eq(NT),
            loader.kb.eq(KB), loader.rows_n.eq(rows_n), loader.cols_k.eq(cols_k),
            loader.trans_b.eq(trans_b), loader.streamed.eq(streamer.streamed),
            streamer.start.eq(go), streamer.m.eq(M), streamer.k.eq(K), streamer.kb.eq(KB),
            streamer.nt.eq(NT), streamer.chunk_log2.eq(chunk_log2),
            streamer.no_chunk.eq(no_chunk), streamer.accumulate.eq(accumulate),
            streamer.carry_in.eq(carry_in), streamer.carry_out.eq(carry_out),
            streamer.ready.eq(loader.ready),
            wb.start.eq(go), wb.m.eq(M), wb.kb.eq(KB), wb.nt.eq(NT),
            array.w_data.eq(loader.w_data), array.w_row.eq(loader.w_row),
            array.w_we.eq(loader.w_we), array.w_bank.eq(loader.w_bank),
            array.w_e4m3.eq(b_e4m3),
            array.valid.eq(streamer.valid), array.a.eq(streamer.a),
            array.kvalid.eq(streamer.kvalid), array.boundary.eq(streamer.boundary),
            array.bank.eq(streamer.bank), array.last.eq(streamer.last),
            array.chunk_in.eq(streamer.chunk_in), array.total_in.eq(streamer.total_in),
            array.a_e4m3.eq(a_e4m3), array.rna.eq(rna),
            wb.valid.eq(array.out_valid), wb.chunk.eq(array.chunk_out),
            wb.total.eq(array.total_out),
        ]

        # Accumulator reads: the streamer's while a command uses the memory, else the host's.
        # The host's word is registered: block RAM outputs are slow.
        host_word = Signal.like(acc_rdata[0])
        if two:
            # Each memory is read at the streamer's address while the running command uses
            # it, else at the host's (registered, C_READ_LATENCY cycles as with one buffer).
            host_raddr = Signal.like(self.c_raddr)
            m.d.sync += host_raddr.eq(self.c_raddr)
            for b, rds in enumerate(acc_rds):
                raddrs = fanout(m, Mux(mine[b], streamer.acc_raddr, host_raddr), cols,
                                f"acc{b}_raddr")
                m.d.comb += [rd.addr.eq(ra) for (rd, _), ra in zip(rds, raddrs)]
            rbuf = delay(m, self.c_rbuf, 4, "rbuf")
            m.d.sync += host_word.eq(Mux(rbuf, acc_rdata[1], acc_rdata[0]))
            m.d.comb += streamer.acc_rdata.eq(Mux(c_buf, acc_rdata[1], acc_rdata[0]))
        else:
            # The read address comes from the streamer's register, which follows the host's
            # address while the engine is idle (no multiplexer in front of the block RAMs).
            raddrs = fanout(m, streamer.acc_raddr, cols, "acc_raddr")
            m.d.comb += [*(rd.addr.eq(ra) for (rd, _), ra in zip(acc_rds[0], raddrs)),
                         streamer.follow.eq(idle), streamer.host_raddr.eq(self.c_raddr),
                         streamer.acc_rdata.eq(acc_rdata[0])]
            m.d.sync += host_word.eq(acc_rdata[0])
        m.d.comb += self.c_rdata.eq(Cat(*(host_word[2 * w * c + w:2 * w * c + 2 * w]
                                          for c in range(cols))))

        # Accumulator writes: the writeback's while a command uses the memory, else the host's.
        host_data = Cat(*(Cat(Const(0, w), self.c_data[w * c:w * c + w]) for c in range(cols)))
        for b, wps in enumerate(acc_wps):
            host_we = ~mine[b] & self.c_we & ((self.c_wbuf == b) if two else 1)
            # Registered, a copy of the address per lane: the select fans out to every bit of
            # a 2 * cols * 16-bit word, and the lanes' block RAMs spread over the chip.
            waddrs = fanout(m, Mux(mine[b], wb.addr, self.c_addr), cols, f"acc{b}_waddr")
            # The data and enables of the lanes are selected by copies of ``mine`` (one
            # register would drive every bit of the word), equal to it in every cycle: from its
            # next value, cleared by a reset, and 0 from the start. Two copies: one register
            # and one that holds the inverse (Yosys would merge equal ones), half of the lanes
            # each.
            copies = []
            nxt = Mux(ResetSignal(), 0, mine_next[b])
            for inv in (0, 1):
                reg = Signal(name=f"acc{b}_mine_{inv}", init=inv, reset_less=True)
                m.d.sync += reg.eq(~nxt if inv else nxt)
                copies.append(~reg if inv else reg)
            lane_mine = [copies[c * 2 // cols] for c in range(cols)]
            for c, wp in enumerate(wps):
                lane = slice(2 * w * c, 2 * w * (c + 1))
                m.d.sync += [
                    wp.data.eq(Mux(lane_mine[c], wb.data[lane], host_data[lane])),
                    wp.en.eq(Mux(lane_mine[c], Mux(wb.we, 0b11, 0), Cat(0, host_we))),
                ]
                m.d.comb += wp.addr.eq(waddrs[c])
        return m
