"""Captum-style explainers built on semiring backprop: top paths, path entropy, component shares.

Each explainer runs ONE forward pass of the model from a leaf that holds the input's
embeddings, takes a scalar quantity of interest (a :class:`~semitorch.explain.targets.Target`),
and answers with one backward pass per semiring:

- :class:`TopPaths`: the best (or k best) path from every input token to the quantity;
  a token is a super-node over its embedding dimensions (its best path is the best
  over its dimensions).
- :class:`PathEntropy`: the entropy of the distribution over paths per token and per
  sentence (tokens and the sentence as super-nodes joined by weight-1 edges).
- :class:`ComponentShares`: for each token and layer of a BERT, through which of Key,
  Query, Value or the skip connection the best path leaves the attention block's input
  (and through which head), and whether it enters the feed-forward block or skips it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import backend, kernels
from ..backprop import backward
from ..paths import Path, read_path
from ..semirings.entropy import Entropy
from ..semirings.kbest import KBest
from ..semirings.maxproduct import MaxProduct
from ..tape import topological_order
from ..tensor import Tensor
from .targets import Target, as_target

COMPONENTS = ("key", "query", "value", "skip")
FFN_COMPONENTS = ("ffn", "skip")


def _word_embeddings(model: Any) -> Any:
    """The model's word-embedding table module (``...embeddings.word_embeddings``)."""
    for name, m in model.named_modules():
        if name == "word_embeddings" or name.endswith("embeddings.word_embeddings"):
            return m
    raise TypeError(
        f"{type(model).__name__} has no embeddings.word_embeddings module: pass float inputs "
        "(the embeddings themselves) instead of token ids"
    )


@dataclass
class Forward:
    """One forward pass: the input leaf (1, T, C), the model output and the scalar quantity."""

    leaf: Tensor
    output: Any
    quantity: Tensor
    target: Target
    n_tokens: int
    valid: np.ndarray  # (T,) bool: real tokens (not padding)
    tokens: list[str]

    @classmethod
    def run(
        cls,
        model: Any,
        inputs: Any,
        target: Any,
        attention_mask: Any = None,
        token_type_ids: Any = None,
        tokens: Sequence[str] | None = None,
    ) -> Forward:
        """Run the model (in eval mode) from a leaf holding the inputs' embeddings."""
        _check_model("explain", model)
        tgt = as_target(target)
        if hasattr(model, "eval"):
            model.eval()
        x = inputs.data if isinstance(inputs, Tensor) else np.asarray(inputs)
        if x.dtype.kind in "iu":
            ids = x[None] if x.ndim == 1 else x
            if ids.ndim != 2 or ids.shape[0] != 1:
                raise ValueError(f"explain: token ids must have shape (T,) or (1, T), got {tuple(x.shape)}")
            table = _word_embeddings(model).weight.data
            leaf = Tensor(table[ids].copy(), requires_grad=True)  # (1, T, C)
            am = None if attention_mask is None else np.asarray(attention_mask).reshape(1, -1)
            out = model(inputs_embeds=leaf, attention_mask=am, token_type_ids=token_type_ids, output_hidden_states=True)
            valid = np.ones(ids.shape[1], bool) if am is None else am[0].astype(bool)
        else:
            arr = x[None] if x.ndim == 1 else x
            leaf = Tensor(arr.astype(arr.dtype if arr.dtype.kind == "f" else np.float64), requires_grad=True)
            out = model(leaf)
            valid = np.ones(leaf.shape[1] if leaf.ndim > 1 else 1, bool)
        q = tgt(out)
        if not isinstance(q, Tensor) or q.size != 1:
            raise ValueError(f"explain: the target must give a scalar Tensor, got shape {getattr(q, 'shape', None)}")
        if not q.requires_grad:
            raise ValueError("explain: the quantity does not depend on the inputs (no tape from the inputs)")
        T = leaf.shape[1] if leaf.ndim > 1 else 1
        toks = list(tokens) if tokens is not None else [f"t{i}" for i in range(T)]
        if len(toks) != T:
            raise ValueError(f"explain: {len(toks)} token labels for {T} tokens")
        return cls(leaf, out, q, tgt, T, valid, toks)

    def token_values(self, values: Any) -> np.ndarray:
        """Semiring values at the leaf as (T, C, *vshape) on the host."""
        v = backend.to_numpy(values)
        return v.reshape((self.n_tokens, -1) + v.shape[self.leaf.ndim :])


