"""fp8accel.sim.run.runner: a build directory survives a build that was killed."""

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
        if self.fail:
            raise SystemExit(1)      # as cocotb's runner does when the compiler fails

    def test(self, *, results_xml, **kw):
        with open(results_xml, "w") as f:
            f.write('<testsuites><testsuite><testcase name="t"/></testsuite></testsuites>')
        return results_xml


def test_a_build_that_did_not_finish_is_cleared_before_the_next(tmp_path, monkeypatch):
    import cocotb_tools.runner as cocotb_runner

    build = tmp_path / "b"
    # A build killed in the middle: a truncated precompiled header, and the marker.
    first = FakeRunner(fail=True)
    monkeypatch.setattr(cocotb_runner, "get_runner", lambda sim: first)
    with pytest.raises(RuntimeError, match="Building wire with icarus failed"):
        runner.run_cocotb(Wire(), toplevel="wire", test_module="m", build_dir=build,
                          sim="icarus")
    (build / "Vtop__pch.h.slow.gch").write_bytes(b"\0" * 7)
    (build / "obj").mkdir()
    assert (build / "build.unfinished").exists()

    second = FakeRunner(fail=False)
    monkeypatch.setattr(cocotb_runner, "get_runner", lambda sim: second)
    results = runner.run_cocotb(Wire(), toplevel="wire", test_module="m", build_dir=build,
                                sim="icarus")
    assert results.tests == [("t", "passed", "")]
    # The next build started from an empty directory (but for the Verilog, its marker and the
    # directory's lock).
    assert second.built == [[".lock", "build.unfinished", "wire.v"]]
    assert not (build / "build.unfinished").exists()
    assert not (build / "Vtop__pch.h.slow.gch").exists()

    # A finished build is left alone.
    (build / "keep.o").write_bytes(b"x")
    runner.run_cocotb(Wire(), toplevel="wire", test_module="m", build_dir=build, sim="icarus")
    assert (build / "keep.o").exists()


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

