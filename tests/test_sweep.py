"""``fp8accel synth sweep`` and ``fp8accel synth area`` (synth.sweep): parsing, the reports,
the does-not-fit path, and short real runs. The documented sweeps (docs/fpga.md) take an hour
and more; a reduced one is marked ``slow``."""

import dataclasses
import json

import pytest

from fp8accel.sim.cli import main
from fp8accel.synth import sweep as sw
from fp8accel.synth.flow import TARGETS, DoesNotFit, estimate_luts, synthesize

from test_synth import StandInMultiplier


def test_parse_sizes_and_formats():
    assert sw.parse_sizes("2x2, 4X8,1x1") == [(2, 2), (4, 8), (1, 1)]
    assert sw.parse_formats("fp8/dlfloat16,BINARY16/binary32/conventional") == [
        ("fp8", "dlfloat16"), ("binary16", "binary32", False)]
    with pytest.raises(ValueError, match="is not ROWSxCOLS"):
        sw.parse_sizes("4")
    with pytest.raises(ValueError, match="1 to 64"):
        sw.parse_sizes("0x4")
    with pytest.raises(ValueError, match="is not IN/ACC"):
        sw.parse_formats("fp8")
    with pytest.raises(ValueError, match="is not IN/ACC"):
        sw.parse_formats("fp8/dlfloat16/chunked")
    with pytest.raises(ValueError, match="Unknown format 'fp7'"):
        sw.parse_formats("fp7/dlfloat16")


def test_top_takes_fp8_chunked_only():
    with pytest.raises(ValueError, match="takes FP8 operands"):
        sw.sweep("ecp5-25k", unit="top", sizes=[(1, 1)], formats=[("binary16", "binary32")],
                 progress=False)


def test_estimate_counts_carries_and_lut_ram_twice():
    cells = {"LUT4": 100, "CCU2C": 10, "TRELLIS_DPR16X4": 3, "TRELLIS_FF": 50}
    assert estimate_luts(TARGETS["ecp5-25k"], cells) == 126
    assert estimate_luts(TARGETS["ice40-up5k"], {"SB_LUT4": 7, "SB_CARRY": 3}) == 7


def test_does_not_fit_stops_before_nextpnr(tmp_path):
    tiny = dataclasses.replace(TARGETS["ecp5-25k"], name="tiny", luts=10)
    with pytest.raises(DoesNotFit, match="more than the 10 of tiny") as info:
        # -nodsp: the product in LUTs rather than a DSP block.
        synthesize(StandInMultiplier, tiny, seeds=1, progress=None, workdir=str(tmp_path),
                   extra_synth_args=("-nodsp",))
    assert info.value.estimate > 10
    assert not list(tmp_path.glob("nextpnr-*"))


def _row(**over):
    row = {"unit": "array", "rows": 2, "cols": 2, "macs": 4, "in_fmt": "fp8",
           "acc_fmt": "dlfloat16", "chunked": True, "target": "ecp5-85k", "seeds": 3,
           "fits": True, "fmax_mhz": 100.0, "fmax_per_seed": [99.0, 100.0, 101.0],
           "comb": 2000, "ff": 1000, "dsp": 0, "bram": 0, "yosys_luts": 1900,
           "peak_gflops": 0.8, "gflops_per_klut": 0.4}
    row.update(over)
    return row


