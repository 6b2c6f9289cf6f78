"""``semitorch explain``: which pathways of a BERT masked LM carry its agreement prediction for one sentence."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

NAME = "explain"
HELP = "explain a masked-LM prediction (e.g. is vs are) by its gradient-graph paths: top paths, components, entropy"
DEFAULT_SENTENCE = "the author near the guards [MASK] ."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sentence, model, verb pair, subject, k, plot path."""
    parser.add_argument("sentence", nargs="?", default=DEFAULT_SENTENCE, help=f"with one [MASK] ('{DEFAULT_SENTENCE}')")
    parser.add_argument("--model", default=None, help="a Hugging Face BertForMaskedLM directory (default: embedded)")
    parser.add_argument("--verbs", default="is,are", help="the two candidate words at [MASK] (default 'is,are')")
    parser.add_argument("--subject", default=None, help="the subject word (default: the first noun of the lexicon)")
    parser.add_argument("-k", type=int, default=3, help="number of top paths shown from the subject (default 3)")
    parser.add_argument("--plot", default="path_flow.png", help="where to write the path-flow picture ('' for none)")


def fail(msg: str) -> int:
    """Print an error and return the exit status 2."""
    print(f"semitorch explain: error: {msg}", file=sys.stderr)
    return 2


def load(model_dir: str | None) -> tuple[Any, Any, str]:
    """The masked LM, its tokenizer and the directory they came from."""
    from ..nn import BertForMaskedLM, BertTokenizer
    from ..sva.model import embedded_model_dir

    d = Path(model_dir) if model_dir else embedded_model_dir()
    if not (d / "config.json").is_file():
        raise FileNotFoundError(f"{d} is not a model directory (no config.json)")
    model = BertForMaskedLM.from_pretrained(d)
    tok = BertTokenizer.from_pretrained(d)
    return model, tok, str(d)


def run(args: argparse.Namespace) -> int:  # noqa: C901
    """Load, predict, explain, print, draw."""
    from .. import no_grad
    from ..backprop import backward
    from ..data.sva import load_lexicon
    from ..explain import Forward, LogitDiff, condensed_table, paths_and_entropy, routes_of
    from ..paths import read_path
    from ..semirings import KBest

    t0 = time.perf_counter()
    if args.sentence.count("[MASK]") != 1:
        return fail(f"the sentence must contain exactly one [MASK], got {args.sentence!r}")
    if args.k < 1:
        return fail(f"-k must be >= 1, got {args.k}")
    if args.plot:
        pdir = Path(args.plot).resolve().parent
        if not pdir.is_dir():
            return fail(f"cannot write the picture: directory {pdir} does not exist")
    try:
        model, tok, where = load(args.model)
    except Exception as e:  # a clear one-line message for any loading problem
        return fail(f"cannot load the model: {e}")
    verbs = [v.strip() for v in args.verbs.split(",")]
    if len(verbs) != 2 or not all(verbs):
        return fail(f"--verbs needs two words separated by a comma, got {args.verbs!r}")
    ids = tok.convert_tokens_to_ids(verbs)
    for v, i in zip(verbs, ids, strict=True):
        if int(i) == tok.unk_token_id:
            return fail(f"the verb {v!r} is not in the model's vocabulary (one token each)")
    enc = tok(args.sentence)
    input_ids = np.asarray(enc["input_ids"], dtype=np.int64).reshape(-1)
    words = list(tok.convert_ids_to_tokens(input_ids))
    if len(input_ids) > model.config.max_position_embeddings:
        return fail(
            f"the sentence has {len(input_ids)} tokens, more than the model's {model.config.max_position_embeddings}"
        )
    unknown = [w for w, i in zip(words, input_ids, strict=True) if int(i) == tok.unk_token_id]
    if unknown:
        print(f"warning: {len(unknown)} word piece(s) are not in the model's vocabulary and read as [UNK]")
    mask = words.index("[MASK]")
    with no_grad():
        logits = model(input_ids=input_ids[None]).logits.numpy()[0, mask]
    z = logits - logits.max()
    p = np.exp(z) / np.exp(z).sum()
    pair = np.array([p[int(ids[0])], p[int(ids[1])]])
    pred = int(np.argmax([logits[int(ids[0])], logits[int(ids[1])]]))
    good, bad = verbs[pred], verbs[1 - pred]
    gi, bi = int(ids[pred]), int(ids[1 - pred])
    if args.subject:
        if args.subject not in words:
            return fail(f"the subject {args.subject!r} is not a token of the sentence {words}")
        subj = words.index(args.subject)
    else:
        nouns = {w for pr in load_lexicon()["nouns"] for w in pr}
        subj = next((i for i, w in enumerate(words) if w in nouns), 1)

    print(f"model: {where}")
    print(f"sentence: {' '.join(words)}")
    print(
        f"prediction at [MASK]: {good!r} (p={pair[pred]:.3f}) over {bad!r} (p={pair[1 - pred]:.3f}); "
        f"renormalised over the pair: {good} {pair[pred] / pair.sum():.3f}"
    )
    target = LogitDiff(mask, gi, bi, (good, bad))
    fw = Forward.run(model, input_ids, target, tokens=words)
    print(f"quantity explained: {target.describe()} = {fw.quantity.item():.4f}\n")
    paths, ent = paths_and_entropy(fw, 1)
    cfg = model.config
    routes = routes_of(fw, cfg.num_hidden_layers, cfg.hidden_size // cfg.num_attention_heads, paths)
    kres = backward(fw.quantity, [fw.leaf], KBest(args.k), keep=True)
    kv = fw.token_values(kres.values[0])[subj].reshape(-1)  # (C * k,) log weights
    order = [int(o) for o in np.argsort(-kv, kind="stable")[: args.k] if kv[o] > -np.inf]
    base = subj * kv.size
    print(f"top {len(order)} path(s) from the subject {words[subj]!r} (token {subj}):")
    for r, o in enumerate(order, 1):
        path = read_path(kres, fw.leaf, base + o)
        print(f"\n#{r}: weight {path.weight:.4g}, {len(path.steps)} edges, from embedding dimension {path.index[-1]}")
        print(condensed_table(path, words, cfg.hidden_size // cfg.num_attention_heads))
    print()
    print(routes.table())
    print("  (K/Q/V: the path enters that projection, hN = head N; S: the skip connection)\n")
    print(ent.table())
    print(
        "\nHow to read this: a path's weight is the product of |local derivatives| along it; the best path is the "
        "single route of largest weight from a token to the quantity. Entropy (nats) measures how spread the "
        "token's influence is over all its paths: high means many routes share it."
    )
    if args.plot:
        from ..viz import path_flow

        try:
            out = path_flow(routes, args.plot, title=f"{' '.join(words[1:-1])}: {target.describe()}", highlight=[subj])
        except ImportError as e:
            return fail(str(e))
        print(f"\nwrote the path-flow picture to {out}")
    print(f"({time.perf_counter() - t0:.1f}s)")
    return 0
