"""Host side of the UART link (hw.bridge): a :class:`~sim.host.Transport` over a byte stream.

Ref: docs/host-interface.md, section "UART link" (the protocol).

:class:`BridgeTransport` runs :class:`sim.host.AcceleratorHost` unchanged over any byte link
with two async methods, ``write(data)`` and ``read(n, timeout_s)``. Two links come with it:
:class:`SerialLink`, a serial port through pyserial (a board), and :class:`CocotbUartLink`,
cocotbext-uart on the ``rx``/``tx`` pins of the simulated :class:`hw.bridge.BridgedAccelerator`.
A link may also have ``baud`` (bits per second, for the transfer times), ``margin_s`` (the slack
added to every wait), ``async wait_s(seconds)`` (a wait in the link's own time; the default is
``asyncio.sleep``) and ``clear()`` (drop bytes not yet sent or read).

Typical use on a board::

    with SerialLink("/dev/ttyUSB1", 3_000_000) as link:
        host = AcceleratorHost(BridgeTransport(link, clock_hz=100e6))
        asyncio.run(session(host))       # await host.reset(), host.run_gemm(...), ...
"""

import asyncio
import math
from collections import deque

from fp8accel.hw.bridge import BRIDGE_MAGIC, BRIDGE_VERSION, RESET_CYCLES
from fp8accel.sim.host import AcceleratorError, AcceleratorTimeout, Transport, bus_error

__all__ = ["BridgeTransport", "SerialLink", "CocotbUartLink"]

_BEATS = {ord("D"): False, ord("L"): True}
#: Answer tags and the bytes that follow them.
_ANSWERS = {ord("w"): 1, ord("r"): 5, ord("k"): 0, ord("z"): 0, ord("i"): 4, ord("?"): 1}
#: Bits on the line per byte: start, eight data bits, stop.
_BITS_PER_BYTE = 10


def _show(data):
    """Bytes as a host reads them in an error message: printable ASCII as 'c', others hex."""
    return " ".join(f"'{chr(b)}'" if 0x20 < b < 0x7F else f"0x{b:02x}" for b in data) or "nothing"


