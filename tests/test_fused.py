"""The fused numba GELU (large host arrays) equals the numpy/scipy path and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import semitorch as st
from semitorch import kernels


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_gelu_equals_scipy_path_and_torch(dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forward and gradient agree with the unfused path (to 1 ulp) and with torch."""
    pytest.importorskip("numba")
    x = (np.random.default_rng(1).standard_normal(kernels.GELU_MIN_SIZE + 7) * 3).astype(dtype)
    assert kernels.gelu_erf(x) is not None  # the fused path is taken at this size
    t = st.tensor(x, requires_grad=True)
    fused_out = st.gelu(t)
    fused_grad = st.grad(fused_out, t, grad_output=np.ones_like(x))
    monkeypatch.setattr(kernels, "GELU_MIN_SIZE", 10**12)  # force the numpy/scipy path
    assert kernels.gelu_erf(x) is None
    t2 = st.tensor(x, requires_grad=True)
    plain_out = st.gelu(t2)
    plain_grad = st.grad(plain_out, t2, grad_output=np.ones_like(x))
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(fused_out.numpy(), plain_out.numpy(), rtol=4 * eps, atol=4 * eps)
    np.testing.assert_allclose(fused_grad, plain_grad, rtol=4 * eps, atol=4 * eps)
    tt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.gelu(tt).sum().backward()
    tol = 1e-10 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(fused_out.numpy(), torch.nn.functional.gelu(torch.tensor(x)).numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(fused_grad, tt.grad.numpy(), rtol=tol, atol=tol)


def test_small_and_device_like_arrays_do_not_take_the_fused_path() -> None:
    """Below the size threshold or for other dtypes the dispatcher declines."""
    assert kernels.gelu_erf(np.ones(10, np.float32)) is None
    assert kernels.gelu_erf(np.ones(kernels.GELU_MIN_SIZE, np.float16)) is None
