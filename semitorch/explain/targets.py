"""Quantities of interest: what a path ends in (a logit, a logit difference, a loss)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..tensor import Tensor


class Target:
    """A scalar function of a model's output; ``describe()`` says what it is in words."""

    def __call__(self, output: Any) -> Tensor:
        """The scalar quantity for one example (batch of 1)."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short human-readable name."""
        return type(self).__name__


def _logits(output: Any) -> Tensor:
    lg = getattr(output, "logits", output)
    if not isinstance(lg, Tensor):
        raise TypeError(f"target: the model output has no logits tensor (got {type(output).__name__})")
    return lg


@dataclass
class ClassLogit(Target):
    """The logit of class ``index`` of a sequence classifier (batch of 1)."""

    index: int

    def __call__(self, output: Any) -> Tensor:
        """logits[0, index]."""
        lg = _logits(output)
        if not 0 <= self.index < lg.shape[-1]:
            raise IndexError(f"ClassLogit: class {self.index} is out of range for {lg.shape[-1]} classes")
        return lg.reshape(-1, lg.shape[-1])[0, self.index]

    def describe(self) -> str:
        """'logit of class i'."""
        return f"logit of class {self.index}"


@dataclass
class TokenLogit(Target):
    """The masked-LM logit of vocabulary entry ``token`` at sequence ``position``."""

    position: int
    token: int
    label: str = ""

    def __call__(self, output: Any) -> Tensor:
        """logits[0, position, token]."""
        lg = _logits(output)
        return lg[0, self.position, self.token]

    def describe(self) -> str:
        """'logit(word) at position p'."""
        return f"logit({self.label or self.token}) at position {self.position}"


@dataclass
class LogitDiff(Target):
    """logit(correct) − logit(wrong) at ``position`` (e.g. the verb at [MASK])."""

    position: int
    correct: int
    wrong: int
    labels: tuple[str, str] = ("", "")

    def __call__(self, output: Any) -> Tensor:
        """logits[0, position, correct] − logits[0, position, wrong]."""
        lg = _logits(output)
        row = lg[0, self.position]
        return row[self.correct] - row[self.wrong]

    def describe(self) -> str:
        """'logit(is) − logit(are) at position p'."""
        a, b = self.labels
        return f"logit({a or self.correct}) − logit({b or self.wrong}) at position {self.position}"


@dataclass
class Custom(Target):
    """Any function of the output returning a scalar Tensor."""

    fn: Callable[[Any], Tensor]
    name: str = "custom quantity"

    def __call__(self, output: Any) -> Tensor:
        """fn(output)."""
        return self.fn(output)

    def describe(self) -> str:
        """The given name."""
        return self.name


def as_target(target: Any) -> Target:
    """A :class:`Target` from a Target, an int (class logit) or a callable."""
    if isinstance(target, Target):
        return target
    if isinstance(target, int) and not isinstance(target, bool):
        return ClassLogit(target)
    if callable(target):
        return Custom(target)
    raise TypeError(f"target must be a Target, a class index or a callable, got {type(target).__name__}")
