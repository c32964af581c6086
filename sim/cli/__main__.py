"""``python -m fp8accel.sim.cli``: the ``fp8accel`` command."""

import sys

from fp8accel.sim.cli import main

sys.exit(main())
