"""The host driver (fp8accel.sim.host) against a fake device: its own checks of every argument
before anything reaches the device, the device's errors and timeouts as exceptions."""

import asyncio

import numpy as np
import pytest

from fp8accel.hw.top import Ctrl, Reg
from fp8accel.sim.host import (AcceleratorError, AcceleratorHost, AcceleratorTimeout, Status,
                               Transport, frames, options_word)


class FakeTransport(Transport):
    """A device that completes every command at once (or fails the ones in ``fail``: code 5
    while it runs, through ERRLOG; any other code refused when written), for the host's own
    checks: records register writes and frames, returns zeros for READ_C. With ``hang`` no
    command completes."""

    def __init__(self, rows=4, cols=4, depths=(1024, 4096, 1024), fail=None, hang=False):
        self.regs = {Reg.ID: 0xF8AC0001, Reg.CONFIG: rows | cols << 8 | 6 << 16 | 9 << 20,
                     Reg.A_WORDS: depths[0], Reg.B_BYTES: depths[1], Reg.ACC_WORDS: depths[2],
                     Reg.STATUS: 0, Reg.M: 0, Reg.N: 0, Reg.K: 0, Reg.OPTIONS: 0,
                     Reg.CYCLES: 0, Reg.ACTIVE: 0, Reg.CLOCK: 0, Reg.FIRST_IN: 0,
                     Reg.LAST_OUT: 0, Reg.BUILD: 8 | 2 << 8 | 4 << 12}
        self.writes, self.frames, self.fail, self.hang = [], [], fail or {}, hang
        self.accepted = self.completed = 0
        self.log = []

    async def read_reg(self, addr):
        if addr == Reg.QUEUE:
            return (self.accepted - self.completed) | len(self.log) << 8 | self.completed << 16
        if addr == Reg.ERRLOG:
            return (1 << 31 | 5 << 16 | self.log.pop(0)) if self.log else 0
        if addr == Reg.STATUS and self.log and not self.regs[addr] & 0x20:
            return self.regs[addr] | 4 | 5 << 8
        return self.regs[addr]

    async def write_reg(self, addr, value):
        self.writes.append((addr, value))
        if addr == Reg.CTRL:
            code = self.fail.get(value, 0)
            if code and code != 5:
                self.regs[Reg.STATUS] = 2 | 4 | 0x20 | code << 8     # refused
                return
            self.accepted += 1
            if code:
                self.log.append(self.accepted - 1)
            if self.hang:
                self.regs[Reg.STATUS] = 1 | (8 if value == Ctrl.START else 16)
            else:
                self.completed = self.accepted
                self.regs[Reg.STATUS] = 2
        else:
            self.regs[addr] = value

    async def send(self, data, timeout_cycles):
        self.frames.append(bytes(data))

    async def recv(self, timeout_cycles):
        fp8 = (self.regs[Reg.OPTIONS] >> 16) & 3 != 0
        cols = (self.regs[Reg.CONFIG] >> 8) & 0xFF
        return bytes(frames.c_frame_bytes(self.regs[Reg.M], self.regs[Reg.N], cols, fp8))

    async def wait_cycles(self, cycles):
        pass

    async def reset(self):
        self.regs[Reg.STATUS] = 0
        self.accepted = self.completed = 0
        self.log = []

    def actions(self):
        return [v for a, v in self.writes if a == Reg.CTRL]


def _host(**kw):
    t = FakeTransport(**kw)
    return AcceleratorHost(t), t


def _run(coro):
    return asyncio.run(coro)


def test_host_runs_a_gemm_on_a_fake_device():
    host, t = _host()
    A = np.arange(15, dtype=np.uint8).reshape(3, 5)
    B = np.ones((2, 5), np.uint8)          # stored transposed: N x K
    out, cycles, active = _run(host.run_gemm(A, B, chunk=None, rounding="rna",
                                             transpose_b=True, out_fmt="e4m3"))
    assert out.dtype == np.uint8 and out.shape == (3, 2)
    assert t.actions() == [Ctrl.LOAD_A, Ctrl.LOAD_B, Ctrl.START, Ctrl.READ_C]
    assert t.frames == [frames.a_frame(A, 4), bytes([1] * 10)]
    assert t.regs[Reg.M] == 3 and t.regs[Reg.N] == 2 and t.regs[Reg.K] == 5
    assert t.regs[Reg.OPTIONS] == options_word(chunk=None, rounding="rna", transpose_b=True,
                                               out_fmt="e4m3")


def test_a_gemm_larger_than_the_buffers_runs_in_tiles():
    """1025 rows of A do not fit 1024 words per bank: two row tiles, B loaded once."""
    host, t = _host()
    A = np.ones((1025, 3), np.uint8)
    out, _, _ = _run(host.run_gemm(A, np.ones((3, 2), np.uint8)))
    assert out.shape == (1025, 2)
    # The second A tile goes into the other buffer while the first tile computes, and the
    # first tile's result leaves while the second computes.
    assert t.actions() == [Ctrl.LOAD_A, Ctrl.LOAD_B, Ctrl.START, Ctrl.LOAD_A, Ctrl.START,
                           Ctrl.READ_C, Ctrl.READ_C]
    assert [len(f) for f in t.frames] == [1024 * 4, 6, 4]
    assert host.last_run["commands"] == 2 and host.last_run["tile"] == [1024, 2, 3]


