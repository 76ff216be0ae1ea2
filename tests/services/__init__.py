"""Real services for the test suite (PostgreSQL, a MongoDB-wire server, Beam's job service).

``unavailable(what, reason)`` is how a test says it cannot get one: it skips, except under
``CI=true``, where a missing service fails the test instead.
"""
from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str, reason: str):
    """Fail (under CI=true) or skip the calling test: ``what`` cannot be had, because ``reason``."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but cannot be had: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")
