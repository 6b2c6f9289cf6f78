"""BERT in semitorch's own API, with Hugging Face's module and attribute names.

The dotted module names equal the checkpoint keys
(``encoder.layer.3.attention.self.query.weight``), so ``state_dict()`` loads a
Hugging Face checkpoint with no mapping table, and every tape node records the
module that made it. The model is built from the engine's fused primitives
(layer_norm, softmax, gelu, embedding, matmul, dropout), so each appears in the
gradient graph as one op with its exact Jacobian edges.

Shapes: B batch, T sequence length, C hidden size, nh heads, hs head size, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import backend, ops
from ..io import CheckpointError, load_checkpoint, read_json, resolve_model_dir, save_checkpoint
from ..tensor import Tensor
from .layers import Dropout, Embedding, LayerNorm, Linear, ModuleList, normal
from .module import LoadResult, Module, Parameter, StateDictError

_ACTIVATIONS = {
    "gelu": ops.gelu,
    "gelu_new": lambda x: ops.gelu(x, "tanh"),
    "gelu_pytorch_tanh": lambda x: ops.gelu(x, "tanh"),
    "relu": ops.relu,
    "tanh": ops.tanh,
}


@dataclass
class BertConfig:
    """BERT hyper-parameters, with the names and defaults of a Hugging Face ``config.json``."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    tie_word_embeddings: bool = True
    num_labels: int = 2
    classifier_dropout: float | None = None
    problem_type: str | None = None
    architectures: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)  # other config.json entries, kept for saving

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"BertConfig: hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"BertConfig: hidden_act {self.hidden_act!r} is not one of {sorted(_ACTIVATIONS)}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BertConfig:
        """From a config.json dict; unknown entries go to ``extra``; only absolute position embeddings."""
        d = dict(d)
        if d.get("model_type", "bert") != "bert":
            raise ValueError(f"BertConfig: model_type is {d['model_type']!r}, not 'bert'")
        pet = d.get("position_embedding_type", "absolute")
        if pet != "absolute":
            raise ValueError(f"BertConfig: position_embedding_type {pet!r} is not supported (only 'absolute')")
        if "id2label" in d and "num_labels" not in d:
            d["num_labels"] = len(d["id2label"])
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names}
        return cls(**known, extra=extra)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> BertConfig:
        """Read a config.json (or the config.json in a model directory)."""
        p = Path(path)
        if p.is_dir():
            p = resolve_model_dir(p) / "config.json"
        return cls.from_dict(read_json(p))

    def to_dict(self) -> dict[str, Any]:
        """A config.json dict that transformers reads."""
        d = {**self.extra, **{k: v for k, v in dataclasses.asdict(self).items() if k != "extra"}}
        d["model_type"] = "bert"
        d["position_embedding_type"] = "absolute"
        if len(d.get("id2label") or {}) != self.num_labels:  # keep a checkpoint's own label names
            d["id2label"] = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
            d["label2id"] = {f"LABEL_{i}": i for i in range(self.num_labels)}
        return d


def _check_config(owner: str, config: Any) -> None:
    """A TypeError naming ``owner`` unless ``config`` is a :class:`BertConfig`."""
    if not isinstance(config, BertConfig):
        raise TypeError(
            f"{owner}: config must be a BertConfig (e.g. BertConfig.from_dict(...)), got {type(config).__name__}"
        )


@dataclass
class ModelOutput:
    """What a BERT model returns (fields not computed are None), as transformers' output objects."""

    last_hidden_state: Tensor | None = None
    pooler_output: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None  # embeddings output first, then one per layer
    attentions: tuple[Tensor, ...] | None = None  # (B, nh, T, T) per layer
    logits: Tensor | None = None
    loss: Tensor | None = None


# ---- the blocks ---------------------------------------------------------------------------


