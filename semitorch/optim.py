"""Optimizers (SGD with momentum, Adam, AdamW), gradient clipping and a warm-up learning-rate schedule.

The update rules are torch.optim's, step for step, so that a run can be checked
against torch. Parameters are updated in place; ``.grad`` is read as the real
gradient that ``Tensor.backward()`` accumulated. An optimizer's
``state_dict()`` holds plain Python numbers and arrays (see
:func:`semitorch.io.save_tree` to write it to disk).
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from . import backend
from .ops._core import is_real
from .tensor import Tensor

_REAL_HYPERS = frozenset({"lr", "momentum", "dampening", "weight_decay", "eps"})


def _check_hyper(owner: str, key: str, v: Any) -> None:
    """A TypeError naming ``owner`` and ``key`` when a hyper-parameter of the built-in optimizers has the wrong kind.

    lr, momentum, dampening, weight_decay and eps are real numbers, betas a pair of them,
    nesterov a bool (or an int); other keys (a subclass's own options) are not checked.
    """
    if key == "nesterov":
        ok = isinstance(v, (bool, np.bool_, numbers.Integral))
        what = "a bool"
    elif key == "betas":
        ok = isinstance(v, (tuple, list)) and len(v) == 2 and all(_real(b) for b in v)
        what = "a pair of real numbers"
    elif key in _REAL_HYPERS:
        ok = _real(v)
        what = "a real number"
    else:
        return
    if not ok:
        raise TypeError(f"{owner}: {key} must be {what}, got {type(v).__name__} {v!r}")


def _real(v: Any) -> bool:
    return is_real(v) or (isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf")


class Optimizer:
    """Base class: parameter groups (dicts with "params" and hyper-parameters) and per-parameter state."""

    defaults: dict[str, Any]

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        name = type(self).__name__
        for k, v in self.defaults.items():
            _check_hyper(name, k, v)
        if isinstance(params, (Tensor, dict)) or not isinstance(params, Iterable):
            wrap = " (wrap it in a list: [p])" if isinstance(params, Tensor) else ""
            wrap = " (one parameter group: wrap it in a list: [group])" if isinstance(params, dict) else wrap
            raise TypeError(
                f"{name}: params must be an iterable of Tensors or of parameter-group dicts, got "
                f"{type(params).__name__}{wrap}"
            )
        items = list(params)
        if not items:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        self.param_groups: list[dict[str, Any]] = []
        seen: set[int] = set()
        for g in groups:
            group = {**self.defaults, **g, "params": list(g["params"])}
            unknown = set(group) - set(self.defaults) - {"params"}
            if unknown:
                raise ValueError(f"{type(self).__name__}: unknown option(s) {sorted(unknown)} in a parameter group")
            for k in g:
                if k != "params":
                    _check_hyper(name, k, group[k])
            for p in group["params"]:
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise TypeError(f"{type(self).__name__}: every parameter must be a Tensor that requires grad")
                if p._node is not None:
                    raise ValueError(
                        f"{name}: a parameter of shape {p.shape} is not a leaf (it was computed by "
                        f"{p._node.op}); optimise the leaf tensors it was made from"
                    )
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears in more than one group")
                seen.add(id(p))
            self.param_groups.append(group)
        self.state: dict[int, dict[str, Any]] = {}  # id(param) -> state

    def _params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self) -> None:
        """Drop the ``.grad`` of every parameter (the next backward starts from nothing)."""
        for p in self._params():
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a ``.grad``."""
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if tuple(grad.shape) != p.shape:
                    raise ValueError(f"{type(self).__name__}: grad of shape {tuple(grad.shape)} for a {p.shape} param")
                self._update(p, grad.astype(p.dtype, copy=False), self.state.setdefault(id(p), {}), g)

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    # ---- saving ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """{"state": {index: {...}}, "param_groups": [{hyper-parameters, "params": [index, ...]}]}.

        Parameters are numbered in group order; arrays are copies.
        """
        index = {id(p): i for i, p in enumerate(self._params())}
        state = {
            index[pid]: {k: (backend.to_numpy(v).copy() if hasattr(v, "shape") else v) for k, v in s.items()}
            for pid, s in self.state.items()
            if pid in index
        }
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]  # fmt: skip
        return {"state": state, "param_groups": copy.deepcopy(groups)}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore hyper-parameters and state from :meth:`state_dict` (same parameters, same order)."""
        groups = sd.get("param_groups")
        if not isinstance(groups, list) or len(groups) != len(self.param_groups):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the state has "
                f"{len(groups) if isinstance(groups, list) else 'no'} parameter groups, the optimizer has "
                f"{len(self.param_groups)}"
            )
        params = self._params()
        for i, (g, sg) in enumerate(zip(self.param_groups, groups, strict=True)):
            if len(sg["params"]) != len(g["params"]):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: group {i} has {len(sg['params'])} parameters in the "
                    f"state but {len(g['params'])} in the optimizer"
                )
        new_state: dict[int, dict[str, Any]] = {}
        for key, s in sd.get("state", {}).items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: state for parameter {i}, which does not exist"
                )
            p = params[i]
            ns: dict[str, Any] = {}
            for k, v in s.items():
                if hasattr(v, "shape") and tuple(v.shape) != ():
                    if tuple(v.shape) != p.shape:
                        raise ValueError(
                            f"{type(self).__name__}.load_state_dict: state {k!r} of parameter {i} has shape "
                            f"{tuple(v.shape)}, the parameter has shape {p.shape}"
                        )
                    ns[k] = backend.xp_of(p.data).array(v, dtype=p.dtype)
                else:
                    ns[k] = v.item() if hasattr(v, "item") else v
            new_state[id(p)] = ns
        for g, sg in zip(self.param_groups, groups, strict=True):
            g.update({k: (tuple(v) if isinstance(v, list) else v) for k, v in sg.items() if k != "params"})
        self.state = new_state


