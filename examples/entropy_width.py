"""Experiment 3 of Du et al. (2023, App. B): gradient-graph entropy of an MLP grows with its width.

An MLP 4 → h → 2 (ReLU) learns "x0 > 0.5" from points in [0, 1]^4. For each width h,
the entropy of the distribution over paths from the inputs to the correct-class logit
is computed in one Entropy backward pass per test point: the *input entropy* treats the
four inputs as one super-node (4·h paths at most), and each feature's own entropy is
reported too (the relevant feature x0 against the others).

    python examples/entropy_width.py [--widths 4,8,...] [--n-train N] [--quick]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

import semitorch as st
from semitorch.data import threshold_task
from semitorch.explain import ClassLogit, PathEntropy
from semitorch.nn import Linear, Module, ReLU, Sequential, manual_seed
from semitorch.optim import Adam

# Du et al. 2023, App. B (figure): input entropy of the MLP, approximately, by hidden width.
PAPER = {4: 2.2, 128: 5.7}


class MLP(Module):
    """4 → h → 2 with ReLU."""

    def __init__(self, h: int) -> None:
        super().__init__()
        self.net = Sequential(Linear(4, h), ReLU(), Linear(h, 2))

    def forward(self, x: st.Tensor) -> st.Tensor:
        """Logits (B, 2)."""
        return self.net(x)


def train(h: int, x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> MLP:
    """Full-batch Adam on the cross-entropy."""
    manual_seed(seed)
    model = MLP(h).astype(np.float64)
    opt = Adam(model.parameters(), lr=1e-2)
    xt = st.tensor(x)
    for _ in range(epochs):
        loss = st.cross_entropy(model(xt), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def main() -> None:
    """Sweep the widths and print the table next to the paper's figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="4,8,16,32,64,128")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", default=bool(os.environ.get("SEMITORCH_EXAMPLES_QUICK")))
    args = ap.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    if args.quick:
        widths, args.n_train, args.n_test, args.epochs = [4, 16], 200, 20, 30

    x, y = threshold_task(args.n_train, seed=args.seed)
    xt, yt = threshold_task(args.n_test, seed=args.seed + 1)
    cols = ("width", "test acc", "input H", "max log(4h)", "H(x0)", "H(x1..x3)")
    print(" ".join(f"{c:>11s}" for c in cols) + "  paper")
    for h in widths:
        model = train(h, x, y, args.epochs, args.seed)
        with st.no_grad():
            acc = float((model(st.tensor(xt)).numpy().argmax(-1) == yt).mean())
        pe = PathEntropy(model)
        inp, rel, oth = [], [], []
        for i in range(len(xt)):
            r = pe.attribute(xt[i], ClassLogit(int(yt[i])))
            inp.append(r.sentence_entropy)
            rel.append(r.entropy[0])
            oth.append(float(np.mean(r.entropy[1:])))
        paper = f"≈{PAPER[h]}" if h in PAPER else ""
        vals = (acc, np.mean(inp), np.log(4 * h), np.mean(rel), np.mean(oth))
        print(f"{h:11d} " + " ".join(f"{v:11.3f}" for v in vals) + f"  {paper}")


if __name__ == "__main__":
    main()
