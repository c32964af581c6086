"""The UPDATE frames of the host interface around the weight-update unit's element streams.

Ref: docs/host-interface.md ("Stream framing", UPDATE).
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from .axi import AXI4StreamSignature
from .common import CheckedComponent
from .gearbox import Packer, Unpacker

__all__ = ["UpdateFramer", "ELEMENT", "RESULT"]

#: An element of an UPDATE: weight, gradient, momentum (DLFLOAT16 codes).
ELEMENT = data.StructLayout({"w": 16, "g": 16, "v": 16})
#: Its result: the new weight and momentum.
RESULT = data.StructLayout({"w": 16, "v": 16})


class UpdateFramer(CheckedComponent):
    """Takes an UPDATE frame from ``s_axis``, an element ``(w, g, v)`` per 64 bits (``w`` in
    bits 15:0, ``g`` in 31:16, ``v`` in 47:32, bits 63:48 ignored), and hands each element to
    ``elem``; sends the results of ``result`` on ``m_axis``, ``(w1, v1)`` per 32 bits (``w1``
    in the low half), ``tlast`` on the beat of the last.

    With 64-bit beats an element is a beat; narrower beats carry a part of one, wider beats
    several (the unused elements of the last beat are ignored, and ``tkeep`` marks the bytes
    of the results in the last beat out).

    A frame of the wrong length in beats ends with ``error``: one that ends early (``tlast``)
    passes on the complete elements it carried, drops a partial one and puts ``tlast`` on the
    last result; one that runs past its length is taken and dropped until ``tlast``. A
    result waits until it is known whether it is the last, so that ``tlast`` is always on the
    right beat.

    Parameters
    ----------
    pending : int
        The most elements that can be between ``elem`` and ``m_axis`` at once (the update
        unit's FIFO depth, and a few).
    beat_width : int
        Bits per beat of the stream ports, a power of two from 16.

    Members
    -------
    start : In(1)
        Begin a frame of ``length`` elements (``length >= 1``).
    length : In(24)
        Sampled with ``start``.
    active : In(1)
        The stream ports belong to this frame (from ``start`` until ``done``).
    s_axis : In(AXI4StreamSignature(beat_width))
    m_axis : Out(AXI4StreamSignature(beat_width))
        Driven only while ``active``.
    elem : Out(stream.Signature(ELEMENT))
    result : In(stream.Signature(RESULT))
    done : Out(1)
        Pulses when the frame has ended and its last result has left.
    error : Out(1)
        With ``done``: the frame had the wrong length.
    """

    def __init__(self, pending, beat_width=16):
        if isinstance(pending, bool) or not isinstance(pending, int) or pending < 1:
            raise ValueError(f"pending must be a positive integer, not {pending!r}")
        if (isinstance(beat_width, bool) or not isinstance(beat_width, int)
                or beat_width < 16 or beat_width & (beat_width - 1)):
            raise ValueError(f"beat_width must be a power of two from 16, not {beat_width!r}")
        self._pending = pending
        self._beat = beat_width
        super().__init__({
            "start": In(1), "length": In(24), "active": In(1),
            "s_axis": In(AXI4StreamSignature(beat_width)),
            "m_axis": Out(AXI4StreamSignature(beat_width)),
            "elem": Out(stream.Signature(ELEMENT)), "result": In(stream.Signature(RESULT)),
            "done": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        W = self._beat
        active, start = self.active, self.start
        s_axis, m_axis = self.s_axis, self.m_axis
        m.submodules.unpack = unpack = Unpacker(W, 64)
        m.submodules.pack = pack = Packer(32, W)

        # Input: beats are counted at the port, elements after the unpacker.
        beats_left = Signal(27)
        at_last = Signal()         # beats_left == 1
        left = Signal(24)          # elements still to pass on
        left_zero = Signal(init=1)  # left == 0, registered
        closed = Signal()          # the input frame has ended (tlast)
        bad = Signal()             # the input frame had the wrong length
        pending = Signal(range(self._pending + 8))   # passed on, result not yet packed
        if W <= 64:
            beats = self.length << (64 // W).bit_length() - 1
        else:
            per = W // 64
            beats = (self.length + per - 1) >> per.bit_length() - 1
        with m.If(start):
            m.d.sync += [beats_left.eq(beats), at_last.eq(beats == 1), left.eq(self.length),
                         left_zero.eq(self.length == 0),
                         closed.eq(0), bad.eq(0), self.elem.valid.eq(0)]
        m.d.comb += unpack.clear.eq(start)
        taking = active & ~closed
        m.d.comb += [unpack.s_axis.tdata.eq(s_axis.tdata),
                     unpack.s_axis.tvalid.eq(taking & s_axis.tvalid)]
        with m.If(active):
            m.d.comb += s_axis.tready.eq(taking & unpack.s_axis.tready)
        beat = taking & s_axis.tvalid & unpack.s_axis.tready
        with m.If(beat):
            m.d.sync += [beats_left.eq(beats_left - 1), at_last.eq(beats_left == 2)]
            with m.If(s_axis.tlast):
                m.d.sync += closed.eq(1)
                with m.If(~at_last):
                    m.d.sync += bad.eq(1)
            with m.Elif(at_last | (beats_left == 0)):
                m.d.sync += bad.eq(1)      # past the length: taken and dropped until tlast
        # The input is over once the frame has ended and its last whole element has left the
        # unpacker (a partial one is never completed), or every element has been passed on.
        in_done = left_zero | (closed & ~unpack.o.valid)
        with m.If(self.elem.valid & self.elem.ready):
            m.d.sync += self.elem.valid.eq(0)
        # The element register takes the next element in the cycle the unit takes this one:
        # one element per cycle.
        m.d.comb += unpack.o.ready.eq(active & (left_zero | ~self.elem.valid
                                                | self.elem.ready))
        # (Assigned whole, not in an If: a 4-state simulator leaves a signal assigned only
        # under a condition that never changes at X, and pending would never recover.)
        passed = Signal()
        m.d.comb += passed.eq(unpack.o.valid & unpack.o.ready & ~left_zero)
        with m.If(passed):
            m.d.sync += [self.elem.payload.eq(unpack.o.payload[:48]), self.elem.valid.eq(1),
                         left.eq(left - 1), left_zero.eq(left == 1)]

        # Output: a result is held until it is known whether it is the last (a later element
        # was passed on, or the input is over), then packed.
        # (The counts' comparisons are registered: they feed the packer's input enable.)
        o_valid = Signal()
        o_word = Signal(32)
        pending_none, pending_one = Signal(init=1), Signal()   # pending == 0, == 1
        pending_many = Signal()                                # pending > 1
        last_known = pending_many | in_done
        packed = pack.i.valid & pack.i.ready
        m.d.comb += [pack.i.payload.data.eq(o_word),
                     pack.i.payload.last.eq(in_done & pending_one),
                     pack.i.valid.eq(active & o_valid & last_known),
                     self.result.ready.eq(~o_valid | packed)]
        with m.If(packed):
            m.d.sync += o_valid.eq(0)
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += [o_valid.eq(1),
                         o_word.eq(Cat(self.result.payload.w, self.result.payload.v))]
        with m.If(start):
            m.d.sync += o_valid.eq(0)
        # The flags follow the count a step at a time, without its adder and a comparison
        # after it: a step of +1 (an element passed on, none packed) or -1.
        inc, dec = passed & ~packed, packed & ~passed
        pending_two = pending == 2
        with m.If(start):
            m.d.sync += [pending.eq(0), pending_none.eq(1), pending_one.eq(0),
                         pending_many.eq(0)]
        with m.Else():
            m.d.sync += [
                pending.eq(pending + passed - packed),
                pending_none.eq(pending_none & ~inc & ~dec | pending_one & dec),
                pending_one.eq(pending_one & ~inc & ~dec | pending_none & inc
                               | pending_two & dec),
                # (-1 from none wraps round to many, as the count does.)
                pending_many.eq(pending_many & ~(pending_two & dec) | pending_one & inc
                                | pending_none & dec),
            ]
        with m.If(active):
            m.d.comb += [m_axis.tdata.eq(pack.m_axis.tdata), m_axis.tkeep.eq(pack.m_axis.tkeep),
                         m_axis.tvalid.eq(pack.m_axis.tvalid),
                         m_axis.tlast.eq(pack.m_axis.tlast),
                         pack.m_axis.tready.eq(m_axis.tready)]
        m.d.comb += [self.done.eq(active & closed & in_done & pending_none
                                  & ~pack.m_axis.tvalid),
                     self.error.eq(bad | ~left_zero)]
        return m
