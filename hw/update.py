"""Streaming SGD weight update with stochastic rounding: three fused multiply-adds per element.

Ref: docs/numerics.md section 5 (the update and its xorshift32 stream); docs/weight-update.md;
Wang et al., "Training Deep Neural Networks with 8-bit Floating Point Numbers", NeurIPS 2018
(stochastic rounding of 16-bit weight updates); G. Marsaglia, "Xorshift RNGs", Journal of
Statistical Software 8(14), 2003 (the generator, and its matrix ``T = (I + L^5)(I + R^17)(I +
L^13)`` over GF(2)).
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, fifo, stream
from amaranth.lib.wiring import In, Out

from .common import delay, delay_ram
from .fp.fma import FPFMA
from .fp.format import DLFLOAT16, check_rbits
from .common import CheckedComponent

__all__ = ["xorshift32_step", "xorshift32_matrix", "gf2_apply", "XorshiftWords", "SGDUpdate"]

_MASK32 = 0xFFFF_FFFF


def xorshift32_step(s):
    """One step of the generator of docs/numerics.md section 5 on a Python integer."""
    s ^= (s << 13) & _MASK32
    s ^= s >> 17
    s ^= (s << 5) & _MASK32
    return s


def xorshift32_matrix(k):
    """The GF(2) matrix of ``k`` generator steps, ``T^k``, as 32 row masks: bit ``i`` of the
    state after ``k`` steps is the parity of ``s & rows[i]``.

    Every step is a composition of ``x ^ (x << n)`` and ``x ^ (x >> n)``, which are linear over
    GF(2), so column ``j`` of ``T^k`` is the image of the unit vector ``1 << j``.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"Number of steps must be a non-negative integer, not {k!r}")
    rows = [0] * 32
    for j in range(32):
        col = 1 << j
        for _ in range(k):
            col = xorshift32_step(col)
        for i in range(32):
            if (col >> i) & 1:
                rows[i] |= 1 << j
    return rows


def gf2_apply(rows, value):
    """``rows`` (masks, from :func:`xorshift32_matrix`) applied to ``value``: bit ``i`` of the
    result is the XOR of the bits of ``value`` that ``rows[i]`` selects. A flat XOR of at most
    32 inputs is three levels of LUT4s (``T^3`` has at most 18 ones in a row: three levels, two
    of them small)."""
    bits = []
    for row in rows:
        taps = [value[j] for j in range(len(value)) if (row >> j) & 1]
        bits.append(Cat(*taps).xor() if taps else Const(0, 1))
    return Cat(*bits)


class XorshiftWords(CheckedComponent):
    """The xorshift32 generator of docs/numerics.md section 5, three words per step.

    The state register holds ``s``; the outputs are the low ``rbits`` bits of the next three
    words, ``T(s)``, ``T^2(s)`` and ``T^3(s)``, each a flat XOR network of ``s`` (see
    :func:`xorshift32_matrix`) rather than a chain of steps. ``advance`` moves the state to
    ``T^3(s)``, the last of them.

    Parameters
    ----------
    rbits : int
        Bits kept of each word (1 to 32).

    Members
    -------
    u : Out(ArrayLayout(rbits, 3))
        The low ``rbits`` bits of the next three words, combinational from the state.
    state : Out(32)
        The state: the last word taken (or the seed).
    advance : In(1)
        Take the three words: the state becomes ``T^3(state)`` at the clock edge.
    seed : In(32), load : In(1)
        ``load`` sets the state to ``seed``, taking precedence over ``advance``. After reset
        the state is 1.
    """

    def __init__(self, *, rbits=16):
        check_rbits(rbits)
        self._rbits = rbits
        super().__init__({
            "u": Out(data.ArrayLayout(rbits, 3)), "state": Out(32),
            "advance": In(1), "seed": In(32), "load": In(1),
        })

    rbits = property(lambda self: self._rbits)

    def elaborate(self, platform):
        m = Module()
        R = self._rbits
        state = Signal(32, init=1)
        after = Signal(32, name="after")
        m.d.comb += [
            self.u[0].eq(gf2_apply(xorshift32_matrix(1)[:R], state)),
            self.u[1].eq(gf2_apply(xorshift32_matrix(2)[:R], state)),
            after.eq(gf2_apply(xorshift32_matrix(3), state)),
            self.u[2].eq(after[:R]),
            self.state.eq(state),
        ]
        with m.If(self.load):
            m.d.sync += state.eq(self.seed)
        with m.Elif(self.advance):
            m.d.sync += state.eq(after)
        return m


