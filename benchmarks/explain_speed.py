"""Speed of the explain API at the paper's scale, and of `semitorch sva` on the embedded model.

1. Top path + entropy for every token of a 40-token sentence through a 6-layer, hidden-512,
   8-head BERT masked LM (google/bert_uncased_L-6_H-512_A-8's configuration, random weights,
   vocabulary 30522), quantity logit(correct) − logit(wrong) at [MASK]: one forward, one
   MaxProduct backward with backpointers (+ reading 40 paths), one Entropy backward.
   Target: <= 2 s on a 2-core machine.
2. `semitorch sva --n N` on the embedded model (default N = 1000). Target: <= 10 minutes.

    python benchmarks/explain_speed.py [--repeats 3] [--sva-n 1000] [--workers 1] [--skip-sva]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from semitorch.explain import Forward, LogitDiff, entropy_per_token, paths_and_entropy, top_paths_per_token
from semitorch.nn import BertConfig, BertForMaskedLM, manual_seed


def main() -> None:
    """Run both measurements and print them next to the targets."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sva-n", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--skip-sva", action="store_true")
    ap.add_argument("--serial", action="store_true", help="run the two backward passes one after the other")
    args = ap.parse_args()

    manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                     intermediate_size=2048, max_position_embeddings=512)  # fmt: skip
    model = BertForMaskedLM(cfg).eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, 40)
    ids[0], ids[-1], ids[20] = 101, 102, 103
    target = LogitDiff(20, 2003, 2024)
    times, parts = [], []
    for _ in range(args.repeats + 1):
        t0 = time.perf_counter()
        fw = Forward.run(model, ids, target)
        t1 = time.perf_counter()
        if args.serial:
            paths = top_paths_per_token(fw, 1)
            t2 = time.perf_counter()
            ent = entropy_per_token(fw)
        else:  # the two backward passes in two threads (what the explain API does)
            paths, ent = paths_and_entropy(fw, 1)
            t2 = time.perf_counter()
        t3 = time.perf_counter()
        times.append(t3 - t0)
        parts.append((t1 - t0, t2 - t1, t3 - t2))
    times, parts = times[1:], parts[1:]  # the first run warms up the kernels
    med = statistics.median(times)
    f, p, e = (statistics.median(x[i] for x in parts) for i in range(3))
    assert len(paths.paths) == 40 and np.isfinite(ent.entropy).all()
    print(f"BERT L6/H512/A8, 40 tokens: top path + entropy for every token: {med:.2f} s (median of {len(times)})")
    if args.serial:
        print(f"  forward {f:.2f} s, MaxProduct backward + 40 paths {p:.2f} s, Entropy backward {e:.2f} s")
    else:
        print(f"  forward {f:.2f} s, MaxProduct (+ 40 paths) and Entropy backward in two threads {p:.2f} s")
    print(f"  target <= 2 s: {'OK' if med <= 2 else 'MISSED'}")

    if not args.skip_sva:
        from semitorch.cli import main as cli

        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            rc = cli(["sva", "--n", str(args.sva_n), "--out", d, "--workers", str(args.workers)])
            dt = time.perf_counter() - t0
        print(f"semitorch sva --n {args.sva_n} --workers {args.workers}: {dt:.1f} s (exit {rc}); "
              f"target <= 600 s: {'OK' if dt <= 600 and rc == 0 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