class BertEmbeddings(Module):
    """Word + token-type + position embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.config = config
        self.word_embeddings = Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.position_embeddings = Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Any = None, token_type_ids: Any = None, inputs_embeds: Tensor | None = None) -> Tensor:
        """Embeddings of ``input_ids`` (B, T), or the given ``inputs_embeds`` (B, T, C) as the word part."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, T, C)
        B, T = inputs_embeds.shape[:2]
        xp = backend.xp_of(self.position_embeddings.weight.data)
        if token_type_ids is None:
            token_type_ids = xp.zeros((B, T), dtype=np.int64)
        pos = self.position_embeddings(xp.arange(T))  # (T, C)
        x = inputs_embeds + self.token_type_embeddings(token_type_ids)  # (B, T, C)
        x = x + pos  # (B, T, C)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(Module):
    """Multi-head scaled dot-product attention: ``query``, ``key``, ``value`` projections."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.query = Linear(config.hidden_size, config.hidden_size)
        self.key = Linear(config.hidden_size, config.hidden_size)
        self.value = Linear(config.hidden_size, config.hidden_size)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def forward(self, h: Tensor, pad: Any = None) -> tuple[Tensor, Tensor]:
        """Context vectors (B, T, C) and attention probabilities (B, nh, T, T); ``pad`` (B, 1, 1, T) masks keys."""
        B, T, C = h.shape
        nh, hs = self.num_attention_heads, self.attention_head_size
        q = self.query(h) * (1.0 / math.sqrt(hs))  # scaled before the product: T/hs times fewer multiplies
        q = q.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        k = self.key(h).reshape(B, T, nh, hs).transpose(0, 2, 3, 1)  # (B, nh, hs, T)
        v = self.value(h).reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)
        att = q @ k  # (B, nh, T, T)
        if pad is not None:
            att = att.masked_fill(pad, float(np.finfo(att.dtype).min))  # (B, nh, T, T)
        att = self.dropout(ops.softmax(att, axis=-1))  # (B, nh, T, T)
        y = att @ v  # (B, nh, T, hs)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C)
        return y, att


class BertSelfOutput(Module):
    """Output projection of attention, dropout, residual connection, LayerNorm."""

    def __init__(self, config: BertConfig, in_features: int | None = None) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.dense = Linear(in_features or config.hidden_size, config.hidden_size)
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def forward(self, h: Tensor, input_tensor: Tensor) -> Tensor:
        """LayerNorm(dropout(dense(h)) + input_tensor): (B, T, C)."""
        return self.LayerNorm(self.dropout(self.dense(h)) + input_tensor)


class BertAttention(Module):
    """Self-attention (attribute ``self``, as in Hugging Face) and its output block."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, h: Tensor, pad: Any = None) -> tuple[Tensor, Tensor]:
        """(B, T, C) hidden states after attention, and the attention probabilities."""
        y, att = self.self(h, pad)
        return self.output(y, h), att


class BertIntermediate(Module):
    """Feed-forward expansion: dense to ``intermediate_size`` and the activation."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.dense = Linear(config.hidden_size, config.intermediate_size)
        self.intermediate_act_fn = _ACTIVATIONS[config.hidden_act]

    def forward(self, h: Tensor) -> Tensor:
        """act(dense(h)): (B, T, intermediate_size)."""
        return self.intermediate_act_fn(self.dense(h))


class BertOutput(BertSelfOutput):
    """Feed-forward contraction (``intermediate_size`` → hidden), dropout, residual connection, LayerNorm."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__(config, config.intermediate_size)


class BertLayer(Module):
    """One transformer block: attention, then the feed-forward network."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, h: Tensor, pad: Any = None) -> tuple[Tensor, Tensor]:
        """(B, T, C) block output and the attention probabilities."""
        a, att = self.attention(h, pad)
        return self.output(self.intermediate(a), a), att


class BertEncoder(Module):
    """The stack of ``num_hidden_layers`` blocks (``layer.0``, ``layer.1``, ...)."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.layer = ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))

    def forward(self, h: Tensor, pad: Any = None) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """The last hidden states, every block's output and every block's attention probabilities."""
        hidden, atts = [], []
        for block in self.layer:
            h, att = block(h, pad)  # (B, T, C), (B, nh, T, T)
            hidden.append(h)
            atts.append(att)
        return h, hidden, atts