def test_options_word_fields():
    assert options_word() == 6 << 4
    assert options_word(a_fmt="e4m3", b_fmt="E4M3", chunk=None, rounding="rna",
                        transpose_a=True, transpose_b=True, accumulate=True,
                        out_fmt="e4m3") == 0b11 | 0b11011 << 8 | 2 << 16
    assert options_word(a_buf=1, b_buf=1, c_buf=1) == 6 << 4 | 0b111 << 18
    assert options_word(chunk=1) == 0
    assert options_word(chunk=1 << 15, out_fmt="e5m2") == 15 << 4 | 1 << 16
    assert options_word(out_fmt="dlfloat16") == 6 << 4


@pytest.mark.parametrize("call, exc, message", [
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8), chunk=3),
     ValueError, r"Chunk length must be a power of two from 1 to 32768 or None, not 3"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          chunk=1 << 16),
     ValueError, r"Chunk length must be a power of two from 1 to 32768 or None, not 65536"),
    (lambda h: h.run_gemm(np.zeros((2, 3)), np.zeros((3, 2), np.uint8)),
     TypeError, r"A must be an integer array of FP8 codes \(uint8\), not float64"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((4, 2), np.uint8)),
     ValueError, r"A \(2x3\) and B \(4x2\) do not form a matrix product"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.full((3, 2), 256)),
     ValueError, r"B holds values outside 0..255: not 8-bit codes"),
    (lambda h: h.run_gemm(np.zeros(3, np.uint8), np.zeros((3, 2), np.uint8)),
     ValueError, r"A must be a 2-D matrix, not an array of shape \(3,\)"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          rounding="rtz"),
     ValueError, r"Accumulation rounding must be 'rne' or 'rna', not 'rtz'"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          a_fmt="binary16"),
     ValueError, r"a_fmt must be 'e5m2' or 'e4m3', not 'binary16'"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          out_fmt="bfloat16"),
     ValueError, r"Output format must be 'dlfloat16' \(the accumulator\), 'e5m2' or 'e4m3', "
                 r"not 'bfloat16'"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          np.zeros((2, 3), np.uint16)),
     ValueError, r"C has shape \(2, 3\), expected \(2, 2\)"),
    (lambda h: h.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8),
                          accumulate=True),
     TypeError, r"run_gemm\(\) accumulates exactly when C is given"),
    (lambda h: h.load_a(np.zeros((1025, 3), np.uint8)),
     ValueError, r"A \(1025x3\) needs M \* ceil\(K / 4\) = 1025 words per bank, the device "
                 r"has 1024"),
    (lambda h: h.load_b(np.zeros((65, 64), np.uint8)),
     ValueError, r"B \(65x64\) needs K \* N = 4160 bytes, the device has 4096"),
    (lambda h: h.gemm(0, 2, 3),
     ValueError, r"M must be an integer from 1 to 65535, not 0"),
    (lambda h: h.read_c(2, 65536),
     ValueError, r"N must be an integer from 1 to 65535, not 65536"),
    (lambda h: h.load_c(np.zeros((2, 2), np.float32)),
     TypeError, r"C must be an integer array of accumulator codes \(uint16\), not float32"),
], ids=["chunk-3", "chunk-2**16", "float-A", "shapes", "B-range", "A-1d", "rounding", "a_fmt",
        "out_fmt", "C-shape", "accumulate-kw", "A-too-large", "B-too-large", "M-zero",
        "N-too-big", "float-C"])
def test_host_checks_arguments_before_the_device(call, exc, message):
    host, t = _host()
    with pytest.raises(exc, match=message):
        _run(call(host))
    assert t.actions() == [] and t.frames == []


def test_host_refuses_a_gemm_that_does_not_match_the_loads():
    host, t = _host()
    _run(host.load_a(np.zeros((3, 5), np.uint8), fmt="e4m3"))
    with pytest.raises(ValueError, match=r"A was loaded as 3x5 E4M3 \(transposed=False\), the "
                                         r"GEMM reads a 3x4 E4M3 A \(transposed=False\); load "
                                         r"it again for this GEMM"):
        _run(host.gemm(3, 2, 4))
    with pytest.raises(ValueError, match=r"The accumulator holds a"):
        _run(host.load_c(np.zeros((3, 3), np.uint16)))
        _run(host.gemm(3, 2, 5, accumulate=True))
    assert Ctrl.START not in t.actions()


def test_host_raises_the_device_error():
    host, t = _host(fail={Ctrl.LOAD_B: 5})
    with pytest.raises(AcceleratorError, match=r"LOAD_B failed: error 5 \(FRAME: a stream "
                                               r"frame ended early \(tlast\) or ran past its "
                                               r"length\)") as info:
        _run(host.run_gemm(np.zeros((2, 3), np.uint8), np.zeros((3, 2), np.uint8)))
    assert (info.value.code, info.value.name, info.value.action) == (5, "FRAME", "LOAD_B")


def test_host_times_out_instead_of_hanging():
    host, t = _host(hang=True)
    with pytest.raises(AcceleratorTimeout, match=r"START \(2x3 by 3x2\) did not finish within "
                                                 r"500 cycles \(QUEUE: QueueState\(pending=1, "
                                                 r"errors=0, completed=0\); STATUS: busy=1 "
                                                 r"done=0 error=0 code=0 engine=1 transfer=0 "
                                                 r"rejected=0\)"):
        _run(host.gemm(2, 2, 3, timeout_cycles=500))


def test_status_decoding():
    assert Status.from_word(0x0506) == Status(False, True, True, 5)
    assert str(Status.from_word(1)) == ("busy=1 done=0 error=0 code=0 engine=0 transfer=0 "
                                        "rejected=0")
    assert Status.from_word(0x19) == Status(True, False, False, 0, True, True)


