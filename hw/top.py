"""The accelerator top: GEMM engine behind AXI4-Lite registers and AXI4-Stream data ports.

Ref: docs/host-interface.md (register map and stream framing).

The register map (addresses, fields, access, error codes) is :mod:`hw.regs`; the names this
module has always exported (``Reg``, ``Ctrl``, ``TopError``, ``REG_MASK``, ...) come from it.
"""

import operator
from functools import reduce

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum
from amaranth.lib.data import StructLayout
from amaranth.lib.wiring import In, Out, connect, flipped

from . import regs
from .axi import AXI4LiteSignature, AXI4StreamSignature, StreamSlice
from .common import CheckedComponent
from .framer import UpdateFramer
from .gearbox import pow2_at_least
from .loader import FrameLoader, Load
from .queue import CommandQueue
from .regblock import RegisterBlock, Resp
from .readback import ReadBack
from .fp.format import DLFLOAT16, format_by_name
from .gemm.engine import GemmEngine
from .regs import ID_VALUE, REGISTERS, Access, Ctrl, ErrorCode, OutFmt, Reg
from .sizes import SerialProducts
from .update import SGDUpdate

__all__ = [
    "CARRY_IN",
    "CARRY_OUT",
    "DECIDE_CYCLES",
    "ID_VALUE",
    "OPTIONS_MASK",
    "READ_ONLY",
    "REG_MASK",
    "UPDATE_MAX",
    "UPDATE_RNE",
    "Accelerator",
    "Ctrl",
    "OutFmt",
    "Reg",
    "Resp",
    "TopError",
]


#: The bits a write may set in each writable register: a write with any other bit set is
#: refused (SLVERR) and changes nothing. CTRL takes any word: one that is not a single action
#: bit is error 6.
REG_MASK = {r.addr: r.write_mask for r in REGISTERS if r.writable}

#: OPTIONS fields: [1:0] operand formats, [7:4] chunk, [15:8] flags, [17:16] READ_C format.
OPTIONS_MASK = regs.OPTIONS.mask

#: Registers that can only be read: a write answers SLVERR.
READ_ONLY = tuple(r.addr for r in REGISTERS if r.access is Access.R)

#: Cycles from a CTRL write to its decision (and its write response): the products of the
#: size checks (:class:`hw.sizes.SerialProducts`, a bit per cycle), then their comparisons,
#: then the outcome, registered, a cycle before it acts.
DECIDE_CYCLES = 20


class Xfer(enum.Enum, shape=3):
    """What the stream ports carry. The loads have the values of :class:`hw.loader.Load`, so
    that the loader takes this register as the kind of the running load."""
    IDLE = 0
    A = Load.A.value
    B = Load.B.value
    C = Load.C.value
    READ = 4
    UPDATE = 5


#: Error codes in STATUS[15:8]: the engine's (``hw.gemm.engine.Error``), and those of the host
#: interface.
TopError = ErrorCode

#: OPTIONS bit: UPDATE rounds to nearest even instead of stochastically.
UPDATE_RNE = regs.OPTIONS.field("update_rne").mask
#: OPTIONS bit: START leaves the last running chunk unfolded beside the total (a K tile that
#: ends inside a chunk).
CARRY_OUT = regs.OPTIONS.field("carry_out").mask
#: OPTIONS bit: START continues the chunk and total that a START with CARRY_OUT left.
CARRY_IN = regs.OPTIONS.field("carry_in").mask

#: The longest UPDATE, in elements: LENGTH is counted in 24 bits.
UPDATE_MAX = (1 << 24) - 1


