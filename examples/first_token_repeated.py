"""Experiment 1 of Du et al. (2023, §5.1): the top gradient path follows the mechanism.

Task: sequences of 10 tokens over 1..19; label 1 iff the first token appears again later.
A 1-layer BERT sequence classifier (hidden 16, 2 heads, dropout 0.2, Adam 1e-3, batch 32)
is trained in semitorch; then, for validation sentences, the best path from each token to
the correct class logit is followed to the attention block's input, where it leaves through
the Key, Query, Value or the skip connection. The mean path weight per component is printed
by token role next to the paper's figures.

    python examples/first_token_repeated.py [--epochs N] [--n-analyse N] [--quick]

``--quick`` (or SEMITORCH_EXAMPLES_QUICK=1) runs tiny settings as a smoke test.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import semitorch as st
from semitorch.data import first_token_repeated
from semitorch.explain import ClassLogit, ComponentTable, Forward, routes_of
from semitorch.nn import BertConfig, BertForSequenceClassification, manual_seed
from semitorch.optim import Adam

# Du et al. 2023, §5.1 (1,000 validation sentences): mean top-path weight per component.
PAPER = {
    "repeated token": {"key": 0.27, "query": 0.0, "value": 0.0, "skip": 0.0},
    "first token": {"key": 0.095, "query": 0.175, "value": 0.0, "skip": 0.095},
    "other tokens": {"key": 0.0, "query": 0.0, "value": 0.0, "skip": 0.0},
}


def accuracy(model: BertForSequenceClassification, ids: np.ndarray, y: np.ndarray) -> float:
    """Classification accuracy, evaluated without a tape."""
    model.eval()
    with st.no_grad():
        pred = np.concatenate(
            [model(input_ids=ids[i : i + 500]).logits.numpy().argmax(-1) for i in range(0, len(ids), 500)]
        )
    return float((pred == y).mean())


def main() -> None:
    """Train, then analyse the top paths."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=100, help="at most this many epochs (default 100)")
    ap.add_argument("--target-acc", type=float, default=0.999, help="stop once validation accuracy reaches this")
    ap.add_argument("--n", type=int, default=10000, help="examples generated (split 70/10/20)")
    ap.add_argument("--n-analyse", type=int, default=1000, help="validation sentences analysed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", default=bool(os.environ.get("SEMITORCH_EXAMPLES_QUICK")))
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.n, args.n_analyse = 1, 600, 20

    manual_seed(args.seed)
    ids, y, rep = first_token_repeated(args.n, seed=args.seed)
    n_tr, n_va = int(0.7 * args.n), int(0.1 * args.n)
    tr, va = slice(0, n_tr), slice(n_tr, n_tr + n_va)
    config = BertConfig(
        vocab_size=20, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=16, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2, num_labels=2,
    )  # fmt: skip
    model = BertForSequenceClassification(config)
    opt = Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(n_tr)
        for b in range(0, n_tr, 32):
            idx = order[b : b + 32]
            loss = st.cross_entropy(model(input_ids=ids[tr][idx]).logits, y[tr][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = accuracy(model, ids[va], y[va])
        print(f"epoch {epoch + 1:3d}  loss {loss.item():.4f}  val acc {acc:.4f}  {time.perf_counter() - t0:6.1f}s")
        if acc >= args.target_acc:
            break
    print(f"validation accuracy: {accuracy(model, ids[va], y[va]):.4f}")

    # ---- analysis: where each token's best path leaves the attention block's input -------------------
    table = ComponentTable(n_layers=1)
    model.eval()
    vids, vy, vrep = ids[va][: args.n_analyse], y[va][: args.n_analyse], rep[va][: args.n_analyse]
    t1 = time.perf_counter()
    for s in range(len(vids)):
        fw = Forward.run(model, vids[s], ClassLogit(int(vy[s])))
        routes = routes_of(fw, 1, config.hidden_size // config.num_attention_heads)
        roles = {}
        for t in range(vids.shape[1]):
            role = "first token" if t == 0 else ("repeated token" if t == vrep[s] else "other tokens")
            roles[t] = [role]
        table.add(routes, roles)
    print(f"analysed {len(vids)} sentences in {time.perf_counter() - t1:.1f}s")
    print("\nmean top-path weight per component at the attention block's input (semitorch | paper)")
    print(f"{'token':16s} {'key':>14s} {'query':>14s} {'value':>14s} {'skip':>14s}")
    for role in ("repeated token", "first token", "other tokens"):
        mw = table.mean_weight(role, 0)
        cells = [f"{mw[c]:7.3f} | {PAPER[role][c]:5.3f}" for c in ("key", "query", "value", "skip")]
        print(f"{role:16s} " + " ".join(f"{c:>14s}" for c in cells))
    print("\nshare of top paths (count) per component:")
    for role in ("repeated token", "first token", "other tokens"):
        c = table.counts(role, 0)
        n = max(1, table.n.get(role, 0))
        print(f"{role:16s} " + "  ".join(f"{k} {v / n:5.2f}" for k, v in c.items()))


if __name__ == "__main__":
    main()
