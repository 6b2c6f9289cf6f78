"""Bad input gives a clear error that names the op and the shapes (or the dtype, id, device, ...).

One row per error: ``(id, thunk, exception type, regex the message must match)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import semitorch as st
from semitorch import backend, nn


def t(shape: tuple[int, ...], grad: bool = True, dtype: Any = np.float64) -> st.Tensor:
    """A tensor of ones."""
    return st.tensor(np.ones(shape, dtype=dtype), requires_grad=grad)


def no_grad_backward() -> None:
    """Tensor.backward() on a result of constants only."""
    x = st.tensor([1.0, 2.0])
    (x * 2.0).sum().backward()


def tiny_bert() -> Any:
    """A 1-layer BERT with hidden size 8."""
    cfg = nn.BertConfig(
        vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
        max_position_embeddings=16,
    )  # fmt: skip
    return nn.BertModel(cfg).eval()


def read_path_at(entry: Any) -> Any:
    """st.read_path of entry ``entry`` of x in a kept MaxProduct pass of sum(2x)."""
    x = t((2,))
    res = st.backward((x * 2.0).sum(), [x], st.semirings.MaxProduct(), keep=True)
    return st.read_path(res, x, entry)


def grad_of_constant() -> None:
    """st.grad of an output that does not require grad."""
    x = st.tensor([1.0, 2.0])
    st.grad((x * 2.0).sum(), x)


def grad_wrt_constant_input() -> None:
    """st.grad w.r.t. an input that does not require grad."""
    x, c = t((2,)), st.tensor([1.0, 2.0])
    st.grad((x * c).sum(), [x, c])


CASES: list[tuple[str, Callable[[], Any], type[BaseException], str]] = [
    # shapes
    ("matmul_mismatch", lambda: t((2, 3)) @ t((4, 5)), ValueError,
     r"matmul: shapes \(2, 3\) and \(4, 5\) do not align \(contracted dims 3 and 4 differ\)"),
    ("matmul_1d_mismatch", lambda: t((3,)) @ t((4,)), ValueError, r"matmul: shapes \(3,\) and \(4,\) do not align"),
    ("matmul_batch", lambda: t((2, 3, 4)) @ t((3, 4, 5)), ValueError,
     r"matmul \(batch dims\): shapes \(2,\) and \(3,\) are not broadcastable"),
    ("matmul_0d", lambda: t(()) @ t((3,)), ValueError, r"matmul: operands must have at least 1 dim, got shapes \(\)"),
    ("add_broadcast", lambda: t((2, 3)) + t((4,)), ValueError,
     r"add: shapes \(2, 3\) and \(4,\) are not broadcastable"),
    ("mul_broadcast", lambda: t((2, 3)) * t((2,)), ValueError,
     r"mul: shapes \(2, 3\) and \(2,\) are not broadcastable"),
    ("sub_broadcast", lambda: t((5,)) - t((3,)), ValueError, r"sub: shapes \(5,\) and \(3,\) are not broadcastable"),
    ("where_broadcast", lambda: st.where(np.ones((2, 3), bool), t((2, 3)), t((3, 2))), ValueError,
     r"where: shapes \(2, 3\) and \(2, 3\) and \(3, 2\) are not broadcastable"),
    ("where_cond_broadcast", lambda: st.where(np.ones(4, bool), t((2, 3)), 0.0), ValueError,
     r"where: shapes \(4,\) and \(2, 3\) and \(\) are not broadcastable"),
    ("masked_fill_mask", lambda: st.masked_fill(t((3,)), np.ones((2, 3), bool), 0.0), ValueError,
     r"masked_fill: mask of shape \(2, 3\) does not broadcast to the tensor's shape \(3,\)"),
    ("reshape", lambda: t((2, 3)).reshape(4), ValueError,
     r"reshape: cannot reshape a tensor of shape \(2, 3\) \(6 elements\) to \(4,\)"),
    ("broadcast_to", lambda: st.broadcast_to(t((3,)), (2, 4)), ValueError,
     r"broadcast_to: shapes \(3,\) and \(2, 4\) are not broadcastable"),
    ("broadcast_to_smaller", lambda: st.broadcast_to(t((2, 3)), (3,)), ValueError,
     r"broadcast_to: shape \(2, 3\) cannot be broadcast to \(3,\)"),
    ("squeeze", lambda: st.squeeze(t((2, 1)), 0), ValueError, r"squeeze: axis 0 of shape \(2, 1\) has size 2, not 1"),
    ("expand_dims", lambda: st.expand_dims(t((2, 3)), 5), ValueError,
     r"expand_dims: invalid axis 5 for a tensor of shape \(2, 3\)"),
    ("transpose_perm", lambda: st.transpose(t((2, 3)), (1, 1)), ValueError,
     r"transpose: \(1, 1\) is not a permutation of the 2 axes of shape \(2, 3\)"),
    ("transpose_range", lambda: st.transpose(t((2, 3)), (0, 3)), ValueError,
     r"transpose: axes \(0, 3\) are out of range for a tensor of shape \(2, 3\)"),
    ("swapaxes", lambda: st.swapaxes(t((2, 3)), 5, 0), ValueError,
     r"swapaxes: axis 5 is out of range for a tensor of shape \(2, 3\)"),
    ("getitem", lambda: t((2, 3))[2], IndexError, r"getitem: index 2 is invalid for a tensor of shape \(2, 3\)"),
    ("getitem_bool", lambda: t((2, 3))[np.array([True])], IndexError,
     r"getitem: index array\(\[ True\]\) is invalid for a tensor of shape \(2, 3\)"),
    ("concat_shapes", lambda: st.concat([t((2, 3)), t((3, 2))], 0), ValueError,
     r"concat: shapes \[\(2, 3\), \(3, 2\)\] differ outside axis 0"),
    ("concat_axis", lambda: st.concat([t((2, 3)), t((2, 3))], 2), ValueError,
     r"concat: axis 2 is out of range for tensors of shape \(2, 3\)"),
    ("concat_empty", lambda: st.concat([]), ValueError, r"concat: needs at least one tensor"),
    ("stack_shapes", lambda: st.stack([t((2,)), t((3,))]), ValueError,
     r"stack: all shapes must be equal, got \[\(2,\), \(3,\)\]"),
    ("stack_axis", lambda: st.stack([t((2,)), t((2,))], 3), ValueError,
     r"stack: axis 3 is out of range for stacking tensors of shape \(2,\)"),
    ("stack_empty", lambda: st.stack([]), ValueError, r"stack: needs at least one tensor"),
    ("split_sections", lambda: st.split(t((2, 5)), 2, 1), ValueError,
     r"split: axis 1 of size 5 \(shape \(2, 5\)\) does not divide into 2 equal parts"),
    ("split_axis", lambda: st.split(t((2, 5)), 2, 4), ValueError,
     r"split: axis 4 is out of range for a tensor of shape \(2, 5\)"),
    ("sum_axis", lambda: t((2, 3)).sum(2), ValueError, r"sum: axis 2 is out of range for a tensor with 2 dims"),
    ("mean_repeated_axis", lambda: t((2, 3)).mean((1, -1)), ValueError, r"mean: repeated axis in \(1, -1\)"),
    ("mean_empty", lambda: t((0, 3)).mean(0), ValueError,
     r"mean: reducing axes \(0,\) of an empty tensor of shape \(0, 3\)"),
    ("max_empty", lambda: t((2, 0)).max(1), ValueError, r"max: reducing an empty tensor of shape \(2, 0\)"),
    ("logsumexp_empty", lambda: st.logsumexp(t((0,))), ValueError,
     r"logsumexp: reducing an empty axis of a tensor of shape \(0,\)"),
    ("softmax_axis", lambda: st.softmax(t((2, 3)), 2), ValueError,
     r"softmax: axis 2 is out of range for shape \(2, 3\)"),
    ("log_softmax_axis", lambda: st.log_softmax(t((2, 3)), -3), ValueError,
     r"log_softmax: axis -3 is out of range for shape \(2, 3\)"),
    ("layer_norm_weight", lambda: st.layer_norm(t((2, 3)), t((4,))), ValueError,
     r"layer_norm: weight has shape \(4,\), expected \(3,\) for input \(2, 3\)"),
    ("layer_norm_bias", lambda: st.layer_norm(t((2, 3)), t((3,)), t((3, 1))), ValueError,
     r"layer_norm: bias has shape \(3, 1\), expected \(3,\) for input \(2, 3\)"),
    ("layer_norm_0d", lambda: st.layer_norm(t(())), ValueError, r"layer_norm: the input must have at least 1 dim"),
    # values, dtypes, ids
    ("int_requires_grad", lambda: st.tensor([1, 2], requires_grad=True), TypeError,
     r"only float32 and float64 tensors can require grad, got dtype int64 \(shape \(2,\)\)"),
    ("int_requires_grad_", lambda: st.tensor([1, 2]).requires_grad_(), TypeError,
     r"only float32 and float64 tensors can require grad, got dtype int64"),
    ("bool_requires_grad", lambda: st.Tensor(np.ones(2, bool), requires_grad=True), TypeError,
     r"got dtype bool \(shape \(2,\)\)"),
    ("embedding_id_high", lambda: st.embedding(np.array([[0, 7]]), t((5, 2))), IndexError,
     r"embedding: id 7 is out of range for a table of 5 rows \(shape \(5, 2\)\)"),
    ("embedding_id_negative", lambda: st.embedding(np.array([-1, 2]), t((5, 2))), IndexError,
     r"embedding: id -1 is out of range for a table of 5 rows"),
    ("embedding_float_ids", lambda: st.embedding(np.array([0.5]), t((5, 2))), TypeError,
     r"embedding: ids must be integers, got dtype float64"),
    ("embedding_table_3d", lambda: st.embedding(np.array([0]), t((5, 2, 1))), ValueError,
     r"embedding: table must be 2-D \(num_embeddings, dim\), got shape \(5, 2, 1\)"),
    ("cross_entropy_target", lambda: st.cross_entropy(t((2, 4)), np.array([1, 5])), IndexError,
     r"cross_entropy: target 5 is out of range for 4 classes"),
    ("cross_entropy_negative_target", lambda: st.cross_entropy(t((2, 4)), np.array([-3, 0])), IndexError,
     r"cross_entropy: target -3 is out of range for 4 classes"),
    ("cross_entropy_shape", lambda: st.cross_entropy(t((2, 4)), np.array([1, 2, 3])), ValueError,
     r"cross_entropy: logits of shape \(2, 4\) need targets of shape \(2,\), got \(3,\)"),
    ("cross_entropy_float_targets", lambda: st.cross_entropy(t((2, 4)), np.array([1.0, 2.0])), TypeError,
     r"cross_entropy: targets must be integers, got dtype float64"),
    ("cross_entropy_reduction", lambda: st.cross_entropy(t((2, 4)), np.array([1, 2]), reduction="avg"), ValueError,
     r"cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'avg'"),
    ("gelu_approximate", lambda: st.gelu(t((2,)), "fast"), ValueError,
     r"gelu: approximate must be 'none' or 'tanh', got 'fast'"),
    ("dropout_p", lambda: st.dropout(t((2,)), 1.5), ValueError, r"dropout: p must be in \[0, 1\], got 1.5"),
    ("pow_tensor_exponent", lambda: t((2,)) ** t((2,)), TypeError,
     r"pow: p must be a real number, got Tensor of shape \(2,\); the exponent is a scalar: for a Tensor exponent "
     r"use exp\(p \* log\(x\)\)"),
    # arguments of the wrong kind: checked by st.register from the op's annotations, before the op runs
    ("unary_list_input", lambda: st.exp([1.0, 2.0]), TypeError,
     r"exp: x must be a semitorch Tensor or a numeric array, got list of float, float"),
    ("unary_string_array_input", lambda: st.exp(np.array(["a"])), TypeError,
     r"exp: x must be a semitorch Tensor or a numeric array, got ndarray of shape \(1,\)"),
    ("layer_norm_torch_normalized_shape", lambda: st.layer_norm(t((2, 3)), (3,)), TypeError,
     r"layer_norm: weight must be a semitorch Tensor, a numeric array or None, got tuple of int"),
    ("concat_mixed", lambda: st.concat([t((2,)), "ab"]), TypeError,
     r"concat: xs must be a sequence of semitorch Tensors \(or numeric arrays\), got list of Tensor, str"),
    ("concat_a_string", lambda: st.concat("ab"), TypeError,
     r"concat: xs must be a sequence of semitorch Tensors \(or numeric arrays\), got str 'ab'"),
    ("softmax_float_axis", lambda: st.softmax(t((2, 3)), 1.0), TypeError,
     r"softmax: axis must be an int, got float 1.0"),
    ("dropout_p_str", lambda: st.dropout(t((2,)), "0.1"), TypeError,
     r"dropout: p must be a real number, got str '0.1'"),
    ("sum_keepdims_str", lambda: st.sum(t((2,)), 0, keepdims="yes"), TypeError,
     r"sum: keepdims must be a bool, got str 'yes'"),
    ("gelu_approximate_bool", lambda: st.gelu(t((2,)), True), TypeError,
     r"gelu: approximate must be a str, got bool True"),
    ("add_str_operand", lambda: st.add(t((2,)), "a"), TypeError,
     r"add: b must be a Tensor, a number or a numeric array, got str 'a'"),
    ("mul_none_operand", lambda: t((2,)) * None, TypeError,
     r"mul: b must be a Tensor, a number or a numeric array, got NoneType None"),
    ("matmul_dict_operand", lambda: st.matmul({"w": 1}, t((2, 2))), TypeError,
     r"matmul: a must be a Tensor, a number or a numeric array, got dict"),
    ("where_str_branch", lambda: st.where(np.array([True, False]), t((2,)), "x"), TypeError,
     r"where: b must be a Tensor, a number or a numeric array, got str 'x'"),
    ("masked_fill_none_mask", lambda: st.masked_fill(t((2,)), None, 0.0), TypeError,
     r"masked_fill: mask must be a Tensor, a number or a numeric array, got NoneType None"),
    ("sum_str_axis", lambda: st.sum(t((2, 3)), "0"), TypeError,
     r"sum: axis must be None, an int or a tuple of ints, got str '0'"),
    ("mean_float_axes", lambda: t((2, 3)).mean((0.5,)), TypeError,
     r"mean: axis must be None, an int or a tuple of ints, got tuple of float"),
    ("reshape_str_shape", lambda: st.reshape(t((2, 3)), "6"), TypeError,
     r"reshape: shape must be an int or a tuple of ints, got str '6'"),
    ("transpose_str_axes", lambda: st.transpose(t((2, 3)), "10"), TypeError,
     r"transpose: axes must be an int or a tuple of ints, got str '10'"),
    ("astype_not_a_dtype", lambda: st.astype(t((2,)), "floaty"), TypeError, r"astype: 'floaty' is not a dtype"),
    ("binary_no_tensor", lambda: st.add([1.0], [2.0]), TypeError, r"add: at least one operand must be a Tensor"),
    ("item", lambda: t((2, 3)).item(), ValueError, r"item\(\): tensor of shape \(2, 3\) has 6 elements, expected 1"),
    ("unknown_device", lambda: st.tensor([1.0], device="tpu"), ValueError,
     r"unknown device 'tpu': expected 'cpu' or 'cuda'"),
    # backward
    ("backward_no_grad", no_grad_backward, RuntimeError,
     r"backward: tensor of shape \(\) does not require grad"),
    ("grad_of_constant", grad_of_constant, RuntimeError, r"backward: the output \(shape \(\)\) does not require grad"),
    ("grad_wrt_constant", grad_wrt_constant_input, RuntimeError,
     r"backward: inputs\[1\] \(shape \(2,\)\) does not require grad"),
    ("grad_input_not_tensor", lambda: st.grad(t((2,)).sum(), [np.ones(2)]), TypeError,
     r"backward: inputs\[0\] is a ndarray, not a Tensor"),
    ("grad_output_not_tensor", lambda: st.grad(np.ones(2), [t((2,))]), TypeError,
     r"backward: output must be a Tensor, got ndarray"),
    ("grad_output_shape", lambda: st.grad(t((2, 3)) * 2.0, t((2, 3)), grad_output=np.ones((3, 2))), ValueError,
     r"backward: grad_output has shape \(3, 2\), expected \(2, 3\)"),
    ("grad_non_semiring", lambda: st.grad(t((2,)).sum(), t((2,)), semiring="max"), TypeError,
     r"semiring must be a semitorch Semiring instance \(e.g. st.semirings.Real\(\)\), got str"),
    ("grad_non_semiring_class", lambda: st.grad(t((2,)).sum(), t((2,)), semiring=dict), TypeError,
     r"semiring must be a semitorch Semiring instance .*got type"),
    # layers and models: arguments checked when the module is built
    ("linear_str_size", lambda: nn.Linear("4", 3), TypeError, r"Linear: in_features must be an int, got str '4'"),
    ("linear_negative_size", lambda: nn.Linear(4, -3), ValueError, r"Linear: out_features must be >= 0, got -3"),
    ("linear_int_dtype", lambda: nn.Linear(4, 3, dtype=np.int32), TypeError,
     r"Linear: parameters must be float32 or float64, got dtype int32"),
    ("embedding_float_rows", lambda: nn.Embedding(2.5, 3), TypeError,
     r"Embedding: num_embeddings must be an int, got float 2.5"),
    ("embedding_padding_idx_range", lambda: nn.Embedding(5, 3, padding_idx=5), ValueError,
     r"Embedding: padding_idx 5 is out of range for a table of 5 rows"),
    ("embedding_padding_idx_str", lambda: nn.Embedding(5, 3, padding_idx="0"), TypeError,
     r"Embedding: padding_idx must be an int or None, got str"),
    ("layernorm_two_axes", lambda: nn.LayerNorm((3, 4)), ValueError,
     r"LayerNorm: normalises over the last axis only, so normalized_shape must be an int or \(n,\), got \(3, 4\)"),
    ("layernorm_not_a_dtype", lambda: nn.LayerNorm(4, dtype="floaty"), TypeError,
     r"LayerNorm: dtype 'floaty' is not a dtype"),
    ("dropout_module_p_str", lambda: nn.Dropout("0.1"), TypeError, r"Dropout: p must be a real number, got str '0.1'"),
    ("gelu_module_approximate", lambda: nn.GELU("fast"), ValueError,
     r"GELU: approximate must be 'none' or 'tanh', got 'fast'"),
    ("modulelist_none", lambda: nn.ModuleList(None), TypeError,
     r"ModuleList: modules must be an iterable of Modules, got NoneType"),
    ("bert_config_dict", lambda: nn.BertModel({"hidden_size": 8}), TypeError,
     r"BertModel: config must be a BertConfig \(e.g. BertConfig.from_dict\(\.\.\.\)\), got dict"),
    ("bert_layer_config_int", lambda: nn.BertLayer(3), TypeError, r"BertLayer: config must be a BertConfig .*got int"),
    # the rest of the public API: tensors, backward, paths, optimizers, files, explain, pictures
    ("tensor_of_strings", lambda: st.tensor("abc"), TypeError,
     r"tensor: data must be numbers \(bool, int, float or complex\), got dtype <U3 from str data"),
    ("tensor_of_none", lambda: st.tensor(None), TypeError, r"tensor: data must be numbers .*got dtype object"),
    ("tensor_ragged", lambda: st.tensor([[1.0, 2.0], [3.0]]), ValueError,
     r"tensor: cannot make an array of list data with dtype None \(setting an array element with a sequence"),
    ("tensor_bad_dtype", lambda: st.tensor([1.0], dtype="foo"), TypeError,
     r"tensor: cannot make an array of list data with dtype foo"),
    ("grad_output_str", lambda: st.grad(t((2,)) * 2.0, t((2,)), grad_output="a"), TypeError,
     r"backward: grad_output must be a Tensor, an array or a real number, got str of dtype <U1"),
    ("grad_output_object", lambda: st.grad(t((2,)) * 2.0, t((2,)), grad_output={"a": 1}), TypeError,
     r"backward: grad_output must be a Tensor, an array or a real number, got dict$"),
    ("grad_semiring_class_needing_k", lambda: st.grad(t((2,)).sum(), t((2,)), semiring=st.semirings.KBest), TypeError,
     r"semiring KBest needs arguments .*: pass an instance, e.g. st.semirings.KBest\(5\)"),
    ("backward_inputs_number", lambda: st.backward(t((2,)).sum(), 3), TypeError,
     r"backward: inputs must be a Tensor or an iterable of Tensors, got int"),
    ("backward_inputs_string", lambda: st.backward(t((2,)).sum(), "x"), TypeError,
     r"backward: inputs must be a Tensor or an iterable of Tensors, got str"),
    ("bert_inputs_embeds_width", lambda: tiny_bert()(inputs_embeds=st.tensor(np.ones((1, 3, 5)))), ValueError,
     r"BERT: inputs_embeds must have shape \(B, T, 8\) \(hidden_size\), got \(1, 3, 5\)"),
    ("bert_inputs_embeds_list", lambda: tiny_bert()(inputs_embeds=[[[1.0] * 8]]), TypeError,
     r"BERT: inputs_embeds must be a Tensor or an array \(B, T, C\), got list"),
    ("bert_float_ids", lambda: tiny_bert()(input_ids=np.array([[1.0, 2.0]])), TypeError,
     r"BERT: input_ids must be integer token ids, got dtype float64"),
    ("read_path_float_entry", lambda: read_path_at(1.0), TypeError,
     r"read_path: entry must be an int \(a flat index into the values\), got 1.0"),
    ("read_path_no_result", lambda: st.read_path(None, t((2,)), 0), TypeError,
     r"read_path: result must be the BackwardResult of st.backward\(\.\.\., keep=True\), got NoneType"),
    ("optimizer_single_tensor", lambda: st.optim.SGD(t((2,)), lr=0.1), TypeError,
     r"SGD: params must be an iterable of Tensors or of parameter-group dicts, got Tensor "
     r"\(wrap it in a list: \[p\]\)"),
    ("optimizer_one_group_dict", lambda: st.optim.SGD({"params": [t((2,))]}, lr=0.1), TypeError,
     r"SGD: params must be an iterable .*got dict \(one parameter group: wrap it in a list: \[group\]\)"),
    ("optimizer_lr_str", lambda: st.optim.SGD([t((2,))], lr="a"), TypeError,
     r"SGD: lr must be a real number, got str 'a'"),
    ("optimizer_group_lr_str", lambda: st.optim.Adam([{"params": [t((2,))], "lr": "1"}]), TypeError,
     r"Adam: lr must be a real number, got str '1'"),
    ("adam_betas_scalar", lambda: st.optim.Adam([t((2,))], betas=0.9), TypeError,
     r"Adam: betas must be a pair of real numbers, got float 0.9"),
    ("sgd_nesterov_str", lambda: st.optim.SGD([t((2,))], momentum=0.9, nesterov="yes"), TypeError,
     r"SGD: nesterov must be a bool, got str 'yes'"),
    ("optimizer_non_leaf", lambda: st.optim.SGD([t((2,)) * 2.0]), ValueError,
     r"SGD: a parameter of shape \(2,\) is not a leaf \(it was computed by mul\)"),
    ("load_state_dict_not_mapping", lambda: nn.Linear(2, 2).load_state_dict(3), TypeError,
     r"Linear.load_state_dict: state must be a mapping of names to arrays, got int"),
    ("tokenizer_not_a_tokenizer", lambda: nn.BertTokenizer(3), TypeError,
     r"BertTokenizer: tokenizer must be a tokenizers.Tokenizer .*got int"),
    ("read_weights_missing", lambda: st.io.read_weights("/nonexistent/model.safetensors"), FileNotFoundError,
     r"/nonexistent/model.safetensors: no such weights file"),
    ("read_weights_int_path", lambda: st.io.read_weights(3), TypeError,
     r"read_weights: path must be a str or os.PathLike, got int"),
    ("load_checkpoint_int_path", lambda: st.io.load_checkpoint(123), TypeError,
     r"load_checkpoint: path must be a str or os.PathLike, got int"),
    ("save_tree_none_path", lambda: st.io.save_tree(None, {}), TypeError,
     r"save_tree: path must be a str or os.PathLike, got NoneType"),
    ("load_tree_missing", lambda: st.io.load_tree("/nonexistent/opt.safetensors"), FileNotFoundError,
     r"/nonexistent/opt.safetensors: no such file"),
    ("read_weights_of_a_directory", lambda: st.io.read_weights(Path(__file__).parent), IsADirectoryError,
     r"tests: is a directory, expected a weights file \(for a model directory use semitorch.io.load_checkpoint\)"),
    ("load_tree_of_a_directory", lambda: st.io.load_tree(Path(__file__).parent), IsADirectoryError,
     r"tests: is a directory, expected a file"),
    ("tensor_list_of_tensors", lambda: st.tensor([t(()), t(())]), TypeError,
     r"tensor: data must be numbers .*got dtype object from list data \(for a list of Tensors use st.stack\)"),
    ("top_paths_explainer_no_model", lambda: st.explain.TopPaths(None), TypeError,
     r"TopPaths: model must be a semitorch Module \(e.g. nn.BertForMaskedLM\) or a callable, got NoneType"),
    ("path_entropy_model_name", lambda: st.explain.PathEntropy("bert-base-uncased"), TypeError,
     r"PathEntropy: model must be a semitorch Module .*got str"),
    ("element_graph_max_nodes_str", lambda: st.viz.element_graph((t((2,)) * 2.0).sum(), "x"), TypeError,
     r"element_graph: max_nodes must be a number, got str 'x'"),
    ("element_graph_max_nodes_zero", lambda: st.viz.element_graph((t((2,)) * 2.0).sum(), 0), ValueError,
     r"element_graph: max_nodes must be >= 1, got 0"),
    ("element_graph_inputs_tensor", lambda: st.viz.element_graph((t((2,)) * 2.0).sum(), inputs=t((2,))), TypeError,
     r"element_graph: inputs must be an iterable of Tensors, got Tensor"),
]  # fmt: skip


def test_path_flow_of_the_wrong_object() -> None:
    """path_flow names what it wants when handed something else (needs matplotlib, an optional extra)."""
    pytest.importorskip("matplotlib")
    with pytest.raises(TypeError, match=r"path_flow: routes must be a ComponentRoutes .*got list"):
        st.viz.path_flow([])


def test_layernorm_accepts_torchs_one_axis_normalized_shape() -> None:
    """nn.LayerNorm((n,)) is nn.LayerNorm(n), as torch's normalized_shape of one axis."""
    assert nn.LayerNorm((4,)).normalized_shape == 4 and nn.LayerNorm((4,)).weight.shape == (4,)


