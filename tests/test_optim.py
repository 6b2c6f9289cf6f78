"""semitorch.optim against torch.optim (same gradients, step for step), clipping, warm-up schedules, state dicts."""

import math

import numpy as np
import pytest
import torch
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from semitorch import nn, optim
from semitorch.io import load_tree, save_tree

SHAPES = [(3, 4), (4,), (2, 2, 3)]


def _pair(seed=0):
    rng = np.random.default_rng(seed)
    data = [rng.standard_normal(s) for s in SHAPES]
    return [nn.Parameter(d.copy()) for d in data], [torch.tensor(d.copy(), requires_grad=True) for d in data]


def _run(make_st, make_t, steps=6, seed=0):
    """Feed both optimizers the same random gradients; return the max parameter difference."""
    ps, pt = _pair(seed)
    o_st, o_t = make_st(ps), make_t(pt)
    rng = np.random.default_rng(seed + 100)
    for _ in range(steps):
        for a, b in zip(ps, pt, strict=True):
            g = rng.standard_normal(a.shape)
            a.grad = g.copy()
            b.grad = torch.tensor(g)
        o_st.step()
        o_t.step()
    return max(np.abs(a.data - b.detach().numpy()).max() for a, b in zip(ps, pt, strict=True))


@pytest.mark.parametrize(
    "kw",
    [
        {"lr": 0.1},
        {"lr": 0.1, "momentum": 0.9},
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
        {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.1},
    ],
)
def test_sgd_matches_torch(kw):
    assert _run(lambda p: optim.SGD(p, **kw), lambda p: torch.optim.SGD(p, **kw)) < 1e-12


@pytest.mark.parametrize(
    "cls,kw",
    [
        ("Adam", {"lr": 0.01}),
        ("Adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.1}),
        ("AdamW", {"lr": 0.01}),
        ("AdamW", {"lr": 0.02, "betas": (0.85, 0.95), "weight_decay": 0.3}),
    ],
)
def test_adam_adamw_match_torch(cls, kw):
    err = _run(lambda p: getattr(optim, cls)(p, **kw), lambda p: getattr(torch.optim, cls)(p, **kw), steps=8)
    assert err < 1e-12


def test_param_groups_and_skipping_params_without_grad():
    ps, pt = _pair(1)
    o = optim.Adam([{"params": ps[:1], "lr": 0.1}, {"params": ps[1:], "weight_decay": 0.5}], lr=0.01)
    ot = torch.optim.Adam([{"params": pt[:1], "lr": 0.1}, {"params": pt[1:], "weight_decay": 0.5}], lr=0.01)
    rng = np.random.default_rng(5)
    for step in range(4):
        for i, (a, b) in enumerate(zip(ps, pt, strict=True)):
            if step % 2 and i == 2:  # no grad this step: left alone by both
                a.grad, b.grad = None, None
                continue
            g = rng.standard_normal(a.shape)
            a.grad, b.grad = g.copy(), torch.tensor(g)
        o.step()
        ot.step()
    assert max(np.abs(a.data - b.detach().numpy()).max() for a, b in zip(ps, pt, strict=True)) < 1e-12
    o.zero_grad()
    assert all(p.grad is None for p in ps)


def test_optimizer_input_errors():
    p = nn.Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="SGD: got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="Adam: invalid lr=-1"):
        optim.Adam([p], lr=-1)
    with pytest.raises(ValueError, match="SGD: Nesterov momentum needs momentum > 0"):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['momentum'\]"):
        optim.Adam([{"params": [p], "momentum": 0.9}])
    with pytest.raises(TypeError, match="requires grad"):
        optim.SGD([nn.Parameter(np.zeros(2), requires_grad=False)], lr=0.1)
    p.grad = np.zeros(4)
    with pytest.raises(ValueError, match=r"grad of shape \(4,\) for a \(3,\) param"):
        optim.SGD([p], lr=0.1).step()


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm):
    ps, pt = _pair(2)
    rng = np.random.default_rng(3)
    for a, b in zip(ps, pt, strict=True):
        g = rng.standard_normal(a.shape)
        a.grad, b.grad = g.copy(), torch.tensor(g)
    total = optim.clip_grad_norm_(ps, max_norm, norm_type)
    total_t = torch.nn.utils.clip_grad_norm_(pt, max_norm, norm_type)
    assert abs(total - float(total_t)) < 1e-12
    assert max(np.abs(a.grad - b.grad.numpy()).max() for a, b in zip(ps, pt, strict=True)) < 1e-12
    assert optim.clip_grad_norm_([nn.Parameter(np.zeros(2))], 1.0) == 0.0  # no grads: nothing to do


