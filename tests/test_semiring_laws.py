"""Every registered semiring satisfies the semiring axioms (``st.testing.assert_semiring_laws``).

The list is read from ``st.semirings.SEMIRINGS`` at collection time, so a newly registered semiring is
checked with no change here; classes whose constructor needs arguments get them from the small table
``SEMIRING_KWARGS`` in conftest.py (shared with test_engine.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

import semitorch as st
from semitorch.testing import assert_semiring_laws


@pytest.mark.parametrize("name", sorted(st.semirings.SEMIRINGS))
def test_semiring_laws(name: str, make_semiring: Callable[[str], st.Semiring]) -> None:
    """⊕/⊗ associative and commutative with identities 0̄/1̄, distributive on both sides, 0̄ annihilates."""
    assert_semiring_laws(make_semiring(name))


class _NotDistributive(st.Real):
    """(ℝ, max, +) with the real identities: ⊕ and ⊗ are fine alone, but 0̄ = 0 and 1̄ = 1 are wrong."""

    name = "broken"

    def plus(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """max."""
        return np.maximum(a, b)

    def times(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """+."""
        return a + b


class _NaNLift(st.Real):
    """Lifts w to |w| log |w|, which is NaN at w = 0 (a classic entropy-semiring bug)."""

    name = "nanlift"

    def lift(self, w: np.ndarray) -> np.ndarray:
        """|w| log |w| (NaN at 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(w) * np.log(np.abs(w))


def test_law_checker_rejects_a_broken_semiring() -> None:
    """The checker is not vacuous: wrong identities are reported with the law's name."""
    with pytest.raises(AssertionError, match=r"semiring 'broken' \(_NotDistributive\) violates"):
        assert_semiring_laws(_NotDistributive())


def test_law_checker_rejects_nan_values() -> None:
    """Elements reachable from real weights must never be NaN."""
    with pytest.raises(AssertionError, match=r"'nanlift'.*NaN"):
        assert_semiring_laws(_NaNLift())


def test_law_checker_rejects_non_semirings() -> None:
    """A non-Semiring argument is a TypeError naming its type."""
    with pytest.raises(TypeError, match="expected a Semiring instance, got str"):
        assert_semiring_laws("real")  # type: ignore[arg-type]