class SGD(Optimizer):
    """SGD with optional momentum (dampening, Nesterov) and weight decay, as torch.optim.SGD."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        for k, v in (("lr", lr), ("momentum", momentum), ("dampening", dampening), ("weight_decay", weight_decay)):
            _check_hyper("SGD", k, v)
        _check_hyper("SGD", "nesterov", nesterov)
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum, weight_decay must be >= 0, got {lr}, {momentum}, {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening = 0")
        d = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay, "nesterov": nesterov}
        super().__init__(params, d)

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * p.data
        mu = group["momentum"]
        if mu:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= mu
                buf += (1.0 - group["dampening"]) * grad
            grad = grad + mu * buf if group["nesterov"] else buf
        p.data -= group["lr"] * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient, as torch.optim.Adam."""

    decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        for k, v in (("lr", lr), ("betas", betas), ("eps", eps), ("weight_decay", weight_decay)):
            _check_hyper(type(self).__name__, k, v)
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{type(self).__name__}: invalid lr={lr}, betas={betas}, eps={eps} or wd={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay})

    def _update(self, p: Tensor, grad: Any, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd:
            if self.decoupled:
                p.data *= 1.0 - lr * wd
            else:
                grad = grad + wd * p.data
        if "step" not in state:
            xp = backend.xp_of(p.data)
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (1.0 - b1) * (grad - m)  # torch: m.lerp_(grad, 1 - b1)
        v *= b2
        v += (1.0 - b2) * grad * grad
        bc1 = 1.0 - b1**t
        bc2 = 1.0 - b2**t
        denom = backend.xp_of(v).sqrt(v) / math.sqrt(bc2) + eps
        p.data -= (lr / bc1) * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as torch.optim.AdamW (default wd 0.01)."""

    decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay)


def clip_grad_norm_(params: Iterable[Tensor], max_norm: float, norm_type: float = 2.0) -> float:
    """Scale the ``.grad`` of ``params`` in place so their joint norm is at most ``max_norm``.

    Returns the total norm before clipping (as torch.nn.utils.clip_grad_norm_, which
    multiplies by max_norm / (norm + 1e-6) when that is below 1).
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if norm_type == math.inf:
        total = max(float(backend.to_numpy(abs(g).max())) for g in grads)
    else:
        total = float(sum(float((abs(g.astype(np.float64)) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for g in grads:
            g *= scale
    return total


class WarmupSchedule:
    """Learning rate: linear warm-up from 0 over ``warmup_steps``, then linear or cosine decay to 0 at ``total_steps``.

    The same curves as transformers' ``get_linear_schedule_with_warmup`` and
    ``get_cosine_schedule_with_warmup`` (half a cosine period). Call
    :meth:`step` after each ``optimizer.step()``; the lr of every group is the
    group's base lr times the factor.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, decay: str = "linear") -> None:
        if decay not in ("linear", "cosine", "constant"):
            raise ValueError(f"WarmupSchedule: decay must be 'linear', 'cosine' or 'constant', got {decay!r}")
        if warmup_steps < 0 or total_steps < warmup_steps:
            raise ValueError(
                f"WarmupSchedule: need 0 <= warmup_steps <= total_steps, got {warmup_steps}, {total_steps}"
            )
        self.optimizer, self.warmup_steps, self.total_steps, self.decay = optimizer, warmup_steps, total_steps, decay
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def factor(self, step: int) -> float:
        """The multiplier of the base lr at ``step``."""
        if step < self.warmup_steps:
            return step / max(1, self.warmup_steps)
        if self.decay == "constant":
            return 1.0
        progress = (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        if self.decay == "linear":
            return max(0.0, 1.0 - progress)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    def _apply(self) -> None:
        f = self.factor(self.last_step)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = base * f

    def step(self) -> None:
        """Advance one step and set the groups' lr."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The current lr of each group."""
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Step counter, base lrs and settings."""
        return {
            "last_step": self.last_step,
            "base_lrs": list(self.base_lrs),
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "decay": self.decay,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` and set the groups' lr."""
        self.last_step = int(sd["last_step"])
        self.base_lrs = [float(x) for x in sd["base_lrs"]]
        self.warmup_steps, self.total_steps, self.decay = int(sd["warmup_steps"]), int(sd["total_steps"]), sd["decay"]
        self._apply()
