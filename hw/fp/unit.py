"""The base class of the arithmetic units: a fixed-latency pipeline with registered outputs."""

from amaranth.hdl import Module

from ..common import CheckedComponent
from .common import Pipeline

__all__ = ["PipelinedUnit"]


class PipelinedUnit(CheckedComponent):
    """A fixed-latency pipeline: one new operation may enter every cycle, no handshake.

    Operands applied to the inputs before a rising clock edge produce their result on the
    outputs after ``latency`` rising edges. Subclasses implement :meth:`datapath`, which builds
    the stages on a :class:`~hw.fp.common.Pipeline` and returns the registered result.
    """

    def __init__(self, signature):
        super().__init__(signature)
        # The pipeline is built here, so that ``latency`` (its stage count, which follows
        # from the parameters) is known before elaboration; elaborate() hands this module out
        # and builds another only if asked again.
        self._module = Module()
        self._latency = self._build(self._module)

    @property
    def latency(self):
        """Cycles from an operation entering to its result on the output."""
        return self._latency

    def _build(self, m):
        pipe = Pipeline(m)
        result, port = self.datapath(m, pipe)
        m.d.comb += port.eq(result)
        return pipe.stages

    def datapath(self, m, pipe):  # pragma: no cover - abstract
        raise NotImplementedError

    def elaborate(self, platform):
        m, self._module = self._module, None
        if m is None:
            m = Module()
            self._build(m)
        return m