# ---- top paths -----------------------------------------------------------------------------


@dataclass
class TokenPaths:
    """Best path(s) per token: ``weights[t]`` the best weight, ``paths[t]`` up to k :class:`Path` s."""

    tokens: list[str]
    weights: np.ndarray
    paths: list[list[Path]]
    target: str

    def table(self) -> str:
        """One line per token: its best path weight and where the path first leaves the token's position."""
        rows = [f"best path weight per token to {self.target}:"]
        w = max(len(t) for t in self.tokens) if self.tokens else 5
        for i, (t, wt, ps) in enumerate(zip(self.tokens, self.weights, self.paths, strict=True)):
            where = "no path" if not ps or not ps[0].steps else "stays at its own position"
            if ps and ps[0].steps:
                for s in ps[0].steps:
                    pos = _position(s.index)
                    if pos is not None and pos != i:
                        name = self.tokens[pos] if pos < len(self.tokens) else str(pos)
                        where = f"moves to {pos}:{name} in {s.module or s.op}"
                        break
            rows.append(f"  {t.ljust(w)}  {wt:10.4g}  ({len(ps[0].steps) if ps else 0} edges; {where})")
        return "\n".join(rows)


def _check_model(owner: str, model: Any) -> None:
    """A TypeError naming ``owner`` unless ``model`` can be called (a semitorch Module or a function)."""
    if not callable(model):
        raise TypeError(
            f"{owner}: model must be a semitorch Module (e.g. nn.BertForMaskedLM) or a callable, "
            f"got {type(model).__name__}"
        )


class TopPaths:
    """Best paths from every input token to a quantity (Captum-style: ``.attribute(inputs, target=...)``).

    ``k`` > 1 uses the k-best semiring and returns up to k paths per token.
    """

    def __init__(self, model: Any, k: int = 1) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"TopPaths: k must be a positive int, got {k!r}")
        _check_model("TopPaths", model)
        self.model = model
        self.k = k

    def attribute(
        self, inputs: Any, target: Any, attention_mask: Any = None, tokens: Sequence[str] | None = None
    ) -> TokenPaths:
        """Run the forward and one backward pass; read each token's best path(s) from backpointers."""
        fw = Forward.run(self.model, inputs, target, attention_mask, tokens=tokens)
        return top_paths_per_token(fw, self.k)


def top_paths_per_token(fw: Forward, k: int = 1) -> TokenPaths:
    """The k best paths of every token of an existing forward pass."""
    sr = MaxProduct() if k == 1 else KBest(k)
    res = backward(fw.quantity, [fw.leaf], sr, keep=True)
    vals = fw.token_values(res.values[0])  # (T, C) or (T, C, k) log weights
    V = k if k > 1 else 1
    C = vals.shape[1]
    weights = np.zeros(fw.n_tokens)
    paths: list[list[Path]] = []
    for t in range(fw.n_tokens):
        flat = vals[t].reshape(-1)  # C * V entries
        order = np.argsort(-flat, kind="stable")[:k]
        order = [int(o) for o in order if flat[o] > -np.inf]
        base = t * C * V
        ps = [read_path(res, fw.leaf, base + o) for o in order] if fw.valid[t] else []
        paths.append(ps)
        weights[t] = ps[0].weight if ps else 0.0
    return TokenPaths(fw.tokens, weights, paths, fw.target.describe())


# ---- entropy -------------------------------------------------------------------------------


