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
