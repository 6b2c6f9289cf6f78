"""The embedded subject–verb agreement model: where it lives, how it is built, trained and evaluated.

The model is a small BERT masked LM trained by ``examples/train_sva_bert.py`` on sentences
from :mod:`semitorch.data.sva`, shipped in ``semitorch/models/sva_bert`` (config.json,
model.safetensors, vocab.txt) so that nothing needs a download.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..data.sva import SVAExample, vocabulary

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def embedded_model_dir() -> Path:
    """The directory of the model shipped inside the package."""
    return Path(str(resources.files("semitorch").joinpath("models", "sva_bert")))


def word_vocab(lexicon: dict[str, Any] | None = None) -> list[str]:
    """The embedded model's vocabulary: BERT's special tokens, then every word of the generator."""
    return SPECIALS + vocabulary(lexicon)


def write_vocab(directory: str | os.PathLike[str], words: Sequence[str]) -> Path:
    """Write ``vocab.txt`` (one token per line, WordPiece format) into ``directory``."""
    p = Path(directory) / "vocab.txt"
    tmp = p.with_name(".tmp-vocab.txt")
    tmp.write_text("\n".join(words) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


@dataclass
class Batch:
    """Token ids (B, T), attention mask (B, T), MLM labels (B, T; -100 = ignored), [MASK] positions (B,)."""

    ids: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    mask_pos: np.ndarray
    correct: np.ndarray
    wrong: np.ndarray


def encode(
    examples: Sequence[SVAExample],
    tok: Any,
    mlm_prob: float = 0.0,
    rng: np.random.Generator | None = None,
) -> Batch:
    """Encode items as ``[CLS] words [SEP]`` padded to the longest; label the masked verb.

    With ``mlm_prob`` > 0 other word tokens are also masked (BERT's 80/10/10 rule) and
    labelled, for the masked-LM training objective.
    """
    vocab = tok.convert_tokens_to_ids
    seqs = [["[CLS]", *e.tokens, "[SEP]"] for e in examples]
    T = max(len(s) for s in seqs)
    B = len(seqs)
    ids = np.full((B, T), tok.pad_token_id, dtype=np.int64)
    am = np.zeros((B, T), dtype=np.int64)
    labels = np.full((B, T), -100, dtype=np.int64)
    mpos = np.zeros(B, dtype=np.int64)
    good = np.zeros(B, dtype=np.int64)
    bad = np.zeros(B, dtype=np.int64)
    for i, (e, s) in enumerate(zip(examples, seqs, strict=True)):
        row = [int(vocab(w)) for w in s]
        if tok.unk_token_id in row:
            unknown = [w for w, r in zip(s, row, strict=True) if r == tok.unk_token_id]
            raise ValueError(f"SVA: words {unknown} are not in the model's vocabulary")
        ids[i, : len(row)] = row
        am[i, : len(row)] = 1
        mpos[i] = e.mask + 1
        good[i], bad[i] = int(vocab(e.correct)), int(vocab(e.wrong))
        labels[i, mpos[i]] = good[i]
    if mlm_prob > 0:
        rng = rng or np.random.default_rng()
        special = np.isin(ids, [tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id])
        pick = (rng.random(ids.shape) < mlm_prob) & ~special
        labels = np.where(pick, ids, labels)
        r = rng.random(ids.shape)
        ids = np.where(pick & (r < 0.8), tok.mask_token_id, ids)
        rand = rng.integers(len(SPECIALS), tok.vocab_size, ids.shape)
        ids = np.where(pick & (r >= 0.8) & (r < 0.9), rand, ids)
    return Batch(ids, am, labels, mpos, good, bad)


def agreement_scores(model: Any, examples: Sequence[SVAExample], tok: Any, batch_size: int = 128) -> np.ndarray:
    """logit(correct verb) − logit(wrong verb) at [MASK] for each item (no tape recorded)."""
    from ..tape import no_grad  # noqa: PLC0415

    out = []
    model.eval()
    with no_grad():
        for s in range(0, len(examples), batch_size):
            b = encode(examples[s : s + batch_size], tok)
            logits = model(input_ids=b.ids, attention_mask=b.mask).logits.numpy()  # (B, T, V)
            rows = logits[np.arange(len(b.ids)), b.mask_pos]  # (B, V)
            out.append(rows[np.arange(len(b.ids)), b.correct] - rows[np.arange(len(b.ids)), b.wrong])
    return np.concatenate(out) if out else np.zeros(0)


def accuracy_table(examples: Iterable[SVAExample], scores: np.ndarray) -> dict[tuple[str, int], tuple[int, int]]:
    """(template, n_attractors) -> (correct, total)."""
    table: dict[tuple[str, int], tuple[int, int]] = {}
    for e, s in zip(examples, scores, strict=True):
        c, n = table.get((e.template, e.n_attractors), (0, 0))
        table[(e.template, e.n_attractors)] = (c + int(s > 0), n + 1)
    return table


def check_vocab(tok: Any, examples: Sequence[Any]) -> None:
    """Raise ValueError naming the words of ``examples`` that are not single tokens of the vocabulary."""
    words = set()
    for e in examples:
        words.update(e.tokens)
        words.update((e.correct, e.wrong))
    words.discard("[MASK]")
    missing = sorted(w for w in words if int(tok.convert_tokens_to_ids(w)) == tok.unk_token_id)
    if missing:
        raise ValueError(f"words not in the model's vocabulary: {missing[:20]}{' ...' if len(missing) > 20 else ''}")


def lexicon_for(tok: Any, lexicon: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The lexicon restricted to words that are single tokens of ``tok``'s vocabulary, and the dropped words.

    A noun or verb pair is kept only if both forms are known. Raises ValueError naming the
    category when nothing of it is left (e.g. no verb pair in the vocabulary).
    """
    from ..data.sva import load_lexicon  # noqa: PLC0415

    lex = dict(lexicon if lexicon is not None else load_lexicon())

    def known(w: str) -> bool:
        return int(tok.convert_tokens_to_ids(w)) != tok.unk_token_id

    dropped: list[str] = []
    for key in ("nouns", "intransitive", "transitive"):
        keep = [p for p in lex[key] if all(known(w) for w in p)]
        dropped += [w for p in lex[key] if p not in keep for w in p if not known(w)]
        if not keep:
            raise ValueError(f"no {key} pair of the SVA lexicon is in the model's vocabulary: {lex[key][:5]} ...")
        lex[key] = keep
    keep_p = [w for w in lex["prepositions"] if known(w)]
    dropped += [w for w in lex["prepositions"] if not known(w)]
    if not keep_p:
        raise ValueError("no preposition of the SVA lexicon is in the model's vocabulary")
    lex["prepositions"] = keep_p
    for key in ("determiner", "complementizer"):
        w = lex.get(key, "the" if key == "determiner" else "that")
        if not known(w):
            raise ValueError(f"the {key} {w!r} is not in the model's vocabulary")
    return lex, sorted(set(dropped))
