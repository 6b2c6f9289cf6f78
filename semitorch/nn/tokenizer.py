"""BertTokenizer: WordPiece from a model directory's tokenizer.json or vocab.txt, on the ``tokenizers`` library.

Encoding returns numpy arrays (``input_ids``, ``attention_mask``,
``token_type_ids``) of shape (B, T), a single text giving B = 1, ready for a
BERT model. Nothing is padded or truncated unless asked; a sequence longer
than the model's maximum is an error naming both lengths.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import CheckpointError, read_json


class BatchEncoding(dict):
    """A dict of (B, T) int64 arrays that also reads as attributes (``enc.input_ids``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class BertTokenizer:
    """WordPiece tokenizer with BERT's special tokens ([CLS] ... [SEP], [PAD], [MASK], [UNK])."""

    def __init__(self, tokenizer: Any, model_max_length: int = 512, special: dict[str, str] | None = None) -> None:
        if not all(hasattr(tokenizer, a) for a in ("encode_batch", "token_to_id", "no_padding", "no_truncation")):
            raise TypeError(
                "BertTokenizer: tokenizer must be a tokenizers.Tokenizer (or use BertTokenizer.from_pretrained(dir) "
                f"to read a model directory), got {type(tokenizer).__name__}"
            )
        self._tok = tokenizer
        self._tok.no_padding()
        self._tok.no_truncation()
        self.model_max_length = int(model_max_length)
        sp = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]"}
        sp |= {"mask_token": "[MASK]", **(special or {})}
        for name, tok in sp.items():
            if self._tok.token_to_id(tok) is None:
                raise ValueError(f"BertTokenizer: special token {name}={tok!r} is not in the vocabulary")
            setattr(self, name, tok)
            setattr(self, name.replace("_token", "_token_id"), int(self._tok.token_to_id(tok)))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> BertTokenizer:
        """Read tokenizer.json (preferred) or vocab.txt, plus tokenizer_config.json / config.json when present.

        The maximum length is the smaller of the tokenizer config's
        ``model_max_length`` and the model config's ``max_position_embeddings``.
        """
        from tokenizers import Tokenizer  # noqa: PLC0415

        p = Path(path)
        if not p.is_dir():
            raise FileNotFoundError(f"BertTokenizer.from_pretrained: {p} is not a directory")
        tcfg = read_json(p / "tokenizer_config.json") if (p / "tokenizer_config.json").is_file() else {}
        if (p / "tokenizer.json").is_file():
            try:
                tok = Tokenizer.from_file(str(p / "tokenizer.json"))
            except Exception as e:
                raise CheckpointError(f"{p / 'tokenizer.json'}: cannot read the tokenizer ({e})") from None
        elif (p / "vocab.txt").is_file():
            from tokenizers.implementations import BertWordPieceTokenizer  # noqa: PLC0415

            tok = BertWordPieceTokenizer(
                str(p / "vocab.txt"),
                lowercase=bool(tcfg.get("do_lower_case", True)),
                strip_accents=tcfg.get("strip_accents"),
                handle_chinese_chars=bool(tcfg.get("tokenize_chinese_chars", True)),
            )
        else:
            raise CheckpointError(f"{p}: no tokenizer.json or vocab.txt, so no tokenizer can be built")
        limits = [int(tcfg["model_max_length"])] if isinstance(tcfg.get("model_max_length"), (int, float)) else []
        if (p / "config.json").is_file():
            mpe = read_json(p / "config.json").get("max_position_embeddings")
            if isinstance(mpe, int):
                limits.append(mpe)
        names = ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token")
        special = {k: tcfg[k] for k in names if isinstance(tcfg.get(k), str)}
        return cls(tok, min(limits) if limits else 512, special)

    @property
    def vocab_size(self) -> int:
        """Number of tokens in the vocabulary (added tokens included)."""
        return int(self._tok.get_vocab_size())

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text`` without special tokens."""
        return list(self._tok.encode(text, add_special_tokens=False).tokens)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        """Ids of tokens (unknown ones map to [UNK])."""
        if isinstance(tokens, str):
            i = self._tok.token_to_id(tokens)
            return self.unk_token_id if i is None else int(i)
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Any) -> Any:
        """Tokens of ids."""
        if isinstance(ids, (int, np.integer)):
            return self._tok.id_to_token(int(ids))
        return [self._tok.id_to_token(int(i)) for i in ids]

    def __call__(
        self,
        text: str | Sequence[str],
        text_pair: str | Sequence[str] | None = None,
        padding: bool | str = False,
        truncation: bool = False,
        max_length: int | None = None,
        add_special_tokens: bool = True,
    ) -> BatchEncoding:
        """Encode one text or a batch (optionally with second segments) to (B, T) arrays.

        ``padding``: False, True/'longest' (to the longest in the batch) or
        'max_length' (to ``max_length``, default the model maximum).
        ``truncation``: cut to ``max_length`` (default the model maximum). Without
        truncation a sequence longer than the model maximum is a ValueError.
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if text_pair is not None:
            pairs = [text_pair] if isinstance(text_pair, str) else list(text_pair)
            if len(pairs) != len(texts):
                raise ValueError(f"BertTokenizer: {len(texts)} texts but {len(pairs)} text pairs")
            inputs: list[Any] = list(zip(texts, pairs, strict=True))
        else:
            inputs = texts
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"BertTokenizer: padding must be False, True, 'longest' or 'max_length', got {padding!r}")
        limit = self.model_max_length if max_length is None else int(max_length)
        if limit > self.model_max_length:
            raise ValueError(f"BertTokenizer: max_length {limit} exceeds the model's maximum {self.model_max_length}")
        try:
            if truncation:
                self._tok.enable_truncation(limit)
            if padding in (True, "longest"):
                self._tok.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token)
            elif padding == "max_length":
                self._tok.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token, length=limit)
            encs = self._tok.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            self._tok.no_truncation()
            self._tok.no_padding()
        lengths = [len(e.ids) for e in encs]
        too_long = [i for i, n in enumerate(lengths) if n > limit]
        if too_long:
            i = too_long[0]
            raise ValueError(
                f"BertTokenizer: sequence {i} has {lengths[i]} tokens, longer than the maximum {limit} "
                f"(the model's max positions is {self.model_max_length}); pass truncation=True or shorten it"
            )
        if len(set(lengths)) > 1:
            raise ValueError(
                f"BertTokenizer: the sequences have different lengths {sorted(set(lengths))}; pass padding=True "
                "to make one (B, T) batch"
            )

        def arr(field: str) -> np.ndarray:
            return np.array([getattr(e, field) for e in encs], dtype=np.int64).reshape(len(encs), -1)

        return BatchEncoding(input_ids=arr("ids"), attention_mask=arr("attention_mask"), token_type_ids=arr("type_ids"))

    encode = __call__

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        """The text of one sequence of ids (padding and, by default, all special tokens dropped)."""
        return self._tok.decode([int(i) for i in np.asarray(ids).reshape(-1)], skip_special_tokens=skip_special_tokens)

    def batch_decode(self, ids: Any, skip_special_tokens: bool = True) -> list[str]:
        """:meth:`decode` for each row of a (B, T) array."""
        return [self.decode(row, skip_special_tokens) for row in np.asarray(ids)]
