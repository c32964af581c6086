"""The accelerator top: GEMM engine behind AXI4-Lite registers and AXI4-Stream data ports.

Ref: docs/host-interface.md (register map and stream framing).

The register map (addresses, fields, access, error codes) is :mod:`hw.regs`; the names this
module has always exported (``Reg``, ``Ctrl``, ``TopError``, ``REG_MASK``, ...) come from it.
"""

import operator
from functools import reduce

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum, fifo
from amaranth.lib.data import StructLayout
from amaranth.lib.wiring import In, Out, connect

from . import regs
from .axi import AXI4LiteSignature, AXI4StreamSignature
from .common import CheckedComponent, delay
from .fp.convert import FPConvert
from .framer import UpdateFramer
from .gearbox import Packer, Unpacker, pow2_at_least
from .fp.format import DLFLOAT16, E4M3, E5M2, format_by_name
from .gemm.engine import GemmEngine
from .regs import ID_VALUE, REGISTERS, Access, Ctrl, ErrorCode, OutFmt, Reg
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

#: Cycles from a CTRL write to its decision (and its write response).
DECIDE_CYCLES = 4


class Resp:
    """AXI4-Lite BRESP and RRESP."""
    OKAY = 0b00
    #: The register exists but refuses the access: a partial write (WSTRB != 0b1111), a value
    #: with bits outside the register's fields, a write of a read-only register, a read of CTRL.
    SLVERR = 0b10
    #: No register at this address.
    DECERR = 0b11


