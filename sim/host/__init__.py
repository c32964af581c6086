"""The host side: the driver (:mod:`.driver`) and its transports, over cocotbext-axi in
simulation (:class:`CocotbTransport`) and over the UART bridge (:mod:`.link`)."""

from .driver import (ERROR_NAMES, AcceleratorError, AcceleratorHost, AcceleratorTimeout,
                     CocotbTransport, QueueState, Status, Transport, attach, bus_error, gemm_cycle_bound,
                     options_word)

__all__ = ["AcceleratorError", "AcceleratorTimeout", "ERROR_NAMES", "QueueState", "Status", "Transport",
           "CocotbTransport", "AcceleratorHost", "options_word", "gemm_cycle_bound",
           "bus_error", "attach"]
