"""Train a small BERT masked LM on generated subject–verb agreement sentences, in semitorch.

    python examples/train_sva_bert.py [--steps N] [--out DIR] [--quick]

The default writes the embedded model shipped in the package (semitorch/models/sva_bert):
6 layers, hidden 64, 4 heads (a scaled-down version of the paper's L-6/H-512/A-8), trained
with AdamW on the verb at [MASK] plus 15% random masked-LM tokens, seeded. It then prints
the agreement accuracy by template and number of attractors on held-out sentences.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import semitorch as st
from semitorch.data.sva import generate_sva
from semitorch.nn import BertConfig, BertForMaskedLM, BertTokenizer, manual_seed
from semitorch.optim import AdamW, WarmupSchedule, clip_grad_norm_
from semitorch.sva.model import accuracy_table, agreement_scores, embedded_model_dir, encode, word_vocab, write_vocab


def main() -> None:
    """Train, evaluate and save."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(embedded_model_dir()))
    ap.add_argument("--quick", action="store_true", help="a few steps into ./sva_bert_quick (smoke test)")
    args = ap.parse_args()
    if args.quick:  # a smoke run: a few steps, written to ./sva_bert_quick (not over the embedded model)
        args.steps = 20
        args.out = str(Path("sva_bert_quick").resolve())

    manual_seed(args.seed)
    words = word_vocab()
    with tempfile.TemporaryDirectory(prefix="sva_vocab_") as work:
        write_vocab(work, words)
        tok = BertTokenizer.from_pretrained(work)
    config = BertConfig(
        vocab_size=len(words), hidden_size=64, num_hidden_layers=6, num_attention_heads=4, intermediate_size=256,
        max_position_embeddings=32, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    model = BertForMaskedLM(config)
    opt = AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    sched = WarmupSchedule(opt, warmup_steps=max(1, args.steps // 20), total_steps=args.steps, decay="linear")
    train = generate_sva(args.batch * args.steps, seed=args.seed + 1)
    test = generate_sva(2000, seed=args.seed + 2)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    model.train()
    for step in range(args.steps):
        b = encode(train[step * args.batch : (step + 1) * args.batch], tok, mlm_prob=0.15, rng=rng)
        out = model(input_ids=b.ids, attention_mask=b.mask)
        loss = st.cross_entropy(out.logits.reshape(-1, config.vocab_size), b.labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.4f}  {time.perf_counter() - t0:6.1f}s", flush=True)
    scores = agreement_scores(model, test, tok)
    table = accuracy_table(test, scores)
    print(f"held-out agreement accuracy: {(scores > 0).mean():.4f} on {len(test)} sentences")
    for n in range(4):
        c = sum(v[0] for k, v in table.items() if k[1] == n)
        t = sum(v[1] for k, v in table.items() if k[1] == n)
        if t:
            print(f"  {n} attractors: {c / t:.4f} ({t} sentences)")
    out = Path(args.out)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent if out.parent.exists() else None))
    tmp.chmod(0o755)
    model.save_pretrained(tmp)
    write_vocab(tmp, words)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"saved to {out}")


if __name__ == "__main__":
    main()
