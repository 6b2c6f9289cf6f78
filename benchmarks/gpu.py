"""GPU benchmark: BERT-base forward+backward vs torch on the same GPU, and each semiring's backward vs Real.

Model: BERT-base size (12 layers, hidden 768, 12 heads, FFN 3072), random weights, float32,
eval mode, ``--batch`` sequences of ``--seq`` tokens (default 1 × 128). Both libraries hold
the same weights (semitorch's, copied into ``transformers.BertModel``, eager attention).

1. Forward + real backward of ``sum(last_hidden_state * seed)`` into every parameter:
   semitorch (cupy) vs torch (CUDA), runs interleaved, medians and their ratio.
2. One forward on input embeddings, then ``st.grad(out, [embeddings], semiring=...)``
   for each semiring, interleaved round by round; medians and each one's time divided
   by Real's (target: MaxProduct ≤ 2× Real).

Every timed region ends with a device synchronisation. Without a GPU
(``st.cuda.is_available()`` false) the script says so and exits 0.
``--device cpu`` runs the same measurements on the host (numpy vs torch CPU) as a
check of the script itself, not as a GPU result.

    python benchmarks/gpu.py [--batch 1] [--seq 128] [--repeats 5] [--layers 12] [--device cuda|cpu]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import semitorch as st
from semitorch import backend, nn


def no_gpu_reason() -> str:
    """Why ``st.cuda.is_available()`` is false, in words."""
    if importlib.util.find_spec("cupy") is None:
        return "cupy is not installed (pip install 'semitorch[gpu]')"
    return "cupy is installed but cupy.cuda.is_available() is False, no CUDA driver or device"


def syncer(device: str) -> Callable[[], None]:
    """A function that waits for all queued device work (a no-op on the host)."""
    if device == "cpu":
        return lambda: None
    import cupy

    return cupy.cuda.Device().synchronize


def timed(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    """Seconds for one call of ``fn``, device work included."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def build(args: argparse.Namespace) -> nn.BertModel:
    """A BERT-base-size semitorch model with random weights, eval mode, on ``args.device``."""
    nn.manual_seed(0)
    cfg = nn.BertConfig(num_hidden_layers=args.layers, hidden_size=768, num_attention_heads=12, intermediate_size=3072)
    return nn.BertModel(cfg).eval().to(args.device)


def torch_twin(model: nn.BertModel, device: str) -> Any:
    """``transformers.BertModel`` with the same weights on the same device, or None (with a printed reason)."""
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"torch comparison skipped: {e.name} is not installed")
        return None
    if device == "cuda" and not torch.cuda.is_available():
        print(f"torch comparison skipped: torch {torch.__version__} has no CUDA device (a CPU build?)")
        return None
    c = model.config
    hf_cfg = transformers.BertConfig(
        num_hidden_layers=c.num_hidden_layers,
        hidden_size=c.hidden_size,
        num_attention_heads=c.num_attention_heads,
        intermediate_size=c.intermediate_size,
        layer_norm_eps=c.layer_norm_eps,
        attn_implementation="eager",
    )
    ref = transformers.BertModel(hf_cfg).eval()
    state = {k: torch.from_numpy(backend.to_numpy(v).copy()) for k, v in model.state_dict().items()}
    missing, unexpected = ref.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids") and not k.endswith("token_type_ids")]
    if missing or unexpected:
        print(f"torch comparison skipped: weights do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")
        return None
    return ref.to(device)