def _combine(L: np.ndarray, E: np.ndarray) -> tuple[float, float]:
    """Super-node over entries with values ⟨L, E⟩: (log Z, entropy)."""
    L = L.reshape(-1).astype(np.float64)
    E = E.reshape(-1).astype(np.float64)
    ok = L > -np.inf
    if not ok.any():
        return -np.inf, 0.0
    m = L[ok].max()
    w = np.exp(L[ok] - m)
    Lt = m + np.log(w.sum())
    Et = float((w * E[ok]).sum() / w.sum())
    return float(Lt), float(Lt + Et)


@dataclass
class TokenEntropy:
    """Entropy (nats) of the path distribution per token and for the sentence, with log path mass."""

    tokens: list[str]
    entropy: np.ndarray
    log_mass: np.ndarray
    sentence_entropy: float
    sentence_log_mass: float
    target: str

    def table(self) -> str:
        """One line per token."""
        w = max(len(t) for t in self.tokens) if self.tokens else 5
        rows = [f"path entropy (nats) to {self.target}: sentence {self.sentence_entropy:.4f}"]
        rows += [
            f"  {t.ljust(w)}  H={h:8.4f}  log Z={z:9.4f}"
            for t, h, z in zip(self.tokens, self.entropy, self.log_mass, strict=True)
        ]
        return "\n".join(rows)


class PathEntropy:
    """Entropy of p(path) ∝ Π|w| from each token (a super-node over its dimensions) and the sentence."""

    def __init__(self, model: Any) -> None:
        _check_model(type(self).__name__, model)
        self.model = model

    def attribute(
        self, inputs: Any, target: Any, attention_mask: Any = None, tokens: Sequence[str] | None = None
    ) -> TokenEntropy:
        """Run the forward and one Entropy backward pass."""
        fw = Forward.run(self.model, inputs, target, attention_mask, tokens=tokens)
        return entropy_per_token(fw)


def entropy_per_token(fw: Forward) -> TokenEntropy:
    """Per-token and sentence entropy of an existing forward pass."""
    res = backward(fw.quantity, [fw.leaf], Entropy())
    v = fw.token_values(res.values[0])  # (T, C, 2): ⟨log Z, E⟩ per dimension
    H = np.zeros(fw.n_tokens)
    Z = np.full(fw.n_tokens, -np.inf)
    for t in range(fw.n_tokens):
        if fw.valid[t]:
            Z[t], H[t] = _combine(v[t, :, 0], v[t, :, 1])
    ok = fw.valid
    sz, sh = _combine(v[ok, :, 0], v[ok, :, 1])
    return TokenEntropy(fw.tokens, H, Z, sh, sz, fw.target.describe())


def paths_and_entropy(fw: Forward, k: int = 1, parallel: bool = True) -> tuple[TokenPaths, TokenEntropy]:
    """Best paths and entropies of every token from one forward pass.

    The MaxProduct/KBest and the Entropy backward passes are independent; with
    ``parallel`` (and at least 2 CPUs) they run in two threads, numpy releasing the GIL,
    with BLAS (threadpoolctl, when installed) and the numba kernels
    (:func:`semitorch.kernels.one_thread`) held to one thread each so that they do not
    oversubscribe the cores.
    """
    if not parallel or (os.cpu_count() or 1) < 2:
        return top_paths_per_token(fw, k), entropy_per_token(fw)
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    try:
        from threadpoolctl import threadpool_limits  # noqa: PLC0415
    except ImportError:  # pragma: no cover - optional
        threadpool_limits = None
    limit = threadpool_limits(1, user_api="blas") if threadpool_limits else contextlib.nullcontext()

    def alone(f: Any, *args: Any) -> Any:
        with kernels.one_thread():  # the two passes are the parallelism: no kernel splits further
            return f(*args)

    with limit, ThreadPoolExecutor(2) as ex:
        a = ex.submit(alone, top_paths_per_token, fw, k)
        b = ex.submit(alone, entropy_per_token, fw)
        return a.result(), b.result()


