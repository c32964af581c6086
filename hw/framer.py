"""The UPDATE frames of the host interface around the weight-update unit's element streams.

Ref: docs/host-interface.md ("Stream framing", UPDATE).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from .axi import AXI4StreamSignature
from .common import CheckedComponent

__all__ = ["UpdateFramer", "ELEMENT", "RESULT"]

#: An element of an UPDATE: weight, gradient, momentum (DLFLOAT16 codes).
ELEMENT = data.StructLayout({"w": 16, "g": 16, "v": 16})
#: Its result: the new weight and momentum.
RESULT = data.StructLayout({"w": 16, "v": 16})


class UpdateFramer(CheckedComponent):
    """Takes an UPDATE frame of ``3 * length`` beats ``w, g, v, w, g, v, ...`` from ``s_axis``
    and hands each element to ``elem``; sends each result of ``result`` as two beats ``w1, v1``
    on ``m_axis``, with ``tlast`` on the last.

    A frame that ends early (``tlast``) passes on the complete elements it carried, drops a
    partial one and puts ``tlast`` on the last result; one that runs past its length is
    taken and dropped until ``tlast``. Both end with ``error``. The beat of an element's
    ``v1`` waits until it is known whether it is the last result, so that ``tlast`` is always
    on the right beat.

    Parameters
    ----------
    pending : int
        The most elements that can be between ``elem`` and ``m_axis`` at once (the update
        unit's FIFO depth, and a few).

    Members
    -------
    start : In(1)
        Begin a frame of ``length`` elements (``length >= 1``).
    length : In(24)
        Sampled with ``start``.
    active : In(1)
        The stream ports belong to this frame (from ``start`` until ``done``).
    s_axis : In(AXI4StreamSignature(16))
    m_axis : Out(AXI4StreamSignature(16))
        Driven only while ``active``.
    elem : Out(stream.Signature(ELEMENT))
    result : In(stream.Signature(RESULT))
    done : Out(1)
        Pulses when the frame has ended and its last result has left.
    error : Out(1)
        With ``done``: the frame had the wrong length.
    """

    def __init__(self, pending):
        if isinstance(pending, bool) or not isinstance(pending, int) or pending < 1:
            raise ValueError(f"pending must be a positive integer, not {pending!r}")
        self._pending = pending
        super().__init__({
            "start": In(1), "length": In(24), "active": In(1),
            "s_axis": In(AXI4StreamSignature(16)), "m_axis": Out(AXI4StreamSignature(16)),
            "elem": Out(stream.Signature(ELEMENT)), "result": In(stream.Signature(RESULT)),
            "done": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        active, start = self.active, self.start
        s_axis, m_axis = self.s_axis, self.m_axis

        # Input: three beats make an element.
        phase = Signal(2)
        w = Signal(16)
        g = Signal(16)
        left = Signal(24)          # elements still to assemble
        last = Signal()            # left == 1
        in_done = Signal()         # no element will be assembled any more
        closed = Signal()          # the input frame has ended (tlast)
        bad = Signal()             # the input frame had the wrong length
        pending = Signal(range(self._pending + 8))   # assembled, v beat not yet sent
        with m.If(start):
            m.d.sync += [phase.eq(0), left.eq(self.length), last.eq(self.length == 1),
                         in_done.eq(0), closed.eq(0), bad.eq(0), pending.eq(0),
                         self.elem.valid.eq(0)]
        beat = Signal()
        m.d.comb += beat.eq(active & s_axis.tvalid & s_axis.tready)
        # The element register takes a third beat only when empty, so that tready does not
        # wait for the unit's ready; at three beats per element it is always empty in time.
        with m.If(active):
            m.d.comb += s_axis.tready.eq(
                ~closed & ((phase != 2) | in_done | ~self.elem.valid))
        with m.If(self.elem.valid & self.elem.ready):
            m.d.sync += self.elem.valid.eq(0)
        assembled = beat & ~in_done & (phase == 2)
        with m.If(beat & ~in_done):
            m.d.sync += phase.eq(Mux(phase == 2, 0, phase + 1))
            with m.Switch(phase):
                with m.Case(0):
                    m.d.sync += w.eq(s_axis.tdata)
                with m.Case(1):
                    m.d.sync += g.eq(s_axis.tdata)
                with m.Case(2):
                    m.d.sync += [self.elem.payload.eq(Cat(w, g, s_axis.tdata)),
                                 self.elem.valid.eq(1), left.eq(left - 1),
                                 last.eq(left == 2)]
                    with m.If(last):
                        m.d.sync += in_done.eq(1)
        with m.If(beat):
            with m.If(s_axis.tlast):
                # The frame ends: complete elements go on, a partial one is dropped.
                m.d.sync += [closed.eq(1), in_done.eq(1)]
                with m.If(~(assembled & last)):
                    m.d.sync += bad.eq(1)
            with m.Elif(in_done):
                m.d.sync += bad.eq(1)      # past the length: dropped until tlast

        # Output: an element leaves as two beats, w then v. The v beat waits until it is
        # known whether it is the last (a later element was assembled, or the input is over).
        o_valid = Signal()
        o_phase = Signal()
        o_w = Signal(16)
        o_v = Signal(16)
        last_known = (pending > 1) | in_done
        o_last = in_done & (pending == 1)
        fire = active & m_axis.tvalid & m_axis.tready
        v_sent = fire & o_phase
        m.d.comb += self.result.ready.eq(~o_valid | v_sent)
        with m.If(v_sent):
            m.d.sync += [o_valid.eq(0), o_phase.eq(0)]
        with m.If(fire & ~o_phase):
            m.d.sync += o_phase.eq(1)
        with m.If(self.result.valid & self.result.ready):
            m.d.sync += [o_valid.eq(1), o_phase.eq(0), o_w.eq(self.result.payload.w),
                         o_v.eq(self.result.payload.v)]
        with m.If(start):
            m.d.sync += [o_valid.eq(0), o_phase.eq(0)]
        m.d.sync += pending.eq(pending + assembled - v_sent)
        with m.If(start):
            m.d.sync += pending.eq(0)
        with m.If(active):
            m.d.comb += [
                m_axis.tdata.eq(Mux(o_phase, o_v, o_w)),
                m_axis.tvalid.eq(o_valid & (~o_phase | last_known)),
                m_axis.tlast.eq(o_phase & o_last),
            ]
        m.d.comb += [self.done.eq(active & closed & (pending == 0)), self.error.eq(bad)]
        return m
