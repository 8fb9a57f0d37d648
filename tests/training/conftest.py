"""Shared settings for the trainer tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train fastest on one thread, and the runs stay quick on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