class BridgeTransport(Transport):
    """:class:`~sim.host.Transport` over the byte protocol of :mod:`hw.bridge`.

    Beat packets (``'D'``/``'L'``) are sorted into received frames whenever they arrive; an
    answer must be the one the command sent waits for, or :class:`~sim.host.AcceleratorError`
    (name ``"PROTOCOL"``) says what came instead. A frame goes out in blocks of at most
    ``BLOCK`` beats (learned with ``'I'`` by :meth:`reset`), each after the ``'k'`` of the one
    before; the device's beats are read meanwhile, so :meth:`exchange` is :meth:`send`, then
    :meth:`recv`.

    A wait allows the device cycles the host asked for at ``clock_hz``, the serial time of the
    bytes involved and the link's margin, and restarts whenever a packet arrives: a timeout
    means the link was silent that long.

    Parameters
    ----------
    link :
        The byte link: ``async write(data)``, ``async read(n, timeout_s)`` (raising
        :class:`~sim.host.AcceleratorTimeout`) and ``baud``.
    clock_hz : float
        The device's clock frequency.
    margin_s : float, optional
        Slack added to every wait (default: the link's ``margin_s``, else 0.5 s).
    resync_cycles : int
        The device's command timeout (``UartBridge(timeout_cycles=...)``): when ``'Z'`` gets
        no ``'z'`` (it was read as part of an interrupted command), :meth:`reset` stays silent
        this long, so that the bridge drops the command, and tries once more.
    """

    def __init__(self, link, *, clock_hz, margin_s=None, resync_cycles=1 << 20):
        if isinstance(clock_hz, bool) or not isinstance(clock_hz, (int, float)) or clock_hz <= 0:
            raise ValueError(f"Clock frequency must be a positive number of Hz, not "
                             f"{clock_hz!r}")
        baud = getattr(link, "baud", None)
        if not isinstance(baud, (int, float)) or baud <= 0:
            raise ValueError(f"The link must give its baud rate as a positive number "
                             f"(link.baud), not {baud!r}")
        self._link = link
        self._clock_hz = float(clock_hz)
        self._byte_s = _BITS_PER_BYTE / float(baud)
        self._margin = float(margin_s if margin_s is not None
                             else getattr(link, "margin_s", 0.5))
        self._resync = int(resync_cycles)
        self._frames = deque()       # complete frames received, oldest first
        self._beats = []             # the frame being received
        self._arrived = 0            # beat packets received while waiting for this answer
        self._block = None

    link = property(lambda self: self._link)

    @property
    def block(self):
        """The most beats of one block (``None`` before :meth:`reset`)."""
        return self._block

    def budget_s(self, cycles, nbytes):
        """The longest wait for an answer: ``cycles`` device cycles, ``nbytes`` on the line and
        the margin."""
        return cycles / self._clock_hz + nbytes * self._byte_s + self._margin

    # Packets -----------------------------------------------------------------------------------

    async def _read(self, n, timeout_s, what, started=b""):
        try:
            return await self._link.read(n, timeout_s)
        except AcceleratorTimeout:
            if started:
                detail = f"the device sent {_show(started)} and then stopped"
            elif self._arrived:
                detail = f"{self._arrived} beats arrived, then nothing"
            else:
                detail = "nothing arrived"
            raise AcceleratorTimeout(f"{what}: no answer within {timeout_s:.3g} s; "
                                     f"{detail}") from None

    async def _packet(self, timeout_s, what, strict=True):
        """Read one packet. A beat is filed (and ``None`` returned); an answer is returned as
        ``(tag, payload)``. A byte that starts no packet raises, unless not ``strict`` (then
        it is skipped)."""
        packet = bytearray(await self._read(1, timeout_s, what))
        tag = packet[0]
        size = 2 if tag in _BEATS else _ANSWERS.get(tag)
        if size is None:
            if not strict:
                return None
            raise AcceleratorError(0, "PROTOCOL", what, f"the device sent {_show(packet)}, "
                                                        f"which starts no packet")
        # A byte at a time, so that a timeout can tell what came.
        for _ in range(size):
            packet += await self._read(1, timeout_s, what, packet)
        if tag in _BEATS:
            self._arrived += 1
            self._beats.append(packet[1] | packet[2] << 8)
            if _BEATS[tag]:
                self._frames.append(self._beats)
                self._beats = []
            return None
        return tag, bytes(packet[1:])

    async def _answer(self, expect, what, timeout_s):
        """Read packets until the answer ``expect`` (a tag); return its payload."""
        self._arrived = 0
        while True:
            got = await self._packet(timeout_s, what)
            if got is None:
                continue
            tag, payload = got
            if tag == expect:
                return payload
            if tag == ord("?"):
                raise AcceleratorError(0, "PROTOCOL", what,
                                       f"the bridge did not understand command byte "
                                       f"{_show(payload)}")
            raise AcceleratorError(0, "PROTOCOL", what,
                                   f"expected '{chr(expect)}', the device sent "
                                   f"{_show(bytes([tag]) + payload)}")

    # Registers ---------------------------------------------------------------------------------

    @staticmethod
    def _check_addr(addr):
        if isinstance(addr, bool) or not isinstance(addr, int) or not 0 <= addr <= 0xFF:
            raise ValueError(f"Register address must be an integer from 0 to 255, not {addr!r}")
        return addr

    async def read_reg(self, addr):
        addr = self._check_addr(addr)
        what = f"Reading register 0x{addr:02x}"
        await self._link.write(bytes([ord("R"), addr]))
        payload = await self._answer(ord("r"), what, self.budget_s(0, 2 + 6 + 3))
        error = bus_error(payload[4], what)
        if error:
            raise error
        return int.from_bytes(payload[:4], "little")

    async def write_reg(self, addr, value):
        addr = self._check_addr(addr)
        value = int(value)
        if not 0 <= value <= 0xFFFF_FFFF:
            raise ValueError(f"Register value must fit 32 bits, not {value!r}")
        what = f"Writing register 0x{addr:02x}"
        await self._link.write(bytes([ord("W"), addr]) + value.to_bytes(4, "little"))
        payload = await self._answer(ord("w"), what, self.budget_s(0, 6 + 2 + 3))
        error = bus_error(payload[0], what)
        if error:
            raise error

    # Frames ------------------------------------------------------------------------------------

    async def send(self, data, timeout_cycles):
        data = bytes(data)
        if not data:
            raise ValueError("A frame has at least one byte")
        # The bridge carries 16-bit beats (no tkeep): an odd last byte goes with a zero.
        data += bytes(len(data) % 2)
        beats = [int.from_bytes(data[i:i + 2], "little") for i in range(0, len(data), 2)]
        if self._block is None:
            await self._identify()
        block = self._block
        count = -(-len(beats) // block)
        for i in range(count):
            chunk = beats[i * block:(i + 1) * block]
            data = bytearray(b"S")
            data += len(chunk).to_bytes(2, "little")
            data.append(int(i == count - 1))
            for b in chunk:
                data += b.to_bytes(2, "little")
            await self._link.write(bytes(data))
            what = f"Sending a frame of {len(beats)} beats (block {i + 1} of {count})"
            # The answer may queue behind one beat packet.
            await self._answer(ord("k"), what, self.budget_s(timeout_cycles, len(data) + 1 + 3))

    async def recv(self, timeout_cycles):
        what = "Receiving a frame"
        self._arrived = 0
        while not self._frames:
            got = await self._packet(self.budget_s(timeout_cycles, 3), what)
            if got is not None:
                raise AcceleratorError(0, "PROTOCOL", what,
                                       f"the device sent {_show(bytes([got[0]]) + got[1])}, "
                                       f"an answer to no command")
        return b"".join(int(b).to_bytes(2, "little") for b in self._frames.popleft())

    async def exchange(self, data, timeout_cycles):
        # The beats the device sends while the blocks go out are filed by send().
        await self.send(data, timeout_cycles)
        return await self.recv(timeout_cycles)

    # Time and reset ----------------------------------------------------------------------------

    async def _wait_s(self, seconds):
        wait = getattr(self._link, "wait_s", None)
        if wait is not None:
            await wait(seconds)
        else:
            await asyncio.sleep(seconds)

    async def wait_cycles(self, cycles):
        await self._wait_s(cycles / self._clock_hz)

    def _clear(self):
        clear = getattr(self._link, "clear", None)
        if clear is not None:
            clear()

    async def reset(self):
        """``'Z'``, then ``'I'``. Whatever arrives before ``'z'`` (beats, answers of an earlier
        command, noise) is dropped, and so are the frames received so far."""
        what = "Resetting the device ('Z')"
        self._clear()
        for attempt in range(2):
            await self._link.write(b"Z")
            self._arrived = 0
            try:
                while True:
                    got = await self._packet(self.budget_s(RESET_CYCLES, 1 + 1 + 3), what,
                                             strict=False)
                    if got is not None and got[0] == ord("z"):
                        break
                break
            except AcceleratorTimeout as exc:
                if attempt:
                    raise AcceleratorTimeout(
                        f"{exc}, twice, the second time after {self._resync} cycles of silence "
                        f"(is the bitstream loaded, and are the port and baud rate right?)"
                    ) from None
                # 'Z' was taken as part of an interrupted command: let the bridge time it out.
                await self._wait_s(self._resync / self._clock_hz + self._margin)
                self._clear()
        self._frames.clear()
        self._beats = []
        await self._identify()

    async def _identify(self):
        what = "Identifying the bridge ('I')"
        await self._link.write(b"I")
        payload = await self._answer(ord("i"), what, self.budget_s(0, 1 + 5 + 3))
        if payload[0] != BRIDGE_MAGIC or payload[1] != BRIDGE_VERSION:
            raise AcceleratorError(0, "BAD_BRIDGE", what,
                                   f"the device answered {_show(payload)}, expected 0x"
                                   f"{BRIDGE_MAGIC:02x} and version {BRIDGE_VERSION}")
        block = int.from_bytes(payload[2:4], "little")
        if block == 0:
            raise AcceleratorError(0, "BAD_BRIDGE", what, "the device's blocks hold no beats")
        self._block = block


# Links -----------------------------------------------------------------------------------------

class SerialLink:
    """A serial port, through pyserial.

    Reads block the event loop while they wait (the command line runs one host with
    ``asyncio.run``). ``port`` may be any pyserial URL (``loop://``, ``socket://host:port``).

    Parameters
    ----------
    port : str
        ``/dev/ttyUSB1``, ``COM3``, ...
    baud : int
        The bridge's ``f_clk / divisor``.
    timeout_s : float
        Slack added to every wait (``margin_s``): USB serial adapters hold received bytes for
        up to 16 ms, and the operating system may add more.
    """

    def __init__(self, port, baud, *, timeout_s=0.5):
        try:
            import serial
        except ImportError:
            raise RuntimeError("SerialLink needs pyserial (pip install pyserial)") from None
        if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
            raise ValueError(f"Baud rate must be a positive integer, not {baud!r}")
        self._name = port
        try:
            self._port = serial.serial_for_url(port, baudrate=baud, timeout=timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ConnectionError(f"Cannot open serial port {port!r} at {baud} baud: {exc}") \
                from None
        self.baud = baud
        self.margin_s = float(timeout_s)
        self._pending = bytearray()

    port = property(lambda self: self._name)

    async def write(self, data):
        self._port.write(bytes(data))

    async def read(self, n, timeout_s):
        if len(self._pending) < n:
            timeout_s = max(timeout_s, 0)
            if self._port.timeout != timeout_s:      # setting it reconfigures the port
                self._port.timeout = timeout_s
            # Whatever has arrived too: a byte per system call would cost as much time as
            # the line at a few Mbaud.
            self._pending += self._port.read(max(n - len(self._pending),
                                                 self._port.in_waiting))
        if len(self._pending) < n:
            raise AcceleratorTimeout(f"{self._name}: {len(self._pending)} of {n} bytes within "
                                     f"{timeout_s:.3g} s")
        data = bytes(self._pending[:n])
        del self._pending[:n]
        return data

    async def wait_s(self, seconds):
        await asyncio.sleep(seconds)

    def clear(self):
        self._pending.clear()
        self._port.reset_output_buffer()
        self._port.reset_input_buffer()

    def close(self):
        self._port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CocotbUartLink:
    """cocotbext-uart on the ``rx`` and ``tx`` of a simulated :class:`hw.bridge.UartBridge`
    (or :class:`~hw.bridge.BridgedAccelerator`); times are simulated.

    Parameters
    ----------
    dut : cocotb handle
        With ports ``clk``, ``rx`` and ``tx``; the caller runs the clock.
    baud_divisor : int
        The bridge's ``divisor``: ``baud = 1e9 / (divisor * period_ns)``.
    period_ns : int
        Clock period.
    margin_bytes : int
        ``margin_s`` in byte times: the slack added to every wait.
    quiet : bool
        Keep cocotbext-uart's message per byte out of the log.

    Members
    -------
    source : cocotbext.uart.UartSource
        Drives ``dut.rx``.
    sink : cocotbext.uart.UartSink
        Watches ``dut.tx``.
    """

    def __init__(self, dut, baud_divisor, period_ns, *, margin_bytes=64, quiet=True):
        import logging
        import warnings

        from cocotbext.uart import UartSink, UartSource

        if quiet:
            for pin in (dut.rx, dut.tx):
                logging.getLogger(f"cocotb.{pin._path}").setLevel(logging.WARNING)
        # cocotbext-uart 0.1.4 uses setimmediatevalue, which cocotb 2.x deprecates.
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                module=r"cocotbext\.uart\.")
        self._dut = dut
        self._period = period_ns
        self.baud = 1e9 / (baud_divisor * period_ns)
        self.margin_s = margin_bytes * _BITS_PER_BYTE / self.baud
        self.source = UartSource(dut.rx, baud=self.baud, bits=8, stop_bits=1)
        self.sink = UartSink(dut.tx, baud=self.baud, bits=8, stop_bits=1)
        self._pending = bytearray()

    async def write(self, data):
        await self.source.write(bytes(data))

    async def read(self, n, timeout_s):
        from cocotb.utils import get_sim_time

        deadline = get_sim_time("ns") + timeout_s * 1e9
        while len(self._pending) < n:
            if self.sink.empty():
                remaining = deadline - get_sim_time("ns")
                if remaining <= 0:
                    raise AcceleratorTimeout(f"UART sink: {len(self._pending)} of {n} bytes "
                                             f"within {timeout_s:.3g} s of simulated time")
                await self.sink.wait(math.ceil(remaining), "ns")
            self._pending += self.sink.read_nowait()
        data = bytes(self._pending[:n])
        del self._pending[:n]
        return data

    async def wait_s(self, seconds):
        """Wait ``seconds`` of simulated time, to the next rising edge of ``clk``."""
        from cocotb.triggers import RisingEdge, Timer

        cycles = max(1, round(seconds * 1e9 / self._period))
        if cycles > 1:
            await Timer((cycles - 1) * self._period, "ns")
        await RisingEdge(self._dut.clk)

    def clear(self):
        self.source.clear()
        self.sink.clear()
        self._pending.clear()
