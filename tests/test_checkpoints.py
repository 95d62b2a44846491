"""Finding ingredients, lazy (sharded) reads, and every refusal of hf_soup.checkpoints."""

import json

import pytest
import torch
from soup_factory import ingredient_record, make_ingredient, tiny_classifier

from hf_soup.checkpoints import (
    Checkpoint,
    check_compatible,
    drop_duplicate_runs,
    find_ingredients,
    find_trainer_checkpoints,
    first_difference,
    mixed_dropout,
)
from hf_soup.errors import SoupError
from hf_soup.model_writer import save_state


@pytest.fixture
def pair(tmp_path, tokenizer_dir):
    a = make_ingredient(tmp_path / "a", tokenizer_dir, noise_seed=1)
    b = make_ingredient(tmp_path / "b", tokenizer_dir, noise_seed=2)
    return a, b


def _refusal(a, b, match):
    with pytest.raises(SoupError, match=match) as info:
        check_compatible([Checkpoint(a), Checkpoint(b)])
    assert str(a) in str(info.value) and str(b) in str(info.value)  # names both folders
    assert "\n" not in str(info.value)


def test_find_ingredients_expands_sweeps_globs_and_skips_temporaries(tmp_path, tokenizer_dir):
    sweep = tmp_path / "runs"
    for name in ("r2", "r1", ".tmp-r3-killed"):
        make_ingredient(sweep / name, tokenizer_dir, noise_seed=1)
    (sweep / "notes").mkdir()
    extra = make_ingredient(tmp_path / "extra-seed5", tokenizer_dir, noise_seed=5)
    found = find_ingredients([str(sweep), str(tmp_path / "extra-*")])
    assert found == [sweep / "r1", sweep / "r2", extra]  # sorted within a sweep
    for bad, message in ((tmp_path / "missing", "no such folder"), (tmp_path / "nope-*", "no file or folder matches")):
        with pytest.raises(SoupError, match=message):
            find_ingredients([str(bad)])
    with pytest.raises(SoupError, match="no model folders inside"):
        find_ingredients([str(sweep / "notes")])


def test_the_same_folder_twice_is_refused_naming_both_paths(tmp_path, tokenizer_dir):
    sweep = tmp_path / "runs"
    a = make_ingredient(sweep / "a", tokenizer_dir, noise_seed=1)
    make_ingredient(sweep / "b", tokenizer_dir, noise_seed=2)
    (tmp_path / "link").symlink_to(a)
    for arguments, second in (
        ([str(a), str(a)], a),  # A A
        ([str(a), str(tmp_path / "link")], tmp_path / "link"),  # a symlink to A
        ([str(a), str(sweep / ".." / "runs" / "a")], sweep / ".." / "runs" / "a"),  # another spelling
        ([str(sweep), str(a)], a),  # a sweep folder and one of its runs
        ([str(sweep / "*"), str(sweep)], sweep / "a"),  # overlapping glob and folder
    ):
        with pytest.raises(SoupError, match="same folder") as info:
            find_ingredients(arguments)
        message = str(info.value)
        assert str(a) in message and str(second) in message and "count twice" in message, message


