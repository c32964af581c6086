"""LOAD_A, LOAD_B and LOAD_C: a frame of stream beats into buffer words, one word per cycle.

Ref: docs/host-interface.md ("Stream framing").

LOAD_A and LOAD_C carry the buffer words as they are stored (``hw.gemm.layout``): an A word holds
a byte of every bank, an accumulator word the totals of every lane, each padded to a power of
two of bytes. LOAD_B carries B's bytes in address order, a B word per beat. Frames are counted in
beats at the port and words after the width converter; the words of a beat beyond the frame's
last are dropped.
"""

import operator
from functools import reduce

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum
from amaranth.lib.wiring import In, Out

from .axi import AXI4StreamSignature
from .common import CheckedComponent
from .gearbox import Unpacker

__all__ = ["FrameLoader", "Load"]


class Load(enum.Enum, shape=3):
    """The kind of a load (the values of the top's transfer kinds); any other value: none."""
    A = 1
    B = 2
    C = 3


class FrameLoader(CheckedComponent):
    """Takes a load's frame from ``s_axis`` and writes its words to the buffer of its kind,
    at addresses 0, 1, ...

    A frame of the wrong length in beats sets ``bad`` with ``end``: one that ends early
    (``tlast``) has written the words that came; one that runs past its length has written
    every word and drops the rest of its beats until ``tlast``.

    Parameters
    ----------
    stream_width : int
    word_widths : (int, int, int)
        Bits of an A, B and C word (powers of two).
    max_words : int
        The most words a load writes (a larger one is refused before it starts).

    Members
    -------
    start : In(1)
        A load of kind ``start_kind`` and ``words`` words begins (its frame has the beats of
        that many words).
    start_kind : In(3), words : In(range(max_words + 1))
    kind : In(3)
        The running transfer (a :class:`Load` value while a load runs): beats are taken and
        words written only while it is a load.
    s_axis : In(AXI4StreamSignature(stream_width))
        ``tkeep`` is ignored: a frame is counted in beats.
    we : Out(3)
        Registered write enables of the A, B and C buffers, with ``addr`` and ``data``.
    addr : Out(range(max_words)), data : Out(max(word_widths))
    end : Out(1)
        The load ends (its frame has ended and every word it needs is written).
    bad : Out(1)
        With ``end``: the frame had the wrong length.
    first : Out(1)
        The first beat of the frame is taken.
    """

    def __init__(self, stream_width, word_widths, max_words):
        self._width = stream_width
        self._words = dict(zip(Load, word_widths))
        self._max = max_words
        super().__init__({
            "start": In(1), "start_kind": In(3), "words": In(range(max_words + 1)),
            "kind": In(3), "s_axis": In(AXI4StreamSignature(stream_width)),
            "we": Out(3), "addr": Out(range(max_words + 1)), "data": Out(max(word_widths)),
            "end": Out(1), "bad": Out(1), "first": Out(1),
        })

    def beats_of(self, words, kind):
        """Beats of a frame of ``words`` words of ``kind`` (an expression)."""
        W, width = self._width, self._words[kind]
        if width <= W:
            per = W // width
            return (words + per - 1) >> (per.bit_length() - 1)
        return words << ((width // W).bit_length() - 1)

    def elaborate(self, platform):
        m = Module()
        W = self._width
        unpackers = {}
        for width in self._words.values():
            if width not in unpackers:
                unpackers[width] = Unpacker(W, width)
                m.submodules[f"unpack{width}"] = unpackers[width]
        words_shape = range(self._max + 1)
        beats_shape = range(self._max * max(1, max(self._words.values()) // W) + 1)

        beats_left = Signal(beats_shape)   # beats still to come in this frame
        at_last = Signal()         # beats_left == 1
        over = Signal()            # the frame ran past its last beat
        closing = Signal()         # its tlast has come: the unpacker drains
        words_left = Signal(words_shape)   # words still to write
        words_open = Signal()      # words_left != 0
        waddr = Signal(words_shape)        # the next word's address
        beats = Signal(beats_shape)        # of the frame that starts
        k = self.start_kind
        m.d.comb += beats.eq(Mux(k == Load.A, self.beats_of(self.words, Load.A),
                                 Mux(k == Load.B, self.beats_of(self.words, Load.B),
                                     self.beats_of(self.words, Load.C))))
        with m.If(self.start):
            m.d.sync += [beats_left.eq(beats), at_last.eq(beats == 1), over.eq(0),
                         self.bad.eq(0), closing.eq(0), words_left.eq(self.words),
                         words_open.eq(self.words != 0), waddr.eq(0)]
        is_kind = {kind: self.kind == kind for kind in Load}
        loading = Cat(*is_kind.values()).any()
        taking = loading & ~closing
        # The unpacker of this load's word width; its outputs are selected by and-or
        # (assigned whole: see hw.framer).
        word_valid = Signal()
        word = Signal(max(unpackers))
        draining = Signal()        # the unpacker of this load still holds a word
        valids, words, busies, readies = [], [], [], []
        for width, unp in unpackers.items():
            mine = Cat(*(is_kind[kind] for kind in Load if self._words[kind] == width)).any()
            m.d.comb += [unp.clear.eq(self.start), unp.o.ready.eq(1),
                         unp.s_axis.tdata.eq(self.s_axis.tdata),
                         unp.s_axis.tvalid.eq(self.s_axis.tvalid & taking & mine)]
            valids.append(mine & unp.o.valid)
            words.append(Mux(mine, unp.o.payload, 0))
            busies.append(mine & unp.busy)
            readies.append(mine & unp.s_axis.tready)
        m.d.comb += [word_valid.eq(Cat(*valids).any()), draining.eq(Cat(*busies).any()),
                     self.s_axis.tready.eq(taking & Cat(*readies).any()),
                     word.eq(reduce(operator.or_, words))]
        beat = self.s_axis.tvalid & self.s_axis.tready

        # The writes are registered: the buffers' write enables fan out to many memories.
        write = word_valid & words_open
        m.d.sync += [self.we.eq(Cat(*(write & is_kind[kind] for kind in Load))),
                     self.addr.eq(waddr), self.data.eq(word)]
        with m.If(write):
            m.d.sync += [words_left.eq(words_left - 1), words_open.eq(words_left != 1),
                         waddr.eq(waddr + 1)]

        first_beat = Signal()
        with m.If(self.start):
            m.d.sync += first_beat.eq(1)
        m.d.comb += self.first.eq(beat & first_beat)
        with m.If(beat):
            m.d.sync += [beats_left.eq(beats_left - 1), at_last.eq(beats_left == 2),
                         first_beat.eq(0)]
            with m.If(self.s_axis.tlast):
                m.d.sync += closing.eq(1)
                with m.If(~at_last | over):
                    m.d.sync += self.bad.eq(1)
            with m.Elif(at_last):
                # The frame is longer than it should be: keep what came, drop the rest.
                m.d.sync += over.eq(1)
        # The load ends once its frame has ended and every word it needs is written (the
        # rest of the last beat is dropped).
        m.d.comb += self.end.eq(loading & closing & (~draining | ~words_open))
        return m
