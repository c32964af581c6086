"""fp8accel.sim.run.runner: the model cache (a build that fails or is killed leaves no model,
another run of the same design takes the cached one) and runs that share a directory."""

import pytest
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from fp8accel.sim.run import runner


class Wire(wiring.Component):
    a: In(4)
    y: Out(4)

    def elaborate(self, platform):
        from amaranth.hdl import Module
        m = Module()
        m.d.comb += self.y.eq(self.a)
        return m


class FakeRunner:
    """Records the build and fails it, or reports one passing test."""

    def __init__(self, fail):
        self.fail, self.built = fail, []

    def build(self, **kw):
        self.built.append(sorted(p.name for p in kw["build_dir"].iterdir()))
        (kw["build_dir"] / "sim.vvp").write_text("model")
        if self.fail:
            raise SystemExit(1)      # as cocotb's runner does when the compiler fails

    def test(self, *, results_xml, **kw):
        with open(results_xml, "w") as f:
            f.write('<testsuites><testsuite><testcase name="t"/></testsuite></testsuites>')
        return results_xml


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A model cache of this test's own."""
    root = tmp_path / "cache"
    monkeypatch.setenv(runner.CACHE_ENV, str(root))
    return root


def test_a_failed_build_leaves_no_model_and_the_next_builds_one(tmp_path, cache,
                                                                monkeypatch):
    import cocotb_tools.runner as cocotb_runner

    first = FakeRunner(fail=True)
    monkeypatch.setattr(cocotb_runner, "get_runner", lambda sim: first)
    with pytest.raises(RuntimeError, match="Building wire with icarus failed"):
        runner.run_cocotb(Wire(), toplevel="wire", test_module="m", build_dir=tmp_path / "b",
                          sim="icarus")
    assert runner.cached_models() == []
    assert list((cache / "tmp").iterdir()) == []        # the half-built model is gone

    second = FakeRunner(fail=False)
    monkeypatch.setattr(cocotb_runner, "get_runner", lambda sim: second)
    results = runner.run_cocotb(Wire(), toplevel="wire", test_module="m",
                                build_dir=tmp_path / "b", sim="icarus")
    assert results.tests == [("t", "passed", "")] and not results.cached
    # Built from the Verilog alone, in a temporary directory, then renamed into place.
    assert second.built == [["wire.v"]]
    [(name, path, _, info)] = runner.cached_models()
    assert path == results.model and name.startswith("icarus-wire-")
    assert info["sim"] == "icarus" and (path / "wire.v").read_text().startswith("/*")


def test_another_run_of_the_same_design_takes_the_cached_model(tmp_path, monkeypatch):
    import cocotb_tools.runner as cocotb_runner

    fake = FakeRunner(fail=False)
    monkeypatch.setattr(cocotb_runner, "get_runner", lambda sim: fake)
    one = runner.run_cocotb(Wire(), toplevel="wire", test_module="m", build_dir=tmp_path / "a",
                            sim="icarus")
    two = runner.run_cocotb(Wire(), toplevel="wire", test_module="n", build_dir=tmp_path / "b",
                            sim="icarus")
    assert len(fake.built) == 1 and two.cached and two.build_time == 0.0
    assert two.model == one.model
    # Another design (here: another module name) is another model.
    runner.run_cocotb(Wire(), toplevel="wire2", test_module="m", build_dir=tmp_path / "c",
                      sim="icarus")
    assert len(fake.built) == 2 and len(runner.cached_models()) == 2


def test_a_killed_build_is_swept_away(tmp_path, cache, monkeypatch):
    """A build whose process died (SIGKILL: no cleanup) left its temporary directory; the
    next build removes it, and it never was a model."""
    import cocotb_tools.runner as cocotb_runner
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = cache / "tmp" / f"icarus-wire-0123.{dead}.tmp"
    stale.mkdir(parents=True)
    (stale / "Vtop__pch.h.slow.gch").write_bytes(b"\0" * 7)
    monkeypatch.setattr(cocotb_runner, "get_runner", lambda sim: FakeRunner(fail=False))
    runner.run_cocotb(Wire(), toplevel="wire", test_module="m", build_dir=tmp_path / "b",
                      sim="icarus")
    assert not stale.exists() and len(runner.cached_models()) == 1


def test_cache_command_shows_and_clears(tmp_path, cache, monkeypatch, capsys):
    import cocotb_tools.runner as cocotb_runner

    from fp8accel.sim.cli import main

    monkeypatch.setattr(cocotb_runner, "get_runner", lambda sim: FakeRunner(fail=False))
    runner.run_cocotb(Wire(), toplevel="wire", test_module="m", build_dir=tmp_path / "b",
                      sim="icarus")
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(cache) in out and "icarus-wire-" in out and "1 model" in out
    assert main(["cache", "--clear"]) == 0
    assert "removed 1 model" in capsys.readouterr().out
    assert runner.cached_models() == []


def test_the_cache_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(runner.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runner.cache_dir() == (tmp_path / "xdg" / "fp8accel").resolve()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runner.cache_dir() == (tmp_path / "home" / ".cache" / "fp8accel").resolve()


def test_runs_in_one_directory_take_turns(tmp_path, monkeypatch):
    """A second run in a directory waits for the first (pytest -n auto shares builds)."""
    import fcntl
    import threading

    import cocotb_tools.runner as cocotb_runner

    fake = FakeRunner(fail=False)
    monkeypatch.setattr(cocotb_runner, "get_runner", lambda sim: fake)
    build = tmp_path / "b"
    build.mkdir()
    with open(build / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)         # another process's run
        done = threading.Event()
        thread = threading.Thread(target=lambda: (runner.run_cocotb(
            Wire(), toplevel="wire", test_module="m", build_dir=build, sim="icarus"),
            done.set()))
        thread.start()
        assert not done.wait(0.5) and fake.built == []
    thread.join(10)
    assert done.is_set() and len(fake.built) == 1

