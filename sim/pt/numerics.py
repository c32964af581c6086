"""The numerics of a training configuration: what each GEMM and update of a model does.

Ref: docs/training.md ("Method", "The PyTorch layer").

This module does not import PyTorch, so that the command line can list the configurations
(and say what to install) without it.
"""

from dataclasses import dataclass, replace

from fp8accel.sim import golden

__all__ = ["Numerics", "CONFIGS"]


@dataclass(frozen=True)
class Numerics:
    """The accelerator's numerics for a model: what :func:`convert` gives each layer.

    Attributes
    ----------
    name : str
    fp32 : bool
        The float32 reference: :func:`convert` leaves the model as it is.
    fwd, bwd : str
        FP8 formats of the forward operands (weights and activations) and of the errors.
    chunk : int or None
        Accumulation chunk of every GEMM; ``None``: sequential accumulation.
    accumulate : str
        Rounding of the accumulation, ``"rne"`` or ``"rna"``.
    update : str
        Rounding of the DLFLOAT16 weight update, ``"sr"`` or ``"rne"``.
    loss_scale : float
        The static loss scale ``S`` (a power of two) the training loop multiplies the loss by;
        :class:`sim.pt.optim.SGD` folds it into the update's scalars.
    first_last : str
        ``"fp8"``: the first and last GEMM layers use FP8 operands like the others;
        ``"fp32"``: :func:`convert` leaves them as float32 PyTorch layers (the paper keeps them
        in 16 bits).
    what : str
        One line for people.
    """
    name: str
    fp32: bool = False
    fwd: str = "e5m2"
    bwd: str = "e5m2"
    chunk: int | None = 64
    accumulate: str = "rne"
    update: str = "sr"
    loss_scale: float = 2.0 ** 10
    first_last: str = "fp8"
    what: str = ""

    def __post_init__(self):
        for fmt, name in ((self.fwd, "fwd"), (self.bwd, "bwd")):
            if golden.format_by_name(fmt) not in (golden.E5M2, golden.E4M3):
                raise ValueError(f"{name} must be e5m2 or e4m3, not {fmt!r}")
        if self.chunk is not None and (isinstance(self.chunk, bool) or self.chunk < 1):
            raise ValueError(f"Chunk length must be a positive integer or None, not "
                             f"{self.chunk!r}")
        if self.accumulate not in ("rne", "rna"):
            raise ValueError(f"accumulate must be rne or rna, not {self.accumulate!r}")
        if self.update not in ("sr", "rne"):
            raise ValueError(f"update must be sr or rne, not {self.update!r}")
        if self.first_last not in ("fp8", "fp32"):
            raise ValueError(f"first_last must be fp8 or fp32, not {self.first_last!r}")

    @property
    def fwd_fmt(self):
        return golden.format_by_name(self.fwd)

    @property
    def bwd_fmt(self):
        return golden.format_by_name(self.bwd)

    def replace(self, **changes):
        return replace(self, **changes)


CONFIGS = {c.name: c for c in (
    Numerics("fp32", fp32=True, what="float32 reference: same model, data, initialisation "
                                     "and schedule"),
    Numerics("fp8", what="E5M2 operands everywhere, chunk 64, rne accumulation, sr update"),
    Numerics("hfp8", fwd="e4m3", what="E4M3 weights and activations, E5M2 errors, chunk 64, "
                                      "sr update"),
    Numerics("fp8-nochunk", chunk=None, what="fp8 with sequential DLFLOAT16 accumulation"),
    Numerics("fp8-rne", update="rne", what="fp8 with round-to-nearest weight updates"),
)}
