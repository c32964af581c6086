"""Host driver of the accelerator top: registers, stream transfers and GEMM commands.

Ref: docs/host-interface.md (register map, stream framing, error codes).

:class:`AcceleratorHost` is the API a program uses to run GEMMs: load the operands, start a
command, wait for it, read the result and the cycle counters. It talks to the device through a
:class:`Transport`, four primitives (read and write a register, send and receive a stream
frame) and a way to wait. :class:`CocotbTransport` implements them with cocotbext-axi against
the simulated top; a board driver implements the same four over its own link (UART, PCIe, ...)
and reuses the host unchanged (the pattern of Glasgow's applet interfaces).

Every argument is checked on the host before anything reaches the device, with the message a
user needs; the device's own checks (STATUS error codes) raise :class:`AcceleratorError`.
"""

from typing import NamedTuple

import numpy as np

from fp8accel.hw import regs
from fp8accel.hw.fp.format import DLFLOAT16, E4M3, E5M2, FP8_FORMATS, PRESETS, format_by_name
from fp8accel.hw.top import (
    ID_VALUE,
    UPDATE_MAX,
    UPDATE_RNE,
    Ctrl,
    OutFmt,
    Reg,
    Resp,
    TopError,
)

from . import frames
from .tiling import plan_gemm

__all__ = [
    "ERROR_NAMES",
    "AcceleratorError",
    "AcceleratorHost",
    "AcceleratorTimeout",
    "CocotbTransport",
    "QueueState",
    "Status",
    "Transport",
    "attach",
    "bus_error",
    "gemm_cycle_bound",
    "options_word",
]

#: STATUS error codes: ``code -> (name, meaning)`` (from the register description).
ERROR_NAMES = {code: (code.name, regs.describe(code).replace("`", ""))
               for code in regs.ErrorCode if code != regs.ErrorCode.NONE}

_ACTIONS = {Ctrl.START: "START", Ctrl.LOAD_A: "LOAD_A", Ctrl.LOAD_B: "LOAD_B",
            Ctrl.LOAD_C: "LOAD_C", Ctrl.READ_C: "READ_C", Ctrl.UPDATE: "UPDATE"}

_DIM_MAX = (1 << 16) - 1       # M, N and K registers are 16 bits wide
_CHUNK_LOG2_MAX = 15           # OPTIONS[7:4]


class AcceleratorError(Exception):
    """The device rejected an action: STATUS showed error ``code``.

    Members
    -------
    code : int
        The STATUS error code (0 for a failure that is not one: a bad register response, a
        wrong ID).
    name : str
        ``"ZERO_DIM"``, ``"TOO_LARGE"``, ... (``"UNKNOWN"`` for a code not in the map).
    action : str or None
        The action that failed (``"START"``, ``"LOAD_A"``, ...).
    """

    def __init__(self, code, name=None, action=None, detail=None):
        self.code = int(code)
        known = ERROR_NAMES.get(self.code, ("UNKNOWN", "an undocumented error code"))
        self.name = name or known[0]
        self.action = action
        what = f"{action} failed" if action else "The accelerator reported an error"
        super().__init__(f"{what}: error {self.code} ({self.name}: {detail or known[1]})")


def bus_error(resp, what):
    """The :class:`AcceleratorError` for AXI4-Lite response ``resp`` (BRESP or RRESP) of
    ``what`` (``"Writing register 0x10"``), or ``None`` for OKAY."""
    resp = int(resp)
    if resp == Resp.OKAY:
        return None
    if resp == Resp.DECERR:
        return AcceleratorError(0, "DECERR", what, "no register at this address (RESP 3)")
    return AcceleratorError(0, "SLVERR", what,
                            f"the register refused the access: a read-only register, a "
                            f"write-only one, or a value with bits outside its fields "
                            f"(RESP {resp})")


class AcceleratorTimeout(TimeoutError):
    """An action did not finish in the time allowed (the device is stuck or far slower than
    expected); the message says which action and what STATUS showed last."""


class Status(NamedTuple):
    """STATUS, decoded: ``engine`` (a GEMM runs) and ``transfer`` (a stream transfer runs)
    tell apart what ``busy`` sums up."""
    busy: bool
    done: bool
    error: bool
    code: int
    engine: bool = False
    transfer: bool = False
    rejected: bool = False

    @classmethod
    def from_word(cls, word):
        f = regs.unpack("STATUS", word)
        return cls(bool(f["busy"]), bool(f["done"]), bool(f["error"]), int(f["code"]),
                   bool(f["engine"]), bool(f["transfer"]), bool(f["rejected"]))

    def __str__(self):
        return (f"busy={int(self.busy)} done={int(self.done)} error={int(self.error)} "
                f"code={self.code} engine={int(self.engine)} transfer={int(self.transfer)} "
                f"rejected={int(self.rejected)}")


class QueueState(NamedTuple):
    """QUEUE, decoded: commands ``pending`` (queued or running), ``errors`` waiting in ERRLOG,
    and ``completed`` (modulo 2**16; the ticket of the oldest pending command)."""
    pending: int
    errors: int
    completed: int

    @classmethod
    def from_word(cls, word):
        f = regs.unpack("QUEUE", word)
        return cls(int(f["pending"]), int(f["errors"]), int(f["completed"]))


def _retired(completed, ticket):
    """Whether the command of ``ticket`` has completed, given QUEUE.completed (both modulo
    2**16; fewer than 2**15 commands apart)."""
    return (completed - ticket - 1) & 0xFFFF < 0x8000


def _fp8_format(fmt, what):
    try:
        f = format_by_name(fmt)
    except ValueError:
        f = None
    if f not in FP8_FORMATS:
        raise ValueError(f"{what} must be 'e5m2' or 'e4m3', not {fmt!r}")
    return f


def _check_chunk(chunk):
    if chunk is None:
        return None
    if (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1
            or chunk > (1 << _CHUNK_LOG2_MAX) or chunk & (chunk - 1)):
        raise ValueError(f"Chunk length must be a power of two from 1 to {1 << _CHUNK_LOG2_MAX}"
                         f" or None, not {chunk!r}")
    return int(chunk)


def _check_rounding(rounding):
    if rounding not in ("rne", "rna"):
        raise ValueError(f"Accumulation rounding must be 'rne' or 'rna', not {rounding!r}")
    return rounding


