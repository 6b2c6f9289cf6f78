"""Neural-network modules in semitorch's own API: Module, Parameter, layers, BERT (Hugging Face names), tokenizer.

Every module call records its dotted path (its ``state_dict`` prefix) on the
tape nodes it creates, so a gradient path can say which layer it went through.
"""

from .bert import (
    BertAttention,
    BertConfig,
    BertEmbeddings,
    BertEncoder,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertIntermediate,
    BertLayer,
    BertLMPredictionHead,
    BertModel,
    BertOnlyMLMHead,
    BertOutput,
    BertPooler,
    BertPredictionHeadTransform,
    BertPreTrainedModel,
    BertSelfAttention,
    BertSelfOutput,
    ModelOutput,
)
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear, ModuleList, ReLU, Sequential, Tanh, manual_seed
from .module import LoadResult, Module, Parameter, StateDictError
from .tokenizer import BatchEncoding, BertTokenizer

__all__ = [
    "GELU", "BatchEncoding", "BertAttention", "BertConfig", "BertEmbeddings", "BertEncoder", "BertForMaskedLM",
    "BertForSequenceClassification", "BertIntermediate", "BertLMPredictionHead", "BertLayer", "BertModel",
    "BertOnlyMLMHead", "BertOutput", "BertPooler", "BertPreTrainedModel", "BertPredictionHeadTransform",
    "BertSelfAttention", "BertSelfOutput", "BertTokenizer", "Dropout", "Embedding", "LayerNorm", "Linear",
    "LoadResult", "ModelOutput", "Module", "ModuleList", "Parameter", "ReLU", "Sequential", "StateDictError", "Tanh",
    "manual_seed",
]  # fmt: skip