class BertPooler(Module):
    """tanh(dense(hidden state of the first token))."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)

    def forward(self, h: Tensor) -> Tensor:
        """(B, C) pooled output."""
        return ops.tanh(self.dense(h[:, 0]))


# ---- models -------------------------------------------------------------------------------


class BertPreTrainedModel(Module):
    """Shared by the BERT models: weight initialisation, ``from_pretrained``, ``save_pretrained``."""

    config: BertConfig

    def _init_weights(self) -> None:
        """Hugging Face's init: N(0, initializer_range) for Linear and Embedding weights, zero biases, unit LNs."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, Linear):
                m.weight.data = normal(m.weight.shape, std, m.weight.dtype)
                if m.bias is not None:
                    m.bias.data = np.zeros_like(m.bias.data)
            elif isinstance(m, Embedding):
                m.weight.data = normal(m.weight.shape, std, m.weight.dtype)
                if m.padding_idx is not None:
                    m.weight.data[m.padding_idx] = 0.0
            elif isinstance(m, LayerNorm):
                m.weight.data = np.ones_like(m.weight.data)
                m.bias.data = np.zeros_like(m.bias.data)

    def _array(self, a: Any) -> Any:
        """``a`` (a Tensor, array or nested list) as an array on the parameters' device; None stays None."""
        if a is None:
            return None
        return backend.xp_of(next(iter(self.parameters())).data).asarray(a.data if isinstance(a, Tensor) else a)

    def _bert_input(
        self, input_ids: Any, attention_mask: Any, token_type_ids: Any, inputs_embeds: Tensor | None
    ) -> tuple[Any, Any, Any, Tensor | None]:
        """Check the inputs' shapes; return ids, token types, the key padding mask (B, 1, 1, T) or None, and the
        embeddings (an array given for them wrapped as a constant Tensor)."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("BERT: pass exactly one of input_ids (B, T) and inputs_embeds (B, T, C)")
        ids, am, tt = self._array(input_ids), self._array(attention_mask), self._array(token_type_ids)
        if ids is not None and ids.ndim != 2:
            raise ValueError(f"BERT: input_ids must have shape (B, T), got {tuple(ids.shape)}")
        if inputs_embeds is not None and not isinstance(inputs_embeds, Tensor):
            if not (isinstance(inputs_embeds, np.ndarray) or backend.is_device_array(inputs_embeds)):
                raise TypeError(
                    f"BERT: inputs_embeds must be a Tensor or an array (B, T, C), got {type(inputs_embeds).__name__}"
                )
            inputs_embeds = Tensor(inputs_embeds)  # a constant, as before
        if inputs_embeds is not None and (inputs_embeds.ndim != 3 or inputs_embeds.shape[2] != self.config.hidden_size):
            raise ValueError(
                f"BERT: inputs_embeds must have shape (B, T, {self.config.hidden_size}) (hidden_size), "
                f"got {inputs_embeds.shape}"
            )
        if ids is not None and ids.dtype.kind not in "iu":
            raise TypeError(f"BERT: input_ids must be integer token ids, got dtype {ids.dtype}")
        bt = tuple(ids.shape) if ids is not None else inputs_embeds.shape[:2]
        for name, a in (("attention_mask", am), ("token_type_ids", tt)):
            if a is not None and tuple(a.shape) != bt:
                raise ValueError(f"BERT: {name} has shape {tuple(a.shape)}, expected {bt} like the input")
        pad = None
        if am is not None and not bool((am != 0).all()):
            pad = (am == 0)[:, None, None, :]  # (B, 1, 1, T) True at padded keys
        return ids, tt, pad, inputs_embeds

    # ---- loading and saving ------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], dtype: Any = np.float32, strict: bool = True, **kwargs: Any
    ) -> Any:
        """Build the model from a Hugging Face (or semitorch) directory and load its weights; eval mode.

        ``path`` holds config.json and model.safetensors (or pytorch_model.bin,
        read by torch with weights_only=True), or is a sentence-transformers
        directory. ``kwargs`` that name config entries replace them (e.g.
        ``num_labels=3``); the others go to the constructor (e.g.
        ``add_pooling_layer=False``). See :meth:`load_pretrained` for how keys are matched.
        """
        ckpt = load_checkpoint(path, dtype)
        fields = {f.name for f in dataclasses.fields(BertConfig)}
        config = BertConfig.from_dict({**ckpt.config, **{k: v for k, v in kwargs.items() if k in fields}})
        model = cls(config, **{k: v for k, v in kwargs.items() if k not in fields})
        model.astype(dtype)
        model._load_checkpoint_state(ckpt.state, ckpt.weights_file, ckpt.config, strict)
        return model.eval()

    def load_pretrained(self, path: str | os.PathLike[str], strict: bool = True) -> LoadResult:
        """Load the weights of a model directory into this model; on any error the weights stay as they were.

        Keys are matched as transformers does: a ``bert.`` prefix is added or
        removed as the model needs, legacy gamma/beta names and the tied decoder
        are handled, a base model drops a checkpoint's heads. Missing or
        unexpected keys are an error listing them unless ``strict=False``; a
        shape mismatch is always an error naming the key and both shapes.
        """
        dtype = next(iter(self.parameters())).dtype
        ckpt = load_checkpoint(path, dtype)
        return self._load_checkpoint_state(ckpt.state, ckpt.weights_file, ckpt.config, strict)

    def _map_keys(self, state: dict[str, Any], source: Path, config: dict[str, Any]) -> dict[str, Any]:
        """Rename checkpoint keys to this model's names (prefixes, tied/aliased weights)."""
        base = {"embeddings", "encoder", "pooler"}
        prefixed = any(k.startswith("bert.") for k in state)
        if not hasattr(self, "bert"):  # a base BertModel: take the checkpoint's "bert." part, drop its heads
            if prefixed:
                state = {k[len("bert.") :]: v for k, v in state.items() if k.startswith("bert.")}
            return state
        if not prefixed:  # a base checkpoint (e.g. sentence-transformers) under a head model
            state = {(f"bert.{k}" if k.split(".", 1)[0] in base else k): v for k, v in state.items()}
        return state

    def _load_checkpoint_state(self, state: dict[str, Any], source: Path, config: dict[str, Any], strict: bool):
        state = self._map_keys(state, source, config)
        try:
            return self.load_state_dict(state, strict=strict)
        except StateDictError as e:
            raise CheckpointError(f"{source}: {e}") from None

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write config.json and model.safetensors (this model's state_dict keys) into ``directory``, atomically.

        The directory is a Hugging Face directory: transformers loads it too.
        """
        cfg = self.config.to_dict()
        cfg["architectures"] = [type(self).__name__]
        state = {k: backend.to_numpy(v) for k, v in self.state_dict().items()}
        return save_checkpoint(directory, cfg, state)


class BertModel(BertPreTrainedModel):
    """The BERT encoder: embeddings, ``encoder.layer.*`` and (optionally) the pooler."""

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        self._init_weights()

    def forward(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        token_type_ids: Any = None,
        inputs_embeds: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> ModelOutput:
        """Hidden states (B, T, C), as transformers' BertModel (``attention_mask`` 1 = token, 0 = padding)."""
        ids, tt, pad, inputs_embeds = self._bert_input(input_ids, attention_mask, token_type_ids, inputs_embeds)
        T = ids.shape[1] if ids is not None else inputs_embeds.shape[1]
        if T > self.config.max_position_embeddings:
            raise ValueError(
                f"BertModel: sequence length {T} exceeds max_position_embeddings {self.config.max_position_embeddings}"
            )
        h = self.embeddings(ids, tt, inputs_embeds)  # (B, T, C)
        last, hidden, atts = self.encoder(h, pad)
        return ModelOutput(
            last_hidden_state=last,
            pooler_output=self.pooler(last) if self.pooler is not None else None,
            hidden_states=(h, *hidden) if output_hidden_states else None,
            attentions=tuple(atts) if output_attentions else None,
        )


class BertPredictionHeadTransform(Module):
    """dense, activation, LayerNorm before the vocabulary projection."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.dense = Linear(config.hidden_size, config.hidden_size)
        self.transform_act_fn = _ACTIVATIONS[config.hidden_act]
        self.LayerNorm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, h: Tensor) -> Tensor:
        """(B, T, C)."""
        return self.LayerNorm(self.transform_act_fn(self.dense(h)))


class BertLMPredictionHead(Module):
    """transform, then ``decoder`` (weight tied to the word embeddings) plus the vocabulary ``bias``."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = Parameter(np.zeros(config.vocab_size, dtype=np.float32))

    def forward(self, h: Tensor) -> Tensor:
        """Vocabulary logits (B, T, V)."""
        return self.decoder(self.transform(h)) + self.bias


class BertOnlyMLMHead(Module):
    """The masked-LM head (``cls.predictions``)."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.predictions = BertLMPredictionHead(config)

    def forward(self, h: Tensor) -> Tensor:
        """Vocabulary logits (B, T, V)."""
        return self.predictions(h)


class BertForMaskedLM(BertPreTrainedModel):
    """BERT with the masked-language-model head; the decoder shares the word-embedding matrix."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.config = config
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self._init_weights()
        self.cls.predictions.bias.data = np.zeros_like(self.cls.predictions.bias.data)
        if config.tie_word_embeddings:
            self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        token_type_ids: Any = None,
        inputs_embeds: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        labels: Any = None,
    ) -> ModelOutput:
        """Logits (B, T, V); with ``labels`` (B, T; −100 = ignored) also the mean cross-entropy ``loss``."""
        out = self.bert(
            input_ids, attention_mask, token_type_ids, inputs_embeds, output_hidden_states, output_attentions
        )
        out.logits = self.cls(out.last_hidden_state)  # (B, T, V)
        if labels is not None:
            lab = self._array(labels)
            B, T, V = out.logits.shape
            if lab.shape != (B, T):
                raise ValueError(f"BertForMaskedLM: labels have shape {lab.shape}, expected {(B, T)}")
            out.loss = ops.cross_entropy(out.logits.reshape(B * T, V), lab.reshape(-1).astype(np.int64))
        return out

    def _map_keys(self, state: dict[str, Any], source: Path, config: dict[str, Any]) -> dict[str, Any]:
        state = super()._map_keys(state, source, config)
        if not any(k.startswith("cls.predictions.") for k in state):
            raise CheckpointError(
                f"{source}: not a masked-LM checkpoint: it has no cls.predictions.* weights "
                f"(its config says architectures={config.get('architectures')}); load it with BertModel.from_pretrained"
            )
        state = {k: v for k, v in state.items() if not k.startswith("bert.pooler.")}  # unused by the MLM, as in HF
        if "cls.predictions.decoder.bias" in state:  # an alias of cls.predictions.bias
            b = state.pop("cls.predictions.decoder.bias")
            state.setdefault("cls.predictions.bias", b)
        if self.config.tie_word_embeddings:
            state.pop("cls.predictions.decoder.weight", None)  # tied to the word embeddings
        return state