# ---- component shares ----------------------------------------------------------------------


@dataclass
class LayerRoute:
    """Where a token's best path leaves one block: component, head (Q/K/V only), weight."""

    layer: int
    token: int
    block: str  # "attention" or "ffn"
    component: str
    head: int | None
    weight: float
    position: int = -1  # the sequence position the path is at when it leaves the block's input


@dataclass
class ComponentRoutes:
    """Routes of every token's best path at every layer's attention and feed-forward inputs."""

    tokens: list[str]
    n_layers: int
    routes: list[LayerRoute] = field(default_factory=list)
    target: str = ""

    def attention(self, layer: int, token: int) -> LayerRoute:
        """The attention-block route of ``token`` at ``layer``."""
        for r in self.routes:
            if r.layer == layer and r.token == token and r.block == "attention":
                return r
        raise KeyError(f"no attention route for token {token} at layer {layer}")

    def table(self) -> str:
        """Token × layer grid of the attention-block components (K/Q/V/S), heads in brackets."""
        short = {"key": "K", "query": "Q", "value": "V", "skip": "S"}
        w = max(len(t) for t in self.tokens) if self.tokens else 5
        head = " ".join(f"L{i:<5d}" for i in range(self.n_layers))
        rows = [f"component of each token's best path at each layer's attention input ({self.target})"]
        rows.append(f"  {''.ljust(w)}  {head}")
        for t, name in enumerate(self.tokens):
            cells = []
            for layer in range(self.n_layers):
                try:
                    r = self.attention(layer, t)
                except KeyError:
                    cells.append("-".ljust(6))
                    continue
                c = short[r.component] + (f"h{r.head}" if r.head is not None else "")
                cells.append(c.ljust(6))
            rows.append(f"  {name.ljust(w)}  {' '.join(cells)}")
        return "\n".join(rows)


def _layer_of(module: str) -> int | None:
    parts = module.split(".")
    for i, p in enumerate(parts[:-1]):
        if p == "layer" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def _classify(node: Any, slot: int, block: str) -> str | None:
    mod = node.module
    if block == "attention":
        for c in ("key", "query", "value"):
            if mod.endswith(f"attention.self.{c}"):
                return c
        if mod.endswith("attention.output") and node.op == "add":
            return "skip"
    else:
        if mod.endswith("intermediate.dense"):
            return "ffn"
        if mod.endswith(".output") and not mod.endswith("attention.output") and node.op == "add":
            return "skip"
    return None


def block_inputs(quantity: Tensor, n_layers: int) -> tuple[list[Tensor | None], list[Tensor | None]]:
    """For each layer: the attention block's input and the feed-forward block's input tensors.

    Found on the tape by module path (Hugging Face BERT names): the attention input is
    the tensor consumed by ``encoder.layer.L.attention.self.query``; the feed-forward
    input is the one consumed by ``encoder.layer.L.intermediate.dense``.
    """
    att: list[Tensor | None] = [None] * n_layers
    ffn: list[Tensor | None] = [None] * n_layers
    for t in topological_order(quantity):
        node = t._node
        if node is None or node.op != "matmul":
            continue
        layer = _layer_of(node.module)
        if layer is None or layer >= n_layers:
            continue
        if node.module.endswith("attention.self.query"):
            att[layer] = node.inputs[0]
        elif node.module.endswith("intermediate.dense"):
            ffn[layer] = node.inputs[0]
    return att, ffn


