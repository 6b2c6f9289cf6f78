"""Per-sentence subject–verb agreement analysis and its aggregation over a data set.

For one item: the agreement score (logit(correct) − logit(wrong) at [MASK]), the route of
every token's best path through every layer (K/Q/V/skip per head, FFN/skip), and the path
entropy per token and for the sentence. :class:`SVAReport` aggregates items by token role
(subject, attractor, [MASK], all tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.sva import SVAExample
from ..explain import ComponentTable, Forward, LogitDiff, paths_and_entropy, routes_of
from ..explain.core import ComponentRoutes

ROLES = ("subject", "attractor", "[MASK]", "all tokens")


@dataclass
class ItemResult:
    """What one sentence gives: score, routes (as plain tuples), entropies."""

    index: int
    template: str
    n_attractors: int
    length: int
    score: float
    routes: list[tuple[Any, ...]]  # LayerRoute fields: (layer, token, block, component, head, weight, position)
    roles: dict[int, list[str]]
    token_entropy: list[float]
    sentence_entropy: float


def roles_of(ex: SVAExample) -> dict[int, list[str]]:
    """Token index (with [CLS] at 0) -> its roles."""
    n = len(ex.tokens) + 2
    roles: dict[int, list[str]] = {i: ["all tokens"] for i in range(1, n - 1)}
    roles[ex.subject + 1].append("subject")
    roles[ex.mask + 1].append("[MASK]")
    for a in ex.attractors:
        roles[a + 1].append("attractor")
    return roles


def analyse_item(model: Any, tok: Any, ex: SVAExample, index: int = 0) -> ItemResult:
    """Forward once; one MaxProduct and one Entropy backward pass; routes of every token's best path."""
    words = ["[CLS]", *ex.tokens, "[SEP]"]
    ids = np.asarray([int(tok.convert_tokens_to_ids(w)) for w in words], dtype=np.int64)
    if tok.unk_token_id in ids.tolist():
        bad = [w for w, i in zip(words, ids, strict=True) if i == tok.unk_token_id]
        raise ValueError(f"SVA: words {bad} are not in the model's vocabulary")
    c, w = int(tok.convert_tokens_to_ids(ex.correct)), int(tok.convert_tokens_to_ids(ex.wrong))
    target = LogitDiff(ex.mask + 1, c, w, (ex.correct, ex.wrong))
    fw = Forward.run(model, ids, target, tokens=words)
    cfg = model.config
    paths, ent = paths_and_entropy(fw, 1)
    routes: ComponentRoutes = routes_of(fw, cfg.num_hidden_layers, cfg.hidden_size // cfg.num_attention_heads, paths)
    return ItemResult(
        index=index,
        template=ex.template,
        n_attractors=ex.n_attractors,
        length=len(ex.tokens),
        score=float(fw.quantity.item()),
        routes=[(r.layer, r.token, r.block, r.component, r.head, r.weight, r.position) for r in routes.routes],
        roles=roles_of(ex),
        token_entropy=[float(h) for h in ent.entropy],
        sentence_entropy=float(ent.sentence_entropy),
    )


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); nan for fewer than 3 points or no variance."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    if a.size < 3:
        return float("nan")

    def rank(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="stable")
        r = np.empty(v.size)
        r[order] = np.arange(v.size)
        for u in np.unique(v):  # average ranks of ties
            m = v == u
            if m.sum() > 1:
                r[m] = r[m].mean()
        return r

    ra, rb = rank(a), rank(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


@dataclass
class SVAReport:
    """Aggregate of :class:`ItemResult` s: accuracy, component shares by role, entropy statistics."""

    n_layers: int
    items: list[ItemResult] = field(default_factory=list)

    def add(self, item: ItemResult) -> None:
        """Add one sentence's result."""
        self.items.append(item)

    def table(self) -> ComponentTable:
        """The component table over all items."""
        from ..explain.core import LayerRoute  # noqa: PLC0415

        t = ComponentTable(self.n_layers)
        for it in self.items:
            cr = ComponentRoutes([], self.n_layers, [LayerRoute(*r) for r in it.routes])
            t.add(cr, it.roles)
        return t

    def accuracy(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(template, attractors) -> (correct, total)."""
        out: dict[tuple[str, int], tuple[int, int]] = {}
        for it in self.items:
            c, n = out.get((it.template, it.n_attractors), (0, 0))
            out[(it.template, it.n_attractors)] = (c + int(it.score > 0), n + 1)
        return out

    def accuracy_by_attractors(self) -> dict[int, float]:
        """Accuracy per number of attractors."""
        acc: dict[int, list[int]] = {}
        for it in self.items:
            acc.setdefault(it.n_attractors, []).append(int(it.score > 0))
        return {k: float(np.mean(v)) for k, v in sorted(acc.items())}

    def entropy_correlations(self) -> dict[str, float]:
        """Spearman ρ of sentence entropy with length and with the number of attractors (within length bins)."""
        ent = [it.sentence_entropy for it in self.items]
        out = {
            "entropy~length": spearman([it.length for it in self.items], ent),
            "entropy~attractors": spearman([it.n_attractors for it in self.items], ent),
        }
        rhos, ws = [], []
        for L in sorted({it.length for it in self.items}):
            grp = [it for it in self.items if it.length == L]
            r = spearman([it.n_attractors for it in grp], [it.sentence_entropy for it in grp])
            if not np.isnan(r):
                rhos.append(r)
                ws.append(len(grp))
        out["entropy~attractors (within length bins, weighted mean)"] = (
            float(np.average(rhos, weights=ws)) if rhos else float("nan")
        )
        return out
