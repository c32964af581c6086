"""A simulated board on a TCP socket: the accelerator behind its UART bridge, under cocotb,
with its serial port served at ``127.0.0.1:<port>``.

``fp8accel gemm --device socket://127.0.0.1:<port>`` then runs exactly as against a board's
USB serial port: pyserial's ``socket://`` URL stands in for ``/dev/ttyUSB0``, every byte goes
through the design's UART pins, and nothing on the host side is simulation-specific. The test
ends when the client disconnects (or after ``idle_s`` seconds of wall-clock time without a
client).

Configuration (``sim.runner.read_tb_config``): ``port``, ``divisor``, ``period_ns``,
``idle_s`` and ``ready_file``, written once the port is listening.
"""

import socket
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from fp8accel.sim.run.runner import read_tb_config

__all__ = ["serve"]


@cocotb.test()
async def serve(dut):
    """Pump bytes between one TCP client and the design's ``rx``/``tx`` until it leaves."""
    import logging
    import warnings

    from cocotbext.uart import UartSink, UartSource

    cfg = read_tb_config()
    period = cfg["period_ns"]
    baud = 1e9 / (cfg["divisor"] * period)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.uart\.")
    for pin in (dut.rx, dut.tx):
        logging.getLogger(f"cocotb.{pin._path}").setLevel(logging.WARNING)
    cocotb.start_soon(Clock(dut.clk, period, "ns").start())
    source = UartSource(dut.rx, baud=baud, bits=8, stop_bits=1)
    sink = UartSink(dut.tx, baud=baud, bits=8, stop_bits=1)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 8)
    dut.rst.value = 0

    server = socket.create_server(("127.0.0.1", cfg["port"]))
    server.settimeout(cfg.get("idle_s", 120))
    if cfg.get("ready_file"):
        with open(cfg["ready_file"], "w") as f:
            f.write(f"{cfg['port']}\n")
    try:
        conn, _ = server.accept()
    except socket.timeout:
        raise AssertionError("no client connected") from None
    finally:
        server.close()
    conn.setblocking(False)
    # Poll the socket every byte time: the simulation runs far slower than the line, so the
    # client never waits long for a byte the design has sent.
    step = 10 * cfg["divisor"]
    bytes_in = bytes_out = 0
    start = time.monotonic()
    with conn:
        while True:
            try:
                data = conn.recv(4096)
                if not data:
                    break                      # the client closed the port
                bytes_in += len(data)
                await source.write(data)
            except BlockingIOError:
                pass
            if not sink.empty():
                data = bytes(sink.read_nowait())
                bytes_out += len(data)
                conn.setblocking(True)
                conn.sendall(data)
                conn.setblocking(False)
            await ClockCycles(dut.clk, step)
    dut._log.info(f"served {bytes_in} bytes in, {bytes_out} out in "
                  f"{time.monotonic() - start:.1f} s")