def _out_code(out_fmt, acc_fmt=DLFLOAT16):
    """OPTIONS[17:16] for ``out_fmt``: ``None`` or the accumulator format, E5M2 or E4M3."""
    if out_fmt is None:
        return OutFmt.ACC
    try:
        f = format_by_name(out_fmt)
    except ValueError:
        f = None
    if f is acc_fmt:
        return OutFmt.ACC
    if f is E5M2:
        return OutFmt.E5M2
    if f is E4M3:
        return OutFmt.E4M3
    raise ValueError(f"Output format must be {acc_fmt.name.lower()!r} (the accumulator), 'e5m2'"
                     f" or 'e4m3', not {out_fmt!r}")


def _check_dim(value, name):
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
            or not 1 <= value <= _DIM_MAX):
        raise ValueError(f"{name} must be an integer from 1 to {_DIM_MAX}, not {value!r}")
    return int(value)


def _check_codes(x, name, bits, shape=None):
    """``x`` as an ``int64`` array of ``bits``-bit codes; integer dtypes only."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "ui":
        kind = "FP8 codes (uint8)" if bits == 8 else "accumulator codes (uint16)"
        raise TypeError(f"{name} must be an integer array of {kind}, not {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, not an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} has a zero dimension (shape {arr.shape})")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() >= (1 << bits):
        raise ValueError(f"{name} holds values outside 0..{(1 << bits) - 1}: not {bits}-bit "
                         f"codes")
    for dim, size in zip(["rows", "columns"], arr.shape):
        if size > _DIM_MAX:
            raise ValueError(f"{name} has {size} {dim}; at most {_DIM_MAX} fit the registers")
    return arr


def options_word(*, a_fmt=E5M2, b_fmt=E5M2, chunk=64, rounding="rne", transpose_a=False,
                 transpose_b=False, accumulate=False, out_fmt=None, acc_fmt=DLFLOAT16,
                 carry_in=False, carry_out=False, a_buf=0, b_buf=0, c_buf=0):
    """The OPTIONS register for these command options (docs/host-interface.md).

    ``transpose_a`` changes nothing: the host turns a transposed ``A`` as it loads it."""
    del transpose_a
    a_fmt = _fp8_format(a_fmt, "a_fmt")
    b_fmt = _fp8_format(b_fmt, "b_fmt")
    chunk = _check_chunk(chunk)
    _check_rounding(rounding)
    return regs.pack("OPTIONS", a_e4m3=a_fmt is E4M3, b_e4m3=b_fmt is E4M3,
                     chunk_log2=0 if chunk is None else chunk.bit_length() - 1,
                     no_chunk=chunk is None, rna=rounding == "rna",
                     trans_b=bool(transpose_b),
                     accumulate=bool(accumulate), carry_in=bool(carry_in),
                     carry_out=bool(carry_out), out_fmt=_out_code(out_fmt, acc_fmt),
                     a_buf=a_buf, b_buf=b_buf, c_buf=c_buf)


def gemm_cycle_bound(m, n, k, rows, cols):
    """A generous upper bound of the cycles of one GEMM, for timeouts: every pass of
    ``ceil(K / rows)`` per column tile costs at most its rows of ``A``, a full weight load
    (``rows * cols`` bytes, one a cycle) and the drain of the array, and then some."""
    passes = -(-k // rows) * -(-n // cols)
    return 4 * passes * (m + rows * cols + 16 * (rows + cols) + 64) + 10_000


# Transports -----------------------------------------------------------------------------------

class Transport:
    """The link between :class:`AcceleratorHost` and a device.

    A subclass implements register access over the AXI4-Lite port (or whatever bridges to it),
    whole stream frames in each direction, a wait measured in device clock cycles and a reset.
    A frame is given and returned as its bytes (:mod:`fp8accel.sim.host.frames`); the
    transport cuts them into beats of the device's width, ``tkeep`` on a partial last beat,
    and returns the bytes a frame out keeps (a transport that carries no ``tkeep`` returns its
    whole last beat: the host ignores bytes past a frame's end).
    """

    async def read_reg(self, addr):
        """The 32-bit value of the register at byte address ``addr``."""
        raise NotImplementedError

    async def write_reg(self, addr, value):
        """Write the 32-bit ``value`` to the register at ``addr``."""
        raise NotImplementedError

    async def send(self, data, timeout_cycles):
        """Send ``data`` (bytes) as one frame (``tlast`` on its last beat); return once the
        device has accepted every beat, or raise :class:`AcceleratorTimeout` after
        ``timeout_cycles``."""
        raise NotImplementedError

    async def recv(self, timeout_cycles):
        """Receive one frame from the device (up to its ``tlast``) as bytes."""
        raise NotImplementedError

    async def exchange(self, data, timeout_cycles):
        """Send ``data`` as one frame while receiving one frame from the device (an UPDATE
        streams its results out while its operands stream in); return the received bytes."""
        raise NotImplementedError

    async def wait_cycles(self, cycles):
        """Let ``cycles`` device clock cycles pass."""
        raise NotImplementedError

    async def reset(self):
        """Reset the device (and the link's own state)."""
        raise NotImplementedError


class CocotbTransport(Transport):
    """:class:`Transport` for the simulated top under cocotb, through cocotbext-axi.

    Parameters
    ----------
    dut : cocotb handle
        The top (``hw.top.Accelerator`` as Verilog): ports ``clk``, ``rst``, ``s_axil_*``,
        ``s_axis_*`` and ``m_axis_*``.
    period_ns : int
        Clock period; the caller runs the clock (``cocotb.clock.Clock``).
    quiet : bool
        Keep cocotbext-axi's per-transfer INFO messages (every frame, in full) out of the log.

    Members
    -------
    axil : cocotbext.axi.AxiLiteMaster
    source : cocotbext.axi.AxiStreamSource
        Host to device; ``source.set_pause_generator(...)`` inserts idle cycles.
    sink : cocotbext.axi.AxiStreamSink
        Device to host; ``sink.set_pause_generator(...)`` applies backpressure.
    """

    def __init__(self, dut, period_ns=10, quiet=True):
        import logging
        import warnings

        from cocotbext.axi import (
            AxiLiteBus,
            AxiLiteMaster,
            AxiStreamBus,
            AxiStreamSink,
            AxiStreamSource,
        )

        if quiet:
            # cocotbext-axi logs under "cocotb.<toplevel>.<bus>" and prints whole frames.
            logging.getLogger(f"cocotb.{dut._name}").setLevel(logging.WARNING)
            # cocotbext-axi 0.1.28 still uses APIs that cocotb 2.x deprecates
            # (setimmediatevalue, Task.kill, Edge): harmless, and a warning per call site.
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    module=r"cocotbext\.axi\.")
        self._dut = dut
        self._period = period_ns
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        # Bytes of 8 bits, from tkeep (a bit per byte of tdata).
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)

    async def read_reg(self, addr):
        resp = await self.axil.read(addr, 4)
        error = bus_error(resp.resp, f"Reading register 0x{addr:02x}")
        if error:
            raise error
        return int.from_bytes(resp.data, "little")

    async def write_reg(self, addr, value):
        resp = await self.axil.write(addr, int(value).to_bytes(4, "little"))
        error = bus_error(resp.resp, f"Writing register 0x{addr:02x}")
        if error:
            raise error

    async def _timed(self, awaitable, timeout_cycles, what):
        from cocotb.triggers import SimTimeoutError, with_timeout
        try:
            return await with_timeout(awaitable, timeout_cycles * self._period, "ns")
        except SimTimeoutError:
            raise AcceleratorTimeout(f"{what} did not finish within {timeout_cycles} cycles")\
                from None

    async def send(self, data, timeout_cycles):
        from cocotbext.axi import AxiStreamFrame
        data = bytes(data)
        if not data:
            raise ValueError("A frame has at least one byte")
        await self.source.send(AxiStreamFrame(data))
        try:
            await self._timed(self.source.wait(), timeout_cycles,
                              f"Sending a frame of {len(data)} bytes")
        except AcceleratorTimeout:
            # Drop what the device did not take, so that the next frame starts clean.
            self.source.assert_reset()
            self.source.clear()
            raise

    async def recv(self, timeout_cycles):
        frame = await self._timed(self.sink.recv(), timeout_cycles, "Receiving a frame")
        return bytes(frame.tdata)

    async def exchange(self, data, timeout_cycles):
        import cocotb
        sending = cocotb.start_soon(self.send(data, timeout_cycles))
        try:
            received = await self.recv(timeout_cycles)
        except BaseException:
            sending.cancel()
            raise
        await sending
        return received

    async def wait_cycles(self, cycles):
        from cocotb.triggers import RisingEdge, Timer
        # One timer instead of a Python callback per clock edge, then back onto an edge.
        if cycles > 1:
            await Timer((cycles - 1) * self._period, "ns")
        await RisingEdge(self._dut.clk)

    async def reset(self, cycles=4):
        from cocotb.triggers import ClockCycles, RisingEdge
        await RisingEdge(self._dut.clk)
        self._dut.rst.value = 1
        await ClockCycles(self._dut.clk, cycles)
        self._dut.rst.value = 0
        self.source.clear()
        self.sink.clear()
        await RisingEdge(self._dut.clk)


