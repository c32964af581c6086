"""The accelerator top's host-interface rules in Amaranth's simulator, one directed test per
rule of docs/host-interface.md ("AXI4-Lite rules", "Errors"): every action validates its whole
command before it touches a buffer, options are latched when an action starts, partial and
oversized register writes are refused, the reduced builds answer with their documented errors.

Each test drives the ports cycle by cycle and checks write responses, STATUS and the stream
handshakes exactly; a small top (2x3 array, small buffers) keeps each under a few seconds.
"""

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8accel.hw.top import (Accelerator, Ctrl, OPTIONS_MASK, READ_ONLY, REG_MASK, Reg, Resp,
                    TopError)
from fp8accel.sim import golden
from fp8accel.sim.host import frames, options_word

ROWS, COLS = 2, 3
A_WORDS, B_BYTES, ACC_WORDS = 16, 48, 16


def small_top(**kw):
    return Accelerator(ROWS, COLS, a_depth=A_WORDS, b_depth=B_BYTES, acc_depth=ACC_WORDS, **kw)


async def write(ctx, dut, addr, value, strb=0xF):
    """One AXI4-Lite write; returns BRESP."""
    ctx.set(dut.s_axil.awaddr, addr)
    ctx.set(dut.s_axil.wdata, value)
    ctx.set(dut.s_axil.wstrb, strb)
    ctx.set(dut.s_axil.awvalid, 1)
    ctx.set(dut.s_axil.wvalid, 1)
    ctx.set(dut.s_axil.bready, 1)
    for _ in range(50):
        _, _, aw, bvalid, bresp = await ctx.tick().sample(
            dut.s_axil.awready, dut.s_axil.bvalid, dut.s_axil.bresp)
        if aw:
            ctx.set(dut.s_axil.awvalid, 0)
            ctx.set(dut.s_axil.wvalid, 0)
        if bvalid:
            ctx.set(dut.s_axil.bready, 0)
            return bresp
    raise AssertionError(f"no write response for 0x{addr:02x}")


async def read(ctx, dut, addr):
    """One AXI4-Lite read; returns ``(RDATA, RRESP)``."""
    ctx.set(dut.s_axil.araddr, addr)
    ctx.set(dut.s_axil.arvalid, 1)
    ctx.set(dut.s_axil.rready, 1)
    for _ in range(50):
        _, _, ar, rvalid, rdata, rresp = await ctx.tick().sample(
            dut.s_axil.arready, dut.s_axil.rvalid, dut.s_axil.rdata, dut.s_axil.rresp)
        if ar:
            ctx.set(dut.s_axil.arvalid, 0)
        if rvalid:
            ctx.set(dut.s_axil.rready, 0)
            return rdata, rresp
    raise AssertionError(f"no read response for 0x{addr:02x}")


async def reg(ctx, dut, addr):
    data, resp = await read(ctx, dut, addr)
    assert resp == Resp.OKAY, f"reading 0x{addr:02x}: RRESP {resp}"
    return data


async def status(ctx, dut):
    word = await reg(ctx, dut, Reg.STATUS)
    return {"busy": word & 1, "done": (word >> 1) & 1, "code": (word >> 8) & 0xFF}


async def setup(ctx, dut, **regs):
    for name, value in regs.items():
        resp = await write(ctx, dut, getattr(Reg, name.upper()), value)
        assert resp == Resp.OKAY, f"writing {name} = {value:#x}: BRESP {resp}"


async def send(ctx, dut, beats, limit=None):
    """Offer ``beats`` (``tlast`` on the last); returns how many the device took before
    ``limit`` cycles without a handshake."""
    taken = 0
    for i, beat in enumerate(beats):
        ctx.set(dut.s_axis.tdata, int(beat))
        ctx.set(dut.s_axis.tlast, int(i == len(beats) - 1))
        ctx.set(dut.s_axis.tvalid, 1)
        for _ in range(limit or 1000):
            _, _, ready = await ctx.tick().sample(dut.s_axis.tready)
            if ready:
                taken += 1
                break
        else:
            break
    ctx.set(dut.s_axis.tvalid, 0)
    return taken


