"""The model-family table: one row per family, and the code reads the row (tiny random BERT/T5)."""

import pytest
import transformers

from hf_soup import models
from hf_soup.families import FAMILIES, FAMILY_TABLE, T5_PROMPT, TEXT, family_row
from hf_soup.tasks import get_task
from hf_soup.temperature import output_layer

RTE = get_task("rte")


def test_the_table_has_one_row_per_family_and_nothing_else():
    assert tuple(FAMILY_TABLE) == FAMILIES
    for name, row in FAMILY_TABLE.items():
        assert row.name == name
        assert isinstance(getattr(transformers, row.loader), type)  # a real Auto class
        assert row.input_format in (TEXT, T5_PROMPT)
        assert row.pipeline_tag in ("text-classification", "text2text-generation")
        assert row.label_words == (not row.head_layers)
    with pytest.raises(ValueError, match="unknown model family 'gpt'"):
        family_row("gpt")


@pytest.mark.parametrize("family", FAMILIES)
def test_a_loaded_model_is_what_its_row_says(family, tiny_bert_dir, tiny_t5_dir, tokenizer_dir):
    row = family_row(family)
    source = tiny_t5_dir if row.encoder_decoder else tiny_bert_dir
    ids = [5, 6] if row.label_words else None
    model, new = models.load_for_task(source, family, RTE, head_init_seed=0, token_ids=ids)
    auto_class = getattr(transformers, row.loader)
    assert type(model) is auto_class._model_mapping[type(model.config)]  # the row's Auto class picked it
    assert models.model_class_for(family) is getattr(transformers, row.loader)
    if row.label_words:
        assert new == [] and getattr(model.config, models.LABEL_TOKEN_IDS_KEY) == ids
    else:
        assert output_layer(model, RTE.num_labels) in row.head_layers  # the temperature fold finds the head
        assert any(name.startswith(output_layer(model, RTE.num_labels)) for name in new)  # ... the new one

    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_dir)
    hooks = models.input_encoder(family, RTE, tokenizer, 32)
    if row.input_format == T5_PROMPT:
        encoded = hooks["encoder"]({"sentence1": ["A cat sleeps."], "sentence2": ["An animal sleeps."]})
        text = tokenizer.decode(encoded["input_ids"][0], skip_special_tokens=True)
        assert text.startswith("rte sentence1 : a cat sleeps. sentence2 :") and hooks["encoder_name"] == T5_PROMPT
    else:
        assert hooks == {}  # tokenize_splits' default: one text or a pair


def test_resolve_family_reads_the_row(tiny_bert_dir, tiny_t5_dir):
    bert = transformers.AutoConfig.from_pretrained(tiny_bert_dir)
    t5 = transformers.AutoConfig.from_pretrained(tiny_t5_dir)
    with pytest.raises(Exception, match="is encoder-decoder; use t5-classification or t5-text2text"):
        models.resolve_family("encoder", t5)
    with pytest.raises(Exception, match="t5-text2text needs an encoder-decoder"):
        models.resolve_family("t5-text2text", bert)


def test_the_sweep_refuses_lp_ft_for_a_family_without_a_new_head(tiny_t5_dir, tmp_path, capsys):
    from sweep_helpers import load_sweep_main, tiny_flags, write_tiny_rte

    from hf_soup.errors import cli_main

    glue = write_tiny_rte(tmp_path / "glue")
    out = tmp_path / "out"
    argv = tiny_flags(tiny_t5_dir, glue, out, "--model_family", "t5-text2text", "--lp_ft_epochs", "1")
    assert cli_main(load_sweep_main(), argv) == 2
    assert "lp_ft_epochs: t5-text2text has no new head to fit" in capsys.readouterr().err
    assert not out.exists()