def test_trainer_checkpoints_sorted_by_step(tmp_path, tokenizer_dir):
    for step in (10, 100, 20):
        make_ingredient(tmp_path / f"checkpoint-{step}", tokenizer_dir, noise_seed=step, with_record=False)
    assert [p.name for p in find_trainer_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-20", "checkpoint-100"]


def test_lazy_mapping_reads_what_was_saved(pair):
    from safetensors.torch import load_file

    checkpoint = Checkpoint(pair[0])
    stored = load_file(pair[0] / "model.safetensors")
    assert set(checkpoint) == set(stored) and len(checkpoint) == len(stored)
    name = "classifier.weight"
    assert torch.equal(checkpoint[name], stored[name])
    assert checkpoint.shape(name) == tuple(stored[name].shape) and checkpoint.dtype(name) == torch.float32
    assert checkpoint.name == "a" and checkpoint.ingredient["run_id"] == "a"


def test_sharded_safetensors_read_and_written(tmp_path, tokenizer_dir):
    from transformers import AutoModelForSequenceClassification

    source = make_ingredient(tmp_path / "sharded", tokenizer_dir, noise_seed=1, max_shard_size="20KB")
    assert (source / "model.safetensors.index.json").is_file()
    checkpoint = Checkpoint(source)
    assert len(checkpoint.files) > 1
    out = tmp_path / "out"
    out.mkdir()
    written = save_state(dict(checkpoint.items()), out, max_shard_size="20KB")
    assert len(written) > 1 and (out / "model.safetensors.index.json").is_file()
    (out / "config.json").write_text((source / "config.json").read_text())
    reloaded = AutoModelForSequenceClassification.from_pretrained(out)
    for name, tensor in reloaded.state_dict().items():
        if name in checkpoint:
            assert torch.equal(tensor, checkpoint[name]), name


def test_architecture_refused(tmp_path, tokenizer_dir, pair):
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    other = BertForMaskedLM(
        BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    )
    mlm = make_ingredient(tmp_path / "mlm", tokenizer_dir, noise_seed=0, model=other)
    _refusal(pair[0], mlm, "architecture")


def test_parameter_names_shapes_and_dtypes_refused(tmp_path, tokenizer_dir, pair):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    wide = make_ingredient(tmp_path / "wide", tokenizer_dir, noise_seed=0, model=tiny_classifier(vocab, num_labels=3))
    _refusal(pair[0], wide, r"shape of 'classifier\.(weight|bias)'")
    half = make_ingredient(tmp_path / "half", tokenizer_dir, noise_seed=3, dtype=torch.float16)
    _refusal(pair[0], half, "dtype of")
    from safetensors.torch import load_file, save_file

    state = load_file(pair[1] / "model.safetensors")
    state.pop("classifier.bias")
    save_file(state, str(pair[1] / "model.safetensors"), metadata={"format": "pt"})
    _refusal(pair[0], pair[1], "parameter names: 'classifier.bias' only in the first")


def test_label_map_refused(tmp_path, tokenizer_dir, pair):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    swapped = tiny_classifier(vocab, id2label={0: "not_entailment", 1: "entailment"})
    other = make_ingredient(tmp_path / "swapped", tokenizer_dir, noise_seed=0, model=swapped)
    _refusal(pair[0], other, "label map")


def test_tokenizer_refused_but_runtime_state_ignored(tokenizer_dir, pair):
    tokenizer_json = pair[1] / "tokenizer.json"
    content = json.loads(tokenizer_json.read_text())
    content["truncation"] = {"direction": "Right", "max_length": 7, "strategy": "LongestFirst", "stride": 0}
    tokenizer_json.write_text(json.dumps(content))
    check_compatible([Checkpoint(pair[0]), Checkpoint(pair[1])])  # truncation state is not the tokenizer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pair[1])
    tokenizer.add_tokens(["zzzunseen"])
    tokenizer.save_pretrained(pair[1])
    _refusal(pair[0], pair[1], "tokenizer files")


def test_config_values_refused_but_paths_versions_dtype_and_dropout_are_not(tmp_path, tokenizer_dir, pair):
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(tokenizer_dir))
    eps = make_ingredient(
        tmp_path / "eps", tokenizer_dir, noise_seed=3, model=tiny_classifier(vocab, layer_norm_eps=1e-5)
    )
    _refusal(pair[0], eps, r"config\.json 'layer_norm_eps': 1e-12 vs 1e-05")
    config = json.loads((pair[1] / "config.json").read_text())
    config.pop("attention_probs_dropout_prob")  # absent = the model type's default (0.1): not a difference
    config.update(_name_or_path="/elsewhere", transformers_version="4.0.0", dtype="bfloat16", hidden_dropout_prob=0.3)
    (pair[1] / "config.json").write_text(json.dumps(config))
    check_compatible([Checkpoint(pair[0]), Checkpoint(pair[1])])
    assert mixed_dropout([Checkpoint(pair[0]), Checkpoint(pair[1])]) == {"hidden_dropout_prob": [0.1, 0.3]}
    config["pad_token_id"] = 3
    (pair[1] / "config.json").write_text(json.dumps(config))
    _refusal(pair[0], pair[1], r"config\.json 'pad_token_id': 0 vs 3")


