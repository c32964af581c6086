"""Width converters between the AXI4-Stream beats of the host interface and the words of the
buffers: an :class:`Unpacker` turns beats into words, a :class:`Packer` words into beats.

Both widths are powers of two, in bits, at least 8. Word 0 of a beat is in its low bits (a
little-endian byte stream): with 64-bit beats, eight FP8 codes or four 16-bit codes per beat.

Ref: docs/host-interface.md ("Stream framing").
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from .axi import AXI4StreamSignature
from .common import CheckedComponent

__all__ = ["Packer", "Unpacker", "pow2_at_least"]


def pow2_at_least(n):
    """The smallest power of two that is ``>= n`` (``n >= 1``)."""
    return 1 << (int(n) - 1).bit_length()


def _check_width(name, value):
    if (isinstance(value, bool) or not isinstance(value, int) or value < 8
            or value & (value - 1)):
        raise ValueError(f"{name} must be a power of two of at least 8 bits, not {value!r}")


class Unpacker(CheckedComponent):
    """Beats of ``beat_width`` bits from ``s_axis`` into words of ``word_width`` bits on ``o``.

    A beat wider than a word is split into its words, low bits first, one word per cycle (the
    beat's ``tready`` waits for its last word); a beat narrower than a word is gathered with
    the next ones, the first in the low bits. ``tlast`` and ``tkeep`` are not looked at: the
    user counts beats at the port and drops the words it does not need.

    Members
    -------
    clear : In(1)
        Drop what is held (a partial word, the rest of a beat).
    s_axis : In(AXI4StreamSignature(beat_width))
    o : Out(stream.Signature(word_width))
    busy : Out(1)
        A word, or part of one, is held.
    """

    def __init__(self, beat_width, word_width):
        _check_width("beat_width", beat_width)
        _check_width("word_width", word_width)
        self.beat_width, self.word_width = beat_width, word_width
        super().__init__({
            "clear": In(1),
            "s_axis": In(AXI4StreamSignature(beat_width)),
            "o": Out(stream.Signature(word_width)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        W, w = self.beat_width, self.word_width
        s, o = self.s_axis, self.o
        beat = s.tvalid & s.tready
        taken = o.valid & o.ready
        full = Signal()
        if w <= W:
            ratio = W // w
            buf = Signal(W)
            sub = Signal(range(ratio))
            last_sub = Signal()
            if ratio == 1:
                m.d.comb += last_sub.eq(1)
            else:
                m.d.comb += last_sub.eq(sub == ratio - 1)
            m.d.comb += [s.tready.eq(~full | (taken & last_sub)), o.valid.eq(full),
                         o.payload.eq(buf.word_select(sub, w) if ratio > 1 else buf)]
            with m.If(taken):
                with m.If(last_sub):
                    m.d.sync += full.eq(0)
                if ratio > 1:
                    with m.Else():
                        m.d.sync += sub.eq(sub + 1)
            with m.If(beat):
                m.d.sync += [buf.eq(s.tdata), full.eq(1)]
                if ratio > 1:
                    m.d.sync += sub.eq(0)
            m.d.comb += self.busy.eq(full)
        else:
            ratio = w // W
            acc = Signal(w)
            count = Signal(range(ratio))
            m.d.comb += [s.tready.eq(~full | o.ready), o.valid.eq(full), o.payload.eq(acc)]
            with m.If(taken):
                m.d.sync += full.eq(0)
            with m.If(beat):
                m.d.sync += acc.eq(Cat(acc[W:], s.tdata))
                with m.If(count == ratio - 1):
                    m.d.sync += [count.eq(0), full.eq(1)]
                with m.Else():
                    m.d.sync += count.eq(count + 1)
            m.d.comb += self.busy.eq(full | (count != 0))
            with m.If(self.clear):
                m.d.sync += count.eq(0)
        with m.If(self.clear):
            m.d.sync += full.eq(0)
        return m


class Packer(CheckedComponent):
    """Words of ``word_width`` bits from ``i`` into beats of ``beat_width`` bits on ``m_axis``.

    Words narrower than a beat are gathered, the first in the low bits; a word marked
    ``last`` ends its beat, with ``tlast`` and ``tkeep`` covering the bytes of the words it
    holds. A word wider than a beat leaves as several beats, low bits first, ``tlast`` on the
    final beat of a ``last`` word.

    Members
    -------
    i : In(stream.Signature(WORD))
        ``WORD`` is a struct of ``data`` (``word_width`` bits) and ``last``.
    m_axis : Out(AXI4StreamSignature(beat_width))
    """

    def __init__(self, word_width, beat_width):
        _check_width("word_width", word_width)
        _check_width("beat_width", beat_width)
        self.beat_width, self.word_width = beat_width, word_width
        self.word_layout = data.StructLayout({"data": word_width, "last": 1})
        super().__init__({
            "i": In(stream.Signature(self.word_layout)),
            "m_axis": Out(AXI4StreamSignature(beat_width)),
        })

    def elaborate(self, platform):
        m = Module()
        W, w = self.beat_width, self.word_width
        i, o = self.i, self.m_axis
        taken = i.valid & i.ready
        sent = o.tvalid & o.tready
        if w <= W:
            with m.If(sent):
                m.d.sync += o.tvalid.eq(0)
            ratio = W // w
            gath = Signal(W)
            n = Signal(range(ratio))
            m.d.comb += i.ready.eq(~o.tvalid | o.tready)
            # Expressions, not assignments under a condition: a 4-state simulator leaves a
            # signal assigned only in a process that no event has woken at X.
            merged = Signal(W)
            keep = Signal(W // 8)
            if ratio > 1:
                m.d.comb += [
                    merged.eq(Cat(*(Mux(n == k, i.payload.data, gath.word_select(k, w))
                                    for k in range(ratio)))),
                    keep.eq(Cat(*(Mux(n >= k, Const((1 << w // 8) - 1, w // 8), 0)
                                  for k in range(ratio)))),
                ]
                complete = (n == ratio - 1) | i.payload.last
            else:
                m.d.comb += [merged.eq(i.payload.data), keep.eq((1 << (W // 8)) - 1)]
                complete = Const(1)
            with m.If(taken):
                with m.If(complete):
                    m.d.sync += [o.tdata.eq(merged), o.tkeep.eq(keep),
                                 o.tlast.eq(i.payload.last), o.tvalid.eq(1), gath.eq(0)]
                    if ratio > 1:
                        m.d.sync += n.eq(0)
                if ratio > 1:
                    with m.Else():
                        m.d.sync += [gath.eq(merged), n.eq(n + 1)]
        else:
            ratio = w // W
            word = Signal(w)
            last = Signal()
            full = Signal()
            sub = Signal(range(ratio))
            at_end = sub == ratio - 1
            m.d.comb += [i.ready.eq(~full | (sent & at_end)),
                         o.tdata.eq(word.word_select(sub, W)),
                         o.tkeep.eq((1 << (W // 8)) - 1), o.tlast.eq(last & at_end),
                         o.tvalid.eq(full)]
            with m.If(sent):
                with m.If(at_end):
                    m.d.sync += full.eq(0)
                with m.Else():
                    m.d.sync += sub.eq(sub + 1)
            with m.If(taken):
                m.d.sync += [word.eq(i.payload.data), last.eq(i.payload.last), full.eq(1),
                             sub.eq(0)]
        return m
