"""semitorch.nn: Module bookkeeping, state dicts, module paths on the tape, layers vs torch, an MLP learning XOR."""

import numpy as np
import pytest
import torch

import semitorch as st
from semitorch import backend, nn, optim
from semitorch.tape import topological_order

F = torch.nn.functional


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.ln = nn.LayerNorm(3)

    def forward(self, x):
        return self.ln(self.fc(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.head = nn.Sequential(nn.Linear(3, 5), nn.GELU(), nn.Linear(5, 2))
        self.drop = nn.Dropout(0.5)

    def forward(self, ids):
        h = self.emb(ids)
        h = self.blocks[0](h)
        h = h @ self.blocks[1].fc.weight.T[:3, :3]  # an op in the root module itself
        h = self.blocks[1].ln(h)
        return self.head(self.drop(h))


def test_named_parameters_modules_and_state_dict_keys():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "emb.weight",
        "blocks.0.fc.weight", "blocks.0.fc.bias", "blocks.0.ln.weight", "blocks.0.ln.bias",
        "blocks.1.fc.weight", "blocks.1.fc.bias", "blocks.1.ln.weight", "blocks.1.ln.bias",
        "head.0.weight", "head.0.bias", "head.2.weight", "head.2.bias",
    ]  # fmt: skip
    assert list(net.state_dict()) == names
    assert [n for n, _ in net.named_modules()] == [
        "", "emb", "blocks", "blocks.0", "blocks.0.fc", "blocks.0.ln", "blocks.1", "blocks.1.fc", "blocks.1.ln",
        "head", "head.0", "head.1", "head.2", "drop",
    ]  # fmt: skip
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert net.blocks[1].fc.weight.shape == (3, 4)  # Linear weights are [out, in]


def test_tied_parameter_appears_once_and_reassignment_unregisters():
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    seq = nn.Sequential(a, b)
    b.weight = a.weight
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    b.bias = None
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]


def test_train_eval_propagate_and_dropout_is_identity_in_eval():
    net = Net()
    assert all(m.training for m in net.modules())
    net.eval()
    assert not any(m.training for m in net.modules())
    x = st.tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    assert net.drop(x) is x
    net.train()
    assert net.drop.training


def test_module_paths_recorded_on_every_node():
    net = Net()
    out = net(np.array([[1, 2, 3], [4, 5, 6]]))
    nodes = [t._node for t in topological_order(out) if t._node is not None]
    mods = {n.module for n in nodes}
    assert mods == {"", "emb", "blocks.0.fc", "blocks.0.ln", "blocks.1.ln", "head.0", "head.1", "head.2", "drop"}
    # each node reading a parameter directly was made by the module owning it (or the root, for the explicit op)
    pname = {id(p): n for n, p in net.named_parameters()}
    for n in nodes:
        for inp in n.inputs:
            if id(inp) in pname and n.module:
                assert pname[id(inp)].startswith(n.module + "."), (n, pname[id(inp)])
    # a module called on its own is a root (path ""); paths are relative to the root of the call
    y = net.head(st.tensor(np.ones((2, 3)), requires_grad=True))
    assert {t._node.module for t in topological_order(y) if t._node is not None} == {"0", "1", "2"}
    y = net.head[0](st.tensor(np.ones((2, 3)), requires_grad=True))
    assert {t._node.module for t in topological_order(y) if t._node is not None} == {""}
    assert st.tape.current_module() == ""  # the scope is closed after the call


