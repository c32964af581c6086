"""The base class of the arithmetic units: a fixed-latency pipeline with registered outputs."""

import functools

from amaranth.hdl import Module
from amaranth.lib import wiring

from .common import Pipeline

__all__ = ["CheckedComponent", "PipelinedUnit"]


class CheckedComponent(wiring.Component):
    """A component whose constructor validates its parameters: one that raises stays quiet.

    Amaranth warns when an elaboratable is created and never used; a component whose
    parameters were rejected can never be used, and the warning, emitted much later, would
    only hide the real error.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def checked_init(self, *args, **kw):
            try:
                init(self, *args, **kw)
            except Exception:
                self._MustUse__silence = True
                raise

        cls.__init__ = checked_init


class PipelinedUnit(CheckedComponent):
    """A fixed-latency pipeline: one new operation may enter every cycle, no handshake.

    Operands applied to the inputs before a rising clock edge produce their result on the
    outputs after ``latency`` rising edges. Subclasses implement :meth:`datapath`, which builds
    the stages on a :class:`~hw.fp.common.Pipeline` and returns the registered result.
    """

    def __init__(self, signature):
        super().__init__(signature)
        # Elaborate once to count the stages, so ``latency`` is known before elaboration.
        probe = Module()
        self._latency = self._build(probe)
        probe._MustUse__silence = True

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
        m = Module()
        self._build(m)
        return m
