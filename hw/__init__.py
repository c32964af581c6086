"""fp8accel RTL, written in Amaranth HDL."""