async def recv(ctx, dut, count=None, limit=2000, pause=None, keep=None):
    """Receive up to ``tlast`` (or ``count`` beats); ``pause(i)`` holds tready low for a
    cycle before beat ``i`` when true. ``keep``: a list that gets each beat's ``tkeep``."""
    beats = []
    for _ in range(limit):
        ready = not (pause and pause(len(beats)))
        ctx.set(dut.m_axis.tready, int(ready))
        _, _, valid, data, tkeep, last = await ctx.tick().sample(
            dut.m_axis.tvalid, dut.m_axis.tdata, dut.m_axis.tkeep, dut.m_axis.tlast)
        if valid and ready:
            beats.append(data)
            if keep is not None:
                keep.append(tkeep)
            if last or len(beats) == count:
                ctx.set(dut.m_axis.tready, 0)
                return beats
    ctx.set(dut.m_axis.tready, 0)
    return beats


def to_beats(dut, data):
    """The beats of the frame ``data`` (bytes)."""
    n = dut.stream_width // 8
    return [int.from_bytes(data[i:i + n], "little") for i in range(0, len(data), n)]


def to_bytes(dut, beats, keeps):
    """The bytes ``tkeep`` marks in ``beats``."""
    n = dut.stream_width // 8
    out = b""
    for beat, keep in zip(beats, keeps):
        raw = int(beat).to_bytes(n, "little")
        out += bytes(raw[i] for i in range(n) if keep >> i & 1)
    return out


async def wait_done(ctx, dut, limit=3000):
    for _ in range(limit):
        st = await status(ctx, dut)
        if not st["busy"]:
            return st
    raise AssertionError("still busy")


async def command(ctx, dut, action):
    resp = await write(ctx, dut, Reg.CTRL, action)
    assert resp == Resp.OKAY, f"CTRL = {action:#x}: BRESP {resp}"
    return await status(ctx, dut)


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def codes(rng, shape, fmt="e5m2"):
    return golden.encode(rng.standard_normal(shape), fmt, saturate=True)


async def load(ctx, dut, action, matrix, **regs):
    await setup(ctx, dut, **regs)
    st = await command(ctx, dut, action)
    assert st["code"] == 0, st
    frame = {Ctrl.LOAD_A: lambda: frames.a_frame(matrix, ROWS),
             Ctrl.LOAD_B: lambda: frames.b_frame(matrix),
             Ctrl.LOAD_C: lambda: frames.c_frame(matrix, COLS)}[action]()
    beats = to_beats(dut, frame)
    assert await send(ctx, dut, beats) == len(beats)
    st = await wait_done(ctx, dut)
    assert st["code"] == 0 and st["done"], st


async def read_c(ctx, dut, m, n, fmt=0):
    await setup(ctx, dut, m=m, n=n, options=fmt << 16)
    st = await command(ctx, dut, Ctrl.READ_C)
    assert st["code"] == 0, st
    keeps = []
    beats = await recv(ctx, dut, keep=keeps)
    data = to_bytes(dut, beats, keeps)
    assert len(data) == frames.c_frame_bytes(m, n, COLS, fmt != 0), beats
    await wait_done(ctx, dut)
    return frames.c_from_frame(data, m, n, COLS, fmt != 0)


# 1 and 2: zero sizes --------------------------------------------------------------------------

@pytest.mark.parametrize("action, dims", [
    (Ctrl.READ_C, {"m": 0, "n": 3}), (Ctrl.READ_C, {"m": 2, "n": 0}),
    (Ctrl.LOAD_A, {"m": 0, "k": 3}), (Ctrl.LOAD_A, {"m": 2, "k": 0}),
    (Ctrl.LOAD_B, {"k": 0, "n": 3}), (Ctrl.LOAD_B, {"k": 2, "n": 0}),
    (Ctrl.LOAD_C, {"m": 0, "n": 3}), (Ctrl.LOAD_C, {"m": 2, "n": 0}),
], ids=lambda v: str(v) if isinstance(v, dict) else
    {Ctrl.READ_C: "READ_C", Ctrl.LOAD_A: "LOAD_A", Ctrl.LOAD_B: "LOAD_B",
     Ctrl.LOAD_C: "LOAD_C"}[v])