def test_embedding_negative_padding_idx_counts_from_the_end() -> None:
    """padding_idx=-1 is the last row (as torch), stored non-negative, and that row starts at zero."""
    e = nn.Embedding(5, 3, padding_idx=-1)
    assert e.padding_idx == 4 and not e.weight.data[4].any()


@pytest.mark.parametrize(("name", "thunk", "exc", "match"), CASES, ids=[c[0] for c in CASES])
def test_error(name: str, thunk: Callable[[], Any], exc: type[BaseException], match: str) -> None:
    """The op fails with the expected exception type and a message naming the op and the shapes."""
    with pytest.raises(exc, match=match):
        thunk()


def test_grad_wrt_input_of_a_no_grad_result() -> None:
    """An output computed under no_grad does not require grad: a clear error, not a zero gradient."""
    x = t((2,))
    with st.no_grad():
        y = (x * x).sum()
    with pytest.raises(RuntimeError, match=r"or it was computed under st.no_grad\(\)"):
        st.grad(y, x)


# ---- devices: a fake cupy array (cupy is not installed here) ----------------------------------


class FakeCupyArray:
    """Looks like a cupy ndarray to semitorch.backend (its type's module starts with 'cupy')."""

    def __init__(self, shape: tuple[int, ...], dtype: Any = np.float32) -> None:
        self.shape = shape
        self.dtype = np.dtype(dtype)
        self.ndim = len(shape)
        self.size = int(np.prod(shape))