class SGDUpdate(CheckedComponent):
    """SGD with momentum and weight decay on DLFLOAT16 weights, one element per cycle.

    Per element, as docs/numerics.md section 5 and :func:`sim.golden.sgd_update`::

        g1 = fma(wd, w, g)     rounded with random word u[3j]
        v1 = fma(mu, v, g1)    rounded with random word u[3j+1]
        w1 = fma(-lr, v1, w)   rounded with random word u[3j+2]

    Three pipelined :class:`~hw.fp.fma.FPFMA` units form a chain; ``w`` and ``v`` wait for
    their FMA, and ``v1`` for ``w1``, in LUT-RAM delay lines. When an element is accepted the
    three random words and the next generator state are computed in one cycle from the current
    state, through the precomputed matrices of 1, 2 and 3 xorshift32 steps.

    The FMAs cannot stall, so backpressure is handled by an output FIFO and a credit count: an
    element is accepted only while the elements in flight plus those in the FIFO are fewer than
    the FIFO's depth, so every element that enters has a FIFO entry waiting for it. The depth
    is ``latency + 4``: ``latency + 1`` is the least that sustains one element per cycle with an
    always-ready sink; the other three let the sink pause for three cycles without throttling
    the input.

    Parameters
    ----------
    rbits : int
        Random bits per rounding (1 to 32): the low ``rbits`` bits of each generator word.

    Members
    -------
    i : In(stream.Signature(StructLayout({"w": 16, "g": 16, "v": 16})))
        Weight, gradient and momentum of one element, DLFLOAT16 codes (``w`` in the least
        significant bits).
    o : Out(stream.Signature(StructLayout({"w": 16, "v": 16})))
        The updated weight and momentum, in input order.
    lr, momentum, weight_decay : In(16)
        DLFLOAT16 codes of the learning rate, momentum ``mu`` and weight decay ``wd``. The
        pipeline reads them at different times for one element, so they must be held from the
        transfer of a vector's first element until ``busy`` falls after its last.
    sr : In(1)
        1: round stochastically; 0: round to nearest even (the ablation). Sampled with each
        element at its transfer. The generator advances three words per element either way.
    seed : In(32), load : In(1)
        A cycle with ``load`` set loads ``seed`` into the generator; ``i.ready`` is 0 in that
        cycle, so no element is accepted with it. Pulse it only while ``busy`` is 0: elements
        in flight already have their random words, but ``state`` would no longer tell which
        stream they came from. The seed must be nonzero (docs/numerics.md section 5): zero is a
        fixed point of xorshift32, and would round every element as if ``rnd`` were 0, which
        is not an error the unit can report; the host must reject it. After reset the
        state is 1, as if seed 1 had been loaded.
    state : Out(32)
        The generator state after the words of the last element accepted so far (the seed if
        none). Loading it as the seed of the next call continues the stream, so a vector
        updated in two parts gives the same bits as one call of ``sgd_update`` over the whole.
    busy : Out(1)
        An element is in flight or waiting in the output FIFO.
    """

    i: In(stream.Signature(data.StructLayout({"w": 16, "g": 16, "v": 16})))
    o: Out(stream.Signature(data.StructLayout({"w": 16, "v": 16})))
    lr: In(16)
    momentum: In(16)
    weight_decay: In(16)
    sr: In(1)
    seed: In(32)
    load: In(1)
    state: Out(32)
    busy: Out(1)

    def __init__(self, *, rbits=16):
        check_rbits(rbits)
        self._rbits = rbits
        # The three FMAs are made here, so that their latency gives the unit's before
        # elaboration.
        self._fmas = [FPFMA(DLFLOAT16, "sr", rbits=rbits, runtime_rne=True) for _ in range(3)]
        self._fma_latency = self._fmas[0].latency
        super().__init__()

    rbits = property(lambda self: self._rbits)

    @property
    def latency(self):
        """Rising edges from an element's transfer into ``i`` (that edge included) to the edge
        after which it is valid on ``o``; with the sink ready it leaves at the next edge. Three
        FMA latencies and the FIFO's write."""
        return 3 * self._fma_latency + 1

    @property
    def fifo_depth(self):
        """Entries of the output FIFO, and so the most elements the unit holds at once."""
        return self.latency + 4

    def elaborate(self, platform):
        m = Module()
        fmt, R, L = DLFLOAT16, self._rbits, self._fma_latency
        depth = self.fifo_depth

        # Control: credits and the generator ---------------------------------------------------

        # Elements accepted and not yet delivered: in the FMAs or in the FIFO.
        # (held == depth is a registered flag: the ready it gives reaches the host's stream.)
        held = Signal(range(depth + 1))
        full = Signal()
        m.d.comb += self.i.ready.eq(~self.load & ~full)
        accept = self.i.valid & self.i.ready
        deliver = self.o.valid & self.o.ready
        with m.If(accept & ~deliver):
            m.d.sync += [held.eq(held + 1), full.eq(held == depth - 1)]
        with m.Elif(~accept & deliver):
            m.d.sync += [held.eq(held - 1), full.eq(0)]
        m.d.comb += self.busy.eq(held != 0)

        # The element's three words, T(s), T^2(s), T^3(s), side by side: no chain of steps.
        m.submodules.rng = rng = XorshiftWords(rbits=R)
        m.d.comb += [
            rng.seed.eq(self.seed), rng.load.eq(self.load), rng.advance.eq(accept),
            self.state.eq(rng.state),
        ]
        g_rnd, v_rnd, w_rnd = rng.u[0], rng.u[1], rng.u[2]

        # Datapath -----------------------------------------------------------------------------

        fma_g, fma_v, fma_w = self._fmas
        m.submodules.fma_g, m.submodules.fma_v, m.submodules.fma_w = self._fmas
        w, g, v = self.i.payload.w, self.i.payload.g, self.i.payload.v
        rne = ~self.sr
        m.d.comb += [
            fma_g.a.eq(self.weight_decay), fma_g.b.eq(w), fma_g.c.eq(g),
            fma_g.rnd.eq(g_rnd), fma_g.rne.eq(rne),
        ]

        # What the second and third FMAs need of the element, delayed beside the first and
        # second FMA in LUT RAM (the FMAs' operands have no register in front of them: the
        # delay lines match their latency exactly).
        g_side = delay_ram(m, Cat(v, v_rnd, w, w_rnd, rne), L, "g_side")
        v_in, v_rnd_d = g_side[:16], g_side[16:16 + R]
        v_rest = g_side[16 + R:]                                    # w, w_rnd, rne
        m.d.comb += [
            fma_v.a.eq(self.momentum), fma_v.b.eq(v_in), fma_v.c.eq(fma_g.r),
            fma_v.rnd.eq(v_rnd_d), fma_v.rne.eq(v_rest[-1]),
        ]

        v_side = delay_ram(m, v_rest, L, "v_side")
        neg_lr = self.lr ^ fmt.sign_mask
        m.d.comb += [
            fma_w.a.eq(neg_lr), fma_w.b.eq(fma_v.r), fma_w.c.eq(v_side[:16]),
            fma_w.rnd.eq(v_side[16:16 + R]), fma_w.rne.eq(v_side[-1]),
        ]
        w_v = delay_ram(m, fma_v.r, L, "w_v")

        # Output FIFO --------------------------------------------------------------------------

        # The valid flags travel in flip-flops: they must be reset.
        w_valid = delay(m, accept, 3 * L, "valid", reset_less=False)
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFO(width=32, depth=depth)
        m.d.comb += [
            # The credits guarantee room: w_rdy is always 1 here.
            out_fifo.w_en.eq(w_valid),
            out_fifo.w_data.eq(Cat(fma_w.r, w_v)),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
        ]
        return m
