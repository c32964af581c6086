"""The progress reports (sim/progress.py): plain lines in a log, ``tqdm``'s carriage-return
updates on a terminal; the stages of a simulation run; the training bar's named losses."""

import io
import re
import time

import pytest

from fp8accel.sim.experiments import train as T
from fp8accel.sim.progress import Progress, StageTicker, format_duration, is_terminal
from fp8accel.sim.run.jobs import JobProgress


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


def _lines(stream):
    """The lines of ``stream`` with the elapsed time at their end as ``N s`` (a loaded machine
    may take more than a second)."""
    return [re.sub(r"\.\.\. \d+ s$", "... N s", line) for line in stream.getvalue().splitlines()]


def _wait_for(stream, text, timeout=5.0):
    """Wait until the background thread has written ``text`` to ``stream``."""
    deadline = time.monotonic() + timeout
    while text not in stream.getvalue():
        assert time.monotonic() < deadline, f"{text!r} not in {stream.getvalue()!r}"
        time.sleep(0.01)


def test_is_terminal():
    assert is_terminal(FakeTerminal()) and not is_terminal(io.StringIO())
    assert not is_terminal(object())


def test_format_duration():
    assert [format_duration(s) for s in (0, 7.9, 125, 3725)] == \
        ["0 s", "7 s", "2 min 05 s", "1 h 02 min"]


def test_progress_in_a_log_writes_a_plain_line_per_step():
    log = io.StringIO()
    with Progress(3, desc="sweep", unit="run", file=log) as bar:
        for i in range(3):
            bar.update(1, status=f"point {i + 1}")
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and len(lines) == 3
    assert lines[0].startswith("sweep: 1/3 (33%), 0 s, ~0 s left; point 1")
    assert lines[2] == "sweep: 3/3 (100%), 0 s; point 3"


def test_progress_in_a_log_is_rate_limited():
    """Updates that change no status within ``interval`` of the last line are not written, but
    the last state is, when the report closes."""
    log = io.StringIO()
    with Progress(100, desc="train", file=log, interval=60.0) as bar:
        for _ in range(100):
            bar.update(1, loss=0.5)
        bar.update(0, force=True, loss=0.25)
        bar.update(0, loss=0.125)
    assert log.getvalue().splitlines() == ["train: 100/100 (100%), 0 s; loss=0.25",
                                           "train: 100/100 (100%), 0 s; loss=0.125"]


def test_progress_without_a_total():
    log = io.StringIO()
    with Progress(desc="runs", file=log) as bar:
        bar.update(2, status="two")
    assert log.getvalue() == "runs: 2, 0 s; two\n"


def test_progress_total_is_checked():
    with pytest.raises(ValueError, match="Total must be a non-negative integer or None, not -1"):
        Progress(-1)


def test_progress_on_a_terminal_is_a_tqdm_bar():
    tty = FakeTerminal()
    with Progress(4, desc="sweep", unit="run", file=tty) as bar:
        assert bar.tty
        for i in range(4):
            bar.update(1, status=f"point {i + 1}", luts=1234)
    text = tty.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    last = text.rstrip("\n").split("\r")[-1]
    assert last.startswith("sweep: 100%|") and "| 4/4 [" in last
    assert "run/s" in last and last.endswith("luts=1234; point 4]")


def test_stage_ticker_in_a_log_writes_a_line_per_stage():
    log = io.StringIO()
    with StageTicker("fp8accel build", "synthesis (Yosys)", file=log, poll=0.01) as ticker:
        ticker.stage = "place and route (nextpnr)"
        ticker.stage = "packing"
    assert _lines(log) == ["fp8accel build: synthesis (Yosys) ... N s",
                           "fp8accel build: place and route (nextpnr) ... N s",
                           "fp8accel build: packing ... N s"]


def test_stage_ticker_in_a_log_repeats_a_long_stage_every_interval():
    log = io.StringIO()
    with StageTicker("task", lambda: "waiting", file=log, interval=0.05, poll=0.01):
        time.sleep(0.3)
    lines = _lines(log)
    assert 3 <= len(lines) <= 8 and set(lines) == {"task: waiting ... N s"}


def test_stage_ticker_on_a_terminal_redraws_one_line():
    tty = FakeTerminal()
    stage = ["compiling the model"]
    with StageTicker("fp8accel gemm", lambda: stage[0], file=tty, poll=0.01):
        _wait_for(tty, "compiling the model")
        stage[0] = "simulating: gemm (1 of 1)"
        _wait_for(tty, "simulating")
    text = tty.getvalue()
    assert text.count("\n") == 1 and text.count("\r") >= 2
    assert re.fullmatch(r"fp8accel gemm: simulating: gemm \(1 of 1\) \.\.\. \d+ s",
                        text.rstrip("\n").split("\r")[-1])


def test_job_progress_names_the_stages(tmp_path):
    log = io.StringIO()
    with JobProgress("gemm", tmp_path, "the 2x2 top with icarus", file=log, poll=0.01):
        _wait_for(log, "generating Verilog")
        (tmp_path / "build.log").write_text("")
        _wait_for(log, "compiling the model")
        (tmp_path / "test.log").write_text("")
        _wait_for(log, "simulating: starting")
        (tmp_path / "progress.txt").write_text("gemm (1 of 1)")
        _wait_for(log, "simulating: gemm (1 of 1)")
    assert _lines(log) == [
        "fp8accel gemm: building the 2x2 top with icarus",
        "fp8accel gemm: generating Verilog ... N s",
        "fp8accel gemm: compiling the model ... N s",
        "fp8accel gemm: simulating: starting ... N s",
        "fp8accel gemm: simulating: gemm (1 of 1) ... N s"]


@pytest.fixture(scope="module")
def data():
    pytest.importorskip("torch")          # fp8accel train runs in PyTorch
    return T.load_data()


def test_train_log_shows_the_recorded_train_loss(data):
    log = io.StringIO()
    r = T.train("mlp", "fp8", seed=1, epochs=2, data=data, stream=log)
    lines = log.getvalue().splitlines()
    # A line at the end of every epoch with its train_loss and test_accuracy as the result
    # records them (and more lines only if an epoch took longer than the log's 10 s).
    for point in r["curve"]:
        assert any(line.startswith(f"mlp/fp8/seed 1: {12 * point['epoch']}/24 ")
                   and f"epoch={point['epoch']}, train_loss={point['train_loss']:.4g}, "
                       f"test_accuracy={point['test_accuracy']:.4g}" in line
                   for line in lines), lines


def test_train_bar_shows_the_recorded_train_loss(data):
    tty = FakeTerminal()
    r = T.train("mlp", "fp8", seed=1, epochs=1, data=data, stream=tty)
    last = tty.getvalue().rstrip("\n").split("\r")[-1]
    assert last.startswith("mlp/fp8/seed 1: 100%|") and "| 12/12 [" in last
    loss = float(re.search(r"train_loss=([\d.]+)", last).group(1))
    assert loss == pytest.approx(r["final_train_loss"], rel=1e-3)
    assert f"train_loss={r['final_train_loss']:.4g}" in last