FakeCupyArray.__module__ = "cupy._core.core"


def test_fake_cupy_array_is_seen_as_cuda() -> None:
    """Sanity check of the fake: the backend classifies it as a cuda array."""
    assert backend.is_cupy_array(FakeCupyArray((2,)))
    assert st.Tensor(FakeCupyArray((2,))).device == "cuda"


@pytest.mark.parametrize(
    ("name", "op"),
    [
        ("add", lambda a, b: a + b),
        ("mul", lambda a, b: a * b),
        ("matmul", lambda a, b: a @ b),
        ("maximum", st.maximum),
        ("where", lambda a, b: st.where(np.ones(2, bool), a, b)),
        ("concat", lambda a, b: st.concat([a, b])),
        ("stack", lambda a, b: st.stack([a, b])),
    ],
)
def test_mixing_cpu_and_cuda_tensors_raises(name: str, op: Callable[[Any, Any], Any]) -> None:
    """A float32 cpu tensor and a cupy-backed tensor in one op: ValueError naming the op and both devices."""
    cpu = st.tensor(np.ones(2, np.float32))
    gpu = st.Tensor(FakeCupyArray((2,)))
    with pytest.raises(ValueError, match=rf"{name}: operands are on different devices \(.*cpu \(2,\).*cuda \(2,\)"):
        op(cpu, gpu)
    with pytest.raises(ValueError, match=rf"{name}: operands are on different devices \(.*cuda \(2,\).*cpu \(2,\)"):
        op(gpu, cpu)