class ComponentShares:
    """Where each token's best path crosses each layer: K/Q/V/skip (and head) at the attention block's input,
    FFN or skip at the feed-forward block's input.

    For BERT models with Hugging Face module names. One MaxProduct backward pass with
    backpointers gives each token's best path (from its input embedding, best over its
    dimensions); the path is followed forward and, where it leaves a block's input, the
    consuming module names the component. The whole path weight is credited to it
    (Du et al. 2023, §5).
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        cfg = getattr(model, "config", None)
        if cfg is None or not hasattr(cfg, "num_hidden_layers"):
            raise TypeError(f"ComponentShares: {type(model).__name__} is not a BERT (no config.num_hidden_layers)")
        self.n_layers = int(cfg.num_hidden_layers)
        self.head_size = int(cfg.hidden_size) // int(cfg.num_attention_heads)

    def attribute(
        self, inputs: Any, target: Any, attention_mask: Any = None, tokens: Sequence[str] | None = None
    ) -> ComponentRoutes:
        """Run the forward pass and one MaxProduct backward; classify each token's route at each layer."""
        fw = Forward.run(self.model, inputs, target, attention_mask, tokens=tokens)
        return routes_of(fw, self.n_layers, self.head_size)


def routes_of(fw: Forward, n_layers: int, head_size: int, paths: TokenPaths | None = None) -> ComponentRoutes:
    """Component routes of each token's best path in an existing forward pass (reusing ``paths`` if given)."""
    if paths is None:
        paths = top_paths_per_token(fw, 1)
    att, ffn = block_inputs(fw.quantity, n_layers)
    where: dict[int, tuple[str, int]] = {}
    for block, tensors in (("attention", att), ("ffn", ffn)):
        for layer, t in enumerate(tensors):
            if t is not None:
                where[id(t)] = (block, layer)
    out = ComponentRoutes(fw.tokens, n_layers, target=fw.target.describe())
    for tok, ps in enumerate(paths.paths):
        if not ps or not ps[0].steps:
            continue
        path = ps[0]
        prev = id(fw.leaf)
        for step in path.steps:
            if prev in where and step.node is not None:
                block, layer = where[prev]
                comp = _classify(step.node, step.slot, block)
                if comp is not None:
                    headi = step.index[-1] // head_size if comp in ("key", "query", "value") else None
                    pos = step.index[1] if len(step.index) == 3 else -1
                    out.routes.append(LayerRoute(layer, tok, block, comp, headi, path.weight, pos))
            prev = step.tensor_id
    return out


@dataclass
class ComponentTable:
    """Aggregate of routes over a data set, by token role: summed path weight per (layer, component)."""

    n_layers: int
    weight: dict[tuple[str, int, str], float] = field(default_factory=dict)  # (role, layer, component)
    heads: dict[tuple[str, int, str, int], float] = field(default_factory=dict)
    count: dict[tuple[str, int, str], int] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)  # (role) -> number of (sentence, token) pairs

    def add(self, routes: ComponentRoutes, roles: dict[int, Sequence[str]]) -> None:
        """Add one sentence's routes; ``roles`` maps token index -> its roles (e.g. ["subject", "all"])."""
        for rs in roles.values():
            for role in rs:
                self.n[role] = self.n.get(role, 0) + 1
        for r in routes.routes:
            for role in roles.get(r.token, ()):
                comp = r.component if r.block == "attention" else f"ffn:{r.component}"
                key = (role, r.layer, comp)
                self.weight[key] = self.weight.get(key, 0.0) + r.weight
                self.count[key] = self.count.get(key, 0) + 1
                if r.head is not None:
                    hk = (role, r.layer, comp, r.head)
                    self.heads[hk] = self.heads.get(hk, 0.0) + r.weight

    def shares(self, role: str, layer: int, block: str = "attention") -> dict[str, float]:
        """Fraction of the top-path weight through each component (sums to 1 where any weight)."""
        comps = COMPONENTS if block == "attention" else tuple(f"ffn:{c}" for c in FFN_COMPONENTS)
        w = {c: self.weight.get((role, layer, c), 0.0) for c in comps}
        tot = sum(w.values())
        return {c.replace("ffn:", ""): (v / tot if tot else 0.0) for c, v in w.items()}

    def counts(self, role: str, layer: int) -> dict[str, int]:
        """How many (sentence, token) best paths leave through each attention component."""
        return {c: self.count.get((role, layer, c), 0) for c in COMPONENTS}

    def mean_weight(self, role: str, layer: int) -> dict[str, float]:
        """Mean top-path weight per component over the role's tokens (0 where the path goes elsewhere)."""
        n = self.n.get(role, 0)
        return {c: (self.weight.get((role, layer, c), 0.0) / n if n else 0.0) for c in COMPONENTS}

    def head_shares(self, role: str, layer: int) -> dict[tuple[str, int], float]:
        """Fraction of the Q/K/V top-path weight through each (component, head)."""
        items = {(c, h): v for (r, lay, c, h), v in self.heads.items() if r == role and lay == layer}
        tot = sum(items.values())
        return {k: v / tot for k, v in sorted(items.items())} if tot else {}

    def markdown(self, roles: Sequence[str]) -> str:
        """The per-layer K/Q/V/skip share table (and FFN vs skip) for each role, as Markdown."""
        lines = []
        for role in roles:
            lines.append(f"\n**{role}** ({self.n.get(role, 0)} tokens)\n")
            lines.append("| layer | key | query | value | skip | FFN | FFN skip |")
            lines.append("|---|---|---|---|---|---|---|")
            for layer in range(self.n_layers):
                s = self.shares(role, layer)
                f = self.shares(role, layer, "ffn")
                lines.append(
                    f"| {layer} | {s['key']:.2f} | {s['query']:.2f} | {s['value']:.2f} | {s['skip']:.2f} "
                    f"| {f['ffn']:.2f} | {f['skip']:.2f} |"
                )
        return "\n".join(lines) + "\n"


