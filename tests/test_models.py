"""Model families on tiny random BERT/T5: fixed head init, freezing, class logits, folder round trips."""

from __future__ import annotations

import shutil

import pytest
import torch
from sweep_helpers import one_torch_thread  # noqa: F401 (autouse fixture)
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from hf_soup import models
from hf_soup.errors import SoupError
from hf_soup.tasks import get_task

RTE = get_task("rte")
MNLI = get_task("mnli")


def _batch(tokenizer_dir, texts=("a cat sat on the mat", "the dog")):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    return dict(tokenizer(list(texts), padding=True, return_tensors="pt"))


def test_family_resolution(tiny_bert_dir, tiny_t5_dir):
    bert, t5 = AutoConfig.from_pretrained(tiny_bert_dir), AutoConfig.from_pretrained(tiny_t5_dir)
    assert models.resolve_family("auto", bert) == models.ENCODER
    assert models.resolve_family("auto", t5) == models.T5_CLASSIFICATION
    assert models.resolve_family("t5-text2text", t5) == models.T5_TEXT2TEXT
    with pytest.raises(SoupError, match="encoder-decoder"):
        models.resolve_family("encoder", t5)
    with pytest.raises(SoupError, match="needs an encoder-decoder"):
        models.resolve_family("t5-classification", bert)
    with pytest.raises(SoupError, match="not one of"):
        models.resolve_family("gpt", bert)


@pytest.mark.parametrize("family", [models.ENCODER, models.T5_CLASSIFICATION])
def test_head_init_is_fixed_across_run_seeds_and_leaves_the_rng_alone(family, tiny_bert_dir, tiny_t5_dir):
    source = tiny_bert_dir if family == models.ENCODER else tiny_t5_dir
    heads = []
    for run_seed in (0, 1):
        torch.manual_seed(run_seed)
        model, new = models.load_for_task(source, family, RTE, head_init_seed=42)
        after = torch.rand(1)
        torch.manual_seed(run_seed)
        assert torch.equal(after, torch.rand(1)), "loading must not consume the run's RNG"
        assert new and all(not name.startswith(model.base_model_prefix + ".") for name in new)
        state = model.state_dict()
        heads.append({name: state[name].clone() for name in new})
    assert heads[0].keys() == heads[1].keys()
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    other, _ = models.load_for_task(source, family, RTE, head_init_seed=7)
    weight = next(k for k in heads[0] if k.endswith("weight"))
    assert not torch.equal(other.state_dict()[weight], heads[0][weight])
    assert other.config.id2label == RTE.id2label and other.config.num_labels == 2


def test_class_logits_for_every_family(tiny_bert_dir, tiny_t5_dir, tokenizer_dir):
    batch = _batch(tokenizer_dir)
    bert, _ = models.load_for_task(tiny_bert_dir, models.ENCODER, MNLI, head_init_seed=0)
    assert models.class_logits(bert.eval(), {**batch, "labels": torch.tensor([0, 1])}).shape == (2, 3)
    t5cls, _ = models.load_for_task(tiny_t5_dir, models.T5_CLASSIFICATION, RTE, head_init_seed=0)
    assert models.class_logits(t5cls.eval(), batch).shape == (2, 2)  # token_type_ids ignored
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = models.label_token_ids(tokenizer, models.default_label_words(RTE), RTE)
    t2t, new = models.load_for_task(tiny_t5_dir, models.T5_TEXT2TEXT, RTE, head_init_seed=0, token_ids=ids)
    assert new == []  # no new head: it speaks through the LM head
    logits = models.class_logits(t2t.eval(), batch)
    assert logits.shape == (2, 2) and logits.dtype == torch.float32
    start = torch.full((2, 1), t2t.config.decoder_start_token_id)
    full = t2t(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=start).logits
    assert torch.allclose(logits, full[:, 0, ids])