def test_xp_of_mixed_devices_names_both() -> None:
    """The backend's own check names both devices."""
    with pytest.raises(ValueError, match=r"cpu \(numpy\) and cuda \(cupy\)"):
        backend.xp_of(np.ones(2), FakeCupyArray((2,)))


def test_cuda_unavailable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking for device='cuda' without a usable GPU says so (no GPU simulated, so this runs everywhere)."""
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"cannot move to device 'cuda': no CUDA GPU is available"):
        st.tensor([1.0], device="cuda")


def test_grad_inputs_of_the_wrong_kind() -> None:
    """st.grad names what it got when inputs is neither a Tensor nor a list/tuple of Tensors."""
    import semitorch as st

    x = st.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match="inputs must be a Tensor or a list/tuple of Tensors, got int"):
        st.grad(x.sum(), 5)
    with pytest.raises(TypeError, match=r"inputs\[1\] is a str"):
        st.grad(x.sum(), [x, "x"])


def test_registered_ops_keep_their_signature_and_registry_entry() -> None:
    """The argument check wraps the op: the registry and the module hold the same function, with its signature."""
    assert st.OPS["exp"] is st.exp and st.OPS["layer_norm"] is st.layer_norm
    assert list(inspect.signature(st.layer_norm).parameters) == ["x", "weight", "bias", "eps"]
    assert st.exp.__name__ == "exp" and st.exp.__doc__ == inspect.unwrap(st.exp).__doc__ and "eˣ" in st.exp.__doc__


def test_a_users_registered_op_gets_the_argument_check() -> None:
    """st.register on a user's op checks its Tensor-annotated parameters too; un-annotated ones are left alone."""

    def scaled_(x: st.Tensor, k: float, tag: Any = None) -> st.Tensor:
        return x * k

    op = st.register(scaled_)
    try:
        assert st.OPS["scaled"] is op
        np.testing.assert_array_equal(op(t((2,)), 3.0, tag=object()).data, [3.0, 3.0])
        with pytest.raises(TypeError, match=r"scaled: x must be a semitorch Tensor .*got list"):
            op([1.0, 2.0], 3.0)
        with pytest.raises(TypeError, match=r"scaled: k must be a real number, got str 'x'"):
            op(t((2,)), k="x")
    finally:
        del st.OPS["scaled"]


