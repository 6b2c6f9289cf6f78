"""Subject–verb agreement sentences from templates (Marvin & Linzen 2018 style), verb masked.

Templates: ``simple`` ("the author [MASK] ."), ``pp`` (across prepositional phrases:
"the author near the guards [MASK] ."), ``src`` (across a subject relative clause:
"the author that likes the guards [MASK] ."), ``orc`` (across an object relative
clause: "the author that the guards like [MASK] ."). Intervening nouns are drawn
singular or plural; an *attractor* is an intervening noun whose number differs
from the subject's (Linzen, Dupoux & Goldberg 2016). ``pp`` chains up to three
phrases, so 0–3 attractors; relative clauses contain one noun and may be followed by
further prepositional phrases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

TEMPLATES = ("simple", "pp", "src", "orc")


@dataclass(frozen=True)
class SVAExample:
    """One agreement item.

    ``tokens``: the words with the verb replaced by ``[MASK]``; ``correct``/``wrong``:
    the verb forms that agree / do not agree with the subject; ``subject``: index of
    the subject noun; ``attractors``: indices of intervening nouns of the other number;
    ``nouns``: indices of all intervening nouns; ``mask``: index of ``[MASK]``.
    """

    tokens: tuple[str, ...]
    correct: str
    wrong: str
    template: str
    plural: bool
    subject: int
    mask: int
    attractors: tuple[int, ...] = field(default=())
    nouns: tuple[int, ...] = field(default=())

    @property
    def text(self) -> str:
        """The sentence as one string (with ``[MASK]``)."""
        return " ".join(self.tokens)

    @property
    def n_attractors(self) -> int:
        """Number of attractors."""
        return len(self.attractors)


def load_lexicon(path: str | None = None) -> dict[str, Any]:
    """The lexicon (nouns, verbs, prepositions) from ``path`` or the one shipped in the package."""
    if path is None:
        text = resources.files("semitorch.data").joinpath("sva_lexicon.json").read_text(encoding="utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    lex = json.loads(text)
    for key in ("nouns", "intransitive", "transitive", "prepositions"):
        if not lex.get(key):
            raise ValueError(f"SVA lexicon {path or '(built-in)'} has no entries under {key!r}")
    return lex


def _vocab(lex: dict[str, Any]) -> list[str]:
    words = {lex.get("determiner", "the"), lex.get("complementizer", "that"), "."}
    for key in ("nouns", "intransitive", "transitive"):
        for pair in lex[key]:
            words.update(pair)
    words.update(lex["prepositions"])
    return sorted(words)


def generate_sva(
    n: int,
    seed: int = 0,
    templates: tuple[str, ...] = TEMPLATES,
    max_attractors: int = 3,
    lexicon: dict[str, Any] | None = None,
) -> list[SVAExample]:
    """``n`` agreement items, balanced over templates, subject number and attractor counts (seeded).

    >>> ex = generate_sva(4, seed=1)[0]
    >>> "[MASK]" in ex.tokens and ex.correct != ex.wrong
    True
    """
    if n < 0:
        raise ValueError(f"generate_sva: n must be >= 0, got {n}")
    bad = [t for t in templates if t not in TEMPLATES]
    if bad or not templates:
        raise ValueError(f"generate_sva: unknown templates {bad or templates}; choose from {TEMPLATES}")
    lex = lexicon if lexicon is not None else load_lexicon()
    rng = np.random.default_rng(seed)
    the, that = lex.get("determiner", "the"), lex.get("complementizer", "that")
    out: list[SVAExample] = []
    for i in range(n):
        tpl = templates[i % len(templates)]
        plural = bool((i // len(templates)) % 2)
        n_nouns = {"simple": 0, "pp": 1 + (i // (2 * len(templates))) % 3, "src": 1, "orc": 1}[tpl]
        if tpl in ("src", "orc"):
            n_nouns += int(rng.integers(0, 3))  # relative clause followed by 0-2 PPs
        n_nouns = min(n_nouns, max(max_attractors, 0)) if tpl in ("pp",) else n_nouns
        want_attr = int(rng.integers(0, n_nouns + 1)) if n_nouns else 0
        want_attr = min(want_attr, max_attractors)
        attr_slots = set(rng.choice(n_nouns, size=want_attr, replace=False).tolist()) if want_attr else set()
        subj = lex["nouns"][int(rng.integers(len(lex["nouns"])))][int(plural)]
        verb = lex["intransitive"][int(rng.integers(len(lex["intransitive"])))]
        toks: list[str] = [the, subj]
        nouns: list[int] = []
        attrs: list[int] = []

        def add_noun(slot: int) -> None:
            is_attr = slot in attr_slots
            num = (not plural) if is_attr else plural
            pair = lex["nouns"][int(rng.integers(len(lex["nouns"])))]
            toks.extend([the, pair[int(num)]])
            nouns.append(len(toks) - 1)
            if is_attr:
                attrs.append(len(toks) - 1)

        slot = 0
        if tpl == "src":
            tv = lex["transitive"][int(rng.integers(len(lex["transitive"])))]
            toks += [that, tv[int(plural)]]
            add_noun(slot)
            slot += 1
        elif tpl == "orc":
            toks.append(that)
            add_noun(slot)
            tv = lex["transitive"][int(rng.integers(len(lex["transitive"])))]
            toks.append(tv[int(0 in attr_slots) ^ int(plural)])  # the RC verb agrees with the RC subject
            slot += 1
        while slot < n_nouns:
            toks.append(lex["prepositions"][int(rng.integers(len(lex["prepositions"])))])
            add_noun(slot)
            slot += 1
        mask = len(toks)
        toks += ["[MASK]", "."]
        out.append(
            SVAExample(
                tokens=tuple(toks),
                correct=verb[int(plural)],
                wrong=verb[1 - int(plural)],
                template=tpl,
                plural=plural,
                subject=1,
                mask=mask,
                attractors=tuple(attrs),
                nouns=tuple(nouns),
            )
        )
    return out


def vocabulary(lexicon: dict[str, Any] | None = None) -> list[str]:
    """Every word the generator can emit (for building a word-level vocabulary)."""
    return _vocab(lexicon if lexicon is not None else load_lexicon())