class Accelerator(CheckedComponent):
    """fp8accel: a ``rows x cols`` GEMM engine with chunk-based accumulation.

    Parameters
    ----------
    rows, cols : int
    a_depth, b_depth, acc_depth : int
        Buffer sizes, as for :class:`~hw.gemm.engine.GemmEngine`.
    acc_fmt : FloatFormat
    update_rbits : int
        Random bits per stochastic rounding of the weight-update unit (1 to 32).
    update : bool
        Include the weight-update unit. Without it (a small FPGA), CTRL.UPDATE fails with
        error 8 (NO_UPDATE), CONFIG[29] is set and the UPDATE registers read 0.
    fp8_out : bool
        Include the converters that return ``C`` as E5M2 or E4M3. Without them, READ_C with
        OPTIONS[17:16] != 0 fails with error 9 (NO_FP8_OUT) and CONFIG[30] is set; the host
        driver then reads the accumulator codes and converts them itself, bit for bit alike.
    ram : str
        Where the array's delay lines go: ``"lutram"`` (ECP5) or ``"bram"`` (iCE40).
    stamps : bool
        Include the time stamps CLOCK, FIRST_IN and LAST_OUT (three 32-bit registers and a
        counter). Without them (the iCE40's last logic cells), they read 0 and CONFIG[31] is
        set.

    Members
    -------
    s_axil : In(AXI4LiteSignature(8, 32))
        The registers (Verilog ports ``s_axil_*``, :func:`hw.axi.verilog_ports`).
    buffers : int
        2 (the default): two of each buffer, so that loads and READ_C run on one while a GEMM
        runs on the other (OPTIONS[20:18] name them); 1 for a small FPGA.
    stream_width : int
        Bits per beat of the stream ports: 16, 32, 64 (the default), 128 or 256. Codes pack
        into beats, element 0 in the low bits: eight FP8 codes or four 16-bit codes per 64-bit
        beat (docs/host-interface.md, "Stream framing").
    queue : int
        Commands the queue holds besides the running ones, 0 to 15 (default 4): the host
        writes them without waiting for the ones before (docs/host-interface.md, "Command
        queue"). With 0 (a small FPGA) a command is taken only if it can start at once, and is
        refused with BUSY otherwise.
    s_axis : In(AXI4StreamSignature(stream_width))
        Data in: ``tdata``, ``tkeep`` (ignored: a frame is counted in beats), ``tlast``.
    m_axis : Out(AXI4StreamSignature(stream_width))
        Data out: ``tdata``, ``tkeep`` (the bytes of a partial last beat), ``tlast``.
    irq : Out(1)
        High while the last action is done and nothing runs (STATUS.done and not
        STATUS.busy); the next CTRL write clears it.
    """

    def __init__(self, rows=4, cols=4, *, a_depth=1024, b_depth=4096, acc_depth=1024,
                 acc_fmt=DLFLOAT16, update_rbits=16, update=True, fp8_out=True,
                 ram="lutram", stamps=True, stream_width=64, buffers=2, queue=4):
        for name, v in (("rows", rows), ("cols", cols)):
            limit = (1 << regs.CONFIG.field(name).width) - 1
            if isinstance(v, int) and not isinstance(v, bool) and v > limit:
                raise ValueError(f"{name} must be at most {limit} (the CONFIG register's "
                                 f"field), not {v}")
        if stream_width not in (16, 32, 64, 128, 256):
            raise ValueError(f"stream_width must be 16, 32, 64, 128 or 256 bits, not "
                             f"{stream_width!r}")
        if not isinstance(queue, int) or isinstance(queue, bool) or not 0 <= queue <= 15:
            raise ValueError(f"queue must be a depth from 0 to 15 commands, not {queue!r}")
        self._queue = queue
        self._width = stream_width
        # The top checks every command before it reaches the engine (error codes 1 and 2, as
        # for the loads), so the engine's own checks are not built.
        self._engine = GemmEngine(rows, cols, a_depth=a_depth, b_depth=b_depth,
                                  acc_depth=acc_depth, acc_fmt=acc_fmt, ram=ram,
                                  b_width=stream_width // 8, buffers=buffers, check=False)
        self._buffers = buffers
        self._fp8_out = bool(fp8_out)
        self._stamps = bool(stamps)
        self._update = SGDUpdate(rbits=update_rbits) if update else None
        self._acc_fmt = format_by_name(acc_fmt)
        self._rows, self._cols = rows, cols
        self._depths = (a_depth, b_depth, acc_depth)
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=8, data_width=32)),
            "s_axis": In(AXI4StreamSignature(stream_width)),
            "m_axis": Out(AXI4StreamSignature(stream_width)),
            "irq": Out(1),
        })

    rows = property(lambda self: self._rows)
    cols = property(lambda self: self._cols)
    #: Bits per beat of the stream ports.
    stream_width = property(lambda self: self._width)
    engine = property(lambda self: self._engine)
    #: The weight-update unit, or ``None`` in a build without it.
    update = property(lambda self: self._update)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = eng = self._engine
        upd = self._update
        if upd is not None:
            m.submodules.update = upd
        rows, cols = self._rows, self._cols
        a_depth, b_depth, acc_depth = self._depths

        # Registers (hw.regblock, from hw.regs) ---------------------------------------------
        config = regs.pack(regs.CONFIG, rows=rows, cols=cols, acc_exp=self._acc_fmt.e,
                           acc_man=self._acc_fmt.m,
                           rbits_m1=0 if upd is None else upd.rbits - 1,
                           no_update=upd is None, no_fp8_out=not self._fp8_out,
                           no_stamps=not self._stamps)
        build = regs.pack(regs.register("BUILD"), beat_bytes=self._width // 8,
                          buffers=self._buffers, queue=self._queue)
        absent = {unit for unit, there in (("update", upd is not None),
                                           ("stamps", self._stamps)) if not there}
        m.submodules.regs = rblock = RegisterBlock(
            constants={"ID": ID_VALUE, "CONFIG": config, "A_WORDS": a_depth, "B_BYTES": b_depth,
                       "ACC_WORDS": acc_depth, "BUILD": build},
            absent=absent, decide_cycles=DECIDE_CYCLES)
        connect(m, flipped(self.s_axil), rblock.s_axil)
        reg_m, reg_n, reg_k, options = rblock.m, rblock.n, rblock.k, rblock.options
        reg_lr, reg_mu, reg_wd = rblock.lr, rblock.momentum, rblock.weight_decay
        reg_seed, reg_len = rblock.seed, rblock.length
        out_fmt = options.out_fmt
        done = Signal()
        error = Signal(4)         # the code of a refused CTRL write (up to 9)
        xfer = Signal(Xfer)
        xfer_busy = xfer != Xfer.IDLE
        # READ_C and UPDATE running: flags of their own, set and cleared with ``xfer``, so that
        # the stream multiplexers they drive take them from a flip-flop placed beside them.
        reading, updating = Signal(), Signal()

        def set_xfer(value):
            m.d.sync += [xfer.eq(value), reading.eq(value == Xfer.READ)]
            if upd is not None:
                m.d.sync += updating.eq(value == Xfer.UPDATE)
        # A CTRL write is decided DECIDE_CYCLES cycles after it is accepted, from the checks
        # below (divisions and comparisons registered, products computed a bit per cycle);
        # its response waits for the decision.
        ctrl_word, ctrl_single = rblock.ctrl, rblock.ctrl_single
        judge, decide, deciding = rblock.judge, rblock.decide, rblock.deciding

        # Time stamps: a free-running cycle counter, read at the first beat of the latest load
        # and at the last beat of the latest READ_C (the whole GEMM as the host sees it).
        clock = Signal(32)
        first_in = Signal(32)
        last_out = Signal(32)
        m.d.sync += clock.eq(clock + 1)

        # STATUS and the other registers read from the state.
        status = Signal(regs.STATUS.shape)
        queued = Signal()          # a command waits or runs (set below)
        rejected_s = Signal()      # STATUS.rejected (set below)
        log_any = Signal()         # ERRLOG holds an entry (set below)
        # The code of a refused CTRL write, else FRAME while ERRLOG holds a failure.
        code = Signal(8)
        m.d.comb += code.eq(Mux(error != 0, error, Mux(log_any, TopError.FRAME, 0)))
        m.d.comb += [status.busy.eq(eng.busy | xfer_busy | deciding | queued),
                     status.done.eq(done), status.error.eq(code != 0),
                     status.code.eq(code), status.engine.eq(eng.busy),
                     status.transfer.eq(xfer_busy), status.rejected.eq(rejected_s)]
        m.d.comb += self.irq.eq(done & ~status.busy)
        m.d.comb += [rblock.status.eq(status), rblock.cycles.eq(eng.cycles),
                     rblock.active.eq(eng.active), rblock.clock.eq(clock),
                     rblock.first_in.eq(first_in), rblock.last_out.eq(last_out)]
        if upd is not None:
            m.d.comb += rblock.rng_state.eq(upd.state)
        queue_word, errlog_word = rblock.queue, rblock.errlog
        errlog_pop = rblock.errlog_read

        # The checks of every action, registered from the registers ---------------------------
        KB = Signal(16)        # ceil(K / rows): A words per row of A
        NT = Signal(16)        # ceil(N / cols): accumulator words per row of C
        # Registered: a division by a constant is deep logic.
        m.d.sync += [KB.eq((reg_k + rows - 1) // rows if rows > 1 else reg_k),
                     NT.eq((reg_n + cols - 1) // cols if cols > 1 else reg_n)]
        # The words of the three transfer shapes: products computed a bit per cycle while the
        # CTRL write is decided (hw.sizes), no multiplier on any path. The registers cannot
        # change while a CTRL write is decided, and KB and NT have settled when it starts.
        # With one row (one column), KB is K (NT is N).
        m.submodules.sizes = sizes = SerialProducts(3, 16)
        deciding_q = Signal()
        m.d.sync += deciding_q.eq(deciding)
        m.d.comb += [sizes.start.eq(deciding & ~deciding_q),
                     sizes.x.eq(Cat(reg_m, reg_k, reg_m)),
                     sizes.y.eq(Cat(KB if rows > 1 else reg_k, reg_n, NT if cols > 1 else reg_n))]
        a_words, kn, c_words = sizes.p[0], sizes.p[1], sizes.p[2]
        zero_a, zero_b, zero_c = Signal(), Signal(), Signal()
        big_a, big_b, big_c = Signal(), Signal(), Signal()
        m.d.sync += [zero_a.eq((reg_m == 0) | (reg_k == 0)),
                     zero_b.eq((reg_k == 0) | (reg_n == 0)),
                     zero_c.eq((reg_m == 0) | (reg_n == 0)),
                     big_a.eq(a_words > a_depth), big_b.eq(kn > b_depth),
                     big_c.eq(c_words > acc_depth)]
        len_zero = Signal()
        len_big = Signal()
        seed_zero = Signal()
        m.d.sync += [len_zero.eq(reg_len == 0), len_big.eq(reg_len > UPDATE_MAX),
                     seed_zero.eq(reg_seed == 0)]

        # Loads: frames into buffer words through the width converters (hw.loader) ---------
        W = self._width
        a_word = 8 * pow2_at_least(rows)
        c_word = 16 * pow2_at_least(cols)
        # Counters as wide as the largest transfer that fits needs (a larger one is refused
        # before it starts): on a small FPGA every bit counts.
        max_words = max(a_depth, -(-b_depth // (W // 8)), acc_depth)
        words_shape = range(max_words + 1)
        m.submodules.loader = ld = FrameLoader(W, (a_word, W, c_word), max_words)

        b_words = Signal(words_shape)
        m.d.sync += b_words.eq((kn + W // 8 - 1) >> ((W // 8).bit_length() - 1))

        # The command queue (docs/host-interface.md, "Command queue") -------------------------
        # A CTRL write that passes the checks of its action is queued with everything it
        # needs (dimensions, options, its frame's words and beats, the UPDATE scalars), so
        # that the registers may be written for the next command at once. The head of the
        # queue is dispatched, in order, when what it needs is free: a START when no GEMM runs
        # and no transfer uses one of its buffers; a load or READ_C when no transfer runs and
        # the running GEMM does not use its buffer; UPDATE when nothing runs. A GEMM and a
        # transfer may run at once. A write that fails a check is not queued: STATUS shows its
        # error at once (and STATUS.rejected); so does one that finds the queue full (BUSY).
        # A queued command's dimensions are no larger than its buffers allow (its checks
        # passed), so the entry holds them in fewer bits. With ``queue=0`` there is no waiting
        # room: the command starts in the cycle it is decided, or is refused with BUSY.
        def dim(bound):
            return range(min(bound, 0xFFFF) + 1)

        entry_fields = {"start": 1, "kind": Xfer, "m": dim(max(a_depth, acc_depth)),
                        "n": dim(max(b_depth, cols * acc_depth)),
                        "k": dim(max(b_depth, rows * a_depth)),
                        "options": regs.OPTIONS.shape, "words": words_shape}
        if upd is not None:
            entry_fields.update(lr=reg_lr.shape(), mu=reg_mu.shape(), wd=reg_wd.shape(),
                                seed=reg_seed.shape(), length=reg_len.shape())
        entry_layout = StructLayout(entry_fields)
        new = Signal(entry_layout)
        push = Signal()              # the decided command is queued
        m.submodules.queue = q = CommandQueue(entry_layout, self._queue)
        head = q.head
        m.d.comb += [q.entry.eq(new), q.push.eq(push)]
        action = ctrl_word
        is_a, is_b = action == Ctrl.LOAD_A, action == Ctrl.LOAD_B
        m.d.comb += [
            new.start.eq(action == Ctrl.START),
            new.kind.eq(Mux(is_a, Xfer.A, Mux(is_b, Xfer.B, Mux(
                action == Ctrl.LOAD_C, Xfer.C, Mux(action == Ctrl.READ_C, Xfer.READ, Mux(
                    action == Ctrl.UPDATE, Xfer.UPDATE, Xfer.IDLE)))))),
            new.m.eq(reg_m), new.n.eq(reg_n), new.k.eq(reg_k), new.options.eq(options),
            new.words.eq(Mux(is_a, a_words, Mux(is_b, b_words, c_words))),
        ]
        if upd is not None:
            m.d.comb += [new.lr.eq(reg_lr), new.mu.eq(reg_mu), new.wd.eq(reg_wd),
                         new.seed.eq(reg_seed), new.length.eq(reg_len)]

        # QUEUE and ERRLOG; ERRLOG holds tickets of transfers that failed with error 5 (FRAME:
        # every other check is made before a command is queued).
        m.d.comb += [q.log_pop.eq(errlog_pop), log_any.eq(q.log_valid),
                     errlog_word.ticket.eq(q.log_ticket),
                     errlog_word.code.eq(Mux(q.log_valid, TopError.FRAME, TopError.NONE)),
                     errlog_word.valid.eq(q.log_valid),
                     queue_word.pending.eq(q.pending), queue_word.errors.eq(q.log_level),
                     queue_word.completed.eq(q.completed)]
        gemm_run = q.gemm_busy

        # Engine command: the head's, taken by the engine when it starts.
        hopt = head.options
        m.d.comb += [
            eng.m.eq(head.m), eng.n.eq(head.n), eng.k.eq(head.k),
            eng.a_e4m3.eq(hopt.a_e4m3), eng.b_e4m3.eq(hopt.b_e4m3),
            eng.chunk_log2.eq(hopt.chunk_log2), eng.no_chunk.eq(hopt.no_chunk),
            eng.rna.eq(hopt.rna), eng.trans_b.eq(hopt.trans_b),
            eng.accumulate.eq(hopt.accumulate), eng.carry_in.eq(hopt.carry_in),
            eng.carry_out.eq(hopt.carry_out),
            eng.a_buf.eq(hopt.a_buf), eng.b_buf.eq(hopt.b_buf), eng.c_buf.eq(hopt.c_buf),
        ]
        # The buffers of the running GEMM and of the running transfer.
        run_a, run_b, run_c = Signal(), Signal(), Signal()
        xbuf = Signal()
        m.d.comb += [eng.a_wbuf.eq(xbuf), eng.b_wbuf.eq(xbuf), eng.c_wbuf.eq(xbuf),
                     eng.c_rbuf.eq(xbuf)]
        g_a = gemm_run & (run_a == hopt.a_buf)
        g_b = gemm_run & (run_b == hopt.b_buf)
        g_c = gemm_run & (run_c == hopt.c_buf)
        x_a = (xfer == Xfer.A) & (xbuf == hopt.a_buf)
        x_b = (xfer == Xfer.B) & (xbuf == hopt.b_buf)
        x_c = ((xfer == Xfer.C) | (xfer == Xfer.READ)) & (xbuf == hopt.c_buf)
        kind = head.kind
        wait = Mux(head.start, gemm_run | x_a | x_b | x_c | (xfer == Xfer.UPDATE),
                   xfer_busy | ~q.log_room | Mux(
                       kind == Xfer.A, g_a, Mux(kind == Xfer.B, g_b, Mux(
                           kind == Xfer.UPDATE, gemm_run, g_c))))
        # After a dispatch the next waits a cycle, until what it started shows as running.
        settle = Signal()
        dispatch = Signal()
        m.d.comb += [q.pop.eq(dispatch), q.pop_gemm.eq(head.start),
                     q.start_now.eq(~wait & ~settle), q.gemm_end.eq(eng.done)]
        m.d.sync += settle.eq(dispatch)
        if self._queue:
            # The head's dispatch is decided a cycle ahead and registered: it starts every
            # part of the accelerator. What the head waits for only ends meanwhile (only a
            # dispatch starts anything), so a head free to start is still free a cycle later;
            # the decision is not made in the cycles of and after a dispatch.
            free = Signal()
            m.d.sync += free.eq(q.head_valid & ~wait & ~settle & ~dispatch)
            m.d.comb += dispatch.eq(free)
        else:
            # No waiting room: the command pushed starts in the cycle of its decision.
            m.d.comb += dispatch.eq(q.head_valid & ~wait & ~settle)
        m.d.comb += eng.start.eq(dispatch & head.start)
        upd_start = Signal()
        xfer_start = Signal()        # a load or READ_C is dispatched: its walk starts
        m.d.comb += xfer_start.eq(dispatch & ~head.start & (kind != Xfer.UPDATE))
        rd_fmt = Signal(2)           # READ_C's format, latched when it is dispatched
        with m.If(dispatch):
            with m.If(head.start):
                m.d.sync += [run_a.eq(hopt.a_buf), run_b.eq(hopt.b_buf), run_c.eq(hopt.c_buf)]
            with m.Else():
                set_xfer(kind)
                m.d.sync += [rd_fmt.eq(hopt.out_fmt),
                             xbuf.eq(Mux(kind == Xfer.A, hopt.a_buf,
                                         Mux(kind == Xfer.B, hopt.b_buf, hopt.c_buf)))]
                m.d.comb += upd_start.eq(kind == Xfer.UPDATE)

        # The decision of a CTRL write: the checks of its action, then the queue. The outcome
        # is judged a cycle before the decision and registered, so that the push into the
        # queue comes from a flip-flop. Nothing else pushes meanwhile, so the room judged is
        # still there at the decision (a dispatch only adds to it); with ``queue=0``, what
        # could start at once still can (nothing is dispatched, and what ends only frees).
        no_buf = Signal()            # a build with one buffer has no buffer 1
        if self._buffers == 1:
            m.d.sync += no_buf.eq(options.a_buf | options.b_buf | options.c_buf)
        rejected = Signal()          # the last CTRL write was refused
        written = Signal()           # a CTRL write has been decided since reset
        judged_code = Signal(4)      # the outcome judged: an error code, or a push
        judged_reject = Signal()
        judged_push = Signal()

        def reject(code):
            m.d.sync += [judged_code.eq(code), judged_reject.eq(1)]

        def enqueue():
            m.d.sync += judged_push.eq(1)

        def checked(zero, big):
            with m.If(zero):
                reject(TopError.ZERO_DIM)
            with m.Elif(big):
                reject(TopError.TOO_LARGE)
            with m.Else():
                enqueue()

        with m.If(judge):
            m.d.sync += [judged_code.eq(0), judged_reject.eq(0), judged_push.eq(0)]
            with m.If(~ctrl_single):
                reject(TopError.BAD_CTRL)
            with m.Elif(no_buf & (action != Ctrl.UPDATE)):
                reject(TopError.TOO_LARGE)
            with m.Elif(~q.room):
                reject(TopError.BUSY)
            with m.Else(), m.Switch(action):
                with m.Case(Ctrl.START):
                    checked(zero_a | zero_b, big_a | big_b | big_c)
                with m.Case(Ctrl.LOAD_A):
                    checked(zero_a, big_a)
                with m.Case(Ctrl.LOAD_B):
                    checked(zero_b, big_b)
                with m.Case(Ctrl.LOAD_C):
                    checked(zero_c, big_c)
                with m.Case(Ctrl.READ_C):
                    # (Python conditions, not constant If()s: an If(0) leaves an empty,
                    # attributed statement that Yosys writes as invalid Verilog.)
                    if self._fp8_out:
                        checked(zero_c, big_c)
                    else:
                        with m.If(out_fmt != OutFmt.ACC):
                            reject(TopError.NO_FP8_OUT)
                        with m.Else():
                            checked(zero_c, big_c)
                with m.Case(Ctrl.UPDATE):
                    if upd is None:
                        reject(TopError.NO_UPDATE)
                    else:
                        with m.If(len_zero):
                            reject(TopError.ZERO_DIM)
                        with m.Elif(len_big):
                            reject(TopError.TOO_LARGE)
                        with m.Elif(seed_zero):
                            reject(TopError.BAD_SEED)
                        with m.Else():
                            enqueue()
        with m.If(decide):
            m.d.sync += [rejected.eq(judged_reject), error.eq(judged_code), written.eq(1)]
        m.d.comb += push.eq(decide & judged_push)
        m.d.comb += [done.eq(written & ~deciding & (rejected | (q.pending == 0))),
                     queued.eq(q.pending != 0), rejected_s.eq(rejected)]

        # The stream ports go through register slices (hw.axi.StreamSlice), so that no
        # handshake of the loader, the read-back or the framer reaches a port through logic.
        # A beat enters only while an input frame is open, up to its ``tlast``: beats offered
        # with no transfer open are not taken, and a frame's slice holds none of the next.
        m.submodules.s_slice = s_in = StreamSlice(W)
        in_open = Signal()
        port_in = self.s_axis
        m.d.comb += [s_in.s.tdata.eq(port_in.tdata), s_in.s.tkeep.eq(port_in.tkeep),
                     s_in.s.tlast.eq(port_in.tlast),
                     s_in.s.tvalid.eq(port_in.tvalid & in_open),
                     port_in.tready.eq(s_in.s.tready & in_open)]
        with m.If(dispatch & ~head.start & (kind != Xfer.READ)):
            m.d.sync += in_open.eq(1)
        with m.Elif(port_in.tvalid & port_in.tready & port_in.tlast):
            m.d.sync += in_open.eq(0)
        s_axis = s_in.m
        m.d.comb += [ld.start.eq(xfer_start), ld.start_kind.eq(kind), ld.words.eq(head.words),
                     ld.kind.eq(xfer), ld.s_axis.tdata.eq(s_axis.tdata),
                     ld.s_axis.tvalid.eq(s_axis.tvalid),
                     ld.s_axis.tlast.eq(s_axis.tlast),
                     eng.a_we.eq(ld.we[0]), eng.a_addr.eq(ld.addr),
                     eng.a_data.eq(ld.data[:8 * rows]),
                     eng.b_we.eq(ld.we[1]), eng.b_addr.eq(ld.addr), eng.b_data.eq(ld.data[:W]),
                     eng.c_we.eq(ld.we[2]), eng.c_addr.eq(ld.addr),
                     eng.c_data.eq(ld.data[:16 * cols])]
        with m.If(ld.first):
            m.d.sync += first_in.eq(clock)
        load_end, frame_bad = ld.end, ld.bad
        with m.If(load_end):
            set_xfer(Xfer.IDLE)

        # READ_C: the accumulator words through the output conversion (hw.readback) --------
        m.submodules.m_slice = m_out = StreamSlice(W)
        connect(m, m_out.m, flipped(self.m_axis))
        m_axis = m_out.s
        m.submodules.readback = rb = ReadBack(self._acc_fmt, cols, acc_depth, W,
                                              fp8_out=self._fp8_out)
        m.d.comb += [rb.start.eq(xfer_start), rb.words.eq(head.words), rb.fmt.eq(rd_fmt),
                     rb.active.eq(reading), eng.c_raddr.eq(rb.raddr),
                     rb.rdata.eq(eng.c_rdata), rb.m_axis.tready.eq(m_axis.tready)]
        # The stream out comes from the read-back or the update framer: selected by and-or,
        # every signal assigned whole (see hw.framer), into the output's register slice. A
        # READ_C ends when its last beat enters the slice.
        sources = [(reading, rb.m_axis)]
        read_end = reading & m_axis.tvalid & m_axis.tready & m_axis.tlast
        with m.If(read_end):
            set_xfer(Xfer.IDLE)
            m.d.sync += last_out.eq(clock)

        # UPDATE: elements in, results out, through the SGD unit (hw.framer) ---------------
        if upd is not None:
            # The scalars come from the queue entry and are latched at the dispatch: the unit
            # reads them at different times for one element. The seed is loaded in the cycle
            # after.
            seed = Signal.like(reg_seed)
            m.d.sync += upd.load.eq(upd_start)
            m.d.comb += upd.seed.eq(seed)
            with m.If(upd_start):
                m.d.sync += [upd.lr.eq(head.lr), upd.momentum.eq(head.mu),
                             upd.weight_decay.eq(head.wd), upd.sr.eq(~hopt.update_rne),
                             seed.eq(head.seed)]
            m.submodules.framer = framer = UpdateFramer(upd.fifo_depth, W)
            connect(m, framer.elem, upd.i)
            connect(m, upd.o, framer.result)
            m.d.comb += [framer.start.eq(upd_start), framer.length.eq(head.length),
                         framer.active.eq(updating),
                         framer.s_axis.tdata.eq(s_axis.tdata),
                         framer.s_axis.tvalid.eq(s_axis.tvalid),
                         framer.s_axis.tlast.eq(s_axis.tlast),
                         framer.m_axis.tready.eq(m_axis.tready)]
            with m.If(framer.done):
                set_xfer(Xfer.IDLE)
            upd_end, upd_bad = framer.done, framer.error

            sources.append((updating, framer.m_axis))
            tready = ld.s_axis.tready | (updating & framer.s_axis.tready)
        else:
            tready = ld.s_axis.tready
            upd_end = upd_bad = 0
        m.d.comb += s_axis.tready.eq(tready)
        # A transfer ends; one with a frame of the wrong length puts its ticket into ERRLOG.
        m.d.comb += [q.xfer_end.eq(load_end | read_end | upd_end),
                     q.fail.eq((load_end & frame_bad) | (upd_end & upd_bad))]
        for name in ("tdata", "tkeep", "tvalid", "tlast"):
            m.d.comb += getattr(m_axis, name).eq(
                reduce(operator.or_, (Mux(sel, getattr(axis, name), 0) for sel, axis in sources)))
        return m
