"""A UART link to the accelerator: AXI4-Lite register access and AXI4-Stream frames as bytes.

Ref: docs/host-interface.md, section "UART link"; :mod:`sim.link` is the host side.

:class:`UartBridge` turns commands received on ``rx`` into AXI4-Lite transactions and stream
beats for the accelerator, and sends their answers and every beat the accelerator streams out
on ``tx``. :class:`BridgedAccelerator` is the bridge wired to :class:`hw.top.Accelerator`: the
whole design of a board but its pins.

Protocol (8N1, ``baud = f_clk / divisor``; every multi-byte field little-endian):

============================  ================================  =================================
host to device                device to host                    what it does
============================  ================================  =================================
``'W'`` addr(1) data(4)       ``'w'`` resp(1)                   AXI4-Lite write; resp is BRESP
``'R'`` addr(1)               ``'r'`` data(4) resp(1)           AXI4-Lite read; resp is RRESP
``'S'`` n(2) last(1) beats    ``'k'``                           ``n`` beats (2 bytes each) to the
                                                                accelerator's stream input,
                                                                ``tlast`` on the last if
                                                                ``last`` = 1; ``'k'`` once the
                                                                accelerator has taken the last
``'Z'``                       ``'z'``                           reset the accelerator (16
                                                                cycles) and drop the beats
                                                                waiting to be sent
``'I'``                       ``'i'`` 0xB1 version(1) BLOCK(2)  identify the bridge (version 1)
any other byte ``c``          ``'?'`` ``c``                     a protocol error, not a hang
(unsolicited)                 ``'D'``/``'L'`` beat(2)           a beat the accelerator streamed
                                                                out; ``'L'`` when it had tlast
============================  ================================  =================================

Flow control: a block of ``'S'`` has 1 to ``BLOCK = fifo_depth // 4`` beats, so it and its
header always fit the receive FIFO; the host sends a frame as consecutive blocks and waits for
each ``'k'`` before sending the next (``n = 0`` sends no beat and answers ``'k'``). Commands are
executed one at a time, in order. Beat packets and answers never interleave within a packet;
beats may arrive between a command and its answer, so the host sorts packets by their first
byte. The device takes a beat from the accelerator only when it has room to send it.

Resynchronisation: when the command parser is inside a command and makes no progress for
``timeout_cycles`` (no byte arrives, or the accelerator does not take a beat) it drops the
command and waits for the next. A host that lost track stays silent that long, then sends
``'Z'`` and waits for ``'z'``. A block dropped this way leaves its remaining bytes to be read as
commands: the host must resynchronise, as above, after any timeout.
"""

from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Instance, Module,
                          Mux, ResetSignal, Signal)
from amaranth.lib import fifo
from amaranth.lib.wiring import In, Out, connect

from .axi import AXI4LiteSignature, AXI4StreamSignature
from .common import CheckedComponent
from .top import Accelerator
from .uart import UartRx, UartTx, check_divisor

__all__ = ["UartBridge", "BridgedAccelerator", "BeatSlice", "BRIDGE_MAGIC", "BRIDGE_VERSION",
           "RESET_CYCLES", "TIMEOUT_MIN_BITS"]

#: First byte of the answer to ``'I'``.
BRIDGE_MAGIC = 0xB1
#: Protocol version, second byte of the answer to ``'I'``.
BRIDGE_VERSION = 1
#: Cycles ``dev_rst`` is held for ``'Z'``.
RESET_CYCLES = 16
#: The shortest allowed timeout, in bit times. While an UPDATE streams its results out, the
#: accelerator may hold a beat back for about one element's output (two beat packets, 60 bit
#: times); a timeout must never cut a legitimate wait short.
TIMEOUT_MIN_BITS = 256



