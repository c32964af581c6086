"""Boards: the bitstream builds, and the host program against a simulated board.

``test_gemm_cli_on_a_simulated_board`` runs ``fp8accel gemm --device socket://...`` against the
iCEBreaker's design (the accelerator behind its UART bridge, Verilator) served on a TCP socket
by sim/tb/board.py: the command line, the serial transport, the bridge's byte protocol and the
accelerator all take part, as with a board on /dev/ttyUSB0.

The ULX3S flow with a 1x1 array is in the default run. The iCEBreaker bitstream (about 2.5
minutes) and the ULX3S's own 8x8 build (about 11 minutes) are marked ``slow``.
"""

import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fp8accel.sim import golden
from fp8accel.sim.cli import main
from fp8accel.sim.run.runner import run_cocotb
from fp8accel.synth.boards import BOARDS, build_board, divisor_for, ecp5_pll
from fp8accel.synth.flow import SynthError

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _board_core(name, divisor):
    from fp8accel.hw.bridge import BridgedAccelerator
    b = BOARDS[name]
    a, bb, acc = b.depths
    return BridgedAccelerator(b.rows, b.cols, divisor=divisor, a_depth=a, b_depth=bb,
                              acc_depth=acc, **b.accelerator)


@pytest.mark.verilator
def test_gemm_cli_on_a_simulated_board(tmp_path):
    board = BOARDS["icebreaker"]
    divisor = divisor_for(board.clock_hz, 1_000_000)
    port = _free_port()
    ready = tmp_path / "ready"
    result = {}

    def simulate():
        try:
            run_cocotb(_board_core("icebreaker", divisor), toplevel="board",
                       test_module="fp8accel.sim.tb.board", build_dir=BUILD / "cocotb" / "board-icebreaker",
                       config={"port": port, "divisor": divisor, "period_ns": 83,
                               "idle_s": 300, "ready_file": str(ready)})
        except BaseException as exc:      # reported by the main thread
            result["error"] = exc

    thread = threading.Thread(target=simulate, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600          # a first Verilator build takes a while
    while not ready.exists():
        assert thread.is_alive(), f"the simulation ended early: {result.get('error')}"
        assert time.monotonic() < deadline, "the simulated board never listened"
        time.sleep(0.2)

    out = tmp_path / "c.npy"
    report = tmp_path / "r.json"
    # The simulated clock runs some 10^4 times slower than the board's: --clock-mhz scales the
    # host's timeouts to match. E4M3 x E5M2 out to E5M2: this board has no FP8 converters, so
    # the host converts C.
    status = main(["gemm", "--device", f"socket://127.0.0.1:{port}", "--random", "5", "3", "7",
                   "--a-fmt", "e4m3", "--chunk", "4", "--out-fmt", "e5m2", "--out", str(out),
                   "--clock-mhz", "0.002", "--check", "--json", str(report)])
    thread.join(timeout=120)
    assert "error" not in result, result.get("error")
    assert status == 0
    rep = json.loads(report.read_text())
    assert rep["check"] == {"mismatches": 0, "results": 15}
    assert (rep["rows"], rep["cols"]) == (board.rows, board.cols)
    # The file holds what the check compared: E5M2 codes of the golden GEMM.
    from fp8accel.sim.tb.top import random_fp8
    rng = np.random.default_rng(1)
    A = random_fp8(rng, (5, 7), "e4m3", specials=False)
    B = random_fp8(rng, (7, 3), "e5m2", specials=False)
    want = golden.gemm(A, B, "e4m3", "e5m2", chunk=4, out_fmt="e5m2")
    got = np.load(out)
    assert got.dtype == np.uint8 and np.array_equal(got, want)


def test_divisor_checks():
    assert divisor_for(25e6, 1_000_000) == 25
    assert divisor_for(12e6, 1_000_000) == 12
    with pytest.raises(ValueError, match="too fast"):
        divisor_for(12e6, 4_000_000)
    assert divisor_for(12e6, 921_600) == 13        # 923,077 baud, 0.2 % off
    with pytest.raises(ValueError, match="off at 12 MHz"):
        divisor_for(12e6, 2_600_000)                # divisor 5: 2,400,000, 7.7 % off


def test_build_cli_errors(capsys):
    assert main(["build", "--board", "de10"]) == 2
    assert "unknown board 'de10'" in capsys.readouterr().err
    assert main(["build", "--board", "icebreaker", "--baud", "fast"]) == 2
    assert "--baud must be a positive integer" in capsys.readouterr().err
    assert main(["build", "--board", "icebreaker", "--clock", "24"]) == 2
    assert ("--clock needs a board clocked from a PLL; icebreaker runs from its 12 MHz "
            "oscillator") in capsys.readouterr().err
    assert main(["build", "--board", "ulx3s-85f", "--clock", "500"]) == 2
    assert "The ECP5 PLL makes 3.125 to 400 MHz, not 500 MHz" in capsys.readouterr().err
    assert main(["build", "--board", "ulx3s-85f", "--clock", "0"]) == 2
    assert "--clock must be a positive number" in capsys.readouterr().err


def _build(board, tmp_path, *extra):
    report = tmp_path / "build.json"
    status = main(["build", "--board", board, "--build-dir", str(BUILD / "boards"),
                   "--json", str(report), *extra])
    assert status == 0
    rep = json.loads(report.read_text())
    bitstream = Path(rep["bitstream"])
    assert bitstream.is_file() and bitstream.stat().st_size == rep["bytes"] > 10_000
    assert rep["timing"] and all(t["met"] for t in rep["timing"].values())
    return rep


class _FakePlan:
    """Stands for Amaranth's build plan: writes what nextpnr and icepack would, or fails."""

    def __init__(self, failures, opts):
        self._failures, self._opts = failures, opts

    def execute_local(self, build_dir):
        import subprocess
        out = Path(build_dir)
        seed = int(self._opts.split("--seed ")[1].split()[0])
        tim = out / "fp8accel_icebreaker.tim"
        if seed in self._failures:
            tim.write_text(f"Info: seed {seed}\nERROR: {self._failures[seed]}\n")
            raise subprocess.CalledProcessError(1, ["sh", "build.sh"])
        tim.write_text("Info: Max frequency for clock 'cd_sync.clk': 31.00 MHz "
                       "(PASS at 12.00 MHz)\n")
        (out / "fp8accel_icebreaker.bin").write_bytes(bytes(20_000))


def _fake_platform(monkeypatch, failures):
    """The board's platform, whose build plans (Amaranth's, with the design elaborated) run
    :class:`_FakePlan` instead of the tools."""
    runs = []
    cls = type(BOARDS["icebreaker"])
    real = cls.make_platform

    class Platform:
        def __init__(self, board):
            self._platform = real(board)

        def prepare(self, top, *, name, nextpnr_opts, synth_opts):
            self._platform.prepare(top, name=name, nextpnr_opts=nextpnr_opts,
                                   synth_opts=synth_opts)
            runs.append(nextpnr_opts)
            return _FakePlan(failures, nextpnr_opts)

    monkeypatch.setattr(cls, "make_platform", lambda board: Platform(board))
    return runs


NO_FIT = "Unable to find legal placement for all cells, design is probably at utilisation limit."


def test_build_tries_the_next_seed_when_placement_fails(tmp_path, monkeypatch, capsys):
    runs = _fake_platform(monkeypatch, {1: NO_FIT})
    rep = build_board("icebreaker", build_dir=tmp_path)
    assert [o.split()[1] for o in runs] == ["1", "2"]
    assert rep["seed"] == 2 and rep["seeds_tried"] == [1, 2]
    assert "no legal placement with seed 1; trying seed 2" in capsys.readouterr().err
    assert json.loads((tmp_path / "icebreaker" / "build.json").read_text())["seed"] == 2


def test_build_gives_up_after_the_last_seed_or_another_error(tmp_path, monkeypatch):
    _fake_platform(monkeypatch, {s: NO_FIT for s in (1, 2, 3, 4)})
    with pytest.raises(SynthError, match=r"failed \(seeds 1, 2, 3\): ERROR: Unable to find legal"):
        build_board("icebreaker", build_dir=tmp_path, progress=False)
    # Another error ends the build at once.
    runs = _fake_platform(monkeypatch, {1: "Max frequency check failed"})
    with pytest.raises(SynthError, match=r"bitstream failed: ERROR: Max frequency check failed"):
        build_board("icebreaker", build_dir=tmp_path, progress=False)
    assert len(runs) == 1
    # A seed given is the only one tried.
    runs = _fake_platform(monkeypatch, {4: NO_FIT})
    with pytest.raises(SynthError, match=r"bitstream failed: ERROR: Unable to find legal"):
        build_board("icebreaker", build_dir=tmp_path, seed=4, progress=False)
    assert len(runs) == 1


@pytest.mark.synth
@pytest.mark.slow
def test_icebreaker_bitstream(tmp_path):
    rep = _build("icebreaker", tmp_path)
    assert rep["bitstream"].endswith(".bin")
    assert rep["utilization"]["ICESTORM_LC"] <= 5280


@pytest.mark.slow
@pytest.mark.synth
def test_ulx3s_flow_with_a_small_array(tmp_path):
    rep = _build("ulx3s-85f", tmp_path, "--rows", "1", "--cols", "1", "--clock", "75")
    assert rep["bitstream"].endswith(".bit") and (rep["rows"], rep["cols"]) == (1, 1)
    # --clock sets the PLL and the constraint nextpnr checked.
    assert rep["clock_mhz"] == 75 and rep["pll"] == {"osc_mhz": 25, **ecp5_pll(25e6, 75e6)[0]}
    assert [t["target_mhz"] for t in rep["timing"].values()] == [75]
    assert rep["utilization"]["MULT18X18D"] > 0 and rep["utilization"]["DP16KD"] > 0


@pytest.mark.slow
@pytest.mark.synth
def test_ulx3s_bitstream(tmp_path):
    rep = _build("ulx3s-85f", tmp_path)
    assert (rep["rows"], rep["cols"]) == (8, 8)


@pytest.mark.parametrize("out_mhz", [100, 125, 112.5, 133.33, 62.5])
def test_ecp5_pll_settings(out_mhz):
    params, got = ecp5_pll(25e6, out_mhz * 1e6)
    assert abs(got - out_mhz * 1e6) < 0.01 * out_mhz * 1e6
    pfd = 25e6 / params["CLKI_DIV"]
    assert 3.125e6 <= pfd <= 400e6
    assert got == pfd * params["CLKFB_DIV"]
    assert 400e6 <= got * params["CLKOP_DIV"] <= 800e6
    assert params["CLKOP_CPHASE"] == (params["CLKOP_DIV"] - 1) // 2
    with pytest.raises(ValueError, match="makes 3.125 to 400 MHz"):
        ecp5_pll(25e6, 500e6)


def test_ulx3s_design_runs_from_the_pll(tmp_path):
    """The ULX3S design's clock domain comes from an EHXPLLL set for the board's clock, and the
    UART divisor is computed for that clock."""
    from fp8accel.synth.boards import BoardTop
    board = BOARDS["ulx3s-85f"]
    assert board.osc_hz == 25e6 and board.clock_hz > board.osc_hz
    top = BoardTop(board, rows=1, cols=1)
    assert top.divisor == divisor_for(board.clock_hz, 1_000_000)
    plan = board.make_platform().prepare(top, name="t")
    text = plan.files["t.il"]
    text = text.decode() if isinstance(text, bytes) else text
    params, _ = ecp5_pll(board.osc_hz, board.clock_hz)
    assert "EHXPLLL" in text
    for name, value in params.items():
        assert f"parameter \\{name} {value}" in text, name
