"""Shared test configuration: Hypothesis profiles ("ci": derandomized; "dev": random) and numpy printing.

``make_semiring`` builds any registered semiring by name (constructor arguments from
``SEMIRING_KWARGS`` for those that need some).

The "ci" profile is loaded when the environment variable CI is set, "dev"
otherwise; HYPOTHESIS_PROFILE names a profile explicitly ("thorough": 300 examples, for bug hunting).
"""

import os
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import semitorch as st

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=15,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

np.set_printoptions(precision=10, linewidth=120)


SEMIRING_KWARGS: dict[str, dict[str, object]] = {"kbest": dict(k=3)}
"""Constructor arguments by registry name, for semirings that need some (names not registered are ignored)."""


def build_semiring(name: str) -> st.Semiring:
    """An instance of the semiring registered as ``name``."""
    return st.semirings.SEMIRINGS[name](**SEMIRING_KWARGS.get(name, {}))


@pytest.fixture
def make_semiring() -> Callable[[str], st.Semiring]:
    """Fixture: ``make_semiring(name)`` builds the registered semiring ``name``."""
    return build_semiring
