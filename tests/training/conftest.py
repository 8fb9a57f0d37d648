"""Shared settings for the trainer tests."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every trainer test runs on one torch thread (see tests/conftest.py)."""