def test_arguments_of_numpy_kinds_still_work() -> None:
    """The argument check converts what the ops always accepted: arrays, numpy scalars, ranges, generators, 0/1."""
    x = t((2, 3))
    np.testing.assert_allclose(st.exp(np.zeros(3)).data, np.ones(3))  # a numeric array: a constant Tensor
    c = st.concat([x, np.ones((2, 3))])
    assert c.shape == (4, 3) and st.grad(c.sum(), x).shape == (2, 3)
    assert st.concat(v for v in [x, x]).shape == (4, 3)  # a generator, read once
    assert st.layer_norm(x, np.ones(3), np.zeros(3)).shape == (2, 3)
    np.testing.assert_array_equal(x.clip(np.array([-1.0, 0.0, 2.0]), np.array([1.0, 1.0, 3.0])).data[0], [1, 1, 2])
    np.testing.assert_allclose(((x * 3.0) ** np.asarray(2.0)).data, 9.0 * np.ones((2, 3)))  # a 0-d array exponent
    assert st.sum(x, axis=np.array([0, 1])).shape == () and st.sum(x, axis=range(2)).shape == ()
    assert st.sum(x, 0, np.True_).shape == (1, 3) and st.sum(x, 0, keepdims=1).shape == (1, 3)
    assert st.transpose(x, np.array([1, 0])).shape == (3, 2) and x.transpose(range(1, -1, -1)).shape == (3, 2)
    assert x.reshape(np.array([3, 2])).shape == (3, 2) and x.reshape(np.int64(6)).shape == (6,)
    assert st.broadcast_to(t((3,)), np.array([2, 3])).shape == (2, 3) and st.broadcast_to(t((1,)), 3).shape == (3,)
    assert st.dropout(x, np.float32(0.5), training=0).shape == (2, 3) and st.softmax(x, np.int64(-1)).shape == (2, 3)