def test_module_path_restored_after_an_exception():
    class Bad(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    seq = nn.Sequential(nn.Linear(2, 2), Bad())
    with pytest.raises(RuntimeError, match="boom"):
        seq(st.tensor(np.ones((1, 2)), requires_grad=True))
    assert st.tape.current_module() == ""
    y = seq[0](st.tensor(np.ones((1, 2)), requires_grad=True))
    assert {t._node.module for t in topological_order(y) if t._node is not None} == {""}


def test_load_state_dict_missing_unexpected_shape_and_untouched():
    net = Net()
    before = {k: v.copy() for k, v in net.state_dict().items()}
    sd = {k: v + 1.0 for k, v in before.items()}
    del sd["head.2.bias"]
    sd["head.3.weight"] = np.zeros(2)
    msg = r"missing keys \(1\): head\.2\.bias.*unexpected keys \(1\): head\.3\.weight"
    with pytest.raises(nn.StateDictError, match=msg):
        net.load_state_dict(sd)
    assert all(np.array_equal(v, before[k]) for k, v in net.state_dict().items())  # untouched
    # shape mismatch is reported with the key and both shapes, even when everything else matched first
    bad = {k: v + 1.0 for k, v in before.items()}
    bad["head.2.weight"] = np.zeros((2, 6))
    with pytest.raises(nn.StateDictError, match=r"'head\.2\.weight' has shape \(2, 6\).*\(2, 5\)"):
        net.load_state_dict(bad)
    assert all(np.array_equal(v, before[k]) for k, v in net.state_dict().items())
    bad["head.2.weight"] = np.array(["a"] * 10).reshape(2, 5)
    with pytest.raises(nn.StateDictError, match="head.2.weight.*dtype"):
        net.load_state_dict(bad)
    # non-strict: load what matches and report the rest
    res = net.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["head.2.bias"] and res.unexpected_keys == ["head.3.weight"]
    assert np.array_equal(net.state_dict()["emb.weight"], before["emb.weight"] + 1.0)
    assert np.array_equal(net.state_dict()["head.2.bias"], before["head.2.bias"])
    # loaded arrays are copies cast to the parameter dtype
    src = {k: v.astype(np.float64) for k, v in before.items()}
    net.load_state_dict(src)
    src["emb.weight"][:] = 7.0
    assert net.emb.weight.dtype == np.float32 and not np.any(net.emb.weight.data == 7.0)


def test_to_device_and_astype():
    net = Net()
    assert net.to("cpu") is net and all(p.device == "cpu" for p in net.parameters())
    if not backend.cuda_available():
        with pytest.raises(RuntimeError, match="cuda"):
            net.to("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        net.to("tpu")
    net.astype(np.float64)
    assert all(p.dtype == np.float64 for p in net.parameters())
    with pytest.raises(TypeError, match="float32 or float64"):
        net.astype(np.int32)


def test_setattr_before_init_is_a_clear_error():
    class Forgot(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"Forgot: call Module.__init__\(\) before assigning 'fc'"):
        Forgot()


# ---- layers against torch -----------------------------------------------------------------


def _grads_vs_torch(st_out, t_out, st_ins, t_ins, seed):
    gs = st.grad(st_out, st_ins, grad_output=seed)
    gt = torch.autograd.grad(t_out, t_ins, torch.tensor(seed))
    return [np.abs(a - b.numpy()).max() for a, b in zip(gs, gt, strict=True)]


def test_linear_layernorm_gelu_embedding_match_torch():
    rng = np.random.default_rng(1)
    nn.manual_seed(0)
    lin, ln = nn.Linear(5, 4).astype(np.float64), nn.LayerNorm(4, eps=1e-5).astype(np.float64)
    ln.weight.data = rng.standard_normal(4)
    ln.bias.data = rng.standard_normal(4)
    emb = nn.Embedding(7, 5, padding_idx=0).astype(np.float64)
    assert np.all(emb.weight.data[0] == 0)
    tl = torch.nn.Linear(5, 4).double()
    tln = torch.nn.LayerNorm(4, eps=1e-5).double()
    with torch.no_grad():
        tl.weight.copy_(torch.tensor(lin.weight.data))
        tl.bias.copy_(torch.tensor(lin.bias.data))
        tln.weight.copy_(torch.tensor(ln.weight.data))
        tln.bias.copy_(torch.tensor(ln.bias.data))
    tw = torch.tensor(emb.weight.data, requires_grad=True)
    ids = np.array([[1, 3, 3], [6, 0, 2]])
    for gelu_mode in ("none", "tanh"):
        y = nn.GELU(gelu_mode)(ln(lin(emb(ids))))
        yt = F.gelu(tln(tl(F.embedding(torch.tensor(ids), tw))), approximate=gelu_mode)
        assert np.abs(y.numpy() - yt.detach().numpy()).max() < 1e-12
        seed = rng.standard_normal(y.shape)
        errs = _grads_vs_torch(
            y,
            yt,
            [emb.weight, lin.weight, lin.bias, ln.weight, ln.bias],
            [tw, tl.weight, tl.bias, tln.weight, tln.bias],
            seed,
        )
        assert max(errs) < 1e-12


def test_linear_default_init_bounds_and_shape_error():
    nn.manual_seed(3)
    lin = nn.Linear(16, 8)
    assert lin.weight.dtype == np.float32
    assert np.abs(lin.weight.data).max() <= 0.25 and np.abs(lin.bias.data).max() <= 0.25  # U(-1/√16, 1/√16)
    with pytest.raises(ValueError, match=r"Linear: input of shape \(2, 15\) has no last axis of size 16"):
        lin(st.tensor(np.ones((2, 15), dtype=np.float32)))


def test_dropout_masks_scale_and_gradient():
    nn.manual_seed(0)
    d = nn.Dropout(0.3)
    x = st.tensor(np.random.default_rng(0).uniform(1.0, 2.0, (200, 50)), requires_grad=True)
    y = d(x)
    kept = y.numpy() != 0
    # kept entries are x / (1 - p); the kept fraction is within 5 sigma of 0.7
    assert np.allclose(y.numpy()[kept], x.numpy()[kept] / 0.7, rtol=0, atol=1e-12)
    n = kept.size
    assert abs(kept.mean() - 0.7) < 5 * np.sqrt(0.7 * 0.3 / n)
    g = st.grad(y.sum(), x)
    assert np.array_equal(g, kept / 0.7)
    # reproducible from the module generator
    nn.manual_seed(0)
    assert np.array_equal(nn.Dropout(0.3)(x).numpy(), y.numpy())
    with pytest.raises(ValueError, match="Dropout: p must be in"):
        nn.Dropout(1.5)


def test_modulelist_rejects_non_modules():
    with pytest.raises(TypeError, match="ModuleList: can only hold Modules, got int"):
        nn.ModuleList([1])


def test_mlp_learns_xor():
    nn.manual_seed(0)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0])
    mlp = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    opt = optim.Adam(mlp.parameters(), lr=0.05)
    for _ in range(300):
        loss = st.cross_entropy(mlp(st.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    logits = mlp(st.tensor(x)).numpy()
    assert (logits.argmax(1) == y).all()
    assert float(loss.item()) < 0.01