@pytest.mark.parametrize(
    "decay,ref", [("linear", get_linear_schedule_with_warmup), ("cosine", get_cosine_schedule_with_warmup)]
)
def test_warmup_schedule_matches_transformers(decay, ref):
    ps, pt = _pair()
    o = optim.AdamW(ps, lr=1e-3)
    ot = torch.optim.AdamW(pt, lr=1e-3)
    sch = optim.WarmupSchedule(o, warmup_steps=5, total_steps=23, decay=decay)
    scht = ref(ot, 5, 23)
    for _ in range(30):
        assert abs(sch.get_last_lr()[0] - scht.get_last_lr()[0]) < 1e-15
        o.step()
        ot.step()
        sch.step()
        scht.step()
    with pytest.raises(ValueError, match="decay must be"):
        optim.WarmupSchedule(o, 1, 2, decay="step")
    with pytest.raises(ValueError, match="warmup_steps <= total_steps"):
        optim.WarmupSchedule(o, 5, 2)


def test_optimizer_and_schedule_state_round_trip_through_a_file(tmp_path):
    def fresh():
        ps, _ = _pair(7)
        o = optim.AdamW([{"params": ps[:2]}, {"params": ps[2:], "weight_decay": 0.0}], lr=0.01)
        return ps, o, optim.WarmupSchedule(o, 3, 20, "cosine")

    def train(ps, o, sch, rng, n):
        for _ in range(n):
            for p in ps:
                p.grad = rng.standard_normal(p.shape)
            o.step()
            sch.step()

    ps, o, sch = fresh()
    train(ps, o, sch, np.random.default_rng(0), 5)
    save_tree(tmp_path / "opt.safetensors", {"optimizer": o.state_dict(), "schedule": sch.state_dict()})
    saved = [p.data.copy() for p in ps]

    ps2, o2, sch2 = fresh()
    for p, d in zip(ps2, saved, strict=True):
        p.data = d.copy()
    tree = load_tree(tmp_path / "opt.safetensors")
    o2.load_state_dict(tree["optimizer"])
    sch2.load_state_dict(tree["schedule"])
    assert o2.param_groups[0]["betas"] == (0.9, 0.999) and sch2.get_last_lr() == sch.get_last_lr()
    train(ps, o, sch, np.random.default_rng(1), 4)
    train(ps2, o2, sch2, np.random.default_rng(1), 4)
    assert all(np.array_equal(a.data, b.data) for a, b in zip(ps, ps2, strict=True))


def test_optimizer_load_state_dict_errors():
    ps, _ = _pair()
    o = optim.Adam(ps)
    for p in ps:
        p.grad = np.ones(p.shape)
    o.step()
    sd = o.state_dict()
    with pytest.raises(ValueError, match="the state has 1 parameter groups, the optimizer has 2"):
        optim.Adam([{"params": ps[:1]}, {"params": ps[1:]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="group 0 has 3 parameters in the state but 2"):
        optim.Adam(ps[:2]).load_state_dict(sd)
    sd["state"][1]["exp_avg"] = np.zeros(5)
    msg = r"state 'exp_avg' of parameter 1 has shape \(5,\), the parameter has shape \(4,\)"
    with pytest.raises(ValueError, match=msg):
        optim.Adam(ps).load_state_dict(sd)


def test_optimizer_state_for_a_parameter_that_does_not_exist():
    ps, _ = _pair()
    o = optim.SGD(ps, lr=0.1, momentum=0.9)
    sd = o.state_dict()
    sd["state"] = {7: {"momentum_buffer": np.zeros(3)}}
    with pytest.raises(ValueError, match="state for parameter 7, which does not exist"):
        o.load_state_dict(sd)
    with pytest.raises(ValueError, match="SGD: lr, momentum, weight_decay must be >= 0"):
        optim.SGD(ps, lr=-0.1)
