"""The UART link: hw.uart and hw.bridge in Amaranth's simulator, sim.link's BridgeTransport
against a Python model of the device, and the accelerator behind the bridge as Verilog under
cocotb, driven by the unchanged AcceleratorHost and checked bit-exactly against sim.golden
(testbench: sim/tb/bridge.py).

The cocotb build, ``build/cocotb/bridge-<sim>-2x2``, has a 2x2 array with small buffers, 8
cycles per bit (a byte in 80 cycles), a 64-byte receive FIFO (blocks of 16 beats, so most
frames span several) and a parser timeout of 4096 cycles. A first Verilator build takes about a
minute. Both runs are in the slow tier; the default tier drives the same build with the
randomized host (tests/test_campaign.py).
"""

import asyncio
import itertools

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Fragment, Module
from amaranth.sim import Simulator

from conftest import BUILD
from fp8accel.hw.axi import verilog_ports
from fp8accel.hw.bridge import (BRIDGE_MAGIC, BeatSlice, BRIDGE_VERSION, RESET_CYCLES, TIMEOUT_MIN_BITS,
                       BridgedAccelerator, UartBridge)
from fp8accel.hw.top import ID_VALUE, Ctrl, Reg
from fp8accel.hw.uart import UartRx, UartTx
from fp8accel.sim.host import AcceleratorError, AcceleratorHost, AcceleratorTimeout
from fp8accel.sim.host.link import BridgeTransport, SerialLink
from fp8accel.sim.run.runner import run_cocotb



# Waveforms -------------------------------------------------------------------------------------

