import os
import zlib

import numpy as np
import pytest


def count_from_env(name, default):
    """Vector counts can be scaled from the environment (CI runs the defaults)."""
    return int(os.environ.get(name, default))


@pytest.fixture
def rng(request):
    # One seed per test, derived from its name: reruns see the same vectors.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def pytest_addoption(parser):
    parser.addoption("--seed", type=int, default=None,
                     help="seed of the randomized host campaigns (default: $FP8ACCEL_SEED, "
                          "else 1)")


@pytest.fixture
def campaign_seed(request):
    """The randomized campaigns' seed: ``--seed``, else ``$FP8ACCEL_SEED``, else 1."""
    seed = request.config.getoption("--seed")
    if seed is None:
        seed = int(os.environ.get("FP8ACCEL_SEED", 1))
    return seed