class UartBridge(CheckedComponent):
    """Serial-port bridge: byte commands to an AXI4-Lite master and AXI4-Stream ports.

    ``rx`` feeds a :class:`~hw.uart.UartRx` whose bytes queue in a ``fifo_depth``-byte FIFO
    (block RAM, then a register) for the command parser, which runs one command at a time.
    Packets go out through a :class:`~hw.uart.UartTx`, an answer before a waiting beat, with
    no packet buffer: a beat is sent from the one-beat buffer that takes it from ``s_axis``,
    and an answer from the AXI4-Lite response itself, which the bridge acknowledges (BREADY,
    RREADY) once the answer is out. The protocol is in the module's docstring.

    Measured with ``synth.flow.synthesize`` (one seed, registered ports): at a divisor of 868,
    571 LUTs and one block RAM on the LFE5U-25F, 130 MHz; at 104, 647 logic cells on the iCE40
    UP5K, 48 MHz.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (at least 4).
    fifo_depth : int
        Bytes of the receive FIFO, at least 16; a block has at most ``fifo_depth // 4`` beats.
    timeout_cycles : int, optional
        Cycles without progress after which the parser drops a command; at least
        :data:`TIMEOUT_MIN_BITS` bit times. Default ``2**20`` (10.5 ms at 100 MHz), or the
        minimum if that is longer.

    Members
    -------
    rx : In(1)
        Serial input, idle high.
    tx : Out(1)
        Serial output, idle high.
    m_axil : Out(AXI4LiteSignature(8, 32))
        For the top's ``s_axil``.
    m_axis : Out(AXI4StreamSignature(16))
        16-bit beats for the top's ``s_axis``.
    s_axis : In(AXI4StreamSignature(16))
        From the top's ``m_axis``.
    dev_rst : Out(1)
        Reset request for the accelerator (a register), high for :data:`RESET_CYCLES`
        cycles on ``'Z'``.
    """

    @staticmethod
    def check_parameters(divisor, fifo_depth=512, timeout_cycles=None):
        """Raise ``ValueError`` unless the parameters make a bridge; returns the timeout in
        cycles (its default filled in)."""
        check_divisor(divisor)
        if (isinstance(fifo_depth, bool) or not isinstance(fifo_depth, int)
                or not 16 <= fifo_depth < 4 << 16):
            raise ValueError(f"FIFO depth must be an integer from 16 to {(4 << 16) - 1} (a "
                             f"block of fifo_depth // 4 beats is counted in 16 bits), not "
                             f"{fifo_depth!r}")
        least = TIMEOUT_MIN_BITS * divisor
        if timeout_cycles is None:
            timeout_cycles = max(1 << 20, least)
        if (isinstance(timeout_cycles, bool) or not isinstance(timeout_cycles, int)
                or timeout_cycles < least):
            raise ValueError(f"Timeout must be an integer of at least {TIMEOUT_MIN_BITS} bit "
                             f"times ({least} cycles at divisor {divisor}), not "
                             f"{timeout_cycles!r}")
        return timeout_cycles

    def __init__(self, divisor, *, fifo_depth=512, timeout_cycles=None):
        timeout_cycles = self.check_parameters(divisor, fifo_depth, timeout_cycles)
        self._divisor = divisor
        self._fifo_depth = fifo_depth
        self._timeout = timeout_cycles
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            "m_axil": Out(AXI4LiteSignature(addr_width=8, data_width=32)),
            "m_axis": Out(AXI4StreamSignature(16)),
            "s_axis": In(AXI4StreamSignature(16)),
            "dev_rst": Out(1),
        })

    divisor = property(lambda self: self._divisor)
    fifo_depth = property(lambda self: self._fifo_depth)
    timeout_cycles = property(lambda self: self._timeout)

    @property
    def block(self):
        """The most beats of one ``'S'`` block."""
        return self._fifo_depth // 4

    @property
    def ident(self):
        """The four bytes after ``'i'``, as a little-endian word."""
        return BRIDGE_MAGIC | BRIDGE_VERSION << 8 | self.block << 16

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = UartRx(self._divisor)
        m.submodules.uart_tx = utx = UartTx(self._divisor)
        m.submodules.rx_fifo = rxf = fifo.SyncFIFOBuffered(width=8, depth=self._fifo_depth)
        # The host's flow control keeps the FIFO from filling; a byte that finds it full is
        # lost, and the parser's timeout recovers.
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     rxf.w_data.eq(urx.o.payload), rxf.w_en.eq(urx.o.valid)]

        cmd = Signal(8, reset_less=True)
        # Arguments shift in from the top: after W's five bytes the address is in [0:8] and
        # the data in [8:40]; R's address ends in [32:40], S's header in [16:40] and a beat in
        # [24:40]. A plain shift register: answers are sent from elsewhere.
        args = Signal(40, reset_less=True)
        need = Signal(3)                       # argument bytes still to come
        left = Signal(16, reset_less=True)     # beats of the block still to pass on
        at_last = Signal()                     # left == 1
        blk_last = Signal()                    # the block ends the frame
        aw_done = Signal()
        w_done = Signal()
        count = Signal(range(RESET_CYCLES))
        flush = Signal()                       # 'Z': resetting the accelerator

        # Timeout: reloaded on every cycle of progress, counted down while the parser waits.
        stall = Signal()
        timer = Signal(range(self._timeout))
        expired = timer == 0
        m.d.sync += timer.eq(Mux(stall, timer - 1, self._timeout - 1))

        # A register slice after the FIFO: the block RAM's output is slow (5.8 ns clock to out
        # on the ECP5), too slow to decode a command from in the same cycle at 100 MHz.
        rdy = Signal()                         # a byte is in `byte`
        byte = Signal(8, reset_less=True)
        pop = Signal()                         # the parser takes it
        m.d.comb += rxf.r_en.eq(~rdy | pop)
        with m.If(rxf.r_rdy & (~rdy | pop)):
            m.d.sync += [rdy.eq(1), byte.eq(rxf.r_data)]
        with m.Elif(pop):
            m.d.sync += rdy.eq(0)
        with m.If(pop):
            m.d.sync += [args.eq(Cat(args[8:], byte)), need.eq(need - 1)]

        # Beats from the accelerator wait here until they have been sent.
        beat_valid = Signal()
        beat_data = Signal(16, reset_less=True)
        beat_last = Signal()
        m.d.comb += self.s_axis.tready.eq(~beat_valid & ~flush)
        with m.If(self.s_axis.tvalid & self.s_axis.tready):
            m.d.sync += [beat_valid.eq(1), beat_data.eq(self.s_axis.tdata),
                         beat_last.eq(self.s_axis.tlast)]

        # The packet being sent, byte `tx_index` of it (0: the tag). There is no packet
        # buffer: a beat is sent from its buffer, and an answer from where it is, the AXI4-Lite
        # slave holding BRESP or RDATA and RRESP until the answer is out (BREADY and RREADY rise
        # only then). An answer goes before a beat.
        tx_busy = Signal()
        tx_answer = Signal()                   # the packet is an answer (else a beat)
        tx_index = Signal(range(6))
        resp_req = Signal()
        resp_tag = Signal(8)
        resp_len = Signal(range(7))
        resp_byte = Signal(8)
        with m.Switch(cmd):
            with m.Case(ord("W")):
                m.d.comb += [resp_tag.eq(ord("w")), resp_len.eq(2),
                             resp_byte.eq(self.m_axil.bresp)]
            with m.Case(ord("R")):
                m.d.comb += [resp_tag.eq(ord("r")), resp_len.eq(6),
                             resp_byte.eq(self.m_axil.rresp)]
                with m.Switch(tx_index):
                    for i in range(4):
                        with m.Case(i + 1):
                            m.d.comb += resp_byte.eq(self.m_axil.rdata.word_select(i, 8))
            with m.Case(ord("S")):
                m.d.comb += [resp_tag.eq(ord("k")), resp_len.eq(1)]
            with m.Case(ord("Z")):
                m.d.comb += [resp_tag.eq(ord("z")), resp_len.eq(1)]
            with m.Case(ord("I")):
                m.d.comb += [resp_tag.eq(ord("i")), resp_len.eq(5)]
                with m.Switch(tx_index):
                    for i in range(4):
                        with m.Case(i + 1):
                            m.d.comb += resp_byte.eq((self.ident >> 8 * i) & 0xFF)
            with m.Default():
                m.d.comb += [resp_tag.eq(ord("?")), resp_len.eq(2), resp_byte.eq(cmd)]
        beat_tag = Mux(beat_last, Const(ord("L"), 8), Const(ord("D"), 8))
        beat_byte = Mux(tx_index == 1, beat_data[:8], beat_data[8:])
        m.d.comb += [
            utx.i.valid.eq(tx_busy),
            utx.i.payload.eq(Mux(tx_answer, Mux(tx_index == 0, resp_tag, resp_byte),
                                 Mux(tx_index == 0, beat_tag, beat_byte))),
        ]
        with m.If(utx.i.valid & utx.i.ready):
            m.d.sync += tx_index.eq(tx_index + 1)
            with m.If(tx_index == Mux(tx_answer, resp_len - 1, 2)):
                m.d.sync += tx_busy.eq(0)
                with m.If(~tx_answer):
                    m.d.sync += beat_valid.eq(0)
        with m.If(~tx_busy):
            with m.If(resp_req):
                m.d.sync += [tx_busy.eq(1), tx_answer.eq(1), tx_index.eq(0)]
            with m.Elif(beat_valid & ~flush):
                m.d.sync += [tx_busy.eq(1), tx_answer.eq(0), tx_index.eq(0)]
        with m.If(flush & ~(tx_busy & ~tx_answer)):
            m.d.sync += beat_valid.eq(0)      # dropped, unless it is on its way out

        m.d.comb += [
            self.m_axil.awaddr.eq(args[0:8]), self.m_axil.wdata.eq(args[8:40]),
            self.m_axil.wstrb.eq(0xF), self.m_axil.araddr.eq(args[32:40]),
            self.m_axis.tdata.eq(args[24:40]), self.m_axis.tkeep.eq(0b11),
            self.m_axis.tlast.eq(blk_last & at_last),
        ]
        m.d.sync += self.dev_rst.eq(flush)

        def wait_byte():
            m.d.comb += [pop.eq(rdy), stall.eq(~rdy)]
            with m.If(~rdy & expired):
                m.next = "IDLE"

        with m.FSM(name="parser"):
            with m.State("IDLE"):
                m.d.comb += pop.eq(rdy)
                with m.If(rdy):
                    m.d.sync += cmd.eq(byte)
                    with m.Switch(byte):
                        for c, n in (("W", 5), ("R", 1), ("S", 3)):
                            with m.Case(ord(c)):
                                m.d.sync += need.eq(n)
                                m.next = "ARGS"
                        with m.Case(ord("Z")):
                            m.d.sync += count.eq(RESET_CYCLES - 1)
                            m.next = "RESET"
                        with m.Default():          # 'I', or '?' and the byte
                            m.next = "ANSWER"

            with m.State("ARGS"):
                wait_byte()
                with m.If(rdy & (need == 1)):
                    with m.Switch(cmd):
                        with m.Case(ord("W")):
                            m.next = "WRITE"
                        with m.Case(ord("R")):
                            m.next = "READ"
                        with m.Default():
                            m.next = "BLOCK"

            with m.State("WRITE"):
                # The address and data handshakes may complete in different cycles.
                aw_ok = aw_done | self.m_axil.awready
                w_ok = w_done | self.m_axil.wready
                m.d.comb += [self.m_axil.awvalid.eq(~aw_done), self.m_axil.wvalid.eq(~w_done)]
                with m.If(aw_ok & w_ok):
                    m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                    m.next = "WRITE_RESP"
                with m.Else():
                    m.d.sync += [aw_done.eq(aw_ok), w_done.eq(w_ok)]

            with m.State("WRITE_RESP"):
                with m.If(self.m_axil.bvalid):
                    m.next = "ANSWER"

            with m.State("READ"):
                m.d.comb += self.m_axil.arvalid.eq(1)
                with m.If(self.m_axil.arready):
                    m.next = "READ_DATA"

            with m.State("READ_DATA"):
                with m.If(self.m_axil.rvalid):
                    m.next = "ANSWER"

            with m.State("BLOCK"):
                n = args[16:32]
                m.d.sync += [left.eq(n), at_last.eq(n == 1), blk_last.eq(args[32]),
                             need.eq(2)]
                with m.If(n == 0):
                    m.next = "ANSWER"
                with m.Else():
                    m.next = "BEAT"

            with m.State("BEAT"):
                wait_byte()
                with m.If(rdy & (need == 1)):
                    m.next = "BEAT_OUT"

            with m.State("BEAT_OUT"):
                m.d.comb += [self.m_axis.tvalid.eq(1), stall.eq(~self.m_axis.tready)]
                with m.If(self.m_axis.tready):
                    m.d.sync += [left.eq(left - 1), at_last.eq(left == 2), need.eq(2)]
                    with m.If(at_last):
                        m.next = "ANSWER"
                    with m.Else():
                        m.next = "BEAT"
                with m.Elif(expired):
                    m.next = "IDLE"

            with m.State("RESET"):
                m.d.comb += flush.eq(1)
                m.d.sync += count.eq(count - 1)
                with m.If(count == 0):
                    m.next = "ANSWER"

            with m.State("ANSWER"):
                m.d.comb += resp_req.eq(1)
                with m.If(~tx_busy):
                    m.next = "SENDING"

            with m.State("SENDING"):
                with m.If(~tx_busy):
                    # The answer is out: complete the write or read it reported (BREADY and
                    # RREADY may be high without BVALID and RVALID).
                    m.d.comb += [self.m_axil.bready.eq(1), self.m_axil.rready.eq(1)]
                    m.next = "IDLE"
        return m