def test_register_leaves_classes_and_other_libraries_types_alone() -> None:
    """A registered class stays a class; a parameter annotated with another library's Tensor is not checked."""

    class Thing_:  # noqa: N801  (the trailing underscore is what register drops)
        pass

    def foreign_(x: "torch.Tensor") -> Any:  # noqa: F821, UP037  (a string: never resolved)
        return x

    try:
        assert st.register(Thing_) is Thing_ and isinstance(Thing_, type)
        assert st.register(foreign_) is foreign_ and foreign_([1, 2]) == [1, 2]
    finally:
        st.OPS.pop("Thing", None)
        st.OPS.pop("foreign", None)


def test_a_subclassed_optimizer_keeps_its_own_options() -> None:
    """Only the built-in hyper-parameters are checked: a subclass's flags and objects pass through."""

    class MyOpt(st.optim.Optimizer):
        def __init__(self, params: Any, lr: float = 0.1, amsgrad: bool = False, schedule: Any = None) -> None:
            super().__init__(params, {"lr": lr, "amsgrad": amsgrad, "schedule": schedule})

    opt = MyOpt([t((2,))], schedule="cosine")
    assert opt.param_groups[0]["amsgrad"] is False and opt.param_groups[0]["schedule"] == "cosine"
    assert st.optim.SGD([t((2,))], lr=np.array(0.1), nesterov=0).param_groups[0]["lr"] == 0.1
    assert st.optim.Adam([t((2,))], betas=[0.9, 0.99]).param_groups[0]["betas"] == (0.9, 0.99)