async def attach(dut, period_ns=10, *, idle=None, backpressure=None):
    """Start the clock of the simulated top ``dut``, attach an :class:`AcceleratorHost` over
    a :class:`CocotbTransport` and reset the device; returns the host.

    ``idle`` and ``backpressure`` are cocotbext-axi pause generators (an iterable of 0 and 1,
    1 pausing) for the stream source and sink, or ``None``.
    """
    from cocotb.clock import Clock

    Clock(dut.clk, period_ns, unit="ns").start(start_high=False)
    transport = CocotbTransport(dut, period_ns)
    if idle is not None:
        transport.source.set_pause_generator(idle)
    if backpressure is not None:
        transport.sink.set_pause_generator(backpressure)
    host = AcceleratorHost(transport)
    await host.reset()
    return host


# The host -------------------------------------------------------------------------------------

class AcceleratorHost:
    """Runs GEMMs on the accelerator through a :class:`Transport`.

    Matrices are NumPy arrays of codes: FP8 operands ``uint8`` (any integer dtype with values in
    range is accepted), accumulator values ``uint16``. A transposed operand is given as stored:
    ``load_a(X, transposed=True)`` takes ``X = A.T`` (``K x M``), so that ``X.T @ Y`` needs no
    transpose on the host.

    Typical use::

        host = AcceleratorHost(CocotbTransport(dut))
        await host.reset()
        C, cycles, active = await host.run_gemm(A, B, chunk=64, rounding="rne")

    The lower-level methods (:meth:`write_reg`, :meth:`command`, :meth:`wait_done`) skip the
    host-side checks, for tests of the device's own.
    """

    def __init__(self, transport):
        self._t = transport
        self._config = None
        self._options = 0
        self._out_fmt = None
        # What each buffer was last loaded with through this host, to catch a GEMM whose shape
        # or layout does not match its operands: ("A" | "B" | "C") -> tuple.
        self._loaded = {}
        #: What the last :meth:`run_gemm` did: its tiles, counters and end-to-end cycles.
        self.last_run = None
        # The ticket of the START :meth:`wait_gemm` waits for, and the cycles a command may
        # wait behind that GEMM.
        self._gemm_ticket = None
        self._gemm_bound = 0
        # What each ticket this host was given is, to name a failure ERRLOG reports.
        self._submitted = {}

    transport = property(lambda self: self._t)

    # Registers and actions ----------------------------------------------------------------

    async def read_reg(self, addr):
        return await self._t.read_reg(addr)

    async def write_reg(self, addr, value):
        await self._t.write_reg(addr, value)

    async def status(self):
        """STATUS as a :class:`Status`."""
        return Status.from_word(await self._t.read_reg(Reg.STATUS))

    async def command(self, action):
        """Write ``action`` (a :class:`hw.top.Ctrl` bit, or any word) to CTRL."""
        await self._t.write_reg(Reg.CTRL, action)

    async def queue_state(self):
        """QUEUE as a :class:`QueueState`."""
        return QueueState.from_word(await self._t.read_reg(Reg.QUEUE))

    async def error_log(self):
        """Read ERRLOG until it is empty: ``[(ticket, code)]`` of the queued commands that
        failed, oldest first (reading removes them)."""
        out = []
        while True:
            f = regs.unpack("ERRLOG", await self._t.read_reg(Reg.ERRLOG))
            if not f["valid"]:
                return out
            out.append((int(f["ticket"]), int(f["code"])))

    async def submit(self, action, what=None, timeout_cycles=1_000_000):
        """Queue ``action`` (a :class:`hw.top.Ctrl` bit) with the registers as they are;
        returns its ticket. Raises :class:`AcceleratorError` when the device refuses it (its
        checks: STATUS.rejected), and waits for room while the queue is full."""
        what = what or _ACTIONS.get(action, f"CTRL = 0x{int(action):x}")
        waited = 0
        while True:
            await self.command(action)
            st = await self.status()
            if not st.rejected:
                # Commands accepted = completed + pending: this one is the last of them.
                q = await self.queue_state()
                ticket = (q.completed + q.pending - 1) & 0xFFFF
                self._submitted[ticket] = what
                while len(self._submitted) > 256:
                    del self._submitted[next(iter(self._submitted))]
                return ticket
            if st.code != TopError.BUSY:
                raise AcceleratorError(st.code, action=what)
            # Full: wait for room; a full ERRLOG holds the queue until it is read.
            if (await self.queue_state()).errors:
                await self._raise_logged(what)
            if waited >= timeout_cycles:
                raise AcceleratorTimeout(f"{what}: the command queue stayed full for "
                                         f"{timeout_cycles} cycles (STATUS: {st})")
            await self._t.wait_cycles(64)
            waited += 64

    async def wait_ticket(self, ticket, what="The command", timeout_cycles=100_000,
                          first_wait=0):
        """Poll QUEUE until the command of ``ticket`` (and every one before it) has
        completed; raises :class:`AcceleratorError` for a failure in ERRLOG."""
        if first_wait:
            await self._t.wait_cycles(first_wait)

        async def probe():
            q = await self.queue_state()
            if q.errors:
                await self._raise_logged(what)
            return _retired(q.completed, ticket), q

        async def describe(q):
            return f"QUEUE: {q}; STATUS: {await self.status()}"
        return await self._until(probe, describe, what, timeout_cycles, interval=8, cap=256)

    async def _until(self, probe, describe, what, timeout_cycles, interval, cap):
        """Await ``probe()`` (``(finished, state)``) until it is finished, waiting from
        ``interval`` to ``cap`` cycles between calls; returns the state, or raises
        :class:`AcceleratorTimeout` with ``await describe(state)``."""
        waited = 0
        while True:
            finished, state = await probe()
            if finished:
                return state
            if waited >= timeout_cycles:
                raise AcceleratorTimeout(f"{what} did not finish within {timeout_cycles} "
                                         f"cycles ({await describe(state)})")
            step = min(interval, max(1, timeout_cycles - waited))
            await self._t.wait_cycles(step)
            waited += step
            interval = min(2 * interval, cap)

    async def _raise_logged(self, what):
        """Raise the oldest failure in ERRLOG, named after the command this host queued with
        its ticket (``exc.ticket``); the log is read empty."""
        log = await self.error_log()
        if log:
            ticket, code = log[0]
            exc = AcceleratorError(code, action=self._submitted.get(ticket, what))
            exc.ticket = ticket
            raise exc

    async def wait_done(self, action="The action", timeout_cycles=100_000):
        """Poll STATUS until every queued command has completed: ``done`` set and not busy.

        Raises :class:`AcceleratorError` as soon as STATUS shows an error: the last CTRL write
        was refused (its code), or a queued command failed (the oldest entry of ERRLOG, named
        after the command this host queued with its ticket); and
        :class:`AcceleratorTimeout` when ``timeout_cycles`` pass first. The polling interval
        grows from 4 to 1024 cycles, so a long GEMM costs few register reads.
        """
        return await self._poll(lambda st: st.done and not st.busy, action, timeout_cycles,
                                errors=True)

    async def wait_gemm(self, timeout_cycles=100_000, first_wait=0, action="The GEMM"):
        """Wait for the last START this host queued (and every command queued before it) to
        complete, after ``first_wait`` cycles in which it cannot have ended."""
        if self._gemm_ticket is None:
            return await self.queue_state()
        q = await self.wait_ticket(self._gemm_ticket, action, timeout_cycles, first_wait)
        self._gemm_ticket, self._gemm_bound = None, 0
        return q

    async def wait_idle(self, timeout_cycles=100_000):
        """Poll STATUS until the device is not busy, whatever its error code; returns the
        :class:`Status`."""
        return await self._poll(lambda st: not st.busy, "Waiting for idle", timeout_cycles,
                                errors=False)

    async def _poll(self, finished, action, timeout_cycles, errors, interval=4, cap=1024):
        async def probe():
            st = await self.status()
            if errors and st.error:
                if not st.rejected:      # a queued command failed: the log says which
                    await self._raise_logged(action)
                raise AcceleratorError(st.code, action=action)
            return finished(st), st

        async def describe(st):
            return f"STATUS: {st}"
        return await self._until(probe, describe, action, timeout_cycles, interval, cap)

    async def reset(self):
        """Reset the device and forget what was loaded (the buffers keep their contents, but
        an interrupted load leaves its buffer undefined)."""
        await self._t.reset()
        self._gemm_ticket, self._gemm_bound = None, 0
        self._submitted.clear()
        self._options = 0
        self._loaded.clear()
        self._out_fmt = None
        ident = await self._t.read_reg(Reg.ID)
        if ident != ID_VALUE:
            raise AcceleratorError(0, "BAD_ID", "Identifying the device",
                                   f"ID is 0x{ident:08x}, expected 0x{ID_VALUE:08x}")

    def forget(self, *keys):
        """Forget what this host loaded into buffers ``keys`` (``"A"``, ``"B"``, ``"C"``, both
        of a double-buffered build), after writing them through :meth:`write_reg` and
        :meth:`command`: the next GEMM then takes them as the device holds them."""
        for key in keys:
            for buf in (0, 1):
                self._loaded.pop((key, buf), None)

    async def config(self):
        """The device's configuration: ``rows``, ``cols``, ``acc_fmt`` (a FloatFormat),
        ``update`` (the weight-update unit is built), ``fp8_out`` (READ_C converts to FP8 on
        the device), ``update_rbits`` (random bits per stochastic rounding of UPDATE),
        ``a_words``, ``b_bytes`` and ``acc_words`` (buffer capacities), ``stamps`` (the time
        stamps CLOCK, FIRST_IN and LAST_OUT are built), ``beat_bytes`` (bytes per stream
        beat), ``buffers`` (2: double-buffered)."""
        if self._config is None:
            f = regs.unpack("CONFIG", await self._t.read_reg(Reg.CONFIG))
            e, m = f["acc_exp"], f["acc_man"]
            acc = next((f for f in PRESETS.values() if f.width == 16 and (f.e, f.m) == (e, m)),
                       None)
            if acc is None:
                raise AcceleratorError(0, "BAD_CONFIG", "Reading CONFIG",
                                       f"no 16-bit format has {e} exponent and {m} mantissa "
                                       f"bits")
            self._config = {
                "rows": f["rows"], "cols": f["cols"], "acc_fmt": acc,
                "update": not f["no_update"],
                "fp8_out": not f["no_fp8_out"],
                "stamps": not f["no_stamps"],
                "update_rbits": f["rbits_m1"] + 1,
                "a_words": await self._t.read_reg(Reg.A_WORDS),
                "b_bytes": await self._t.read_reg(Reg.B_BYTES),
                "acc_words": await self._t.read_reg(Reg.ACC_WORDS),
                **{name: value for name, value in regs.unpack(
                    "BUILD", await self._t.read_reg(Reg.BUILD)).items()},
            }
            beat = self._config["beat_bytes"]
            if beat not in (2, 4, 8, 16, 32):
                self._config = None
                raise AcceleratorError(0, "BAD_CONFIG", "Reading BUILD",
                                       f"{beat} bytes per stream beat; a device has 2, 4, 8, "
                                       f"16 or 32")
        return dict(self._config)

    async def counters(self):
        """``(cycles, active)`` of the last GEMM."""
        return await self._t.read_reg(Reg.CYCLES), await self._t.read_reg(Reg.ACTIVE)

    async def rng_state(self):
        """The weight-update generator's state: the seed that continues the random stream
        of the last UPDATE (docs/weight-update.md)."""
        return await self._t.read_reg(Reg.RNG_STATE)

    # Weight update ---------------------------------------------------------------------------

    async def update(self, w, g, v, *, lr, momentum, weight_decay, seed, rounding="sr",
                     timeout_cycles=None):
        """SGD with momentum and weight decay on the device (docs/numerics.md section 5),
        as :func:`sim.golden.sgd_update`.

        Parameters
        ----------
        w, g, v : array of DLFLOAT16 codes
            Weights, gradient and momentum, one shape (any), at most ``UPDATE_MAX`` elements.
        lr, momentum, weight_decay : int
            DLFLOAT16 codes of the scalars.
        seed : int
            The generator's start, 1 to 2**32 - 1; :meth:`rng_state` afterwards continues it.
        rounding : str
            ``"sr"`` (stochastic) or ``"rne"`` (the ablation).

        Returns
        -------
        (w1, v1) : uint16 arrays of the shape of ``w``
        """
        arrays = []
        for x, name in ((w, "w"), (g, "g"), (v, "v")):
            arr = np.asarray(x)
            if arr.dtype.kind not in "ui":
                raise TypeError(f"{name} must be an integer array of DLFLOAT16 codes "
                                f"(uint16), not {arr.dtype}")
            arr = arr.astype(np.int64)
            if arr.size and (arr.min() < 0 or arr.max() > 0xFFFF):
                raise ValueError(f"{name} holds values outside 0..65535: not 16-bit codes")
            arrays.append(arr)
        w, g, v = arrays
        if not w.shape == g.shape == v.shape:
            raise ValueError(f"w, g and v must have one shape, not {w.shape}, {g.shape}, "
                             f"{v.shape}")
        if w.size == 0:
            raise ValueError(f"w has no elements (shape {w.shape})")
        if w.size > UPDATE_MAX:
            raise ValueError(f"w has {w.size} elements; an UPDATE takes at most {UPDATE_MAX}")
        for x, name in ((lr, "lr"), (momentum, "momentum"), (weight_decay, "weight_decay")):
            if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or not 0 <= x <= 0xFFFF:
                raise ValueError(f"{name} must be a DLFLOAT16 code (an integer from 0 to 65535), "
                                 f"not {x!r}")
        if (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                or not 0 < seed < (1 << 32)):
            raise ValueError(f"Seed must be an integer from 1 to 2**32 - 1, not {seed!r}")
        if rounding not in ("sr", "rne"):
            raise ValueError(f"Update rounding must be 'sr' or 'rne', not {rounding!r}")
        n = w.size
        for addr, value in ((Reg.LR, lr), (Reg.MOMENTUM, momentum),
                            (Reg.WEIGHT_DECAY, weight_decay), (Reg.SEED, seed),
                            (Reg.LENGTH, n)):
            await self._t.write_reg(addr, int(value))
        await self._set_options((self._options & ~UPDATE_RNE)
                                | (UPDATE_RNE if rounding == "rne" else 0))
        await self.submit(Ctrl.UPDATE)
        data = frames.update_frame(w, g, v)
        cfg = await self.config()
        if timeout_cycles is None:
            timeout_cycles = (16 * frames.beats(len(data), cfg["beat_bytes"]) + 10_000
                              + self._gemm_bound)
        out = await self._t.exchange(data, timeout_cycles)
        await self.wait_done("UPDATE", timeout_cycles)
        self._check_length(out, 4 * n, cfg, "UPDATE")
        w1, v1 = frames.update_results(out, n)
        return w1.reshape(w.shape), v1.reshape(w.shape)

    # Checks ------------------------------------------------------------------------------------

    async def check_fits(self, m, n, k):
        """Raise ``ValueError`` unless an ``m x k`` by ``k x n`` GEMM fits the buffers."""
        cfg = await self.config()
        rows, cols = cfg["rows"], cfg["cols"]
        for need, have, what in ((m * -(-k // rows), cfg["a_words"],
                                  f"A needs M * ceil(K / {rows}) = {m * -(-k // rows)} words per "
                                  f"bank"),
                                 (k * n, cfg["b_bytes"], f"B needs K * N = {k * n} bytes"),
                                 (m * -(-n // cols), cfg["acc_words"],
                                  f"C needs M * ceil(N / {cols}) = {m * -(-n // cols)} "
                                  f"accumulator words")):
            if need > have:
                raise ValueError(f"{m}x{k} by {k}x{n} does not fit: {what}, the device has "
                                 f"{have}")

    def _expect(self, key, value, what):
        """Raise unless buffer ``key`` (``("A", buf)``, ...) is unknown or was loaded as
        ``value``; ``what()`` says what the GEMM needed."""
        have = self._loaded.get(key)
        if have is not None and have != value:
            raise ValueError(f"{what()}; load it again for this GEMM")

    async def _set_options(self, word):
        # Always written: a test may have changed OPTIONS through write_reg().
        await self._t.write_reg(Reg.OPTIONS, word)
        self._options = word

    # Transfers ---------------------------------------------------------------------------------

    @staticmethod
    def _check_length(data, need, cfg, action):
        """Raise unless a frame out of ``need`` bytes came as ``data``: exactly, or with the
        rest of its last beat on a transport without ``tkeep``."""
        have = frames.beats(need, cfg["beat_bytes"]) * cfg["beat_bytes"]
        if not need <= len(data) <= have:
            raise AcceleratorError(TopError.FRAME, action=action,
                                   detail=f"the device sent {len(data)} bytes, expected "
                                          f"{need}")

    async def _check_buf(self, buf, name):
        cfg = await self.config()
        if buf not in range(cfg["buffers"]):
            raise ValueError(f"{name} must be 0{' or 1' if cfg['buffers'] == 2 else ''} on "
                             f"this device ({cfg['buffers']} buffer"
                             f"{'s' if cfg['buffers'] > 1 else ''} of each kind), not {buf!r}")
        return buf

    async def _transfer_in(self, action, data):
        """Queue ``action`` and send its frame ``data``; returns the ticket once the device
        has taken the frame (the load completes in order with the commands around it; a
        failure shows in ERRLOG, raised by the next wait)."""
        name = _ACTIONS[action]
        cfg = await self.config()
        ticket = await self.submit(action, name)
        # The load may wait in the queue behind the GEMM on its buffer.
        timeout = 16 * frames.beats(len(data), cfg["beat_bytes"]) + 10_000 + self._gemm_bound
        await self._t.send(data, timeout)
        return ticket

    async def _write_dims(self, **dims):
        for name, value in dims.items():
            await self._t.write_reg({"m": Reg.M, "n": Reg.N, "k": Reg.K}[name], value)

    async def load_a(self, A, transposed=False, fmt="e5m2", buf=0):
        """Load ``A`` (``M x K``; with ``transposed``, its transpose as stored, ``K x M``) into
        A buffer ``buf`` (0, or 1 on a double-buffered device; a GEMM may run on the other)."""
        fmt = _fp8_format(fmt, "fmt")
        arr = _check_codes(A, "A", 8)
        buf = await self._check_buf(buf, "buf")
        m, k = arr.shape[::-1] if transposed else arr.shape
        cfg = await self.config()
        if m * -(-k // cfg["rows"]) > cfg["a_words"]:
            raise ValueError(f"A ({m}x{k}) needs M * ceil(K / {cfg['rows']}) = "
                             f"{m * -(-k // cfg['rows'])} words per bank, the device has "
                             f"{cfg['a_words']}")
        await self._write_dims(m=m, k=k)
        await self._set_options(regs.replace("OPTIONS", self._options, a_buf=buf))
        self._loaded.pop(("A", buf), None)
        # The device stores A as it is used (M x K); a transposed A is turned here.
        await self._transfer_in(Ctrl.LOAD_A, frames.a_frame(arr.T if transposed else arr,
                                                             cfg["rows"]))
        self._loaded[("A", buf)] = (m, k, bool(transposed), fmt)

    async def load_b(self, B, transposed=False, fmt="e5m2", buf=0):
        """Load ``B`` (``K x N``; with ``transposed``, its transpose as stored, ``N x K``) into
        B buffer ``buf``."""
        fmt = _fp8_format(fmt, "fmt")
        arr = _check_codes(B, "B", 8)
        buf = await self._check_buf(buf, "buf")
        k, n = arr.shape[::-1] if transposed else arr.shape
        cfg = await self.config()
        if k * n > cfg["b_bytes"]:
            raise ValueError(f"B ({k}x{n}) needs K * N = {k * n} bytes, the device has "
                             f"{cfg['b_bytes']}")
        await self._write_dims(n=n, k=k)
        await self._set_options(regs.replace("OPTIONS", self._options,
                                             trans_b=bool(transposed), b_buf=buf))
        self._loaded.pop(("B", buf), None)
        await self._transfer_in(Ctrl.LOAD_B, frames.b_frame(arr))
        self._loaded[("B", buf)] = (k, n, bool(transposed), fmt)

    async def load_c(self, C, buf=0):
        """Load accumulator codes ``C`` (``M x N``) into accumulator buffer ``buf``, for a
        GEMM with ``accumulate``."""
        arr = _check_codes(C, "C", 16)
        buf = await self._check_buf(buf, "buf")
        m, n = arr.shape
        cfg = await self.config()
        if m * -(-n // cfg["cols"]) > cfg["acc_words"]:
            raise ValueError(f"C ({m}x{n}) needs M * ceil(N / {cfg['cols']}) = "
                             f"{m * -(-n // cfg['cols'])} accumulator words, the device has "
                             f"{cfg['acc_words']}")
        await self._write_dims(m=m, n=n)
        await self._set_options(regs.replace("OPTIONS", self._options, c_buf=buf))
        self._loaded.pop(("C", buf), None)
        await self._transfer_in(Ctrl.LOAD_C, frames.c_frame(arr, cfg["cols"]))
        self._loaded[("C", buf)] = (m, n)

    async def gemm(self, m, n, k, *, a_fmt=None, b_fmt=None, chunk=64, rounding="rne",
                   transpose_a=False, transpose_b=False, accumulate=False, out_fmt=None,
                   timeout_cycles=None, carry_in=False, carry_out=False, a_buf=0, b_buf=0,
                   c_buf=0, wait=True):
        """Run ``C = A . B`` (``+ C`` with ``accumulate``) on the loaded operands; returns
        when the device is done (with ``wait=False``, once START is taken: :meth:`wait_gemm`
        then waits for it, and loads and READ_C may use the other buffers meanwhile).

        Parameters
        ----------
        m, n, k : int
        a_fmt, b_fmt : str, optional
            ``"e5m2"`` or ``"e4m3"``; by default the format given to the load.
        chunk : int or None
            Chunk length, a power of two from 1 to 2**15; ``None``: no chunking.
        rounding : str
            Accumulation rounding, ``"rne"`` or ``"rna"``.
        transpose_a, transpose_b : bool
            How the operands were loaded (``B``'s layout is read by the GEMM itself).
        accumulate : bool
            Add into the ``C`` in the accumulator memory (loaded, or the last result).
        out_fmt : str, optional
            The format :meth:`read_c` returns by default: the accumulator's, ``"e5m2"`` or
            ``"e4m3"``.
        timeout_cycles : int, optional
            Give up after this many cycles (default: :func:`gemm_cycle_bound`).
        carry_in, carry_out : bool
            Continue the running chunk that the GEMM before left unfolded; leave this one's
            unfolded for the next (``K`` tiles that begin or end inside a chunk; see
            :mod:`fp8accel.sim.host.tiling`).
        a_buf, b_buf, c_buf : int
            The buffers the GEMM reads and writes (0, or 1 on a double-buffered device).
        wait : bool
            Wait for the GEMM to end.
        """
        m, n, k = (_check_dim(v, name) for v, name in ((m, "M"), (n, "N"), (k, "K")))
        bufs = [await self._check_buf(b, name) for b, name in ((a_buf, "a_buf"),
                                                                 (b_buf, "b_buf"),
                                                                 (c_buf, "c_buf"))]
        a_buf, b_buf, c_buf = bufs
        loaded_a, loaded_b = self._loaded.get(("A", a_buf)), self._loaded.get(("B", b_buf))
        a_fmt = _fp8_format(a_fmt if a_fmt is not None else
                            (loaded_a[3] if loaded_a else E5M2), "a_fmt")
        b_fmt = _fp8_format(b_fmt if b_fmt is not None else
                            (loaded_b[3] if loaded_b else E5M2), "b_fmt")
        cfg = await self.config()
        word = options_word(a_fmt=a_fmt, b_fmt=b_fmt, chunk=chunk, rounding=rounding,
                            transpose_a=transpose_a, transpose_b=transpose_b,
                            accumulate=accumulate, out_fmt=out_fmt, acc_fmt=cfg["acc_fmt"],
                            carry_in=carry_in, carry_out=carry_out, a_buf=a_buf,
                            b_buf=b_buf, c_buf=c_buf)
        await self.check_fits(m, n, k)
        ta, tb = bool(transpose_a), bool(transpose_b)
        self._expect(("A", a_buf), (m, k, ta, a_fmt),
                     lambda: f"A was loaded as {self._desc(('A', a_buf))}, the GEMM reads a "
                     f"{m}x{k} {a_fmt.name} A (transposed={ta})")
        self._expect(("B", b_buf), (k, n, tb, b_fmt),
                     lambda: f"B was loaded as {self._desc(('B', b_buf))}, the GEMM reads a "
                     f"{k}x{n} {b_fmt.name} B (transposed={tb})")
        if accumulate or carry_in:
            self._expect(("C", c_buf), (m, n),
                         lambda: f"The accumulator holds a {self._desc(('C', c_buf))} C, the "
                         f"GEMM adds into {m}x{n}")
        await self._write_dims(m=m, n=n, k=k)
        await self._set_options(word)
        self._loaded.pop(("C", c_buf), None)
        self._out_fmt = out_fmt
        if timeout_cycles is None:
            timeout_cycles = gemm_cycle_bound(m, n, k, cfg["rows"], cfg["cols"])
        what = f"START ({m}x{k} by {k}x{n})"
        self._gemm_ticket = await self.submit(Ctrl.START, what)
        self._gemm_bound = timeout_cycles
        self._loaded[("C", c_buf)] = (m, n)
        if wait:
            # The rows of A that enter the array: it cannot end sooner.
            rows_in = m * -(-k // cfg["rows"]) * -(-n // cfg["cols"])
            await self.wait_gemm(timeout_cycles, first_wait=rows_in, action=what)

    def _desc(self, key):
        v = self._loaded.get(key)
        if key[0] == "C":
            return f"{v[0]}x{v[1]}"
        return f"{v[0]}x{v[1]} {v[3].name} (transposed={v[2]})"

    async def read_c(self, m, n, out_fmt=None, buf=0):
        """Read ``C`` (``m x n``) from accumulator buffer ``buf`` as accumulator codes
        (``uint16``) or, with ``out_fmt`` ``"e5m2"``/``"e4m3"``, converted to FP8 (``uint8``).
        The default is the ``out_fmt`` of the last :meth:`gemm`. A device built without the
        FP8 converters returns the accumulator codes, which are converted here exactly as the
        device would (``rne``, saturating; ``sim.golden.convert``)."""
        m, n = _check_dim(m, "M"), _check_dim(n, "N")
        buf = await self._check_buf(buf, "buf")
        cfg = await self.config()
        if out_fmt is None:
            out_fmt = self._out_fmt
        code = _out_code(out_fmt, cfg["acc_fmt"])
        on_host = code != OutFmt.ACC and not cfg.get("fp8_out", True)
        if on_host:
            code = OutFmt.ACC
        if m * -(-n // cfg["cols"]) > cfg["acc_words"]:
            raise ValueError(f"C ({m}x{n}) needs M * ceil(N / {cfg['cols']}) = "
                             f"{m * -(-n // cfg['cols'])} accumulator words, the device has "
                             f"{cfg['acc_words']}")
        await self._write_dims(m=m, n=n)
        await self._set_options(regs.replace("OPTIONS", self._options, out_fmt=code, c_buf=buf))
        await self.submit(Ctrl.READ_C)
        fp8 = code != OutFmt.ACC
        need = frames.c_frame_bytes(m, n, cfg["cols"], fp8)
        # READ_C may wait in the queue behind the GEMM that writes its buffer.
        timeout = 16 * frames.beats(need, cfg["beat_bytes"]) + 10_000 + self._gemm_bound
        data = await self._t.recv(timeout)
        self._check_length(data, need, cfg, "READ_C")
        arr = frames.c_from_frame(data, m, n, cfg["cols"], fp8)
        if on_host:
            from fp8accel.sim import golden
            return golden.convert(arr, cfg["acc_fmt"], out_fmt, "rne", saturate=True)\
                .astype(np.uint8)
        return arr

    async def run_gemm(self, A, B, C=None, **opts):
        """``C = A . B`` (``+ C`` when ``C`` is given) of any size: loaded, run and read back in
        tiles that fit the device's buffers (:func:`fp8accel.sim.host.tiling.plan_gemm`),
        bit-identical to :func:`fp8accel.sim.golden.gemm` on the whole matrices.

        ``opts`` are those of :meth:`gemm` (``a_fmt``, ``b_fmt``, ``chunk``, ``rounding``,
        ``transpose_a``, ``transpose_b``, ``out_fmt``, ``timeout_cycles`` per command);
        ``accumulate`` follows from ``C``. Returns ``(C_out, cycles, active)``: the device's
        counters summed over the commands. :attr:`last_run` then holds the plan and the
        cycles from the first beat in to the last beat out.
        """
        if "accumulate" in opts:
            raise TypeError("run_gemm() accumulates exactly when C is given; do not pass "
                            "'accumulate'")
        unknown = set(opts) - {"a_fmt", "b_fmt", "chunk", "rounding", "transpose_a",
                               "transpose_b", "out_fmt", "timeout_cycles"}
        if unknown:
            raise TypeError(f"run_gemm() got unexpected options {', '.join(sorted(unknown))}")
        ta, tb = bool(opts.get("transpose_a")), bool(opts.get("transpose_b"))
        a = _check_codes(A, "A", 8)
        b = _check_codes(B, "B", 8)
        m, k = a.shape[::-1] if ta else a.shape
        kb, n = b.shape[::-1] if tb else b.shape
        if kb != k:
            raise ValueError(f"A ({m}x{k}) and B ({kb}x{n}) do not form a matrix product")
        if 0 in (m, n, k):
            raise ValueError(f"A ({m}x{k}) and B ({kb}x{n}) have no elements to multiply")
        a_fmt = _fp8_format(opts.get("a_fmt") or "e5m2", "a_fmt")
        b_fmt = _fp8_format(opts.get("b_fmt") or "e5m2", "b_fmt")
        # Every check before the first transfer, so that bad options change nothing.
        cfg = await self.config()
        chunk = _check_chunk(opts.get("chunk", 64))
        options_word(**{key: opts[key] for key in ("rounding", "out_fmt") if key in opts},
                     chunk=chunk, acc_fmt=cfg["acc_fmt"])
        if C is not None:
            C = _check_codes(C, "C", 16, (m, n))
        two = cfg["buffers"] == 2
        # Double-buffered, a large GEMM runs in several output tiles, so that the transfers
        # of one run beside the command of another.
        big = m * n * k >= 16384 * cfg["rows"] * cfg["cols"]
        plan = plan_gemm(m, n, k, rows=cfg["rows"], cols=cfg["cols"], a_words=cfg["a_words"],
                         b_bytes=cfg["b_bytes"], acc_words=cfg["acc_words"], chunk=chunk,
                         split=4 if two and big else 1, beat_bytes=cfg["beat_bytes"])
        out_fmt = opts.get("out_fmt")
        code = _out_code(out_fmt, cfg["acc_fmt"])
        result = np.empty((m, n), np.uint16 if code == OutFmt.ACC else np.uint8)
        run = {key: opts[key] for key in ("chunk", "rounding") if key in opts}
        timeout = opts.get("timeout_cycles")
        totals = {"cycles": 0, "active": 0}
        first_in = None
        held = {("A", 0): None, ("A", 1): None, ("B", 0): None, ("B", 1): None}
        running = None         # the buffers (a, b, c) of the START in flight
        to_read = None         # (m0, m1, n0, n1, c buffer) of a finished output tile

        async def finish():
            """Wait for the START in flight and add its counters."""
            nonlocal running
            if running is not None:
                await self.wait_gemm(running[3])
                c, act = await self.counters()
                totals["cycles"] += c
                totals["active"] += act
                running = None

        async def operand(kind, key, tile, transposed, fmt):
            """The buffer that holds ``tile`` of ``kind``, loaded into one the running START
            does not read unless one holds it already."""
            nonlocal first_in
            for buf in ((0, 1) if two else (0,)):
                if held[(kind, buf)] == key:
                    return buf
            busy = None if running is None else running["AB".index(kind)]
            buf = 0 if not two else (1 - busy if busy is not None else 0)
            held[(kind, buf)] = None
            load = self.load_a if kind == "A" else self.load_b
            await load(np.ascontiguousarray(tile), transposed=transposed, fmt=fmt, buf=buf)
            held[(kind, buf)] = key
            if first_in is None and cfg["stamps"]:
                first_in = await self._t.read_reg(Reg.FIRST_IN)
            return buf

        async def read(tile):
            m0, m1, n0, n1, cb = tile
            result[m0:m1, n0:n1] = await self.read_c(m1 - m0, n1 - n0, out_fmt, buf=cb)

        for index, (m0, m1, n0, n1) in enumerate(plan.output_tiles()):
            cb = index % 2 if two else 0
            for t in plan.k_tiles(accumulate=C is not None):
                if not two:
                    await finish()
                    if to_read is not None:
                        await read(to_read)
                        to_read = None
                a_tile = a[t.k0:t.k1, m0:m1] if ta else a[m0:m1, t.k0:t.k1]
                ab = await operand("A", (m0, m1, t.k0, t.k1), a_tile, ta, a_fmt)
                b_tile = b[n0:n1, t.k0:t.k1] if tb else b[t.k0:t.k1, n0:n1]
                bb = await operand("B", (t.k0, t.k1, n0, n1), b_tile, tb, b_fmt)
                if t.k0 == 0 and C is not None:
                    await self.load_c(np.ascontiguousarray(C[m0:m1, n0:n1]), buf=cb)
                await finish()
                mm, nn, kk = m1 - m0, n1 - n0, t.k1 - t.k0
                bound = timeout or gemm_cycle_bound(mm, nn, kk, cfg["rows"], cfg["cols"])
                await self.gemm(mm, nn, kk, a_fmt=a_fmt, b_fmt=b_fmt, transpose_a=ta,
                                transpose_b=tb, accumulate=t.accumulate, carry_in=t.carry_in,
                                carry_out=t.carry_out, out_fmt=out_fmt, a_buf=ab, b_buf=bb,
                                c_buf=cb, timeout_cycles=bound, wait=False, **run)
                running = (ab, bb, cb, bound)
                if to_read is not None:
                    # The tile before: its result leaves while this one computes.
                    await read(to_read)
                    to_read = None
            to_read = (m0, m1, n0, n1, cb)
        await finish()
        await read(to_read)
        cycles, active = totals["cycles"], totals["active"]
        # The device's clock from the first beat of the first load to the last beat of the
        # last READ_C, both ends included (None on a build without the time stamps).
        cycles_total = None
        if cfg["stamps"]:
            last_out = await self._t.read_reg(Reg.LAST_OUT)
            cycles_total = ((last_out - first_in) & 0xFFFF_FFFF) + 1
        self.last_run = {
            "m": m, "n": n, "k": k, "tile": [plan.mt, plan.nt, plan.kt], "order": plan.outer,
            "commands": plan.tiles, "cycles": cycles, "active": active,
            "cycles_total": cycles_total,
        }
        return result, cycles, active