def frame_bits(byte, stop=1):
    """The ten bits of an 8N1 frame: start, data LSB first, stop."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def line_wave(frames, bit_cycles, gaps, phase=0.0, lead=6):
    """The line, one value per clock cycle: ``frames`` (lists of bits), each bit
    ``bit_cycles`` long (a float: a mismatched baud rate), ``gaps[i]`` idle cycles after frame
    ``i``. Edges fall on the cycle nearest their exact time, ``phase`` cycles late."""
    wave = []
    t = 0.0

    def emit(value, duration):
        nonlocal t
        t += duration
        wave.extend([value] * (round(t) - len(wave)))

    emit(1, lead + phase)
    for bits, gap in zip(frames, gaps):
        for bit in bits:
            emit(bit, bit_cycles)
        emit(1, gap)
    emit(1, 12 * bit_cycles)
    return wave


def decode_line(wave, divisor):
    """Bytes sent on a line by a transmitter with exactly ``divisor`` cycles per bit; raises
    on a bad stop bit."""
    out = []
    i = 1
    while i < len(wave):
        if wave[i - 1] and not wave[i]:
            mid = i + divisor // 2
            if mid + 9 * divisor >= len(wave):
                raise AssertionError(f"a frame starting at cycle {i} is cut off")
            bits = [wave[mid + k * divisor] for k in range(10)]
            assert bits[0] == 0 and bits[9] == 1, f"bad frame at cycle {i}: {bits}"
            out.append(sum(b << k for k, b in enumerate(bits[1:9])))
            i = mid + 9 * divisor
        else:
            i += 1
    return out


def run_rx(divisor, wave):
    """Drive ``wave`` into a :class:`UartRx`; returns ``(bytes, framing_errors)``."""
    dut = UartRx(divisor)
    got, errors = [], []

    async def bench(ctx):
        for value in wave:
            ctx.set(dut.rx, value)
            *_, valid, payload, ferr = await ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                               dut.framing_error)
            if valid:
                got.append(payload)
            errors.append(ferr)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, sum(errors)


# hw.uart ---------------------------------------------------------------------------------------

class _Loopback(Elaboratable):
    def __init__(self, divisor):
        self.tx = UartTx(divisor)
        self.rx = UartRx(divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx = self.tx
        m.submodules.rx = self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("divisor", [4, 5, 25])
def test_uart_loopback(divisor, rng):
    """Random bytes through UartTx into UartRx: half back to back, half with idle cycles
    between them. The line is exactly the 8N1 waveform (start, LSB first, stop, each bit
    ``divisor`` cycles, 10 * divisor per byte when back to back) and every byte comes back."""
    count = 48 if divisor < 25 else 24
    data = [int(x) for x in rng.integers(0, 256, count)]
    dut = _Loopback(divisor)
    accepted, line, got, errors = [], [], [], 0
    # Back to back for the first half, then the source idles 0-30 cycles before each byte.
    idles = [0] * (count // 2) + [int(x) for x in rng.integers(0, 31, count - count // 2)]
    total = sum(idles) + count * 10 * divisor + 12 * divisor

    async def producer(ctx):
        edge = 0
        for byte, idle in zip(data, idles):
            ctx.set(dut.tx.i.valid, 0)
            for _ in range(idle):
                await ctx.tick()
                edge += 1
            ctx.set(dut.tx.i.valid, 1)
            ctx.set(dut.tx.i.payload, byte)
            while True:
                *_, ready = await ctx.tick().sample(dut.tx.i.ready)
                edge += 1
                if ready:
                    accepted.append(edge)
                    break
        ctx.set(dut.tx.i.valid, 0)

    async def monitor(ctx):
        nonlocal errors
        for _ in range(total):
            *_, tx, valid, payload, ferr = await ctx.tick().sample(
                dut.tx.tx, dut.rx.o.valid, dut.rx.o.payload, dut.rx.framing_error)
            line.append(tx)
            if valid:
                got.append(payload)
            errors += ferr

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(producer)
    sim.add_testbench(monitor)
    sim.run()
    assert len(accepted) == count
    gaps = np.diff(accepted[:count // 2])
    assert (gaps == 10 * divisor).all(), f"back-to-back bytes {sorted(set(gaps.tolist()))} " \
                                         f"cycles apart, expected {10 * divisor}"
    # The ideal line: byte j occupies the 10 * divisor cycles after the edge that took it.
    expected = [1] * len(line)
    for edge, byte in zip(accepted, data):
        for k, bit in enumerate(frame_bits(byte)):
            for c in range(divisor):
                expected[edge + k * divisor + c] = bit
    bad = [i for i, (a, b) in enumerate(zip(line, expected)) if a != b]
    assert not bad, f"tx differs from the 8N1 waveform at cycles {bad[:8]}"
    assert got == data, f"received {got}, sent {data}"
    assert errors == 0


def test_uart_rx_drops_a_bad_stop_bit():
    """A frame whose stop bit is 0 is dropped and strobes framing_error once; so is a break
    (the line low for 30 bit times); a glitch shorter than half a bit is ignored; the bytes
    around them are received."""
    d = 8
    frames = [frame_bits(0x41), frame_bits(0x5A, stop=0), frame_bits(0x42)]
    wave = line_wave(frames, d, [2 * d] * 3)
    got, errors = run_rx(d, wave)
    assert (got, errors) == ([0x41, 0x42], 1)
    wave = (line_wave([frame_bits(0x13)], d, [d]) + [0] * (30 * d) + [1] * (2 * d)
            + [0] * (d // 2 - 1) + [1] * (2 * d) + line_wave([frame_bits(0xEC)], d, [d]))
    got, errors = run_rx(d, wave)
    assert (got, errors) == ([0x13, 0xEC], 1)


@pytest.mark.parametrize("divisor", [5, 8, 25])
@pytest.mark.parametrize("error", [-0.03, 0.03], ids=["fast", "slow"])
def test_uart_rx_baud_mismatch(divisor, error, rng):
    """A sender 3 % fast or slow, bytes back to back (a fast sender's next start bit right
    after the stop bit: the hardest case) and with random gaps, edges at every phase."""
    data = [int(x) for x in rng.integers(0, 256, 40)]
    gaps = [0] * 20 + [int(x) for x in rng.integers(0, 3 * divisor, 20)]
    wave = line_wave([frame_bits(b) for b in data], divisor * (1 + error), gaps,
                     phase=float(rng.random()))
    got, errors = run_rx(divisor, wave)
    assert got == data and errors == 0, f"received {got}, sent {data}, {errors} framing errors"


def test_uart_rx_mismatch_beyond_tolerance_fails():
    """The check above can fail: 8 % slow, past the tolerance (4.2 % at divisor 8), garbles
    bytes sent back to back."""
    data = list(range(0x30, 0x50))
    wave = line_wave([frame_bits(b) for b in data], 8 * 1.08, [0] * len(data))
    got, errors = run_rx(8, wave)
    assert got != data or errors


@pytest.mark.parametrize("cls", [UartRx, UartTx])
@pytest.mark.parametrize("divisor", [3, 0, -8, 8.0, True, "8"])
def test_uart_divisor_is_checked(cls, divisor):
    with pytest.raises(ValueError, match=r"^Divisor \(clock cycles per bit\) must be an "
                                         r"integer of at least 4, not " + repr(divisor)
                                         .replace(".", r"\.") + "$"):
        cls(divisor)


# hw.bridge in Amaranth's simulator -----------------------------------------------------------

def test_bridge_parameters_are_checked():
    for kwargs, message in (
            ({"divisor": 2}, r"Divisor \(clock cycles per bit\) must be an integer of at least "
                             r"4, not 2"),
            ({"divisor": 8, "fifo_depth": 8}, r"FIFO depth must be an integer from 16 to "
                                              r"262143 \(a block of fifo_depth // 4 beats is "
                                              r"counted in 16 bits\), not 8"),
            ({"divisor": 8, "fifo_depth": 1 << 18}, r"FIFO depth must be an integer from 16 "
                                                    r"to 262143"),
            ({"divisor": 8, "timeout_cycles": 2047},
             rf"Timeout must be an integer of at least {TIMEOUT_MIN_BITS} bit times \(2048 "
             rf"cycles at divisor 8\), not 2047"),
            ({"divisor": 8, "timeout_cycles": 4096.0}, r"Timeout must be an integer")):
        with pytest.raises(ValueError, match=message):
            UartBridge(**kwargs)
    with pytest.raises(ValueError, match=r"rows"):
        BridgedAccelerator(0, 2, divisor=8)
    b = UartBridge(868)
    assert (b.block, b.timeout_cycles) == (128, 1 << 20)
    assert b.ident == 0xB1 | 1 << 8 | 128 << 16
    slow = UartBridge(5000)
    assert slow.timeout_cycles == TIMEOUT_MIN_BITS * 5000
    top = BridgedAccelerator(2, 2, divisor=8, a_depth=64, b_depth=64, acc_depth=64)
    assert top.bridge.divisor == 8 and top.accelerator.rows == 2
    for design in (b, slow, top):
        Fragment.get(design, None)         # elaborates (and so uses) it


class BridgeBench:
    """A :class:`UartBridge` (4 cycles per bit, 64-byte FIFO: blocks of 16 beats, timeout 1024
    cycles) in Amaranth's simulator, with a host that sends a script of bytes and pauses on
    ``rx``, an AXI4-Lite slave whose address and data ready signals are random and independent,
    a stream sink with random ready (it never takes a beat of 0xDEAD) and a stream source with
    random valid. Everything on ``tx`` and every handshake is recorded; the AXI and stream
    rules (valid held, payload stable until the handshake) are checked every cycle."""

    DIVISOR = 4
    TIMEOUT = 1024

    def __init__(self, rng, script, source_beats=()):
        self.dut = UartBridge(self.DIVISOR, fifo_depth=64, timeout_cycles=self.TIMEOUT)
        self.rng = rng
        self.script = script
        self.source_beats = list(source_beats)
        self.regs = {}
        self.writes = []         # (addr, data, strb)
        self.sunk = []           # (tdata, tlast) taken from m_axis
        self.sourced = []        # beats taken on s_axis
        self.line = []
        self.dev_rst = []
        self.violations = []

    def run(self):
        dut, d = self.dut, self.DIVISOR
        done = [False]

        async def host(ctx):
            for item in self.script:
                if isinstance(item, int):
                    await ctx.tick().repeat(item)
                    continue
                for byte in item:
                    for bit in frame_bits(byte):
                        ctx.set(dut.rx, bit)
                        await ctx.tick().repeat(d)
            await ctx.tick().repeat(20 * 10 * d)
            done[0] = True

        # The ports by their Verilog names (m_axil_awvalid, ...).
        flat = {name: value for name, (value, _) in verilog_ports(dut).items()}

        async def world(ctx):
            rng = self.rng
            aw = w = b = r = None
            src = 0
            prev = {}
            while not done[0]:
                awready = aw is None and rng.random() < 0.4
                wready = w is None and rng.random() < 0.4
                arready = r is None and rng.random() < 0.5
                ctx.set(dut.m_axil.awready, awready)
                ctx.set(dut.m_axil.wready, wready)
                ctx.set(dut.m_axil.arready, arready)
                ctx.set(dut.m_axil.bvalid, b is not None)
                ctx.set(dut.m_axil.bresp, b or 0)
                ctx.set(dut.m_axil.rvalid, r is not None)
                ctx.set(dut.m_axil.rdata, r[0] if r else 0)
                ctx.set(dut.m_axil.rresp, r[1] if r else 0)
                tready = rng.random() < 0.6 and ctx.get(dut.m_axis.tdata) != 0xDEAD
                ctx.set(dut.m_axis.tready, tready)
                svalid = src < len(self.source_beats) and rng.random() < 0.5
                if svalid:
                    ctx.set(dut.s_axis.tdata, self.source_beats[src][0])
                    ctx.set(dut.s_axis.tlast, self.source_beats[src][1])
                ctx.set(dut.s_axis.tvalid, svalid)
                names = ("m_axil_awvalid", "m_axil_awaddr", "m_axil_wvalid", "m_axil_wdata",
                         "m_axil_wstrb", "m_axil_bready", "m_axil_arvalid", "m_axil_araddr",
                         "m_axil_rready", "m_axis_tvalid", "m_axis_tdata", "m_axis_tlast",
                         "s_axis_tready", "tx", "dev_rst")
                values = await ctx.tick().sample(*(flat[n] for n in names))
                s = dict(zip(names, values[2:]))
                self.line.append(s["tx"])
                self.dev_rst.append(s["dev_rst"])
                # Valid held and payload stable until the handshake (but for the beat of
                # 0xDEAD, which the parser's timeout abandons).
                for valid, payload, ready in (("m_axil_awvalid", ("m_axil_awaddr",), awready),
                                              ("m_axil_wvalid", ("m_axil_wdata",
                                                                 "m_axil_wstrb"), wready),
                                              ("m_axil_arvalid", ("m_axil_araddr",), arready),
                                              ("m_axis_tvalid", ("m_axis_tdata",
                                                                 "m_axis_tlast"), tready)):
                    now = tuple(s[n] for n in payload)
                    held = prev.get(valid)
                    if held is not None and (not s[valid] or held != now):
                        self.violations.append(f"{valid} dropped or changed its payload "
                                               f"before the handshake")
                    exempt = valid == "m_axis_tvalid" and now[0] == 0xDEAD
                    prev[valid] = now if s[valid] and not ready and not exempt else None
                if s["m_axil_awvalid"] and awready:
                    aw = s["m_axil_awaddr"]
                if s["m_axil_wvalid"] and wready:
                    w = (s["m_axil_wdata"], s["m_axil_wstrb"])
                if aw is not None and w is not None and b is None:
                    self.writes.append((aw, *w))
                    self.regs[aw] = w[0]
                    b = 2 if aw >= 0x80 else 0
                    aw = w = None
                elif b is not None and s["m_axil_bready"]:
                    b = None
                if r is not None and s["m_axil_rready"]:
                    r = None
                elif s["m_axil_arvalid"] and arready:
                    a = s["m_axil_araddr"]
                    r = (self.regs.get(a, 0xC0DE0000 | a), 2 if a >= 0x80 else 0)
                if s["m_axis_tvalid"] and tready:
                    self.sunk.append((s["m_axis_tdata"], s["m_axis_tlast"]))
                if svalid and s["s_axis_tready"]:
                    self.sourced.append(self.source_beats[src])
                    src += 1

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(host)
        sim.add_testbench(world)
        sim.run()
        return self

    def packets(self):
        """``(answers, beats)``: the answers in order as byte strings, and the beat packets
        as ``(value, last)``; fails on a byte that starts no packet or a packet cut off."""
        data = decode_line(self.line, self.DIVISOR)
        sizes = {ord("w"): 2, ord("r"): 6, ord("k"): 1, ord("z"): 1, ord("i"): 5, ord("?"): 2,
                 ord("D"): 3, ord("L"): 3}
        answers, beats, i = [], [], 0
        while i < len(data):
            size = sizes.get(data[i])
            assert size is not None, f"byte {i} (0x{data[i]:02x}) starts no packet: {data}"
            packet = bytes(data[i:i + size])
            assert len(packet) == size, f"packet cut off: {packet}"
            if packet[0] in b"DL":
                beats.append((packet[1] | packet[2] << 8, int(packet[0] == ord("L"))))
            else:
                answers.append(packet)
            i += size
        return answers, beats


def _le(value, n):
    return int(value).to_bytes(n, "little")


def test_bridge_commands_in_pysim(rng):
    """Every command against the models: answers in order, AXI4-Lite writes and reads with
    address and data accepted in different cycles, SLVERR passed on, blocks to m_axis with
    tlast only on the last beat of a last block, beats from s_axis as 'D'/'L' in order and
    never inside another packet, 'Z' holding dev_rst for 16 cycles, and the timeout dropping a
    truncated 'W' and a beat that the sink never takes."""
    pause = 8 * 10 * BridgeBench.DIVISOR
    block1 = [int(x) for x in rng.integers(0, 0xDEAD, 5)]
    block2 = [int(x) for x in rng.integers(0, 0xDEAD, 16)]
    script = [
        b"I", pause,
        b"W\x10" + _le(0x12345678, 4), pause,
        b"R\x10", pause,
        b"R\x90", pause,
        b"W\x94" + _le(0xCAFEF00D, 4), pause,
        b"Q", pause,
        b"S" + _le(5, 2) + b"\x01" + b"".join(_le(x, 2) for x in block1), pause,
        b"S" + _le(16, 2) + b"\x00" + b"".join(_le(x, 2) for x in block2), pause,
        b"S\x00\x00\x01", pause,
        b"Z", pause,
        b"W\x20\x01", BridgeBench.TIMEOUT + 200,      # truncated: dropped after the timeout
        b"R\x20", pause,
        b"S\x01\x00\x01" + _le(0xDEAD, 2), BridgeBench.TIMEOUT + 200,   # never taken
        b"I", pause,
    ]
    source = [(0x0101, 0), (0x0202, 0), (0x7A4C, 1), (0x4457, 0), (0x00FF, 1)]
    bench = BridgeBench(rng, script, source).run()
    answers, beats = bench.packets()
    ident = bytes([ord("i"), BRIDGE_MAGIC, BRIDGE_VERSION]) + _le(16, 2)
    assert answers == [
        ident,
        b"w\x00",
        b"r" + _le(0x12345678, 4) + b"\x00",
        b"r" + _le(0xC0DE0090, 4) + b"\x02",
        b"w\x02",
        b"?Q",
        b"k", b"k", b"k",
        b"z",
        b"r" + _le(0xC0DE0020, 4) + b"\x00",
        ident,
    ], answers
    assert bench.writes == [(0x10, 0x12345678, 0xF), (0x94, 0xCAFEF00D, 0xF)]
    assert bench.sunk == [(x, int(i == 4)) for i, x in enumerate(block1)] + \
        [(x, 0) for x in block2]
    assert bench.sourced == source and beats == source
    assert not bench.violations, bench.violations[:4]
    runs = [len(list(g)) for v, g in itertools.groupby(bench.dev_rst) if v]
    assert runs == [RESET_CYCLES], runs


# BridgeTransport against a model of the device --------------------------------------------------

class FakeLink:
    """The device side of the protocol in Python: registers, a frame sink, beats to stream out,
    faults on demand. Reads never wait: when nothing is queued the read times out at once
    (recording the timeout it was given)."""

    baud = 1_000_000
    margin_s = 0.01

    def __init__(self, *, block=16, ident=None, regs=None):
        self.block = block
        self.ident = ident if ident is not None else bytes([BRIDGE_MAGIC, BRIDGE_VERSION]) \
            + _le(block, 2)
        self.regs = {Reg.ID: ID_VALUE, **(regs or {})}
        self.out = bytearray()
        self.sent = []             # commands, as bytes
        self.frames = [[]]         # beats received, split at tlast
        self.timeouts = []
        self.waited = []
        self.respond = {}          # command byte -> answer override (bytes), once
        self.swallow = 0           # commands to ignore (a device mid-command)
        self.on_block = None       # called with each block's beats: returns bytes to send

    def stream(self, beats, last=True):
        """Queue beat packets, tlast on the last."""
        for i, b in enumerate(beats):
            self.out += bytes([ord("L" if last and i == len(beats) - 1 else "D")]) + _le(b, 2)

    async def write(self, data):
        data = bytes(data)
        self.sent.append(data)
        if self.swallow:
            self.swallow -= 1
            return
        c = data[0]
        if c in self.respond:
            self.out += self.respond.pop(c)
            return
        if c == ord("W"):
            self.regs[data[1]] = int.from_bytes(data[2:6], "little")
            self.out += b"w" + (b"\x02" if data[1] >= 0x80 else b"\x00")
        elif c == ord("R"):
            self.out += b"r" + _le(self.regs.get(data[1], 0), 4) + \
                (b"\x02" if data[1] >= 0x80 else b"\x00")
        elif c == ord("S"):
            n = int.from_bytes(data[1:3], "little")
            assert 1 <= n <= self.block and len(data) == 4 + 2 * n, data
            beats = [int.from_bytes(data[4 + 2 * i:6 + 2 * i], "little") for i in range(n)]
            self.frames[-1] += beats
            if data[3]:
                self.frames.append([])
            if self.on_block:
                self.out += self.on_block(beats)
            self.out += b"k"
        elif c == ord("Z"):
            self.out += b"z"
        elif c == ord("I"):
            self.out += b"i" + self.ident
        else:
            self.out += b"?" + bytes([c])

    async def read(self, n, timeout_s):
        if len(self.out) < n:
            self.timeouts.append(timeout_s)
            raise AcceleratorTimeout(f"fake link: {len(self.out)} of {n} bytes")
        data = bytes(self.out[:n])
        del self.out[:n]
        return data

    async def wait_s(self, seconds):
        self.waited.append(seconds)


def _transport(link=None, **kw):
    link = link or FakeLink(**kw)
    return BridgeTransport(link, clock_hz=1e6), link


def _beats_bytes(beats):
    return b"".join(_le(b, 2) for b in beats)


def _run(coro):
    return asyncio.run(coro)


def test_transport_speaks_the_protocol():
    t, link = _transport(block=4)
    _run(t.reset())
    assert t.block == 4 and link.sent == [b"Z", b"I"]
    _run(t.write_reg(Reg.M, 0xDEADBEEF))
    assert link.sent[-1] == b"W\x10\xef\xbe\xad\xde"
    assert _run(t.read_reg(Reg.M)) == 0xDEADBEEF and link.sent[-1] == b"R\x10"
    # A frame of 10 beats is three blocks, tlast (last = 1) only on the third.
    _run(t.send(_beats_bytes(range(0x100, 0x10A)), 1000))
    assert link.sent[-3:] == [b"S\x04\x00\x00" + b"".join(_le(x, 2) for x in range(0x100, 0x104)),
                              b"S\x04\x00\x00" + b"".join(_le(x, 2) for x in range(0x104, 0x108)),
                              b"S\x02\x00\x01" + b"".join(_le(x, 2) for x in range(0x108, 0x10A))]
    assert link.frames[0] == list(range(0x100, 0x10A))
    link.stream([1, 2, 3])
    assert _run(t.recv(100)) == _beats_bytes([1, 2, 3])
    # An odd byte goes out with a zero.
    _run(t.send(b"\x01\x02\x03", 1000))
    assert link.sent[-1] == b"S\x02\x00\x01\x01\x02\x03\x00"
    _run(t.wait_cycles(2500))
    assert link.waited == [2500 / 1e6]


def test_transport_exchange_collects_beats_between_blocks():
    """exchange(): the device streams results while the blocks go in (two beats for every
    three, as UPDATE does); the beats interleave with the 'k' answers and come back as one
    frame, and a frame that ended before is kept apart."""
    t, link = _transport(block=6)
    _run(t.reset())
    link.stream([7, 8])                    # an earlier frame, not yet read
    made = []

    def on_block(beats):
        out = bytearray()
        for b in beats[::3]:
            made.extend([b, b + 1])
            last = len(made) == 2 * 7
            out += b"D" + _le(b, 2) + (b"L" if last else b"D") + _le(b + 1, 2)
        return bytes(out)

    link.on_block = on_block
    beats = list(range(100, 121))          # 21 beats: four blocks, 7 elements
    assert _run(t.exchange(_beats_bytes(beats), 1000)) == _beats_bytes([7, 8])
    assert _run(t.recv(1000)) == _beats_bytes(made)


def test_transport_register_errors():
    t, link = _transport()
    _run(t.reset())
    with pytest.raises(AcceleratorError, match=r"^Reading register 0x90 failed: error 0 "
                                               r"\(SLVERR: the register refused the access: "
                                               r".*\(RESP 2\)\)$"):
        _run(t.read_reg(0x90))
    with pytest.raises(AcceleratorError, match=r"^Writing register 0x84 failed: error 0 "
                                               r"\(SLVERR: .*\(RESP 2\)\)$"):
        _run(t.write_reg(0x84, 1))
    for call, message in ((t.read_reg(256), r"Register address must be an integer from 0 to "
                                            r"255, not 256"),
                          (t.write_reg(0, 1 << 32), r"Register value must fit 32 bits"),
                          (t.send(b"", 10), r"A frame has at least one byte")):
        with pytest.raises(ValueError, match=message):
            _run(call)


@pytest.mark.parametrize("answer, message", [
    (b"?W", r"^Writing register 0x10 failed: error 0 \(PROTOCOL: the bridge did not "
            r"understand command byte 'W'\)$"),
    (b"r\x01\x02\x03\x04\x00", r"^Writing register 0x10 failed: error 0 \(PROTOCOL: expected "
                               r"'w', the device sent 'r' 0x01 0x02 0x03 0x04 0x00\)$"),
    (b"\x00", r"^Writing register 0x10 failed: error 0 \(PROTOCOL: the device sent 0x00, "
              r"which starts no packet\)$"),
    (b"D\x01\x00x", r"^Writing register 0x10 failed: error 0 \(PROTOCOL: the device sent "
                    r"'x', which starts no packet\)$"),
], ids=["unknown-command", "wrong-answer", "noise", "noise-after-a-beat"])
def test_transport_protocol_violations(answer, message):
    t, link = _transport()
    _run(t.reset())
    link.respond[ord("W")] = answer
    with pytest.raises(AcceleratorError, match=message) as info:
        _run(t.write_reg(Reg.M, 5))
    assert info.value.name == "PROTOCOL"


def test_transport_unsolicited_answer_and_bad_ident():
    t, link = _transport()
    _run(t.reset())
    link.out += b"k"
    with pytest.raises(AcceleratorError, match=r"^Receiving a frame failed: error 0 \(PROTOCOL: "
                                               r"the device sent 'k', an answer to no "
                                               r"command\)$"):
        _run(t.recv(100))
    t, link = _transport(ident=b"\x42\x01\x10\x00")
    with pytest.raises(AcceleratorError, match=r"Identifying the bridge \('I'\) failed: error 0 "
                                               r"\(BAD_BRIDGE: the device answered 'B' 0x01 "
                                               r"0x10 0x00, expected 0xb1 and version 1\)"):
        _run(t.reset())


def test_transport_timeouts_say_what_and_how_long():
    """A silent device: the wait is the device cycles at the clock, the bytes at the baud rate
    and the margin, and the message names the command and what came."""
    t, link = _transport(block=4)
    _run(t.reset())
    link.swallow = 1
    with pytest.raises(AcceleratorTimeout, match=r"^Reading register 0x0c: no answer within "
                                                 r"0.0101 s; nothing arrived$"):
        _run(t.read_reg(Reg.STATUS))
    # (2 + 6 + 3) bytes of 10 us, and 10 ms of margin.
    assert link.timeouts[-1] == pytest.approx(11 * 10e-6 + 0.01)
    link.respond[ord("R")] = b"r\x01\x02"
    with pytest.raises(AcceleratorTimeout, match=r"the device sent 'r' 0x01 0x02 and then "
                                                 r"stopped"):
        _run(t.read_reg(Reg.STATUS))
    link.out.clear()
    link.swallow = 1
    link.stream([5, 6], last=False)
    with pytest.raises(AcceleratorTimeout, match=r"^Sending a frame of 3 beats \(block 1 of 1\): "
                                                 r"no answer within 0.0121 s; 2 beats arrived, "
                                                 r"then nothing$"):
        _run(t.send(_beats_bytes([1, 2, 3]), 2000))
    # 2000 cycles at 1 MHz, (4 + 6 + 1 + 3) bytes, the margin.
    assert link.timeouts[-1] == pytest.approx(2e-3 + 14e-5 + 0.01)
    with pytest.raises(AcceleratorTimeout, match=r"^Receiving a frame: no answer within"):
        _run(t.recv(100))


def test_transport_reset_resynchronises():
    """'Z' swallowed by an interrupted command: reset stays silent for the device's timeout
    and tries again, dropping stale answers and beats; a device that never answers is a
    timeout that says so."""
    link = FakeLink()
    t = BridgeTransport(link, clock_hz=1e6, resync_cycles=5000)
    link.swallow = 1
    link.out += b"k" + b"D\x01\x00" + b"r\x00\x00\x00\x00\x00"
    _run(t.reset())
    assert link.sent == [b"Z", b"Z", b"I"]
    assert link.waited == [pytest.approx(5000 / 1e6 + 0.01)]
    link.stream([1, 2])
    _run(t.reset())
    with pytest.raises(AcceleratorTimeout):
        _run(t.recv(10))                   # the frame before the reset was dropped
    link.swallow = 2
    with pytest.raises(AcceleratorTimeout, match=r"Resetting the device \('Z'\): no answer "
                                                 r"within .* s; nothing arrived, twice, the "
                                                 r"second time after 5000 cycles of "
                                                 r"silence"):
        _run(t.reset())


def test_host_runs_over_the_transport():
    """AcceleratorHost, unchanged, over BridgeTransport and the model: the register traffic
    and frames of a GEMM."""
    link = FakeLink(block=8, regs={Reg.CONFIG: 2 | 2 << 8 | 6 << 16 | 9 << 20 | 15 << 24,
                                   Reg.A_WORDS: 64, Reg.B_BYTES: 64, Reg.ACC_WORDS: 64,
                                   Reg.BUILD: 2 | 1 << 8, Reg.STATUS: 2})
    t = BridgeTransport(link, clock_hz=1e6)
    host = AcceleratorHost(t)
    _run(host.reset())

    def on_write(data):
        if data[0] == ord("W") and data[1] == Reg.CTRL and data[2] == Ctrl.READ_C:
            link.stream(list(range(6)))

    write = link.write

    async def hooked(data):
        await write(data)
        on_write(bytes(data))

    link.write = hooked
    A = np.arange(12, dtype=np.uint8).reshape(3, 4)
    B = np.arange(8, dtype=np.uint8).reshape(4, 2)
    C, cycles, active = _run(host.run_gemm(A, B))
    assert C.tolist() == [[0, 1], [2, 3], [4, 5]]
    # 16-bit beats of two codes: A's buffer image (here A in row order), then B.
    assert link.frames[:2] == [[2 * i | (2 * i + 1) << 8 for i in range(6)],
                               [2 * i | (2 * i + 1) << 8 for i in range(4)]]


def test_serial_link(tmp_path):
    """pyserial's loop:// echoes what is written; a port that does not exist is named in the
    error."""
    with SerialLink("loop://", 115200, timeout_s=0.05) as link:
        assert link.baud == 115200 and link.margin_s == 0.05
        _run(link.write(b"k?Q"))
        assert _run(link.read(2, 0.1)) == b"k?"
        with pytest.raises(AcceleratorTimeout, match=r"loop://: 1 of 3 bytes within 0.01 s"):
            _run(link.read(3, 0.01))
        assert _run(link.read(1, 0.01)) == b"Q"       # kept across the timeout
    missing = str(tmp_path / "ttyNONE")
    with pytest.raises(ConnectionError, match=rf"^Cannot open serial port '{missing}' at "
                                              rf"115200 baud: "):
        SerialLink(missing, 115200)


# The accelerator behind the bridge, under cocotb -----------------------------------------------

DEPTHS = [256, 1024, 256]

#: What Icarus runs (it simulates some 20 times slower than Verilator).
ICARUS_TESTS = ["test_reset_and_config", "test_gemms", "test_unknown_command",
                "test_timeout_resynchronises"]




def bridge_config(sim):
    """Verilator: four random GEMMs up to 10x24 by 24x7, A of the long GEMM 117 beats (8
    blocks), UPDATEs of 1, 7 and 40 elements. Icarus: no random GEMM, a long A of 40 beats."""
    cfg = {"rows": 2, "cols": 2, "depths": DEPTHS, "acc_fmt": "dlfloat16", "seed": 1,
           "divisor": 8, "fifo_depth": 64, "timeout_cycles": 4096, "sabotage": False,
           "stats": None, "max_dims": [10, 7, 24]}
    if sim == "verilator":
        cfg.update(random_cases=4, long_frame=[9, 13], update_lengths=[1, 7, 40])
    else:
        cfg.update(random_cases=0, long_frame=[5, 8], update_lengths=[3])
    return cfg


def run_bridge(sim, cfg, testcase=None):
    top = BridgedAccelerator(cfg["rows"], cfg["cols"], divisor=cfg["divisor"],
                             fifo_depth=cfg["fifo_depth"], timeout_cycles=cfg["timeout_cycles"],
                             a_depth=cfg["depths"][0], b_depth=cfg["depths"][1],
                             acc_depth=cfg["depths"][2])
    return run_cocotb(top, toplevel="bridged", test_module="fp8accel.sim.tb.bridge",
                      build_dir=BUILD / f"bridge-{sim}-{cfg['rows']}x{cfg['cols']}", sim=sim,
                      config=cfg, testcase=testcase)


def _report(sim, results):
    print(f"{sim}: {len(results.tests)} cocotb tests passed; build {results.build_time:.1f} s, "
          f"run {results.test_time:.1f} s")


@pytest.mark.verilator
@pytest.mark.slow
def test_bridged_accelerator_on_verilator():
    """Every test of sim/tb/bridge.py; then, on the same build, the checks are shown not to be
    vacuous: against a model without chunking the GEMMs fail, against the other rounding the
    UPDATEs fail."""
    cfg = bridge_config("verilator")
    results = run_bridge("verilator", cfg)
    assert {name for name, status, _ in results.tests if status == "passed"} >= {
        "test_reset_and_config", "test_gemms", "test_update", "test_device_error",
        "test_unknown_command", "test_timeout_resynchronises",
        "test_reset_drops_a_frame_in_flight"}, results.tests
    _report("verilator", results)
    cfg["sabotage"] = True
    with pytest.raises(AssertionError, match=r"1 of 1 cocotb tests failed(.|\n)*"
                                             r"differ from sim.golden.gemm"):
        run_bridge("verilator", cfg, testcase="test_gemms")
    with pytest.raises(AssertionError, match=r"1 of 1 cocotb tests failed(.|\n)*"
                                             r"differ from sim.golden.sgd_update"):
        run_bridge("verilator", cfg, testcase="test_update")


@pytest.mark.icarus
@pytest.mark.slow
def test_bridged_accelerator_on_icarus():
    results = run_bridge("icarus", bridge_config("icarus"), testcase=ICARUS_TESTS)
    assert [status for _, status, _ in results.tests] == ["passed"] * len(ICARUS_TESTS), \
        results.tests
    _report("icarus", results)


# The register between the bridge and the accelerator ------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_beat_slice_keeps_frames_apart(seed):
    """A source offering beats at random, and dropping one the slice refuses for a while (as
    the bridge's timeout does); a receiver that takes frames with random back-pressure, stops
    after each tlast and opens the next frame some cycles later. Every beat the slice takes
    reaches the receiver once and in order, and in the frame that was open when the slice took
    it: none outlives its frame."""
    rng = np.random.default_rng(seed)
    dut = BeatSlice(16)
    taken, received = [], []          # (beat, cycle) / (beat, frame)
    frame_at = {}                     # cycle -> the frame open then (or None)
    cycles = 3000

    async def bench(ctx):
        frame, open_, closed_for = 0, True, 0
        offer, waited, n = None, 0, 0
        for t in range(cycles):
            draining = t >= cycles - 100
            if offer is None and not draining and rng.random() < 0.6:
                offer, waited, n = (n, bool(rng.random() < 0.2)), 0, n + 1
            ready = open_ and rng.random() < 0.7
            frame_at[t] = frame if ready else None
            ctx.set(dut.s_axis.tvalid, offer is not None)
            if offer is not None:
                ctx.set(dut.s_axis.tdata, offer[0])
                ctx.set(dut.s_axis.tlast, offer[1])
            ctx.set(dut.m_axis.tready, ready)
            src_ok = offer is not None and ctx.get(dut.s_axis.tready)
            dst_ok = ready and ctx.get(dut.m_axis.tvalid)
            if dst_ok:
                beat, last = ctx.get(dut.m_axis.tdata), ctx.get(dut.m_axis.tlast)
                received.append((beat, frame))
                if last:
                    open_, closed_for = False, int(rng.integers(1, 6))
                    frame += 1
            elif not open_:
                closed_for -= 1
                open_ = closed_for <= 0
            if src_ok:
                taken.append((offer[0], t))
                offer = None
            elif offer is not None:
                waited += 1
                if waited > 8:
                    offer = None      # the bridge's timeout drops it
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(received) > 500 and len(taken) > len(received) * 0.5
    assert [b for b, _ in received] == [b for b, _ in taken], "lost, doubled or reordered"
    for (beat, t), (_, frame) in zip(taken, received):
        assert frame_at[t - 1] == frame, f"beat {beat}, taken at {t}, landed in frame {frame}"
