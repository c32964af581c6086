"""A randomized host: valid work checked bit for bit, interleaved with every kind of misuse.

Ref: docs/host-interface.md (the contract: AXI4-Lite rules, errors, framing, reset).

The campaign drives the accelerator the way a careless or hostile driver would. Each operation
is drawn at random: valid ones (loads, GEMMs with every option, reads in every format, whole
``run_gemm`` calls, weight updates) are checked against ``sim.golden`` bit for bit; bad ones
(zero and oversized dimensions, bad CTRL words, actions while busy, frames of the wrong length,
partial and oversized register writes, writes of read-only and unmapped registers, OPTIONS
changed under a running READ_C, beats sent with no transfer open, resets in the middle of every
kind of action) must give their documented error or bus response, never hang, and leave every
buffer as it was, which the model checks with the valid work that follows. Before each
operation the stalls change: idle cycles on the stream source, backpressure on the sink and
pauses on the five AXI4-Lite channels, each with a random pattern or none.

The model knows what each buffer holds (``A``, ``B``, the accumulator ``C``) or that it is
undefined (after a frame error or a reset in the middle of a load or GEMM). A failure prints
the seed and the host calls that led to it, which replay exactly with that seed
(``FP8ACCEL_SEED``).

Over the UART bridge (``"link": "uart"``) the same campaign runs through
:class:`sim.link.BridgeTransport`, with line noise instead of bus stalls: stray bytes that are
not commands and truncated packets, after which the host resynchronises (silence, ``'Z'``) and
its next command must work.

Configuration (``$FP8ACCEL_TB_CONFIG``): that of ``sim/tb/top.py`` (``rows``, ``cols``,
``depths``, ``acc_fmt``) and::

    {"seed": 1,                       # the campaign's random stream
     "ops": 300,                      # operations
     "max_dims": [12, 8, 40],         # largest M, N, K of a random operand
     "link": "axi",                   # or "uart" (the top behind hw.bridge.BridgedAccelerator)
     "update": true, "fp8_out": true, # what the build has (CONFIG tells the host too)
     "report": "campaign.json"}       # counts of each operation, written at the end
"""

import itertools
import json
from collections import Counter

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout

from fp8accel.hw.top import READ_ONLY, REG_MASK, UPDATE_MAX, Ctrl, OutFmt, Reg, TopError
from fp8accel.sim import golden
from fp8accel.sim.host import (
    AcceleratorError,
    AcceleratorTimeout,
    attach,
    options_word,
)
from fp8accel.sim.host import frames
from fp8accel.sim.run.runner import read_tb_config
from fp8accel.sim.tb.top import random_acc, random_fp8, random_update

__all__ = ["Campaign"]

PERIOD_NS = 10
_FMTS = ("e5m2", "e4m3")
_CHUNKS = (None, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1 << 15)
_LOADS = {"A": Ctrl.LOAD_A, "B": Ctrl.LOAD_B, "C": Ctrl.LOAD_C}
#: The first address above the register map.
_UNMAPPED = max(*READ_ONLY, *REG_MASK) + 4


def _config():
    cfg = read_tb_config()
    cfg.setdefault("depths", [1024, 4096, 1024])
    cfg.setdefault("acc_fmt", "dlfloat16")
    cfg.setdefault("seed", 1)
    cfg.setdefault("ops", 300)
    cfg.setdefault("max_dims", [12, 8, 40])
    cfg.setdefault("link", "axi")
    cfg.setdefault("update", True)
    cfg.setdefault("fp8_out", True)
    return cfg


def _show(arr):
    """A short, stable name for an operand in the log: shape and a checksum."""
    arr = np.ascontiguousarray(arr)
    return f"<{'x'.join(map(str, arr.shape))} {arr.dtype} crc {_crc(arr):08x}>"


def _crc(arr):
    import zlib
    return zlib.crc32(arr.tobytes())


class Failure(AssertionError):
    pass


