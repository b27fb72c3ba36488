"""The suite computes on one thread per process (tests/conftest.py says why): the test
process itself and the `bearwatch` processes it starts, which inherit its environment."""

from __future__ import annotations

import os

import numpy as np
import torch
from threadpoolctl import threadpool_info  # type: ignore[import-untyped]  # scikit-learn's dependency


def test_test_processes_and_their_children_compute_on_one_thread_unless_told_otherwise() -> None:
    threads = os.environ.get("OMP_NUM_THREADS")
    assert threads is not None, "children started with os.environ must get the setting too"
    assert torch.get_num_threads() == int(threads)
    np.ones((2, 2)) @ np.ones((2, 2))  # numpy's BLAS loaded and in use
    pools = {(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()}
    assert pools and all(n == int(threads) for _, n in pools), pools
