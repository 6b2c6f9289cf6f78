"""``semitorch tour``: one small seeded network, one input, and what each semiring's backward pass says about it."""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from . import int_at_least

NAME = "tour"
HELP = "a two-minute tour: gradient, best path, top-3 paths, path entropy and path count of a small network"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--seed (weights and input) and --hidden (width)."""
    parser.add_argument(
        "--seed", type=int_at_least(0), default=0, help="random seed of the weights and the input (default 0)"
    )
    parser.add_argument("--hidden", type=int_at_least(1), default=6, help="width of the two hidden layers (default 6)")


def build(seed: int = 0, hidden: int = 6) -> tuple[Any, Any, int]:
    """A 4 → hidden → hidden → 3 classifier (tanh, gelu, log_softmax); returns (log-prob of the class, x, class)."""
    import semitorch as st

    rng = np.random.default_rng(seed)

    def param(*shape: int) -> Any:
        return st.tensor(rng.standard_normal(shape) / np.sqrt(shape[0]))

    x = st.tensor(rng.standard_normal(4), requires_grad=True)
    x.name = "x"
    with st.module_scope("layer1"):
        h = st.tanh(x @ param(4, hidden) + param(hidden))
    with st.module_scope("layer2"):
        h = st.gelu(h @ param(hidden, hidden) + param(hidden))
    with st.module_scope("head"):
        logp = st.log_softmax(h @ param(hidden, 3))
    target = int(np.argmax(logp.numpy()))
    return logp[target], x, target


def _row(values: Any, fmt: str = "{:+.4f}") -> str:
    return "  ".join(fmt.format(float(v)) for v in np.ravel(values))


def run(args: argparse.Namespace) -> int:
    """Print the tour; returns 0.

    The network is tiny, so the semiring kernels run on the numpy reference: loading
    (or, the first time, compiling) the numba kernels would cost more than the whole tour.
    """
    from semitorch import kernels

    saved = kernels.BACKEND
    kernels.BACKEND = "numpy"
    try:
        return _tour(args)
    finally:
        kernels.BACKEND = saved


def _tour(args: argparse.Namespace) -> int:
    import semitorch as st
    from semitorch.semirings import Count, Entropy, Real

    t0 = time.perf_counter()
    y, x, target = build(args.seed, args.hidden)
    h = args.hidden
    print(f"network: x (4) -> layer1: tanh(x W1 + b1) ({h}) -> layer2: gelu(. W2 + b2) ({h}) -> head: log_softmax (3)")
    print(f"input x = [{_row(x.numpy())}]   output y = log p(class {target} | x) = {y.item():.4f}")
    print("Every scalar is a node and every local derivative an edge; each question below is ONE backward pass")
    print("over that element-level graph with a different semiring (the forward pass ran once).\n")

    g = st.grad(y, x, semiring=Real())
    print(f"gradient dy/dx            [{_row(g)}]")
    print("  the (+, ×) semiring: for each x_i, the sum over all paths x_i -> y of the product of edge weights.\n")

    (best,) = st.top_paths(y, x)
    print("best path (max-product semiring, read back from backpointers):")
    print(best.table())
    print("  the single path from any x_i to y whose |product of edge weights| is largest; each row is one edge.\n")

    print("top-3 paths (k-best semiring):")
    for i, p in enumerate(st.top_paths(y, x, k=3), 1):
        if not p:
            print("  no path from x to y")
            break
        ops = " -> ".join(f"{s.op}{list(s.index)}" for s in p.steps)
        print(f"  {i}. from x{list(p.index)}: weight {p.weight:.6g}   via {ops}")
    print("  the three highest-|product| paths from any element of x; the best one is the table above.\n")

    ent = st.grad(y, x, semiring=Entropy())
    print(f"path entropy (nats)       [{_row(ent, '{:.4f}')}]")
    print("  the Shannon entropy of p(path) = |product| / (sum over paths from x_i): high means the")
    print("  influence of x_i is spread over many paths, low means a few paths carry it.\n")

    count = st.grad(y, x, semiring=Count())
    print(f"number of paths           [{_row(count, '{:.0f}')}]")
    print("  how many paths (with nonzero weight) lead from x_i to y: the size of what the entropy spreads over.")
    print(f"\n(done in {time.perf_counter() - t0:.2f} s; more semirings: {', '.join(sorted(st.SEMIRINGS))})")
    return 0