class Campaign:
    """The randomized host and its model of the device.

    Parameters
    ----------
    dut : cocotb handle
    host : AcceleratorHost
    cfg : dict
        The configuration (module docstring).
    """

    def __init__(self, dut, host, cfg):
        self.dut, self.host, self.t, self.cfg = dut, host, host.transport, cfg
        self.rng = np.random.default_rng(cfg["seed"])
        self.rows, self.cols = cfg["rows"], cfg["cols"]
        self.a_words, self.b_bytes, self.acc_words = cfg["depths"]
        self.uart = cfg["link"] == "uart"
        self.log = []
        self.counts = Counter()
        # What each buffer holds: None (undefined) or a dict describing it.
        self.A = self.B = self.C = None
        self.ops = [(self.op_load, 6), (self.op_gemm, 8), (self.op_read, 4),
                    (self.op_run_gemm, 3), (self.op_update, 3),
                    (self.op_zero, 2), (self.op_too_large, 2), (self.op_bad_ctrl, 1),
                    (self.op_queue_behind_gemm, 1), (self.op_queue_behind_load, 1), (self.op_frame, 2),
                    (self.op_update_frame, 1), (self.op_update_bad, 1), (self.op_register, 2),
                    (self.op_options_during_read, 1), (self.op_reset, 2),
                    (self.op_stray_beats, 1), (self.op_no_fp8, 1)]
        if self.uart:
            self.ops.append((self.op_line_noise, 3))

    # Logging and checks -------------------------------------------------------------------------

    def note(self, text):
        self.log.append(f"[{len(self.log)}] {text}")

    def fail(self, text):
        lines = [f"campaign seed {self.cfg['seed']} ({self.cfg['link']}, "
                 f"{self.rows}x{self.cols}): {text}",
                 "host calls so far (replay with FP8ACCEL_SEED=" f"{self.cfg['seed']}):",
                 *self.log[-60:]]
        if len(self.log) > 60:
            lines.insert(2, f"  ... {len(self.log) - 60} earlier calls not shown")
        raise Failure("\n".join(lines))

    def ports(self):
        """The handshake signals of the top, for a report of a hang."""
        names = [n for n in ("s_axil_awvalid", "s_axil_awready", "s_axil_wvalid",
                             "s_axil_bvalid", "s_axil_bready", "s_axil_arvalid",
                             "s_axil_rvalid", "s_axil_rready", "s_axis_tvalid",
                             "s_axis_tready", "m_axis_tvalid", "m_axis_tready", "rx", "tx")
                 if hasattr(self.dut, n)]
        return ", ".join(f"{n}={getattr(self.dut, n).value}" for n in names)

    def same(self, got, want, what):
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape or got.dtype != want.dtype:
            self.fail(f"{what}: got {got.dtype} {got.shape}, expected {want.dtype} "
                      f"{want.shape}")
        bad = np.argwhere(got != want)
        if len(bad):
            first = [(tuple(int(x) for x in i), hex(int(got[tuple(i)])),
                      hex(int(want[tuple(i)]))) for i in bad[:6]]
            self.fail(f"{what}: {len(bad)} of {got.size} differ from sim.golden (index, got, "
                      f"expected): {first}")

    async def expect(self, awaitable, code, what):
        """Await ``awaitable`` and require AcceleratorError ``code`` (an int, or a bus
        response name)."""
        try:
            await awaitable
        except AcceleratorError as exc:
            want = code if isinstance(code, str) else None
            if (exc.name if want else exc.code) != (want or code):
                self.fail(f"{what}: expected {code}, got {exc}")
            return exc
        self.fail(f"{what}: expected error {code}, the device reported none")

    async def idle_status(self, what):
        st = await self.host.wait_idle(timeout_cycles=200_000)
        if st.busy:
            self.fail(f"{what}: still busy ({st})")
        return st

    # Random operands ---------------------------------------------------------------------------

    def dims(self):
        mm, nn, kk = self.cfg["max_dims"]
        r = self.rng
        m, n, k = (int(r.integers(1, x + 1)) for x in (mm, nn, kk))
        while k * n > self.b_bytes:
            n = max(1, n // 2)
        while m * -(-k // self.rows) > self.a_words or m * -(-n // self.cols) > self.acc_words:
            m = max(1, m // 2)
        return m, n, k

    def fmt(self):
        return _FMTS[self.rng.integers(0, 2)]

    def new_a(self, m, k):
        fmt = self.fmt()
        return {"A": random_fp8(self.rng, (m, k), fmt), "fmt": fmt,
                "trans": bool(self.rng.integers(0, 2))}

    def new_b(self, k, n):
        fmt = self.fmt()
        return {"B": random_fp8(self.rng, (k, n), fmt), "fmt": fmt,
                "trans": bool(self.rng.integers(0, 2))}

    def stored(self, buf, key):
        x = buf[key]
        return np.ascontiguousarray(x.T) if buf["trans"] else x

    # Stalls --------------------------------------------------------------------------------------

    def pattern(self):
        """None (no stalls) or an endless random pause pattern."""
        r = self.rng
        if r.random() < 0.4:
            return None
        period = int(r.integers(2, 9))
        bits = [int(b) for b in r.random(period) < r.uniform(0.2, 0.8)]
        if all(bits):
            bits[-1] = 0
        return itertools.cycle(bits)

    def shuffle_stalls(self):
        if self.uart:
            return
        t = self.t
        for chan in (t.source, t.sink, t.axil.write_if.aw_channel, t.axil.write_if.w_channel,
                     t.axil.write_if.b_channel, t.axil.read_if.ar_channel,
                     t.axil.read_if.r_channel):
            gen = self.pattern()
            if gen is None:
                # (Clearing the generator leaves the channel as its last step left it.)
                chan.clear_pause_generator()
                chan.pause = False
            else:
                chan.set_pause_generator(gen)

    # Valid work ------------------------------------------------------------------------------

    async def load(self, key, buf):
        h = self.host
        if key == "A":
            self.note(f"load_a({_show(self.stored(buf, 'A'))}, transposed={buf['trans']}, "
                      f"fmt={buf['fmt']!r})")
            await h.load_a(self.stored(buf, "A"), transposed=buf["trans"], fmt=buf["fmt"])
            self.A = buf
        elif key == "B":
            self.note(f"load_b({_show(self.stored(buf, 'B'))}, transposed={buf['trans']}, "
                      f"fmt={buf['fmt']!r})")
            await h.load_b(self.stored(buf, "B"), transposed=buf["trans"], fmt=buf["fmt"])
            self.B = buf
        else:
            self.note(f"load_c({_show(buf)})")
            await h.load_c(buf)
            self.C = buf

    async def op_load(self):
        m, n, k = self.dims()
        key = "ABC"[self.rng.integers(0, 3)]
        # Often keep the other operand's shared dimension, so that GEMMs can follow.
        if key == "A" and self.B is not None and self.rng.random() < 0.7:
            k = self.B["B"].shape[0]
            m = min(m, self.a_words // -(-k // self.rows))
        if key == "B" and self.A is not None and self.rng.random() < 0.7:
            k = self.A["A"].shape[1]
            n = max(1, min(n, self.b_bytes // k))
        buf = (self.new_a(m, k) if key == "A" else self.new_b(k, n) if key == "B" else
               random_acc(self.rng, (m, n), self.cfg["acc_fmt"]))
        await self.load(key, buf)

    def gemm_options(self, m, n):
        r = self.rng
        acc = self.C is not None and self.C.shape == (m, n) and r.random() < 0.4
        return {"chunk": _CHUNKS[r.integers(0, len(_CHUNKS))],
                "rounding": ("rne", "rna")[r.integers(0, 2)], "accumulate": acc}

    def expected(self, m, n, k, opts):
        want = golden.gemm(self.A["A"], self.B["B"], self.A["fmt"], self.B["fmt"],
                           self.cfg["acc_fmt"], opts["chunk"], opts["rounding"],
                           C=self.C if opts["accumulate"] else None)
        if self.cfg.get("sabotage"):
            want[0, 0] ^= 1       # a wrong model, which the checks must not miss
        return want

    def gemm_ready(self):
        return (self.A is not None and self.B is not None
                and self.A["A"].shape[1] == self.B["B"].shape[0]
                and self.A["A"].shape[0] * -(-self.B["B"].shape[1] // self.cols)
                <= self.acc_words)

    async def ensure_operands(self):
        if not self.gemm_ready():
            m, n, k = self.dims()
            await self.load("A", self.new_a(m, k))
            await self.load("B", self.new_b(k, n))

    async def op_gemm(self):
        await self.ensure_operands()
        m, k = self.A["A"].shape
        n = self.B["B"].shape[1]
        opts = self.gemm_options(m, n)
        want = self.expected(m, n, k, opts)
        self.note(f"gemm({m}, {n}, {k}, a_fmt={self.A['fmt']!r}, b_fmt={self.B['fmt']!r}, "
                  f"transpose_a={self.A['trans']}, transpose_b={self.B['trans']}, {opts})")
        await self.host.gemm(m, n, k, a_fmt=self.A["fmt"], b_fmt=self.B["fmt"],
                             transpose_a=self.A["trans"], transpose_b=self.B["trans"], **opts)
        self.C = want
        cycles, active = await self.host.counters()
        rows_streamed = m * -(-n // self.cols) * -(-k // self.rows)
        if active != rows_streamed or cycles < active:
            self.fail(f"gemm: CYCLES {cycles}, ACTIVE {active}, expected ACTIVE "
                      f"{rows_streamed}")
        if self.rng.random() < 0.5:
            await self.op_read()

    async def op_read(self):
        if self.C is None:
            return await self.op_load()
        m, n = self.C.shape
        mm = int(self.rng.integers(1, m + 1)) if self.rng.random() < 0.3 else m
        # (None would mean the out_fmt of the last gemm(): name the accumulator format.)
        out = (self.cfg["acc_fmt"], "e5m2", "e4m3")[self.rng.integers(0, 3)]
        self.note(f"read_c({mm}, {n}, out_fmt={out!r})")
        got = await self.host.read_c(mm, n, out_fmt=out)
        want = self.C[:mm]
        if out != self.cfg["acc_fmt"]:
            want = golden.convert(want, self.cfg["acc_fmt"], out, "rne",
                                  saturate=True).astype(np.uint8)
        self.same(got, want, f"read_c({mm}, {n}, {out})")

    async def op_run_gemm(self):
        # Any shape: one that does not fit the buffers runs in tiles.
        m, n, k = (int(self.rng.integers(1, x + 1)) for x in self.cfg["max_dims"])
        a, b = self.new_a(m, k), self.new_b(k, n)
        C = random_acc(self.rng, (m, n), self.cfg["acc_fmt"]) if self.rng.random() < 0.3 \
            else None
        opts = {**self.gemm_options(m, n), "accumulate": C is not None}
        out = (None, "e5m2", "e4m3")[self.rng.integers(0, 3)]
        self.note(f"run_gemm({_show(self.stored(a, 'A'))}, {_show(self.stored(b, 'B'))}, "
                  f"C={None if C is None else _show(C)}, a_fmt={a['fmt']!r}, "
                  f"b_fmt={b['fmt']!r}, transpose_a={a['trans']}, transpose_b={b['trans']}, "
                  f"chunk={opts['chunk']}, rounding={opts['rounding']!r}, out_fmt={out!r})")
        got, _, _ = await self.host.run_gemm(
            self.stored(a, "A"), self.stored(b, "B"), C, a_fmt=a["fmt"], b_fmt=b["fmt"],
            transpose_a=a["trans"], transpose_b=b["trans"], chunk=opts["chunk"],
            rounding=opts["rounding"], out_fmt=out)
        self.A, self.B = a, b
        self.C = C
        acc = self.expected(m, n, k, opts)
        self.C = acc
        if self.host.last_run["commands"] > 1:
            # Tiled: the buffers hold the last tiles only.
            self.A = self.B = self.C = None
            self.counts["run_gemm tiled"] += 1
        want = acc if out is None else golden.convert(acc, self.cfg["acc_fmt"], out, "rne",
                                                      saturate=True).astype(np.uint8)
        self.same(got, want, "run_gemm")

    async def op_update(self):
        n = int(self.rng.integers(1, 40))
        (w, g, v), (lr, mu, wd) = random_update(self.rng, n)
        seed = int(self.rng.integers(1, 1 << 32))
        rounding = ("sr", "rne")[self.rng.integers(0, 2)]
        self.note(f"update(n={n}, lr=0x{lr:04x}, momentum=0x{mu:04x}, "
                  f"weight_decay=0x{wd:04x}, seed={seed}, rounding={rounding!r})")
        call = self.host.update(w, g, v, lr=lr, momentum=mu, weight_decay=wd, seed=seed,
                                rounding=rounding)
        if not self.cfg["update"]:
            await self.expect(call, TopError.NO_UPDATE, "UPDATE on a build without the unit")
            return
        w1, v1 = await call
        rbits = (await self.host.config())["update_rbits"]
        ew, ev = golden.sgd_update(w, g, v, lr, mu, wd, seed, rounding, rbits)
        self.same(w1, ew, "update w")
        self.same(v1, ev, "update v")
        state = await self.host.rng_state()
        if state != int(golden.xorshift32(seed, 3 * n)[-1]):
            self.fail(f"RNG_STATE 0x{state:08x} after update of {n}")

    # Misuse --------------------------------------------------------------------------------------

    async def raw(self, action, **regs):
        """Write registers and CTRL directly, as a driver that checks nothing would."""
        for name, value in regs.items():
            await self.host.write_reg(getattr(Reg, name.upper()), value)
        await self.host.command(action)

    async def nothing_flows(self, action, what):
        """After a rejected action: a frame offered is not taken, and nothing comes out."""
        if action in (Ctrl.LOAD_A, Ctrl.LOAD_B, Ctrl.LOAD_C) and not self.uart:
            await self.stray_frame(what)
        if action == Ctrl.READ_C and not self.uart:
            await self.t.wait_cycles(60)
            if not self.t.sink.empty():
                self.fail(f"{what}: the device sent beats")

    async def stray_frame(self, what):
        try:
            await self.t.send(b"\x01\x02\x03", 200)
        except AcceleratorTimeout:
            return
        self.fail(f"{what}: the device took beats with no transfer open")

    async def rejected(self, action, regs, code, what):
        self.note(f"raw {what}: {regs}, CTRL={action:#x} -> error {code}")
        await self.raw(action, **regs)
        await self.expect(self.host.wait_done(what), code, what)
        await self.idle_status(what)
        await self.nothing_flows(action, what)

    def pick_action(self):
        return (Ctrl.START, Ctrl.LOAD_A, Ctrl.LOAD_B, Ctrl.LOAD_C, Ctrl.READ_C)[
            self.rng.integers(0, 5)]

    async def op_zero(self):
        action = self.pick_action()
        m, n, k = self.dims()
        regs = {"m": m, "n": n, "k": k, "options": 0}
        # Zero one of the dimensions the action uses.
        uses = {Ctrl.START: "mnk", Ctrl.LOAD_A: "mk", Ctrl.LOAD_B: "kn", Ctrl.LOAD_C: "mn",
                Ctrl.READ_C: "mn"}[action]
        regs["mnk"[self.rng.integers(0, 3)] if action == Ctrl.START
             else uses[self.rng.integers(0, 2)]] = 0
        await self.rejected(action, regs, TopError.ZERO_DIM, "zero dimension")

    async def op_too_large(self):
        action = self.pick_action()
        r = self.rng
        big = int(r.integers(1, 0x10000))
        choices = {
            Ctrl.LOAD_A: [{"m": self.a_words + 1, "k": 1},
                          {"m": max(1, self.a_words // 2 + 1), "k": self.rows + 1},
                          {"m": big, "k": 0xFFFF}],
            Ctrl.LOAD_B: [{"k": self.b_bytes + 1, "n": 1}, {"k": 1, "n": self.b_bytes + 1},
                          {"k": 0xFFFF, "n": big}],
            Ctrl.LOAD_C: [{"m": self.acc_words + 1, "n": 1},
                          {"m": max(1, self.acc_words // 2 + 1), "n": self.cols + 1}],
            Ctrl.READ_C: [{"m": self.acc_words + 1, "n": 1}, {"m": 0xFFFF, "n": 0xFFFF}],
            Ctrl.START: [{"m": self.a_words + 1, "n": 1, "k": 1},
                         {"m": 1, "n": 1, "k": self.b_bytes + 1}],
        }[action]
        regs = {"m": 1, "n": 1, "k": 1, "options": 0, **choices[r.integers(0, len(choices))]}
        await self.rejected(action, regs, TopError.TOO_LARGE, "too large")

    async def op_bad_ctrl(self):
        r = self.rng
        words = [0, Ctrl.START | Ctrl.LOAD_A, Ctrl.LOAD_B | Ctrl.READ_C,
                 1 << int(r.integers(6, 32)), Ctrl.READ_C | 1 << int(r.integers(6, 32)),
                 0xFFFF_FFFF, int(r.integers(0, 1 << 32))]
        word = words[r.integers(0, len(words))]
        bits = word & 0x3F
        if word >> 6 == 0 and bits and not bits & (bits - 1):
            word |= 1 << 7
        await self.rejected(word, {}, TopError.BAD_CTRL, f"CTRL = {word:#x}")

    async def queued_update(self, what):
        """Queue an UPDATE with fresh scalars behind whatever runs; returns a coroutine that
        exchanges its elements and checks the results, or None when the build has no unit
        (the write is then refused at once)."""
        n = int(self.rng.integers(1, 12))
        (w, g, v), (lr, mu, wd) = random_update(self.rng, n)
        seed = int(self.rng.integers(1, 1 << 32))
        await self.raw(Ctrl.UPDATE, lr=lr, momentum=mu, weight_decay=wd, seed=seed, length=n,
                       options=0)
        st = await self.host.status()
        if await self.refused_busy(st, what):
            return None
        if not self.cfg["update"]:
            if not (st.rejected and st.code == TopError.NO_UPDATE):
                self.fail(f"{what}: UPDATE on a build without the unit: STATUS {st}")
            return None

        async def finish():
            out = await self.t.exchange(frames.update_frame(w, g, v), 400_000)
            w1, v1 = frames.update_results(out, n)
            rbits = (await self.host.config())["update_rbits"]
            ew, ev = golden.sgd_update(w, g, v, lr, mu, wd, seed, "sr", rbits)
            self.same(w1, ew, f"{what}: update w")
            self.same(v1, ev, f"{what}: update v")
        return finish()

    async def refused_busy(self, st, what):
        """On a build without a queue, a command that cannot start at once is refused with
        BUSY (and nothing else changes): whether ``st`` says so."""
        if (await self.host.config())["queue"] or not st.rejected:
            return False
        return st.code == TopError.BUSY

    async def op_queue_behind_gemm(self):
        """START, then another command while the GEMM runs: it is queued and runs after the
        GEMM, which is unharmed (READ_C returns its result; a load replaces the operand it
        read only once it has ended)."""
        await self.ensure_operands()
        m, k = self.A["A"].shape
        n = self.B["B"].shape[1]
        opts = self.gemm_options(m, n)
        word = options_word(a_fmt=self.A["fmt"], b_fmt=self.B["fmt"], chunk=opts["chunk"],
                            rounding=opts["rounding"], transpose_a=self.A["trans"],
                            transpose_b=self.B["trans"], accumulate=opts["accumulate"])
        want = self.expected(m, n, k, opts)
        other = (Ctrl.START, Ctrl.LOAD_A, Ctrl.LOAD_B, Ctrl.LOAD_C, Ctrl.READ_C,
                 Ctrl.UPDATE)[self.rng.integers(0, 6)]
        self.note(f"raw START {m}x{n}x{k} {opts}, then CTRL={other:#x} queued behind it")
        await self.raw(Ctrl.START, m=m, n=n, k=k, options=word)
        self.host.forget("C")
        what = f"CTRL={other:#x} behind a GEMM"
        if other == Ctrl.UPDATE:
            finish = await self.queued_update(what)
            if finish is not None:
                await finish
            self.C = want
        else:
            await self.host.command(other)
            st = await self.host.status()
            if await self.refused_busy(st, what):
                other = None
                self.C = want
            elif st.rejected or st.error:
                self.fail(f"{what}: STATUS {st}, expected it queued")
            if other is None:
                pass
            elif other == Ctrl.START:
                # The same GEMM again: C is the same unless it accumulates.
                self.C = None if opts["accumulate"] else want
            elif other == Ctrl.READ_C:
                got = frames.c_from_frame(await self.t.recv(400_000), m, n, self.cols, False)
                self.same(got, want, f"{what}: the GEMM's result")
                self.C = want
            else:
                # A frame of the right length for the registers the load was queued with.
                key = "ABC"[other.bit_length() - 2]
                size = {"A": len(frames.a_frame(np.zeros((m, k), np.uint8), self.rows)),
                        "B": k * n,
                        "C": len(frames.c_frame(np.zeros((m, n), np.uint16), self.cols))}[key]
                await self.t.send(self.rng.bytes(size), 400_000)
                self.forget(key)
                if key != "C":
                    self.C = want
        await self.idle_status(what)
        q = await self.host.queue_state()
        if q.pending or q.errors:
            self.fail(f"{what}: QUEUE {q} once idle")

    async def op_queue_behind_load(self):
        """LOAD_A, then another command before its frame: it is queued behind the load, which
        completes when its frame comes; then the queued command runs."""
        m, n, k = self.dims()
        a = self.new_a(m, k)
        stored = self.stored(a, "A")
        other = (Ctrl.START, Ctrl.READ_C, Ctrl.UPDATE)[self.rng.integers(0, 3)]
        self.note(f"raw LOAD_A {_show(stored)} trans={a['trans']}, CTRL={other:#x} queued "
                  f"behind it, then the frame")
        self.forget("A")
        await self.raw(Ctrl.LOAD_A, m=m, k=k, options=0)
        what = f"CTRL={other:#x} behind LOAD_A"
        finish = None
        if other == Ctrl.UPDATE:
            finish = await self.queued_update(what)
        else:
            # N as the B buffer holds it, so that a START multiplies what is loaded.
            nb = self.B["B"].shape[1] if self.B is not None else n
            regs = {"n": nb}
            if other == Ctrl.START and self.B is not None:
                # (The load took OPTIONS = 0 when it was queued; the START takes these.)
                regs["options"] = options_word(a_fmt=a["fmt"], b_fmt=self.B["fmt"], chunk=64,
                                               transpose_b=self.B["trans"])
            await self.raw(other, **regs)
            st = await self.host.status()
            if st.rejected:          # (its checks refused it: nothing was queued)
                other = None
            elif not st.transfer:
                self.fail(f"{what}: STATUS {st}, expected the load still open")
        await self.t.send(frames.a_frame(a["A"], self.rows), 100_000)
        self.A = a
        if finish is not None:
            await finish
        elif other == Ctrl.READ_C:
            got = await self.t.recv(400_000)
            if self.C is not None and self.C.shape == (m, nb):
                self.same(frames.c_from_frame(got, m, nb, self.cols, False), self.C,
                          f"{what}: C")
        elif other == Ctrl.START:
            # (Written raw: the host does not know what the accumulator holds now.)
            self.host.forget("C")
            ready = self.B is not None and self.B["B"].shape[0] == k
            self.C = self.expected(m, nb, k, {"chunk": 64, "rounding": "rne",
                                              "accumulate": False}) if ready else None
        await self.idle_status(what)

    def forget(self, key):
        setattr(self, key, None)
        self.host.forget(key)

    async def op_frame(self):
        """A load whose frame is short or long: error 5. A short frame leaves the buffer
        undefined, a long one holds the first elements."""
        m, n, k = self.dims()
        key = "ABC"[self.rng.integers(0, 3)]
        if key == "A":
            buf = self.new_a(m, k)
            data, regs = frames.a_frame(buf["A"], self.rows), {"m": m, "k": k, "options": 0}
        elif key == "B":
            buf = self.new_b(k, n)
            data, regs = frames.b_frame(self.stored(buf, "B")), {
                "k": k, "n": n, "options": int(buf["trans"]) << 11}
        else:
            buf = random_acc(self.rng, (m, n), self.cfg["acc_fmt"])
            data, regs = frames.c_frame(buf, self.cols), {"m": m, "n": n}
        beat = (await self.host.config())["beat_bytes"]
        need = frames.beats(len(data), beat)
        long = self.rng.random() < 0.5
        if long:
            data += bytes(-len(data) % beat) + self.rng.bytes(beat * int(self.rng.integers(1, 9)))
        else:
            data = data[:beat * int(self.rng.integers(0, need))] or None
        beats = frames.beats(len(data), beat) if data else 0
        self.note(f"raw LOAD_{key} {regs} with a {'long' if long else 'short'} frame of "
                  f"{beats} beats for {need}")
        self.forget(key)
        await self.raw(_LOADS[key], **regs)
        if data is None:
            # Not one beat: the host gives up and resets.
            await self.t.wait_cycles(int(self.rng.integers(1, 50)))
            await self.do_reset("an open load with no beat")
            return
        await self.t.send(data, 100_000)
        await self.expect(self.host.wait_done("bad frame"), TopError.FRAME,
                          f"LOAD_{key} frame of {beats} beats for {need}")
        await self.idle_status("after a bad frame")
        if long:
            setattr(self, key, buf)

    async def op_update_frame(self):
        """UPDATE with a short or long frame: error 5; the complete elements come back."""
        if not self.cfg["update"]:
            return await self.op_update()
        n = int(self.rng.integers(2, 20))
        (w, g, v), (lr, mu, wd) = random_update(self.rng, n)
        seed = int(self.rng.integers(1, 1 << 32))
        data = frames.update_frame(w, g, v)
        beat = (await self.host.config())["beat_bytes"]
        need = frames.beats(len(data), beat)
        long = need == 1 or self.rng.random() < 0.4
        if long:
            extra = frames.update_frame(*[[0x3C00] * (4 * int(self.rng.integers(1, 7)))] * 3)
            data += bytes(-len(data) % beat) + extra[:beat * -(-len(extra) // beat)]
        else:
            data = data[:beat * int(self.rng.integers(1, need))]
        beats = frames.beats(len(data), beat)
        done = min(n, len(data) // 8)
        self.note(f"raw UPDATE n={n} seed={seed} with a frame of {beats} beats for {need}")
        await self.raw(Ctrl.UPDATE, lr=lr, momentum=mu, weight_decay=wd, seed=seed, length=n,
                       options=0)
        if done:
            out = await self.t.exchange(data, 100_000)
        else:
            # No element complete: no frame comes back.
            await self.t.send(data, 100_000)
            out = b""
        await self.expect(self.host.wait_done("UPDATE"), TopError.FRAME, "UPDATE bad frame")
        if not done and not self.uart:
            await self.t.wait_cycles(60)
            if not self.t.sink.empty():
                self.fail("UPDATE with no complete element sent beats")
        rbits = (await self.host.config())["update_rbits"]
        ew, ev = golden.sgd_update(w[:done], g[:done], v[:done], lr, mu, wd, seed, "sr",
                                   rbits)
        want = np.stack([ew, ev], axis=1).ravel() if done else np.zeros(0, np.uint16)
        got = (np.stack(frames.update_results(out, done), axis=1).ravel() if len(out) >= 4 * done
               else np.frombuffer(bytes(out[:len(out) // 2 * 2]), "<u2"))
        self.same(got.astype(np.uint16), want.astype(np.uint16),
                  f"UPDATE frame of {beats} beats for {n} elements")

    async def op_update_bad(self):
        r = self.rng
        seed, length, code = [(0, 4, TopError.BAD_SEED), (1, 0, TopError.ZERO_DIM),
                              (5, UPDATE_MAX + 1, TopError.TOO_LARGE),
                              (5, 0xFFFF_FFFF, TopError.TOO_LARGE)][r.integers(0, 4)]
        if not self.cfg["update"]:
            code = TopError.NO_UPDATE
        await self.rejected(Ctrl.UPDATE, {"seed": seed, "length": length}, code,
                            f"UPDATE seed {seed} length {length}")

    async def op_register(self):
        """Partial writes, values too wide, read-only and unmapped registers."""
        r = self.rng
        h, t = self.host, self.t
        kind = r.integers(0, 4)
        writable = [a for a in REG_MASK if a != Reg.CTRL]
        if kind == 0:
            if self.uart:     # the bridge always writes whole words
                return await self.op_read()
            addr = writable[r.integers(0, len(writable))]
            before = await h.read_reg(addr)
            # cocotbext-axi sets WSTRB from the address and length: part of a word at an
            # offset is a partial write.
            off = int(r.integers(0, 4))
            size = int(r.integers(1, 4)) if off == 0 else int(r.integers(1, 5 - off))
            data = bytes(int(x) for x in r.integers(0, 256, size))
            self.note(f"write {size} bytes at 0x{addr + off:02x} (partial) -> SLVERR")
            resp = await t.axil.write(addr + off, data)
            if int(resp.resp) != 2:
                self.fail(f"partial write of {size} bytes at 0x{addr + off:02x}: BRESP "
                          f"{int(resp.resp)}")
            if await h.read_reg(addr) != before:
                self.fail(f"register 0x{addr:02x} changed by a partial write")
            return
        if kind == 1:
            addr = writable[r.integers(0, len(writable))]
            mask = REG_MASK[addr]
            if mask == 0xFFFF_FFFF:
                return
            before = await h.read_reg(addr)
            value = int(r.integers(0, 1 << 32)) | (~mask & 0xFFFF_FFFF & -(1 << int(
                r.integers(0, 32))) or 1 << 31)
            if value & ~mask == 0:
                value |= 1 << 31
            self.note(f"write 0x{addr:02x} = {value:#x} (bits outside {mask:#x}) -> SLVERR")
            await self.expect(h.write_reg(addr, value), "SLVERR", f"0x{addr:02x} = {value:#x}")
            after = await h.read_reg(addr)
            if after != before:
                self.fail(f"register 0x{addr:02x} changed by a refused write: {before:#x} -> "
                          f"{after:#x}")
            return
        if kind == 2:
            addr = READ_ONLY[r.integers(0, len(READ_ONLY))]
            before = await h.read_reg(addr)
            self.note(f"write read-only 0x{addr:02x} -> SLVERR")
            await self.expect(h.write_reg(addr, int(r.integers(0, 1 << 32))), "SLVERR",
                              f"write of read-only 0x{addr:02x}")
            if (addr not in (Reg.STATUS, Reg.CYCLES, Reg.CLOCK, Reg.QUEUE, Reg.ERRLOG)
                    and await h.read_reg(addr) != before):
                self.fail(f"read-only 0x{addr:02x} changed")
            return
        addr = int(r.integers(_UNMAPPED // 4, 0x100 // 4)) * 4
        self.note(f"access unmapped 0x{addr:02x} and read CTRL")
        await self.expect(h.read_reg(addr), "DECERR", f"read of 0x{addr:02x}")
        await self.expect(h.write_reg(addr, 1), "DECERR", f"write of 0x{addr:02x}")
        await self.expect(h.read_reg(Reg.CTRL), "SLVERR", "read of CTRL")

    async def op_options_during_read(self):
        """OPTIONS, M and N written while READ_C is stalled: the frame keeps its format."""
        if self.C is None or self.uart:
            return await self.op_read()
        m, n = self.C.shape
        fmt = (OutFmt.ACC, OutFmt.E5M2, OutFmt.E4M3)[self.rng.integers(0, 3)]
        if not self.cfg["fp8_out"]:
            fmt = OutFmt.ACC
        other = (fmt + 1 + int(self.rng.integers(0, 2))) % 3
        self.note(f"raw READ_C {m}x{n} fmt {fmt}, sink stalled, OPTIONS fmt {other} written")
        sink = self.t.sink
        sink.clear_pause_generator()
        sink.pause = True
        await self.raw(Ctrl.READ_C, m=m, n=n, options=fmt << 16)
        await self.t.wait_cycles(int(self.rng.integers(1, 40)))
        await self.host.write_reg(Reg.OPTIONS, other << 16 if self.cfg["fp8_out"] else 0)
        await self.host.write_reg(Reg.M, 1)
        await self.host.write_reg(Reg.N, 1)
        sink.pause = False
        data = await self.t.recv(100_000)
        await self.idle_status("READ_C")
        want = self.C if fmt == OutFmt.ACC else golden.convert(
            self.C, self.cfg["acc_fmt"], ("e5m2", "e4m3")[fmt - 1], "rne", saturate=True)
        need = frames.c_frame_bytes(m, n, self.cols, fmt != OutFmt.ACC)
        if len(data) != need:
            self.fail(f"READ_C with OPTIONS changed under it: {len(data)} bytes, expected "
                      f"{need}")
        got = frames.c_from_frame(data, m, n, self.cols, fmt != OutFmt.ACC)
        self.same(got.ravel().astype(np.uint16), want.ravel().astype(np.uint16),
                  "READ_C with OPTIONS changed under it")

    async def do_reset(self, what):
        self.note(f"reset ({what})")
        await self.host.reset()
        st = await self.host.status()
        if st.busy or st.done or st.error:
            self.fail(f"STATUS after a reset during {what}: {st}")

    async def op_reset(self):
        """A reset in the middle of a GEMM, a load, a read or an update."""
        kind = self.rng.integers(0, 4)
        wait = int(self.rng.integers(0, 120))
        if kind == 0:
            await self.ensure_operands()
            m, k = self.A["A"].shape
            n = self.B["B"].shape[1]
            word = options_word(a_fmt=self.A["fmt"], b_fmt=self.B["fmt"],
                                transpose_a=self.A["trans"], transpose_b=self.B["trans"])
            self.note(f"raw START {m}x{n}x{k}")
            await self.raw(Ctrl.START, m=m, n=n, k=k, options=word)
            await self.t.wait_cycles(wait)
            await self.do_reset("a GEMM")
            self.C = None          # partly written
        elif kind == 1:
            key = "ABC"[self.rng.integers(0, 3)]
            m, n, k = self.dims()
            regs = {"m": m, "n": n, "k": k, "options": 0}
            size = {"A": len(frames.a_frame(np.zeros((m, k)), self.rows)), "B": k * n,
                    "C": frames.c_frame_bytes(m, n, self.cols)}[key]
            self.note(f"raw LOAD_{key} {regs}, part of its frame")
            self.forget(key)
            await self.raw(_LOADS[key], **regs)
            if not self.uart:
                await self.t.source.send(self.rng.bytes(size))
            await self.t.wait_cycles(wait)
            await self.do_reset(f"LOAD_{key}")
        elif kind == 2:
            if self.C is None:
                return await self.op_load()
            m, n = self.C.shape
            self.note(f"raw READ_C {m}x{n}")
            await self.raw(Ctrl.READ_C, m=m, n=n, options=0)
            await self.t.wait_cycles(wait)
            await self.do_reset("READ_C")
        else:
            if not self.cfg["update"]:
                return await self.op_update()
            n = int(self.rng.integers(1, 30))
            (w, g, v), (lr, mu, wd) = random_update(self.rng, n)
            self.note(f"raw UPDATE n={n}, part of its frame")
            await self.raw(Ctrl.UPDATE, lr=lr, momentum=mu, weight_decay=wd, seed=7, length=n,
                           options=0)
            if not self.uart:
                await self.t.source.send(frames.update_frame(w, g, v))
            await self.t.wait_cycles(wait)
            await self.do_reset("UPDATE")

    async def op_stray_beats(self):
        """Beats offered with no transfer open are not taken."""
        if self.uart:
            return await self.op_register()
        self.note("send 3 beats with no transfer open")
        await self.stray_frame("beats with no transfer open")

    async def op_no_fp8(self):
        """READ_C in FP8 on a build without the converters: error 9 (else a valid read)."""
        if self.cfg["fp8_out"] or self.C is None:
            return await self.op_read()
        m, n = self.C.shape
        await self.rejected(Ctrl.READ_C, {"m": m, "n": n, "options": OutFmt.E5M2 << 16},
                            TopError.NO_FP8_OUT, "READ_C in E5M2 without converters")

    async def op_line_noise(self):
        """Stray bytes and truncated packets on the serial line; the host resynchronises."""
        r = self.rng
        link = self.t._link
        kind = r.integers(0, 3)
        if kind == 0:
            junk = bytes(int(b) for b in r.choice(
                [b for b in range(256) if b not in b"WRSZI"], int(r.integers(1, 6))))
            self.note(f"line noise {junk.hex()}")
        elif kind == 1:
            junk = bytes([ord("W"), Reg.M]) + bytes(int(b) for b in
                                                    r.integers(0, 256, int(r.integers(0, 4))))
            self.note(f"truncated write packet {junk.hex()}")
        else:
            junk = bytes([ord("S")]) + bytes(int(b) for b in
                                             r.integers(0, 256, int(r.integers(0, 2))))
            self.note(f"truncated stream header {junk.hex()}")
        await link.write(junk)
        await ClockCycles(self.dut.clk, int(r.integers(1, 400)))
        # The host notices nothing came back and resynchronises: 'Z' resets the accelerator.
        await self.do_reset("line noise")

    # The run ------------------------------------------------------------------------------------

    async def run(self, count):
        funcs, weights = zip(*self.ops)
        p = np.array(weights, float) / sum(weights)
        for i in range(count):
            op = funcs[self.rng.choice(len(funcs), p=p)]
            self.shuffle_stalls()
            self.counts[op.__name__[3:]] += 1
            try:
                await with_timeout(op(), 2_000_000 * PERIOD_NS, "ns")
            except SimTimeoutError:
                self.fail(f"operation {i} ({op.__name__[3:]}) hung: no progress in 2,000,000 "
                          f"cycles; ports: {self.ports()}")
            except Failure:
                raise
            except Exception as exc:
                self.fail(f"operation {i} ({op.__name__[3:]}): unexpected {exc!r}")
        # The device ends in order: a last valid GEMM on fresh operands.
        await self.op_run_gemm()
        return self.counts


async def start(dut, cfg):
    """The host, on the top's own ports or through the UART bridge."""
    if cfg["link"] == "uart":
        from fp8accel.sim.tb.bridge import start as start_bridge
        host, _ = await start_bridge(dut, cfg)
        return host
    return await attach(dut, PERIOD_NS)


async def _trace(dut, path):
    """Write every change of the handshake signals, with its cycle, to ``path`` (debugging)."""
    names = [n for n in ("s_axil_awvalid", "s_axil_awready", "s_axil_wvalid", "s_axil_wready",
                         "s_axil_bvalid", "s_axil_bready", "s_axil_arvalid", "s_axil_arready",
                         "s_axil_rvalid", "s_axil_rready", "s_axis_tvalid", "s_axis_tready",
                         "s_axis_tlast", "m_axis_tvalid", "m_axis_tready", "m_axis_tlast")
             if hasattr(dut, n)]
    prev, cycle = None, 0
    with open(path, "w") as f:
        while True:
            await RisingEdge(dut.clk)
            cycle += 1
            now = tuple(str(getattr(dut, n).value) for n in names)
            if now != prev:
                f.write(f"{cycle} " + " ".join(f"{n}={v}" for n, v in zip(names, now)) + "\n")
                f.flush()
                prev = now


@cocotb.test()
async def test_campaign(dut):
    """The randomized host: ``ops`` operations from seed ``seed``."""
    cfg = _config()
    host = await start(dut, cfg)
    config = await host.config()
    assert config["update"] == cfg["update"] and config["fp8_out"] == cfg["fp8_out"], config
    campaign = Campaign(dut, host, cfg)
    if cfg.get("trace"):
        cocotb.start_soon(_trace(dut, cfg["trace"]))
    counts = await campaign.run(cfg["ops"])
    cocotb.log.info("campaign seed %d: %d operations, %s", cfg["seed"], cfg["ops"],
                    dict(counts))
    if cfg.get("report"):
        with open(cfg["report"], "w") as f:
            json.dump({"seed": cfg["seed"], "ops": cfg["ops"], "counts": dict(counts),
                       "host_calls": len(campaign.log)}, f)
