"""The GEMM engine: systolic array with chunk-based accumulation."""

from .array import E5M3, ProcessingElement, SystolicArray, widen_fp8

__all__ = ["E5M3", "ProcessingElement", "SystolicArray", "widen_fp8"]
