"""Shared test configuration: Hypothesis profiles ("ci": derandomized; "dev": random) and numpy printing.

The "ci" profile is loaded when the environment variable CI is set, "dev"
otherwise; HYPOTHESIS_PROFILE names a profile explicitly ("thorough": 300 examples, for bug hunting).
"""

import os

import numpy as np
from hypothesis import HealthCheck, settings

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