class Xfer(enum.Enum, shape=3):
    """What the stream ports carry."""
    IDLE = 0
    A = 1
    B = 2
    C = 3
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

        # Registers (hw.regs): the writable ones, in their shapes (OPTIONS as its fields) -----
        reg_m = Signal(regs.register("M").shape)
        reg_n = Signal(regs.register("N").shape)
        reg_k = Signal(regs.register("K").shape)
        options = Signal(regs.OPTIONS.shape)
        reg_lr = Signal(regs.register("LR").shape)
        reg_mu = Signal(regs.register("MOMENTUM").shape)
        reg_wd = Signal(regs.register("WEIGHT_DECAY").shape)
        reg_seed = Signal(regs.register("SEED").shape)
        reg_len = Signal(regs.register("LENGTH").shape)
        out_fmt = options.out_fmt
        done = Signal()
        queue_word = Signal(regs.register("QUEUE").shape)     # QUEUE (set below)
        errlog_word = Signal(regs.register("ERRLOG").shape)   # ERRLOG's head (set below)
        errlog_pop = Signal()      # a read of ERRLOG takes its head
        log_any = Signal()         # ERRLOG holds an entry
        error = Signal(4)         # the code of a refused CTRL write (up to 9)
        xfer = Signal(Xfer)
        xfer_busy = xfer != Xfer.IDLE
        ctrl_word = Signal(regs.CTRL.size)     # the action bits of the CTRL write
        ctrl_single = Signal()     # exactly one action bit of ctrl_word is set, no other bit
        # A CTRL write is decided DECIDE_CYCLES cycles after it is accepted, from the checks
        # below (each registered from the registers: products and divisions get stages of
        # their own). Until then no other write is accepted, so the checks see the registers
        # the action will use, and the write response waits for the decision: once a host has
        # its response, STATUS tells whether the action was taken.
        deciding = Signal(range(DECIDE_CYCLES + 1))
        decide = deciding == 1

        # AXI4-Lite writes (docs/host-interface.md, "AXI4-Lite rules") -----------------------
        aw_ok = (self.s_axil.awvalid & self.s_axil.wvalid & ~self.s_axil.bvalid
                 & (deciding == 0))
        m.d.comb += [self.s_axil.awready.eq(aw_ok), self.s_axil.wready.eq(aw_ok)]
        with m.If(self.s_axil.bvalid & self.s_axil.bready):
            m.d.sync += self.s_axil.bvalid.eq(0)
        with m.If(deciding != 0):
            m.d.sync += deciding.eq(deciding - 1)
        with m.If(decide):
            m.d.sync += [self.s_axil.bvalid.eq(1), self.s_axil.bresp.eq(Resp.OKAY)]
        stored = {"M": reg_m, "N": reg_n, "K": reg_k, "OPTIONS": options,
                  "LR": reg_lr, "MOMENTUM": reg_mu, "WEIGHT_DECAY": reg_wd, "SEED": reg_seed,
                  "LENGTH": reg_len}
        with m.If(aw_ok):
            m.d.sync += [self.s_axil.bvalid.eq(1), self.s_axil.bresp.eq(Resp.OKAY)]
            data = self.s_axil.wdata
            whole = self.s_axil.wstrb == 0b1111
            with m.Switch(self.s_axil.awaddr & 0xFC):
                for reg in REGISTERS:
                    if reg.access is not Access.RW:
                        continue
                    with m.Case(reg.addr):
                        # A value with bits outside the register's fields is refused, never
                        # truncated; so is a write of part of a register, and a value an
                        # enum field does not have (OPTIONS[17:16] = 3).
                        fits = (data & ~reg.write_mask) == 0
                        for f in reg.fields:
                            for bad in f.invalid:
                                fits &= data[f.lsb:f.msb + 1] != bad
                        with m.If(~whole | ~fits):
                            m.d.sync += self.s_axil.bresp.eq(Resp.SLVERR)
                        # Without the update unit its registers are not built: writes that
                        # fit are accepted and ignored, reads give 0, and UPDATE fails with
                        # NO_UPDATE. (No empty Else for them.)
                        if reg.unit != "update" or upd is not None:
                            with m.Else():
                                m.d.sync += stored[reg.name].eq(data[:reg.size])
                with m.Case(Reg.CTRL):
                    with m.If(~whole):
                        m.d.sync += self.s_axil.bresp.eq(Resp.SLVERR)
                    with m.Else():
                        # The response comes with the decision.
                        bits = data[:regs.CTRL.size]
                        m.d.sync += [
                            self.s_axil.bvalid.eq(0), deciding.eq(DECIDE_CYCLES),
                            ctrl_word.eq(bits),
                            ctrl_single.eq((bits != 0) & ((bits & (bits - 1)) == 0)
                                           & (data[regs.CTRL.size:] == 0)),
                        ]
                with m.Case(*READ_ONLY):
                    m.d.sync += self.s_axil.bresp.eq(Resp.SLVERR)
                with m.Default():
                    m.d.sync += self.s_axil.bresp.eq(Resp.DECERR)

        # Time stamps: a free-running cycle counter, read at the first beat of the latest load
        # and at the last beat of the latest READ_C (the whole GEMM as the host sees it).
        clock = Signal(32)
        first_in = Signal(32)
        last_out = Signal(32)
        m.d.sync += clock.eq(clock + 1)

        # AXI4-Lite reads ---------------------------------------------------------------------
        ar_ok = self.s_axil.arvalid & ~self.s_axil.rvalid
        m.d.comb += self.s_axil.arready.eq(ar_ok)
        with m.If(self.s_axil.rvalid & self.s_axil.rready):
            m.d.sync += self.s_axil.rvalid.eq(0)
        status = Signal(regs.STATUS.shape)
        queued = Signal()          # a command waits or runs (set below)
        rejected_s = Signal()      # STATUS.rejected (set below)
        # The code of a refused CTRL write, else FRAME while ERRLOG holds a failure.
        code = Signal(8)
        m.d.comb += code.eq(Mux(error != 0, error, Mux(log_any, TopError.FRAME, 0)))
        m.d.comb += [status.busy.eq(eng.busy | xfer_busy | (deciding != 0) | queued),
                     status.done.eq(done), status.error.eq(code != 0),
                     status.code.eq(code), status.engine.eq(eng.busy),
                     status.transfer.eq(xfer_busy), status.rejected.eq(rejected_s)]
        m.d.comb += self.irq.eq(done & ~status.busy)
        config = regs.pack(regs.CONFIG, rows=rows, cols=cols, acc_exp=self._acc_fmt.e,
                           acc_man=self._acc_fmt.m,
                           rbits_m1=0 if upd is None else upd.rbits - 1,
                           no_update=upd is None, no_fp8_out=not self._fp8_out,
                           no_stamps=not self._stamps)
        # What each readable register reads; those of an absent update unit read 0.
        sources = {"ID": ID_VALUE, "CONFIG": config, "STATUS": status, **stored,
                   "CYCLES": eng.cycles, "ACTIVE": eng.active, "A_WORDS": a_depth,
                   "B_BYTES": b_depth, "ACC_WORDS": acc_depth, "CLOCK": clock,
                   "FIRST_IN": first_in, "LAST_OUT": last_out,
                   "BUILD": regs.pack(regs.register("BUILD"), beat_bytes=self._width // 8,
                                      buffers=self._buffers, queue=self._queue),
                   "QUEUE": queue_word, "ERRLOG": errlog_word,
                   "RNG_STATE": None if upd is None else upd.state}
        with m.If(ar_ok):
            m.d.sync += [self.s_axil.rvalid.eq(1), self.s_axil.rresp.eq(Resp.OKAY)]
            with m.Switch(self.s_axil.araddr & 0xFC):
                for reg in REGISTERS:
                    with m.Case(reg.addr):
                        if not reg.readable:
                            m.d.sync += [self.s_axil.rdata.eq(0),
                                         self.s_axil.rresp.eq(Resp.SLVERR)]
                        elif ((reg.unit == "update" and upd is None)
                              or (reg.unit == "stamps" and not self._stamps)):
                            m.d.sync += self.s_axil.rdata.eq(0)
                        else:
                            m.d.sync += self.s_axil.rdata.eq(sources[reg.name])
                with m.Default():
                    m.d.sync += [self.s_axil.rdata.eq(0), self.s_axil.rresp.eq(Resp.DECERR)]
        m.d.comb += errlog_pop.eq(ar_ok & ((self.s_axil.araddr & 0xFC) == Reg.ERRLOG))

        # The checks of every action, registered from the registers ---------------------------
        KB = Signal(16)        # ceil(K / rows): A words per row of A
        NT = Signal(16)        # ceil(N / cols): accumulator words per row of C
        # Registered: a division by a constant is deep logic.
        m.d.sync += [KB.eq((reg_k + rows - 1) // rows if rows > 1 else reg_k),
                     NT.eq((reg_n + cols - 1) // cols if cols > 1 else reg_n)]
        # Element counts of the three transfer shapes and the words they need: the products
        # come from DSP blocks, each registered.
        mk, kn, mn = Signal(32), Signal(32), Signal(32)
        m.d.sync += [mk.eq(reg_m * reg_k), kn.eq(reg_k * reg_n), mn.eq(reg_m * reg_n)]
        # With one row (one column), KB is K (NT is N): the element count is the word count,
        # and a multiplier is saved (on the iCE40 a product beyond its eight DSPs costs some
        # 300 logic cells).
        if rows == 1:
            a_words = mk
        else:
            a_words = Signal(32)
            m.d.sync += a_words.eq(reg_m * KB)
        if cols == 1:
            c_words = mn
        else:
            c_words = Signal(32)
            m.d.sync += c_words.eq(reg_m * NT)
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

        # Transfers: buffer images through the width converters (hw.gearbox) -----------------
        # LOAD_A and LOAD_C carry the buffer words as they are stored (hw.gemm.layout): an A
        # word holds a byte of every bank, an accumulator word the totals of every lane, each
        # padded to a power of two of bytes. LOAD_B carries B's bytes in address order, a B
        # word per beat. Frames are counted in beats at the port, words after the unpacker;
        # the words of a beat beyond the frame's last are dropped.
        W = self._width
        a_word = 8 * pow2_at_least(rows)
        c_word = 16 * pow2_at_least(cols)
        widths = {Xfer.A: a_word, Xfer.B: W, Xfer.C: c_word}
        unpackers = {}
        for kind, width in widths.items():
            if width not in unpackers:
                unpackers[width] = Unpacker(W, width)
                m.submodules[f"unpack{width}"] = unpackers[width]

        # Counters as wide as the largest transfer that fits needs (a larger one is refused
        # before it starts): on a small FPGA every bit counts.
        max_words = max(a_depth, -(-b_depth // (W // 8)), acc_depth)
        words_shape = range(max_words + 1)
        beats_shape = range(max_words * max(1, max(widths.values()) // W) + 1)

        def beats_of(words, width):
            """Beats of a frame of ``words`` words of ``width`` bits."""
            if width <= W:
                per = W // width
                return (words + per - 1) >> (per.bit_length() - 1)
            return words << ((width // W).bit_length() - 1)

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
        pop = Signal()               # the head is dispatched
        room = Signal()              # the queue takes a command
        head_valid = Signal()
        if self._queue:
            m.submodules.queue = queue = fifo.SyncFIFOBuffered(
                width=entry_layout.size, depth=self._queue)
            head = entry_layout(queue.r_data)
            m.d.comb += [queue.w_data.eq(new), queue.w_en.eq(push), queue.r_en.eq(pop),
                         room.eq(queue.w_rdy), head_valid.eq(queue.r_rdy)]
        else:
            head = new
            m.d.comb += head_valid.eq(push)
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

        # Tickets: the n-th accepted command (from 0, modulo 2**16) is ticket n. At most one
        # GEMM and one transfer are in flight; ``retired`` is the ticket of the older of them
        # (every command before it has completed), or of the next to start.
        accepted = Signal(16)
        dispatched = Signal(16)
        gemm_run, gemm_ticket = Signal(), Signal(16)
        xfer_ticket = Signal(16)
        g_older = Signal()           # the running GEMM started before the running transfer
        retired = Signal(16)
        m.d.comb += retired.eq(Mux(gemm_run & (g_older | ~xfer_busy), gemm_ticket,
                                   Mux(xfer_busy, xfer_ticket, dispatched)))
        pending = Signal(8)          # (at most queue + 2)
        m.d.comb += pending.eq(accepted[:8] - retired[:8])
        # The error log: the tickets of the transfers that failed while they ran (with error
        # 5, FRAME: every other check is made before a command is queued).
        m.submodules.errlog = errlog = fifo.SyncFIFO(width=16, depth=max(1, self._queue))
        m.d.comb += errlog.w_data.eq(xfer_ticket)

        m.d.comb += [errlog.r_en.eq(errlog_pop),
                     errlog_word.ticket.eq(Mux(errlog.r_rdy, errlog.r_data, 0)),
                     errlog_word.code.eq(Mux(errlog.r_rdy, TopError.FRAME, TopError.NONE)),
                     errlog_word.valid.eq(errlog.r_rdy),
                     queue_word.pending.eq(pending), queue_word.errors.eq(errlog.r_level),
                     queue_word.completed.eq(retired)]

        m.d.comb += log_any.eq(errlog.r_rdy)

        def fail():
            """The running transfer ends with error 5 (FRAME): the log keeps its ticket (and
            STATUS shows the code until the log is read)."""
            m.d.comb += errlog.w_en.eq(1)

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
                   xfer_busy | ~errlog.w_rdy | Mux(
                       kind == Xfer.A, g_a, Mux(kind == Xfer.B, g_b, Mux(
                           kind == Xfer.UPDATE, gemm_run, g_c))))
        # After a dispatch the next waits a cycle, until what it started shows as running.
        settle = Signal()
        dispatch = Signal()
        m.d.comb += [dispatch.eq(head_valid & ~wait & ~settle), pop.eq(dispatch)]
        if not self._queue:
            m.d.comb += room.eq(~wait & ~settle)
        m.d.sync += settle.eq(dispatch)
        m.d.comb += eng.start.eq(dispatch & head.start)
        upd_start = Signal()
        xfer_start = Signal()        # a load or READ_C is dispatched: its walk starts
        m.d.comb += xfer_start.eq(dispatch & ~head.start & (kind != Xfer.UPDATE))
        rd_fmt = Signal(2)           # READ_C's format, latched when it is dispatched
        with m.If(dispatch):
            m.d.sync += dispatched.eq(dispatched + 1)
            with m.If(head.start):
                m.d.sync += [gemm_run.eq(1), gemm_ticket.eq(dispatched), run_a.eq(hopt.a_buf),
                             run_b.eq(hopt.b_buf), run_c.eq(hopt.c_buf),
                             g_older.eq(~xfer_busy)]
            with m.Else():
                m.d.sync += [xfer.eq(kind), xfer_ticket.eq(dispatched), rd_fmt.eq(hopt.out_fmt),
                             g_older.eq(gemm_run),
                             xbuf.eq(Mux(kind == Xfer.A, hopt.a_buf,
                                         Mux(kind == Xfer.B, hopt.b_buf, hopt.c_buf)))]
                m.d.comb += upd_start.eq(kind == Xfer.UPDATE)
        with m.If(gemm_run & eng.done):
            m.d.sync += gemm_run.eq(0)

        # The decision of a CTRL write: the checks of its action, then the queue.
        no_buf = Signal()            # a build with one buffer has no buffer 1
        if self._buffers == 1:
            m.d.sync += no_buf.eq(options.a_buf | options.b_buf | options.c_buf)
        rejected = Signal()          # the last CTRL write was refused
        written = Signal()           # a CTRL write has been decided since reset

        def reject(code):
            m.d.sync += [error.eq(code), rejected.eq(1)]

        def enqueue():
            m.d.comb += push.eq(1)
            m.d.sync += accepted.eq(accepted + 1)

        def checked(zero, big):
            with m.If(zero):
                reject(TopError.ZERO_DIM)
            with m.Elif(big):
                reject(TopError.TOO_LARGE)
            with m.Else():
                enqueue()

        with m.If(decide):
            m.d.sync += [rejected.eq(0), error.eq(0), written.eq(1)]
            with m.If(~ctrl_single):
                reject(TopError.BAD_CTRL)
            with m.Elif(no_buf & (action != Ctrl.UPDATE)):
                reject(TopError.TOO_LARGE)
            with m.Elif(~room):
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
        m.d.comb += [done.eq(written & (deciding == 0) & (rejected | (pending == 0))),
                     queued.eq(pending != 0), rejected_s.eq(rejected)]

        beats_left = Signal(beats_shape)   # beats still to come in this frame
        at_last = Signal()         # beats_left == 1
        over = Signal()            # the frame ran past its last beat
        frame_bad = Signal()       # the frame has the wrong length
        closing = Signal()         # its tlast has come: the unpacker drains
        words_left = Signal(words_shape)   # words still to write
        words_open = Signal()      # words_left != 0
        waddr = Signal(words_shape)        # the next word's address
        beats = Signal(beats_shape)        # of the dispatched load's frame
        m.d.comb += beats.eq(Mux(kind == Xfer.A, beats_of(head.words, widths[Xfer.A]),
                                 Mux(kind == Xfer.B, beats_of(head.words, widths[Xfer.B]),
                                     beats_of(head.words, widths[Xfer.C]))))
        with m.If(xfer_start):
            m.d.sync += [beats_left.eq(beats), at_last.eq(beats == 1), over.eq(0),
                         frame_bad.eq(0), closing.eq(0), words_left.eq(head.words),
                         words_open.eq(head.words != 0), waddr.eq(0)]
        loading = (xfer == Xfer.A) | (xfer == Xfer.B) | (xfer == Xfer.C)
        taking = loading & ~closing
        # The unpacker of this transfer's word width; its outputs are selected by and-or
        # (assigned whole: see hw.framer).
        word_valid = Signal()
        word = Signal(max(unpackers))
        draining = Signal()        # the unpacker of this transfer still holds a word
        tready = Signal()
        valids, words, busies, readies = [], [], [], []
        for width, unp in unpackers.items():
            mine = Cat(*(xfer == kind for kind in widths if widths[kind] == width)).any()
            m.d.comb += [unp.clear.eq(xfer_start), unp.o.ready.eq(1),
                         unp.s_axis.tdata.eq(self.s_axis.tdata),
                         unp.s_axis.tvalid.eq(self.s_axis.tvalid & taking & mine)]
            valids.append(mine & unp.o.valid)
            words.append(Mux(mine, unp.o.payload, 0))
            busies.append(mine & unp.busy)
            readies.append(mine & unp.s_axis.tready)
        m.d.comb += [word_valid.eq(Cat(*valids).any()), draining.eq(Cat(*busies).any()),
                     tready.eq(Cat(*readies).any())]
        m.d.comb += word.eq(reduce(operator.or_, words))
        beat = self.s_axis.tvalid & self.s_axis.tready & taking

        # Buffer writes are registered: the engine's write enables fan out to many memories.
        write = word_valid & words_open
        m.d.sync += [
            eng.a_we.eq(write & (xfer == Xfer.A)), eng.a_addr.eq(waddr),
            eng.a_data.eq(word[:8 * rows]),
            eng.b_we.eq(write & (xfer == Xfer.B)), eng.b_addr.eq(waddr), eng.b_data.eq(word[:W]),
            eng.c_we.eq(write & (xfer == Xfer.C)), eng.c_addr.eq(waddr),
            eng.c_data.eq(word[:16 * cols]),
        ]
        with m.If(write):
            m.d.sync += [words_left.eq(words_left - 1), words_open.eq(words_left != 1),
                         waddr.eq(waddr + 1)]

        first_beat = Signal()
        with m.If(xfer_start):
            m.d.sync += first_beat.eq(1)
        with m.If(beat):
            m.d.sync += [beats_left.eq(beats_left - 1), at_last.eq(beats_left == 2),
                         first_beat.eq(0)]
            with m.If(first_beat):
                m.d.sync += first_in.eq(clock)
            with m.If(self.s_axis.tlast):
                m.d.sync += closing.eq(1)
                with m.If(~at_last | over):
                    m.d.sync += frame_bad.eq(1)
            with m.Elif(at_last):
                # The frame is longer than it should be: keep what came, drop the rest.
                m.d.sync += over.eq(1)
        # The load ends once its frame has ended and every word it needs is written (the
        # rest of the last beat is dropped).
        with m.If(loading & closing & (~draining | ~words_open)):
            m.d.sync += xfer.eq(Xfer.IDLE)
            with m.If(frame_bad):
                fail()

        # Read C: the accumulator words in address order, every lane through the output
        # conversion, packed into beats ------------------------------------------------------
        w = self._acc_fmt.width
        if self._fp8_out:
            conv5 = [FPConvert(self._acc_fmt, E5M2, "rne", True) for _ in range(cols)]
            conv4 = [FPConvert(self._acc_fmt, E4M3, "rne", True) for _ in range(cols)]
            for c in range(cols):
                m.submodules[f"to_e5m2_{c}"] = conv5[c]
                m.submodules[f"to_e4m3_{c}"] = conv4[c]
            lat = max(conv5[0].latency, conv4[0].latency)
        else:
            lat = 0
        # Room for every read in flight (five cycles to the converters, then their latency)
        # and a few more, so that reads are issued every cycle while the sink takes them.
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(width=c_word + 1,
                                                                  depth=lat + 10)
        inflight = Signal(range(lat + 14))
        reading = xfer == Xfer.READ
        to_issue = Signal(range(acc_depth + 1))  # read addresses still to issue
        raddr = Signal(range(acc_depth + 1))
        issue_last = Signal()  # to_issue == 1
        issuing = Signal()     # to_issue != 0
        # Registered, so a cycle late: it keeps room for the read it may issue in the cycle it
        # is computed and the one after.
        room = Signal()
        m.d.sync += room.eq(out_fifo.level + inflight + 3 < out_fifo.depth)
        issue = reading & issuing & room
        m.d.sync += eng.c_raddr.eq(raddr)
        with m.If(issue):
            m.d.sync += [to_issue.eq(to_issue - 1), issue_last.eq(to_issue == 2),
                         raddr.eq(raddr + 1)]
            with m.If(issue_last):
                m.d.sync += issuing.eq(0)
        with m.If(xfer_start):
            m.d.sync += [to_issue.eq(head.words), issue_last.eq(head.words == 1),
                         issuing.eq(head.words != 0), raddr.eq(0)]

        # The read data is registered before the converters (block RAM outputs are slow).
        # Address register, three cycles of the engine's read, the data register.
        rd_valid = delay(m, issue, 5, "rd_valid", reset_less=False)
        rd_last = delay(m, issue_last, 5, "rd_last", reset_less=False)
        c_q = Signal.like(eng.c_rdata)
        m.d.sync += c_q.eq(eng.c_rdata)
        raw = delay(m, c_q, lat, "raw")
        valid_d = delay(m, rd_valid, lat, "rd_valid_c", reset_less=False)
        last_d = delay(m, rd_last, lat, "rd_last_c", reset_less=False)
        if self._fp8_out:
            lanes = [c_q[w * c:w * c + w] for c in range(cols)]
            r5, r4 = [], []
            for c in range(cols):
                m.d.comb += [conv5[c].a.eq(lanes[c]), conv4[c].a.eq(lanes[c])]
                r5.append(delay(m, conv5[c].r, lat - conv5[c].latency, f"r5_{c}"))
                r4.append(delay(m, conv4[c].r, lat - conv4[c].latency, f"r4_{c}"))
            value = Mux(rd_fmt == OutFmt.E5M2, Cat(*r5),
                        Mux(rd_fmt == OutFmt.E4M3, Cat(*r4), raw))
        else:
            value = raw
        m.d.comb += [out_fifo.w_data.eq(Cat(value, Signal(c_word - len(raw)), last_d)),
                     out_fifo.w_en.eq(valid_d)]
        m.d.sync += inflight.eq(inflight + issue - valid_d)
        # 16-bit codes leave in words of c_word bits, FP8 codes in words of half that.
        packers = {OutFmt.ACC: Packer(c_word, W)}
        if self._fp8_out:
            packers[OutFmt.E5M2] = Packer(c_word // 2, W)
        # The stream out comes from one of the packers or the update framer: selected by
        # and-or, every signal assigned whole (see hw.framer).
        sources = []           # (selected, AXI4-Stream of the source)
        r_ens = []
        for fmt, pk in packers.items():
            m.submodules[f"pack_{fmt.name.lower()}"] = pk
            mine = Signal(name=f"read_{fmt.name.lower()}")
            m.d.comb += mine.eq(reading & ((rd_fmt == OutFmt.ACC) if fmt == OutFmt.ACC
                                           else (rd_fmt != OutFmt.ACC)))
            m.d.comb += [pk.i.payload.data.eq(out_fifo.r_data[:pk.word_width]),
                         pk.i.payload.last.eq(out_fifo.r_data[c_word]),
                         pk.i.valid.eq(out_fifo.r_rdy & mine),
                         pk.m_axis.tready.eq(mine & self.m_axis.tready)]
            r_ens.append(mine & pk.i.ready)
            sources.append((mine, pk.m_axis))
        m.d.comb += out_fifo.r_en.eq(Cat(*r_ens).any())
        with m.If(reading & self.m_axis.tvalid & self.m_axis.tready & self.m_axis.tlast):
            m.d.sync += [xfer.eq(Xfer.IDLE), last_out.eq(clock)]

        # UPDATE: elements in, results out, through the SGD unit (hw.framer) ---------------
        updating = Signal()
        if upd is not None:
            m.d.comb += updating.eq(xfer == Xfer.UPDATE)
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
                         framer.s_axis.tdata.eq(self.s_axis.tdata),
                         framer.s_axis.tvalid.eq(self.s_axis.tvalid),
                         framer.s_axis.tlast.eq(self.s_axis.tlast),
                         framer.m_axis.tready.eq(self.m_axis.tready)]
            with m.If(framer.done):
                m.d.sync += xfer.eq(Xfer.IDLE)
                with m.If(framer.error):
                    fail()

            sources.append((updating, framer.m_axis))
            tready = (taking & tready) | (updating & framer.s_axis.tready)
        else:
            tready = taking & tready
        m.d.comb += self.s_axis.tready.eq(tready)
        for name in ("tdata", "tkeep", "tvalid", "tlast"):
            m.d.comb += getattr(self.m_axis, name).eq(
                reduce(operator.or_, (Mux(sel, getattr(axis, name), 0) for sel, axis in sources)))
        return m