def test_zero_size_transfer_is_error_1_at_once(action, dims):
    """No beat is taken or sent, the device is not busy, and the next action works."""
    dut = small_top()
    seen = {}

    async def bench(ctx):
        await setup(ctx, dut, **{"m": 2, "n": 3, "k": 2, **dims})
        seen["st"] = await command(ctx, dut, action)
        if action == Ctrl.READ_C:
            seen["beats"] = await recv(ctx, dut, limit=40)
        else:
            seen["taken"] = await send(ctx, dut, [1, 2, 3], limit=40)
        await setup(ctx, dut, m=2, n=3, k=2)
        seen["next"] = await command(ctx, dut, Ctrl.READ_C)
        seen["read"] = await recv(ctx, dut)

    run(dut, bench)
    assert seen["st"] == {"busy": 0, "done": 1, "code": TopError.ZERO_DIM}
    assert seen.get("beats", []) == [] and seen.get("taken", 0) == 0
    # C is 2 words of 4 lanes (3 and one of padding), 16 bytes, two 64-bit beats.
    assert seen["next"]["code"] == 0 and len(seen["read"]) == 2


# 3: nothing beyond a buffer ----------------------------------------------------------------

@pytest.mark.parametrize("action, dims", [
    (Ctrl.LOAD_A, {"m": A_WORDS + 1, "k": 1}),
    (Ctrl.LOAD_A, {"m": A_WORDS // 2 + 1, "k": ROWS + 1}),     # ceil(K / rows) words a row
    (Ctrl.LOAD_B, {"k": 7, "n": 7}),
    (Ctrl.LOAD_B, {"k": 1, "n": B_BYTES + 1}),
    (Ctrl.LOAD_C, {"m": ACC_WORDS + 1, "n": 1}),
    (Ctrl.LOAD_C, {"m": ACC_WORDS // 2 + 1, "n": COLS + 1}),   # ceil(N / cols) words a row
    (Ctrl.READ_C, {"m": ACC_WORDS + 1, "n": 2}),
    (Ctrl.LOAD_A, {"m": 0xFFFF, "k": 0xFFFF}),
], ids=["A", "A-banks", "B", "B-wide", "C", "C-tiles", "READ_C", "A-huge"])
def test_transfer_beyond_its_buffer_is_error_2_and_changes_nothing(action, dims):
    """The rejected load takes no beat; the buffers keep what they held (the GEMM on them and
    the C read back are those of the operands loaded before)."""
    dut = small_top()
    rng = np.random.default_rng(3)
    m, n, k = 4, 3, 5
    A, B = codes(rng, (m, k)), codes(rng, (k, n))
    seen = {}

    async def bench(ctx):
        await load(ctx, dut, Ctrl.LOAD_A, A, m=m, k=k, options=0)
        await load(ctx, dut, Ctrl.LOAD_B, B, k=k, n=n)
        await setup(ctx, dut, m=m, n=n, k=k, options=options_word(chunk=2))
        await command(ctx, dut, Ctrl.START)
        await wait_done(ctx, dut)
        seen["before"] = await read_c(ctx, dut, m, n)
        await setup(ctx, dut, **{"m": 1, "n": 1, "k": 1, **dims})
        seen["st"] = await command(ctx, dut, action)
        if action == Ctrl.READ_C:
            seen["beats"] = await recv(ctx, dut, limit=40)
        else:
            seen["taken"] = await send(ctx, dut, rng.integers(0, 256, 40), limit=40)
        seen["after"] = await read_c(ctx, dut, m, n)
        await setup(ctx, dut, m=m, n=n, k=k, options=options_word(chunk=2))
        await command(ctx, dut, Ctrl.START)
        seen["gemm"] = await wait_done(ctx, dut)
        seen["again"] = await read_c(ctx, dut, m, n)

    run(dut, bench)
    assert seen["st"] == {"busy": 0, "done": 1, "code": TopError.TOO_LARGE}
    assert seen.get("beats", []) == [] and seen.get("taken", 0) == 0
    want = golden.gemm(A, B, "e5m2", "e5m2", chunk=2)
    assert np.array_equal(seen["before"], want)
    assert np.array_equal(seen["after"], want)
    assert seen["gemm"]["code"] == 0
    assert np.array_equal(seen["again"], want)


def test_load_c_one_word_too_many_does_not_wrap():
    """The report's case: LOAD_C of ACC_WORDS + 1 rows of one column used to write its last
    value over C[0, 0]. Now it is refused and C[0, 0] keeps its value."""
    dut = small_top()
    C = np.arange(1, ACC_WORDS + 1, dtype=np.uint16).reshape(ACC_WORDS, 1) + 0x3C00
    seen = {}

    async def bench(ctx):
        await load(ctx, dut, Ctrl.LOAD_C, C, m=ACC_WORDS, n=1)
        await setup(ctx, dut, m=ACC_WORDS + 1, n=1)
        seen["st"] = await command(ctx, dut, Ctrl.LOAD_C)
        seen["taken"] = await send(ctx, dut, [0x1234] * (ACC_WORDS + 1), limit=20)
        seen["C"] = await read_c(ctx, dut, ACC_WORDS, 1)

    run(dut, bench)
    assert seen["st"]["code"] == TopError.TOO_LARGE and seen["taken"] == 0
    assert np.array_equal(seen["C"], C)


@pytest.mark.parametrize("action", [Ctrl.LOAD_C, Ctrl.UPDATE], ids=["LOAD_C", "UPDATE"])
def test_no_beat_is_taken_past_a_frames_tlast(action):
    """A host that offers the next frame's beats right behind a ``tlast`` (tvalid never
    drops): the device takes the frame up to its ``tlast`` and nothing more until the next
    transfer is open; that one takes the beats offered, and both frames arrive whole."""
    dut = small_top()
    rng = np.random.default_rng(7)
    C = [codes(rng, (4, 2), "e5m2").astype(np.uint16) | 0x3C00 for _ in range(2)]
    seen = {}

    async def bench(ctx):
        if action == Ctrl.LOAD_C:
            await setup(ctx, dut, m=4, n=2)
            first, second = (to_beats(dut, frames.c_frame(c, COLS)) for c in C)
        else:
            await setup(ctx, dut, length=4, seed=1, lr=0, momentum=0, weight_decay=0,
                        options=0)
            w, g, v = (np.full(4, 0x3C00 + i, dtype=np.uint16) for i in range(3))
            first = second = to_beats(dut, frames.update_frame(w, g, v))
        st = await command(ctx, dut, action)
        assert st["code"] == 0, st
        # Every beat of both frames offered back to back: tlast on each frame's last.
        offered = [(b, i == len(first) - 1) for i, b in enumerate(first)]
        offered += [(b, i == len(second) - 1) for i, b in enumerate(second)]
        taken = 0
        ctx.set(dut.m_axis.tready, 1)
        for _ in range(200):
            ctx.set(dut.s_axis.tvalid, 1)
            ctx.set(dut.s_axis.tdata, int(offered[taken][0]))
            ctx.set(dut.s_axis.tlast, int(offered[taken][1]))
            _, _, ready = await ctx.tick().sample(dut.s_axis.tready)
            taken += bool(ready)
            if taken == len(first):
                break
        seen["taken"], seen["frame"] = taken, len(first)
        # The next frame's first beat stays offered: not one more is taken.
        ctx.set(dut.s_axis.tdata, int(offered[taken][0]))
        ctx.set(dut.s_axis.tlast, int(offered[taken][1]))
        for _ in range(60):
            _, _, ready = await ctx.tick().sample(dut.s_axis.tready)
            assert not ready, "a beat past tlast was taken with no transfer open"
        ctx.set(dut.s_axis.tvalid, 0)
        seen["st1"] = await wait_done(ctx, dut)
        if action == Ctrl.LOAD_C:
            seen["C1"] = await read_c(ctx, dut, 4, 2)
            await load(ctx, dut, Ctrl.LOAD_C, C[1], m=4, n=2)
            seen["C2"] = await read_c(ctx, dut, 4, 2)

    run(dut, bench)
    assert seen["st1"]["code"] == 0 and seen["st1"]["done"]
    assert seen["taken"] == seen["frame"]
    if action == Ctrl.LOAD_C:
        assert np.array_equal(seen["C1"], C[0]) and np.array_equal(seen["C2"], C[1])


# 4: options latched --------------------------------------------------------------------------

def test_options_written_during_read_c_do_not_change_its_format():
    dut = small_top()
    rng = np.random.default_rng(4)
    m, n = 4, 3
    C = golden.encode(rng.standard_normal((m, n)) * 100, "dlfloat16").astype(np.uint16)
    seen = {}

    async def bench(ctx):
        await load(ctx, dut, Ctrl.LOAD_C, C, m=m, n=n)
        await setup(ctx, dut, m=m, n=n, options=options_word(out_fmt="e5m2"))
        await command(ctx, dut, Ctrl.READ_C)
        keeps = []
        first = await recv(ctx, dut, count=1, keep=keeps)
        # Stalled: the host changes OPTIONS (and M, N) for its next command.
        await setup(ctx, dut, options=options_word(out_fmt=None), m=1, n=1)
        beats = first + await recv(ctx, dut, keep=keeps)
        seen["C"] = frames.c_from_frame(to_bytes(dut, beats, keeps), m, n, COLS, fp8=True)
        seen["st"] = await wait_done(ctx, dut)

    run(dut, bench)
    want = golden.convert(C, "dlfloat16", "e5m2", "rne", saturate=True)
    assert np.array_equal(seen["C"], want)
    assert seen["st"]["code"] == 0


# 5 and 6: write strobes, widths, reserved bits -----------------------------------------------

def test_partial_writes_are_refused():
    dut = small_top()
    seen = {}

    async def bench(ctx):
        await setup(ctx, dut, m=5)
        seen["byte1"] = await write(ctx, dut, Reg.M + 1, 0x0700, strb=0b0010)
        seen["strb0"] = await write(ctx, dut, Reg.M, 9, strb=0)
        seen["m"] = await reg(ctx, dut, Reg.M)
        seen["ctrl"] = await write(ctx, dut, Reg.CTRL, Ctrl.READ_C, strb=0)
        seen["st"] = await status(ctx, dut)
        seen["beats"] = await recv(ctx, dut, limit=30)

    run(dut, bench)
    assert seen["byte1"] == seen["strb0"] == seen["ctrl"] == Resp.SLVERR
    assert seen["m"] == 5
    assert seen["st"] == {"busy": 0, "done": 0, "code": 0} and seen["beats"] == []


@pytest.mark.parametrize("addr, value", [
    (Reg.M, 0x10005), (Reg.N, 0x1_0000), (Reg.K, 0xFFFF_FFFF), (Reg.LR, 0x1_3C00),
    (Reg.OPTIONS, 1 << 2), (Reg.OPTIONS, 1 << 10), (Reg.OPTIONS, 1 << 21),
    (Reg.OPTIONS, 1 << 31), (Reg.OPTIONS, 3 << 16),
], ids=["M", "N", "K", "LR", "OPTIONS-2", "OPTIONS-10", "OPTIONS-21", "OPTIONS-31",
        "OPTIONS-fmt3"])
def test_values_that_do_not_fit_are_refused(addr, value):
    dut = small_top()
    seen = {}

    async def bench(ctx):
        before = await reg(ctx, dut, addr)
        seen["resp"] = await write(ctx, dut, addr, value)
        seen["same"] = await reg(ctx, dut, addr) == before

    run(dut, bench)
    assert seen["resp"] == Resp.SLVERR and seen["same"]


def test_register_masks_accept_every_field():
    """Every bit of a register's mask is writable and reads back (the masks are the fields)."""
    dut = small_top()
    got = {}

    async def bench(ctx):
        for addr, mask in REG_MASK.items():
            if addr in (Reg.CTRL, Reg.SEED, Reg.LENGTH):
                continue
            value = mask & ~(1 << 17)        # OPTIONS[17:16] = 3 is no format
            got[addr] = (await write(ctx, dut, addr, value), await reg(ctx, dut, addr), value)

    run(dut, bench)
    for addr, (resp, back, value) in got.items():
        assert resp == Resp.OKAY and back == value, (hex(addr), resp, hex(back))
    assert OPTIONS_MASK == options_word(a_fmt="e4m3", b_fmt="e4m3", chunk=1 << 15,
                                        rounding="rna", transpose_a=True, transpose_b=True,
                                        accumulate=True, carry_in=True, carry_out=True,
                                        a_buf=1, b_buf=1, c_buf=1) | 1 << 13 | 3 << 16 | 1 << 8


@pytest.mark.parametrize("word", [Ctrl.START | 1 << 8, Ctrl.READ_C | 1 << 31, 1 << 6])
def test_ctrl_with_reserved_bits_is_error_6(word):
    dut = small_top()
    seen = {}

    async def bench(ctx):
        await setup(ctx, dut, m=1, n=1, k=1)
        seen["st"] = await command(ctx, dut, word)
        seen["beats"] = await recv(ctx, dut, limit=30)

    run(dut, bench)
    assert seen["st"] == {"busy": 0, "done": 1, "code": TopError.BAD_CTRL}
    assert seen["beats"] == []


def test_access_rules():
    """Unmapped addresses DECERR, writes of read-only registers and reads of CTRL SLVERR,
    with nothing changed; a read-back of every register in between."""
    dut = small_top()
    seen = {}

    async def bench(ctx):
        seen["unmapped_w"] = await write(ctx, dut, 0x80, 1)
        seen["unmapped_r"] = await read(ctx, dut, 0xFC)
        seen["ctrl_r"] = await read(ctx, dut, Reg.CTRL)
        seen["ro"] = {}
        for addr in READ_ONLY:
            before = await reg(ctx, dut, addr)
            resp = await write(ctx, dut, addr, 0xFFFF_FFFF)
            seen["ro"][addr] = (resp, await reg(ctx, dut, addr) == before)

    run(dut, bench)
    assert seen["unmapped_w"] == Resp.DECERR
    assert seen["unmapped_r"] == (0, Resp.DECERR)
    assert seen["ctrl_r"] == (0, Resp.SLVERR)
    for addr, (resp, same) in seen["ro"].items():
        # (CLOCK counts on by itself.)
        assert resp == Resp.SLVERR and (same or addr == Reg.CLOCK), hex(addr)


def test_ctrl_write_response_waits_for_the_decision():
    """Once a host has the write response of CTRL, STATUS already shows the action's fate: a
    STATUS read right after it never shows the previous action's error."""
    dut = small_top()
    seen = []

    async def bench(ctx):
        await setup(ctx, dut, m=0, n=1)
        await command(ctx, dut, Ctrl.READ_C)           # error 1
        await setup(ctx, dut, m=1, n=1, k=1)
        for action in (Ctrl.LOAD_A, Ctrl.READ_C):
            seen.append(await command(ctx, dut, action))
            if action == Ctrl.LOAD_A:
                await send(ctx, dut, [0x3C])
            else:
                await recv(ctx, dut)

    run(dut, bench)
    assert seen == [{"busy": 1, "done": 0, "code": 0}] * 2


# 7: the reduced builds -------------------------------------------------------------------------

def test_reduced_build_update_registers_accept_writes_and_update_is_error_8():
    dut = small_top(update=False)
    seen = {}

    async def bench(ctx):
        seen["resp"] = [await write(ctx, dut, addr, 1)
                        for addr in (Reg.LR, Reg.MOMENTUM, Reg.WEIGHT_DECAY, Reg.SEED,
                                     Reg.LENGTH)]
        seen["reads"] = [await reg(ctx, dut, addr) for addr in (Reg.LR, Reg.SEED, Reg.LENGTH,
                                                               Reg.RNG_STATE)]
        seen["too_wide"] = await write(ctx, dut, Reg.LR, 0x1_0000)
        seen["st"] = await command(ctx, dut, Ctrl.UPDATE)

    run(dut, bench)
    assert seen["resp"] == [Resp.OKAY] * 5
    assert seen["reads"] == [0] * 4
    assert seen["too_wide"] == Resp.SLVERR
    assert seen["st"] == {"busy": 0, "done": 1, "code": TopError.NO_UPDATE}


# 8: every chunk field is a chunk ---------------------------------------------------------------

def test_every_chunk_field_value_runs():
    """Error 3 is gone: the 4-bit chunk field has no invalid value, so every value runs."""
    dut = small_top()
    rng = np.random.default_rng(8)
    A, B = codes(rng, (2, 5)), codes(rng, (5, 2))
    seen = []

    async def bench(ctx):
        await load(ctx, dut, Ctrl.LOAD_A, A, m=2, k=5, options=0)
        await load(ctx, dut, Ctrl.LOAD_B, B, k=5, n=2)
        for log2 in range(16):
            await setup(ctx, dut, m=2, n=2, k=5, options=log2 << 4)
            await command(ctx, dut, Ctrl.START)
            st = await wait_done(ctx, dut)
            seen.append((log2, st["code"], await read_c(ctx, dut, 2, 2)))

    run(dut, bench)
    for log2, code, C in seen:
        assert code == 0
        assert np.array_equal(C, golden.gemm(A, B, "e5m2", "e5m2", chunk=1 << log2)), log2