def test_text2text_folder_is_self_describing(tiny_t5_dir, tokenizer_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = models.label_token_ids(tokenizer, ["yes", "no"], RTE)
    model, _ = models.load_for_task(
        tiny_t5_dir, models.T5_TEXT2TEXT, RTE, head_init_seed=0, label_words=["yes", "no"], token_ids=ids
    )
    model.save_pretrained(tmp_path)
    loaded = models.load_ingredient_model(tmp_path)
    assert models.family_of(loaded.config) == models.T5_TEXT2TEXT and not loaded.training
    assert getattr(loaded.config, models.LABEL_WORDS_KEY) == ["yes", "no"]
    assert getattr(loaded.config, models.LABEL_TOKEN_IDS_KEY) == ids
    batch = _batch(tokenizer_dir)
    assert torch.allclose(models.class_logits(loaded, batch), models.class_logits(model.eval(), batch))


def test_label_words_must_have_distinct_first_tokens(tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    with pytest.raises(SoupError, match="share a first token"):
        models.label_token_ids(tokenizer, ["cat", "cat"], RTE)
    with pytest.raises(SoupError, match="3 words for the 2 labels"):
        models.label_token_ids(tokenizer, ["a", "b", "c"], RTE)
    with pytest.raises(SoupError, match="regression"):
        models.default_label_words(get_task("stsb"))


@pytest.mark.parametrize("family", [models.ENCODER, models.T5_CLASSIFICATION, models.T5_TEXT2TEXT])
def test_freeze_layers_freezes_embeddings_and_first_layers(family, tiny_bert_dir, tiny_t5_dir):
    source = tiny_bert_dir if family == models.ENCODER else tiny_t5_dir
    model, _ = models.load_for_task(source, family, RTE, head_init_seed=0, token_ids=[5, 6])
    assert models.freeze_layers(model, 0) == 0
    frozen = models.freeze_layers(model, 1)
    names = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen > 0 and names
    layer = "encoder.block.0." if family != models.ENCODER else "encoder.layer.0."
    assert any(layer in n for n in names) and not any(layer.replace("0", "1") in n for n in names)
    assert any("embed" in n or "shared" in n for n in names)
    with pytest.raises(SoupError, match="> the 2 layers"):
        models.freeze_layers(model, 3)


def test_config_overrides_reach_the_model_and_structure_is_protected(tiny_bert_dir):
    keys = models.config_override_keys(AutoConfig.from_pretrained(tiny_bert_dir))
    assert "hidden_dropout_prob" in keys and "attention_probs_dropout_prob" in keys
    assert not {"hidden_size", "vocab_size", "num_hidden_layers", "id2label", "pad_token_id"} & set(keys)
    model, _ = models.load_for_task(tiny_bert_dir, models.ENCODER, RTE, head_init_seed=0,
                                    config_overrides={"hidden_dropout_prob": 0.3})  # fmt: skip
    assert model.config.hidden_dropout_prob == 0.3


def test_base_model_resolution_and_refusals(tiny_bert_dir, tmp_path):
    base = models.resolve_base_model(models.ModelArguments(model_name_or_path=str(tiny_bert_dir)))
    assert base.local_dir == tiny_bert_dir.resolve() and len(base.weights_sha256) == 64 and base.revision is None
    assert base.describe()["name_or_path"] == str(tiny_bert_dir)
    with pytest.raises(SoupError, match="does not exist"):
        models.resolve_base_model(models.ModelArguments(model_name_or_path=str(tmp_path / "nope")))
    with pytest.raises(SoupError, match="no model given"):
        models.resolve_base_model(models.ModelArguments())
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_bert_dir, pickled)
    weights = (pickled / "model.safetensors").read_bytes()
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(weights)
    with pytest.raises(SoupError, match="--allow_pickle"):
        models.resolve_base_model(models.ModelArguments(model_name_or_path=str(pickled)))


def test_label_mismatch_is_refused(tiny_bert_dir, tmp_path):
    models.check_task_labels(AutoConfig.from_pretrained(tiny_bert_dir), RTE)  # default LABEL_i: a new head
    mnli = AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=3, id2label=MNLI.id2label, label2id=MNLI.label2id
    )
    mnli.save_pretrained(tmp_path)
    with pytest.raises(SoupError, match="fine-tuned for labels"):
        models.check_task_labels(AutoConfig.from_pretrained(tmp_path), RTE)
    models.check_task_labels(AutoConfig.from_pretrained(tmp_path), MNLI)