def _block_key(module: str) -> str:
    parts = module.split(".")
    for i, p in enumerate(parts[:-1]):
        if p == "layer" and parts[i + 1].isdigit():
            return ".".join(parts[: i + 2])
    return ".".join(parts[:2]) if module else "(output)"


def _position(index: tuple[int, ...]) -> int | None:
    """The sequence position of an element of a (B, T, C) tensor (None for other layouts)."""
    return index[1] if len(index) == 3 else None


def condensed_table(path: Path, tokens: Sequence[str] | None = None, head_size: int | None = None) -> str:
    """A path as one row per block it crosses: embeddings, each transformer layer, the head.

    For a layer the route says whether the path entered the attention through the Key,
    Query or Value projection (and which head, given ``head_size``) or took the skip
    connection, and likewise the feed-forward network or its skip; the token columns give
    the sequence position before and after; the weight is the product of the block's edges.
    """
    if not path.found or not path.steps:
        return "no path"
    groups: list[list[Any]] = []
    for s in path.steps:
        if groups and _block_key(groups[-1][0].module) == _block_key(s.module):
            groups[-1].append(s)
        else:
            groups.append([s])

    def tok(pos: int | None) -> str:
        if pos is None:
            return "-"
        return f"{pos}:{tokens[pos]}" if tokens is not None and pos < len(tokens) else str(pos)

    rows = [("block", "route", "from", "to", "weight", "running")]
    run = 1.0
    start_pos = path.index[1] if len(path.index) == 3 else None
    for g in groups:
        w = float(np.prod([s.weight for s in g]))
        run *= w
        key = _block_key(g[0].module)
        mods = [s.module for s in g]
        if ".layer." in key or key.startswith("layer."):
            att = "skip"
            for s in g:
                for c, short in (("key", "K"), ("query", "Q"), ("value", "V")):
                    if s.module.endswith(f"attention.self.{c}"):
                        h = f" h{s.index[-1] // head_size}" if head_size else ""
                        att = short + h
            ffn = "FFN" if any(m.endswith("intermediate.dense") for m in mods) else "skip"
            route = f"attention: {att}; feed-forward: {ffn}"
        else:
            route = ",".join(dict.fromkeys(s.op for s in g))
        end_pos = _position(g[-1].index)
        rows.append((key, route, tok(start_pos), tok(end_pos), f"{w:.4g}", f"{run:.4g}"))
        start_pos = end_pos
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(wd) for cell, wd in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)