def bench_vs_torch(args: argparse.Namespace, model: nn.BertModel, sync: Callable[[], None]) -> None:
    """Forward + real backward into every parameter, semitorch vs torch, interleaved; prints medians."""
    rng = np.random.default_rng(0)
    ids_h = rng.integers(1, model.config.vocab_size, size=(args.batch, args.seq))
    seed_h = rng.standard_normal((args.batch, args.seq, 768)).astype(np.float32)
    ids = st.tensor(ids_h, device=args.device)
    seed = st.tensor(seed_h, device=args.device)
    params = list(model.parameters())

    def ours() -> None:
        out = model(input_ids=ids).last_hidden_state
        st.grad((out * seed).sum(), params)

    ref = torch_twin(model, args.device)
    if ref is not None:
        import torch

        tids = torch.as_tensor(ids_h, device=args.device)
        tseed = torch.as_tensor(seed_h, device=args.device)
        tparams = list(ref.parameters())
        tsync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

        def theirs() -> None:
            out = ref(input_ids=tids).last_hidden_state
            torch.autograd.grad((out * tseed).sum(), tparams, allow_unused=True)

        with torch.no_grad():
            diff = np.abs(
                backend.to_numpy(model(input_ids=ids).last_hidden_state.data)
                - ref(input_ids=tids).last_hidden_state.cpu().numpy()
            ).max()
        print(f"same weights: max |semitorch − torch| of the last hidden state = {diff:.2e}")
    ours()  # warm-up: kernel compilation, memory pools
    if ref is not None:
        theirs()
    t_ours, t_theirs = [], []
    for _ in range(args.repeats):
        t_ours.append(timed(ours, sync))
        if ref is not None:
            t_theirs.append(timed(theirs, tsync))
    m_ours = statistics.median(t_ours)
    print(f"forward+backward, semitorch: {m_ours * 1e3:9.1f} ms (median of {args.repeats})")
    if t_theirs:
        m_theirs = statistics.median(t_theirs)
        print(f"forward+backward, torch:     {m_theirs * 1e3:9.1f} ms")
        print(f"ratio semitorch / torch:     {m_ours / m_theirs:9.2f}x")


def bench_semirings(args: argparse.Namespace, model: nn.BertModel, sync: Callable[[], None]) -> None:
    """One forward on input embeddings; each semiring's backward time, interleaved; ratios to Real."""
    S = st.semirings
    srs = {"Real": S.Real(), "Log": S.Log(), "Entropy": S.Entropy(), "MaxProduct": S.MaxProduct()}
    srs |= {"SignedMax": S.SignedMax(), "Count": S.Count(), "KBest(3)": S.KBest(3)}
    rng = np.random.default_rng(1)
    emb = st.tensor(0.5 * rng.standard_normal((args.batch, args.seq, 768)).astype(np.float32), device=args.device)
    emb.requires_grad_()
    h = model(inputs_embeds=emb).last_hidden_state
    out = (h * st.tensor(rng.standard_normal(h.shape).astype(np.float32), device=args.device)).sum()
    for sr in srs.values():  # warm-up: structures, kernel compilation
        st.grad(out, emb, semiring=sr)
    times: dict[str, list[float]] = {n: [] for n in srs}
    for _ in range(args.repeats):
        for name, sr in srs.items():
            times[name].append(timed(lambda sr=sr: st.grad(out, emb, semiring=sr), sync))
    real = statistics.median(times["Real"])
    print(f"\nsemiring backward on {args.device} ({args.layers} layers, batch {args.batch}, seq {args.seq}):")
    for name, ts in times.items():
        m = statistics.median(ts)
        target = "   (target ≤ 2.00x)" if name == "MaxProduct" else ""
        print(f"  {name:11s} {m * 1e3:9.1f} ms  {m / real:6.2f}x Real{target}")


def main() -> int:
    """Run the benchmark (or explain why not); returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    args = ap.parse_args()
    if args.device == "cuda" and not st.cuda.is_available():
        print(f"No GPU is available (st.cuda.is_available() is False): {no_gpu_reason()}. Nothing was measured.")
        return 0
    sync = syncer(args.device)
    if args.device == "cuda":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        print(f"device: {props['name'].decode()}; cupy {cupy.__version__}")
    model = build(args)
    bench_vs_torch(args, model, sync)
    bench_semirings(args, model, sync)
    return 0


if __name__ == "__main__":
    sys.exit(main())
