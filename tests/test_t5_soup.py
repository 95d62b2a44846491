"""T5 end to end: sweep -> greedy soup -> from_pretrained, for both T5 families (tiny random T5).

No pretrained T5 exists offline (../shared/ASSETS.md): the tiny T5 from conftest stands in for
t5-small; what is tested is the plumbing (family detection, prompts, label words, scoring hooks).
"""

from __future__ import annotations

import json

import pytest
import torch
from sweep_helpers import ingredient_dirs, load_sweep_main, one_torch_thread, tiny_flags, tiny_glue_fixture  # noqa: F401
from transformers import AutoTokenizer

from hf_soup import merge, models
from hf_soup.data import DataArguments, load_glue
from hf_soup.scoring import Scorer
from hf_soup.tasks import get_task


@pytest.mark.parametrize("family", ["t5-classification", "t5-text2text"])
def test_t5_sweep_merge_from_pretrained(family, tiny_t5_dir, tiny_glue, tmp_path):
    runs, soup_dir = tmp_path / "runs", tmp_path / "soup"
    flags = tiny_flags(tiny_t5_dir, tiny_glue, runs, "--model_family", family, "--grid", "learning_rate=1e-3,3e-3")
    assert load_sweep_main()(flags) == 0
    assert len(ingredient_dirs(runs)) == 2

    assert merge.main(["--ingredients", str(runs), "--recipe", "greedy", "--output", str(soup_dir)]) == 0
    soup = json.loads((soup_dir / "soup.json").read_text())
    assert soup["task"] == "rte" and len(soup["ingredients"]) == 2

    # A user's load: the soup folder alone says which family it is; its score is the one recorded.
    model = models.load_ingredient_model(soup_dir)
    assert models.family_of(model.config) == family
    if family == "t5-classification":
        assert type(model).__name__ == "T5ForSequenceClassification"
    tokenizer = AutoTokenizer.from_pretrained(soup_dir)
    splits = load_glue(DataArguments(task="rte", glue_dir=str(tiny_glue), heldout_size=40, max_seq_length=32))
    features = models.encode_splits(splits, tokenizer, family, 32)
    scorer = Scorer(
        model, get_task("rte"), features, pad_token_id=tokenizer.pad_token_id, logits_fn=models.class_logits
    )
    with torch.inference_mode():
        heldout = scorer.score("heldout").metrics
    assert heldout["primary"] == pytest.approx(soup["results"]["soup"]["heldout"]["primary"])
    assert heldout["loss"] == pytest.approx(soup["results"]["soup"]["heldout"]["loss"], rel=1e-4)