class BeatSlice(CheckedComponent):
    """A one-beat register between the bridge and the accelerator's stream input.

    The bridge sits far from the accelerator's frame loader; without the register a beat's
    handshake crosses the chip twice in a cycle (the loader's ``tready`` to the bridge, the
    bridge's ``tvalid`` back to the loader). A plain register slice would take beats the
    accelerator refuses (no load runs), and a beat would outlive its frame to land in the next;
    this one keeps the accelerator's refusal:

    * it takes a beat only when it is empty and ``m_axis.tready`` was high a cycle before;
    * after passing a beat with ``tlast`` it takes nothing until ``m_axis.tready`` has been
      low while it was empty (the frame's receiver has stopped taking beats).

    So it relies on a receiver that stops taking beats after ``tlast`` (the accelerator's
    loads and updates do) and takes a beat it was ready for a cycle before (they do: nothing
    but a ``tlast`` or a reset ends a frame). It passes a beat every other cycle at most, far
    faster than a serial link brings them. ``tkeep`` passes as all ones.
    """

    def __init__(self, width):
        super().__init__({"s_axis": In(AXI4StreamSignature(width)),
                          "m_axis": Out(AXI4StreamSignature(width))})

    def elaborate(self, platform):
        m = Module()
        src, dst = self.s_axis, self.m_axis
        full = Signal()
        data = Signal.like(src.tdata, name="data", reset_less=True)
        last = Signal(reset_less=True)
        was_ready = Signal()       # dst.tready, a cycle ago
        closed = Signal()          # a tlast has passed and the receiver has not yet stopped
        m.d.sync += was_ready.eq(dst.tready)
        m.d.comb += [src.tready.eq(~full & was_ready & ~closed),
                     dst.tvalid.eq(full), dst.tdata.eq(data), dst.tlast.eq(last),
                     dst.tkeep.eq(-1)]
        with m.If(src.tvalid & src.tready):
            m.d.sync += [full.eq(1), data.eq(src.tdata), last.eq(src.tlast)]
        with m.Elif(dst.tvalid & dst.tready):
            m.d.sync += full.eq(0)
            with m.If(last):
                m.d.sync += closed.eq(1)
        with m.If(~dst.tready & ~full):
            m.d.sync += closed.eq(0)
        return m


