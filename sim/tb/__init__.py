"""cocotb testbenches: modules that run inside the simulator (``run_cocotb(test_module=...)``).
Nothing outside the testbenches imports them."""
