"""Running the RTL: Verilog under cocotb on Verilator or Icarus (:mod:`.runner`), units in
Amaranth's simulator (:mod:`.pysim`), the unit descriptions (:mod:`.units`), the jobs of the
command line (:mod:`.jobs`) and the unit checks of ``fp8accel verify`` (:mod:`.verify`)."""