def test_backward_of_one_input_tensor_is_that_input_not_its_rows() -> None:
    """st.backward(out, x) with a bare Tensor means [x] (iterating x would have walked its rows); any iterable works."""
    import collections

    x = t((2, 3))
    y = (x * 2.0).sum()
    for inputs in (x, [x], (x,), collections.deque([x]), {"x": x}.values(), (v for v in [x])):
        res = st.backward(y, inputs)
        assert len(res.values) == 1 and res.values[0].shape == (2, 3), type(inputs)
        np.testing.assert_array_equal(res.values[0], 2.0)
    np.testing.assert_array_equal(st.backward(y, [x, y]).values[1], 1.0)  # the output itself: the seed


def test_bert_takes_an_array_as_inputs_embeds() -> None:
    """A (B, T, C) array is a constant input, the same as the Tensor holding it."""
    m, E = tiny_bert(), np.random.default_rng(0).standard_normal((1, 3, 8)).astype(np.float32)
    np.testing.assert_array_equal(
        m(inputs_embeds=E).last_hidden_state.data, m(inputs_embeds=st.tensor(E)).last_hidden_state.data
    )


def test_a_semiring_class_whose_init_fails_reports_its_own_error() -> None:
    """Only a class that needs arguments gets the "pass an instance" message; its other errors propagate."""

    class Broken(st.semirings.Real):
        def __init__(self, scale: float = 1.0) -> None:
            super().__init__()
            raise ZeroDivisionError("inside Broken")

    with pytest.raises(ZeroDivisionError, match="inside Broken"):
        st.grad((t((2,)) * 2.0).sum(), t((2,)), semiring=Broken)
    assert st.grad((t((2,)) * 2.0).sum(), t((2,)), semiring=st.semirings.Log).shape == (2,)  # no arguments needed


def test_read_path_takes_a_0d_integer_array() -> None:
    """An entry from np.argmax(...) (a numpy int) or a 0-d integer array reads the same path as the int."""
    assert read_path_at(np.array(1)).weight == read_path_at(1).weight == read_path_at(np.int64(1)).weight == 2.0