def test_markdown_and_plot(tmp_path):
    rows = [_row(), _row(rows=4, cols=4, macs=16, comb=8000, peak_gflops=3.2),
            _row(fits=False, fmax_mhz=None, fmax_per_seed=[], ff=None, dsp=None, bram=None,
                 peak_gflops=None, gflops_per_klut=None, in_fmt="binary16",
                 acc_fmt="binary32", chunked=False)]
    text = sw.sweep_markdown(rows)
    assert "| array | 2x2 | fp8/dlfloat16 | 100.0 (99.0, 100.0, 101.0) | 2,000 | 1,000 | 0 |" \
        in text
    assert "binary16/binary32 (conventional) | does not fit |" in text
    png = tmp_path / "p.png"
    sw.plot_sweep(rows, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_area_markdown_ratio():
    a = _row(unit="pe", rows=1, cols=1, macs=1, comb=700)
    b = _row(unit="pe", rows=1, cols=1, macs=1, comb=2100)
    study = {"target": "ecp5-85k", "rows": 8, "cols": 8, "seeds": 3, "freq_mhz": 100.0,
             "results": [], "ratio_b_over_a": {"pe": {"ratio": 3.0, "from": "lut_per_mac"}}}
    for key, r in (("a", a), ("b", b)):
        r.update(config=key, description=key, lut_per_mac=r["comb"], ff_per_mac=1.0,
                 dsp_per_mac=0.0, macs_per_klut=1000 / r["comb"])
        study["results"].append(r)
    text = sw.area_markdown(study)
    assert "LUTs per MAC of (b) / (a) = **3.00** (nextpnr counts)" in text


def test_cli_sweep_errors(capsys):
    assert main(["synth", "sweep", "--target", "ecp5-25k", "--sizes", "3"]) == 2
    assert "is not ROWSxCOLS" in capsys.readouterr().err
    assert main(["synth", "pe", "--target", "ecp5-25k", "--sizes", "2x2"]) == 2
    assert "--sizes applies to sweep and area only" in capsys.readouterr().err
    assert main(["synth", "area", "--target", "ecp5-25k", "--plot", "x.png"]) == 2
    assert "--plot and --conventional do not apply to area" in capsys.readouterr().err


def test_cli_sweep_smoke(tmp_path, capsys):
    """The default suite's real sweep: two PEs, one seed, a few seconds of Yosys and nextpnr."""
    out, md, png = tmp_path / "s.json", tmp_path / "s.md", tmp_path / "s.png"
    assert main(["synth", "sweep", "--of", "pe", "--target", "ecp5-25k", "--seeds", "1",
                 "--formats", "fp8/dlfloat16,fp8/binary16", "--freq", "100",
                 "--json", str(out), "--markdown", str(md), "--plot", str(png)]) == 0
    err = capsys.readouterr().err
    assert "sweep: 4/4 " in err                    # the progress bar reached the end
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert [(r["in_fmt"], r["acc_fmt"]) for r in rows] == [("fp8", "dlfloat16"),
                                                           ("fp8", "binary16")]
    for r in rows:
        assert r["fits"] and r["macs"] == 1 and r["comb"] > 300 and r["fmax_mhz"] > 50
        assert r["peak_gflops"] == pytest.approx(2 * r["fmax_mhz"] / 1000, abs=1e-3)
        assert r["gflops_per_klut"] == pytest.approx(r["peak_gflops"] * 1000 / r["comb"],
                                                     abs=2e-3)
    assert md.read_text().count("| pe | 1x1 |") == 2
    assert png.stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.synth
def test_area_study_small(tmp_path):
    """The area study on 1x2 arrays: (b) must cost more than (a) per MAC."""
    study = sw.area_study("ecp5-25k", rows=1, cols=2, seeds=1, progress=False)
    by = {(r["config"], r["unit"]): r for r in study["results"]}
    assert set(by) == {(k, u) for k in sw.AREA_CONFIGS for u in ("pe", "array")}
    assert by[("b-dsp", "pe")]["dsp"] == 1 and by[("b", "pe")]["dsp"] == 0
    assert by[("b", "pe")]["lut_per_mac"] > 2 * by[("a", "pe")]["lut_per_mac"]
    assert study["ratio_b_over_a"]["pe"]["ratio"] > 2
    assert by[("a", "array")]["macs"] == 2


@pytest.mark.slow
@pytest.mark.synth
def test_sweep_of_small_tops():
    rows = sw.sweep("ecp5-85k", unit="top", sizes=[(1, 1), (2, 2)], seeds=3, progress=False)
    assert [r["macs"] for r in rows] == [1, 4]
    assert all(r["fits"] and len(r["fmax_per_seed"]) == 3 for r in rows)


def test_cli_estimate_stops_after_yosys(tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["synth", "pe", "--target", "ice40-up5k", "--estimate", "--json",
                 str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["fits"] is True and 200 < result["yosys_luts"] <= result["luts_available"]
    assert "LUTs after synthesis of 5,280: fits" in capsys.readouterr().err
    assert "fmax_mhz" not in result


def test_area_ratio_calibrated_when_b_does_not_fit():
    def r(config, unit, comb, yosys, fits=True, macs=1):
        return {"config": config, "unit": unit, "fits": fits, "comb": comb,
                "yosys_luts": yosys, "lut_per_mac": comb / macs,
                "yosys_lut_per_mac": yosys / macs}
    rows = [r("a", "pe", 700, 600), r("b", "pe", 2200, 2000),
            r("a", "array", 70_000, 60_000, macs=100),
            r("b", "array", 200_000, 200_000, fits=False, macs=100)]
    ratio = sw.area_ratios(rows)
    assert ratio["pe"] == {"ratio": 3.14, "from": "lut_per_mac"}
    # Yosys against Yosys: 2000 / 600; calibrated: 2000 * 1.1 / 700.
    assert ratio["array"] == {"ratio": 3.33, "from": "yosys_lut_per_mac", "calibrated": 3.14}


def test_dsp_exchange_rate_is_the_device_share():
    rate = sw.dsp_exchange_rate("ecp5-85k")
    assert rate["luts_per_dsp"] == round(83_640 / 156, 1)
    assert "83,640 / 156" in rate["basis"]
    assert sw.dsp_exchange_rate("ice40-hx8k")["luts_per_dsp"] is None


def test_area_ratios_with_dsps_counted():
    def r(config, unit, comb, dsp, placed=True, macs=1):
        return {"config": config, "unit": unit, "fits": True, "placed": placed, "comb": comb,
                "yosys_luts": comb, "dsp": dsp, "macs": macs, "lut_per_mac": comb / macs,
                "yosys_lut_per_mac": comb / macs}
    rows = [r("a", "pe", 600, 0), r("b", "pe", 1500, 0), r("b-dsp", "pe", 1100, 1),
            r("a", "array", 6400, 0, placed=False, macs=16),
            r("b-dsp", "array", 17_600, 16, placed=False, macs=16)]
    ratios = sw.area_ratios_dsp(rows, 500.0)
    assert ratios["pe"]["b"] == {"luts_only": 2.5, "from": "lut_per_mac", "dsp_counted": 2.5}
    assert ratios["pe"]["b-dsp"] == {"luts_only": 1.83, "from": "lut_per_mac",
                                     "dsp_counted": 2.67}
    assert ratios["array"]["b-dsp"]["from"] == "yosys_lut_per_mac"
    assert ratios["array"]["b-dsp"]["dsp_counted"] == round((1100 + 500) / 400, 2)
    study = sw.area_summary("ecp5-85k", 4, 4, 3, 100.0, [], array_seeds=1)
    study.update(results=[{**x, "description": x["config"], "ff": None, "ff_per_mac": None,
                           "dsp_per_mac": x["dsp"] / x["macs"], "rows": 4, "cols": 4,
                           "fmax_mhz": None, "fmax_per_seed": [],
                           "macs_per_klut": 1000 * x["macs"] / x["comb"]} for x in rows],
                 ratios=ratios)
    text = sw.area_markdown(study)
    assert "| PE | (b-dsp) | 1.83 | 2.67 | nextpnr |" in text
    assert "not placed (Yosys only)" in text
    assert "PEs seeds 1-3, arrays seed 1." in text


def test_cli_array_seeds_only_for_area(capsys):
    assert main(["synth", "pe", "--target", "ecp5-25k", "--array-seeds", "1"]) == 2
    assert "--array-seeds applies to area only" in capsys.readouterr().err
    assert main(["synth", "sweep", "--target", "ecp5-25k", "--array-seeds", "1"]) == 2
    assert "--array-seeds applies to area only" in capsys.readouterr().err
    assert main(["synth", "multiplier", "--target", "ecp5-25k", "--product", "gates"]) == 2
    assert "--product must be one of logic, dsp, not 'gates'" in capsys.readouterr().err
