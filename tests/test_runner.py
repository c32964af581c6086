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
    # The next build started from an empty directory (but for the Verilog and its marker).
    assert second.built == [["build.unfinished", "wire.v"]]
    assert not (build / "build.unfinished").exists()
    assert not (build / "Vtop__pch.h.slow.gch").exists()

    # A finished build is left alone.
    (build / "keep.o").write_bytes(b"x")
    runner.run_cocotb(Wire(), toplevel="wire", test_module="m", build_dir=build, sim="icarus")
    assert (build / "keep.o").exists()