class BertForSequenceClassification(BertPreTrainedModel):
    """BERT, the pooler, dropout and a linear ``classifier`` over ``num_labels`` classes (1 = regression)."""

    def __init__(self, config: BertConfig) -> None:
        _check_config(type(self).__name__, config)
        super().__init__()
        self.config = config
        self.num_labels = config.num_labels
        self.bert = BertModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = Dropout(p)
        self.classifier = Linear(config.hidden_size, config.num_labels)
        self._init_weights()

    def forward(
        self,
        input_ids: Any = None,
        attention_mask: Any = None,
        token_type_ids: Any = None,
        inputs_embeds: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        labels: Any = None,
    ) -> ModelOutput:
        """Logits (B, num_labels); with ``labels`` (B,) the cross-entropy (or, for one label, MSE) ``loss``."""
        out = self.bert(
            input_ids, attention_mask, token_type_ids, inputs_embeds, output_hidden_states, output_attentions
        )
        out.logits = self.classifier(self.dropout(out.pooler_output))  # (B, num_labels)
        if labels is not None:
            lab = self._array(labels)
            if lab.shape != out.logits.shape[:1]:
                raise ValueError(
                    f"BertForSequenceClassification: labels have shape {lab.shape}, expected {out.logits.shape[:1]}"
                )
            if self.num_labels == 1:
                diff = out.logits.reshape(-1) - lab.astype(out.logits.dtype)
                out.loss = ops.mean(ops.square(diff))
            else:
                out.loss = ops.cross_entropy(out.logits, lab.astype(np.int64))
        return out

    def _map_keys(self, state: dict[str, Any], source: Path, config: dict[str, Any]) -> dict[str, Any]:
        state = super()._map_keys(state, source, config)
        head = [k for k, _ in self.named_parameters() if k.startswith("classifier.")]
        if not any(k in state for k in head):  # fine-tuning from a base checkpoint: a new classifier, as in HF
            warnings.warn(
                f"{source}: no classifier weights in the checkpoint; {', '.join(head)} are newly initialised",
                stacklevel=4,
            )
            state = {**state, **{k: p.data for k, p in self.named_parameters() if k in head}}
        return state