def test_an_unset_problem_type_is_the_one_transformers_infers(pair):
    """A label-smoothed run never sets it (the Trainer computes the loss): it still mixes with its grid."""
    configs = [json.loads((folder / "config.json").read_text()) for folder in pair]
    configs[0]["problem_type"], configs[1]["problem_type"] = "single_label_classification", None
    for folder, config in zip(pair, configs):
        (folder / "config.json").write_text(json.dumps(config))
    check_compatible([Checkpoint(pair[0]), Checkpoint(pair[1])])
    configs[1]["problem_type"] = "multi_label_classification"  # a different loss: refused
    (pair[1] / "config.json").write_text(json.dumps(configs[1]))
    _refusal(pair[0], pair[1], r"config\.json 'problem_type': 'single_label_classification' vs 'multi_label")
    configs[0]["problem_type"], configs[1]["problem_type"] = None, "regression"  # unset, two labels: not regression
    for folder, config in zip(pair, configs):
        (folder / "config.json").write_text(json.dumps(config))
    assert "'problem_type': None vs 'regression'" in str(first_difference(Checkpoint(pair[0]), Checkpoint(pair[1])))


def test_one_grid_point_twice_is_dropped_once(tmp_path, tokenizer_dir):
    def point(name, seed, lr=1e-5, sweep_id="s1"):
        record = ingredient_record(name, seed=seed, sweep_id=sweep_id, hyperparameters={"learning_rate": lr})
        return Checkpoint(make_ingredient(tmp_path / name, tokenizer_dir, noise_seed=seed, record=record))

    old, new, other_seed, other_sweep = (
        point("lr1e-05-abc", 0),
        point("lr1e-05_seed0-abc", 0),
        point("s1", 1),
        point("x", 0, sweep_id="s2"),
    )
    kept, dropped = drop_duplicate_runs([old, other_seed, new, other_sweep])
    assert kept == [old, other_seed, other_sweep] and dropped == [(new, old)]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"base_model": {"name_or_path": "other", "revision": None, "weights_sha256": "zzz"}}, "base model"),
        ({"split": {"fingerprint": "other"}}, "split fingerprint"),
        ({"head_init_seed": 7}, "head_init_seed"),
        ({"task": "mrpc"}, "task"),
    ],
)
def test_ingredient_json_differences_refused(tmp_path, tokenizer_dir, pair, overrides, match):
    other = make_ingredient(
        tmp_path / "other", tokenizer_dir, noise_seed=4, record=ingredient_record("other", **overrides)
    )
    _refusal(pair[0], other, match)


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
def test_nan_and_inf_weights_refused_naming_tensor_and_file(pair, bad_value):
    from safetensors.torch import load_file, save_file

    path = pair[1] / "model.safetensors"
    state = load_file(path)
    state["classifier.weight"][0, 0] = bad_value
    save_file(state, str(path), metadata={"format": "pt"})
    checkpoint = Checkpoint(pair[1])
    check_compatible([Checkpoint(pair[0]), checkpoint])  # headers agree; values are checked on read
    with pytest.raises(SoupError, match=r"model\.safetensors: tensor 'classifier\.weight' contains NaN or Inf"):
        checkpoint["classifier.weight"]


def _to_bin(folder):
    from safetensors.torch import load_file

    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    return state


def test_pickled_bin_refused_without_opt_in(pair):
    state = _to_bin(pair[1])
    with pytest.raises(SoupError, match=r"pytorch_model\.bin: pickled weights .* --allow_pickle"):
        Checkpoint(pair[1])
    checkpoint = Checkpoint(pair[1], allow_pickle=True)
    assert torch.equal(checkpoint["classifier.weight"], state["classifier.weight"])
    check_compatible([Checkpoint(pair[0]), checkpoint])


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_opt_in_still_loads_with_weights_only(pair, capsys):
    state = _to_bin(pair[1])
    state["payload"] = _Exploit()
    torch.save(state, pair[1] / "pytorch_model.bin")
    with pytest.raises(SoupError, match=r"weights_only=True"):
        Checkpoint(pair[1], allow_pickle=True)
    assert "this must never run" not in capsys.readouterr().out