class BridgedAccelerator(CheckedComponent):
    """:class:`hw.top.Accelerator` behind a :class:`UartBridge`: a board's design but its pins.

    The accelerator is reset by ``rst`` and by the bridge's ``dev_rst`` (``'Z'``), one cycle
    later, through one register: its reset reaches thousands of flip-flops, so it starts at a
    flip-flop rather than at a gate, and on an ECP5 it travels on a global network (a ``DCCA``).

    Parameters
    ----------
    rows, cols : int
        The array, as for :class:`~hw.top.Accelerator`.
    divisor : int
        Clock cycles per bit of the serial link.
    fifo_depth, timeout_cycles :
        As for :class:`UartBridge`.
    beat_slice : bool
        Beats into the accelerator pass a :class:`BeatSlice` (a fast clock on a large chip);
        ``False`` connects the bridge straight to the accelerator (a slow clock on a full
        small chip, where its few cells are what is missing).
    **accelerator_kwargs :
        The other parameters of :class:`~hw.top.Accelerator` (buffer depths, ...). Its
        stream ports are 16 bits wide, the bridge's beats.

    Members
    -------
    rx : In(1)
        Serial input, idle high.
    tx : Out(1)
        Serial output, idle high.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)

    def __init__(self, rows=4, cols=4, *, divisor, fifo_depth=512, timeout_cycles=None,
                 beat_slice=True, **accelerator_kwargs):
        # The bridge's parameters are checked first: a constructor that raises leaves nothing
        # behind, and the accelerator then has none to fail after it.
        UartBridge.check_parameters(divisor, fifo_depth, timeout_cycles)
        width = accelerator_kwargs.pop("stream_width", 16)
        if width != 16:
            raise ValueError(f"The UART bridge carries 16-bit beats: stream_width must be 16, "
                             f"not {width!r}")
        self._accelerator = Accelerator(rows, cols, stream_width=16, **accelerator_kwargs)
        self._bridge = UartBridge(divisor, fifo_depth=fifo_depth, timeout_cycles=timeout_cycles)
        self._beat_slice = bool(beat_slice)
        super().__init__()

    bridge = property(lambda self: self._bridge)
    accelerator = property(lambda self: self._accelerator)

    def elaborate(self, platform):
        m = Module()
        m.submodules.bridge = bridge = self._bridge
        acc = self._accelerator
        # The accelerator runs in a domain of its own on the same clock, whose reset is one
        # register: the domain's reset or the bridge's.
        m.domains.acc = ClockDomain("acc", local=True)
        rst_q = Signal(init=1, reset_less=True)
        m.d.sync += rst_q.eq(bridge.dev_rst | ResetSignal("sync"))
        rst = rst_q
        if getattr(platform, "family", None) == "ecp5":
            rst = Signal()
            m.submodules.acc_rst_buffer = Instance("DCCA", i_CLKI=rst_q, i_CE=1, o_CLKO=rst)
        m.d.comb += [ClockSignal("acc").eq(ClockSignal("sync")), ResetSignal("acc").eq(rst)]
        m.submodules.accelerator = DomainRenamer("acc")(acc)
        m.d.comb += [bridge.rx.eq(self.rx), self.tx.eq(bridge.tx)]
        connect(m, bridge.m_axil, acc.s_axil)
        connect(m, acc.m_axis, bridge.s_axis)

        if self._beat_slice:
            # The beats into the accelerator pass a register beside it (see BeatSlice).
            m.submodules.slice = beat_slice = DomainRenamer("acc")(BeatSlice(16))
            connect(m, bridge.m_axis, beat_slice.s_axis)
            connect(m, beat_slice.m_axis, acc.s_axis)
        else:
            connect(m, bridge.m_axis, acc.s_axis)
        return m
