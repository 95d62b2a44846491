"""T5 end to end: sweep -> greedy soup -> from_pretrained -> publish -> the card's own snippet, for
both T5 families (tiny random T5).

No pretrained T5 exists offline (../shared/ASSETS.md): the tiny T5 from conftest stands in for
t5-small; what is tested is the plumbing (family detection, prompts, label words, scoring hooks,
the publisher's round trip, the card's loader and input format).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from hub_client import client_env
from hub_server import HubServer
from sweep_helpers import ingredient_dirs, load_sweep_main, one_torch_thread, tiny_flags, tiny_glue_fixture  # noqa: F401
from transformers import AutoTokenizer

from hf_soup import merge, models
from hf_soup.data import DataArguments, load_splits
from hf_soup.scoring import Scorer
from hf_soup.tasks import get_task

REPO = "ns/t5-soup"
VERIFY_SCRIPT = textwrap.dedent(
    """
    import contextlib, io, os, re, sys, torch
    from huggingface_hub import hf_hub_download
    from safetensors.torch import load_file
    import transformers

    folder, repo, class_name = sys.argv[1:]
    model = getattr(transformers, class_name).from_pretrained(repo)
    local, remote = load_file(os.path.join(folder, "model.safetensors")), model.state_dict()
    assert all(torch.equal(remote[name], tensor) for name, tensor in local.items())
    card = open(hf_hub_download(repo, "README.md")).read()
    snippet = re.search(r"```python\\n(.*?)```", card, re.S).group(1)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet, {})  # the card's usage snippet, exactly as written
    print("SNIPPET", repr(printed.getvalue()))
    """
)


@pytest.mark.parametrize("family", ["t5-classification", "t5-text2text"])
def test_t5_sweep_merge_publish_and_the_card_snippet(family, tiny_t5_dir, tiny_glue, tmp_path, cli_env):
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
    splits = load_splits(DataArguments(task="rte", glue_dir=str(tiny_glue), heldout_size=40, max_seq_length=32))
    features = models.encode_splits(splits, tokenizer, family, 32)
    scorer = Scorer(
        model, get_task("rte"), features, pad_token_id=tokenizer.pad_token_id, logits_fn=models.class_logits
    )
    with torch.inference_mode():
        heldout = scorer.score("heldout").metrics
    assert heldout["primary"] == pytest.approx(soup["results"]["soup"]["heldout"]["primary"])
    assert heldout["loss"] == pytest.approx(soup["results"]["soup"]["heldout"]["loss"], rel=1e-4)
    assert soup["model_family"] == family and soup["text_fields"] == ["sentence1", "sentence2"]

    # Publish through the local Hub, then load it as the card says and run the card's own snippet.
    with HubServer(tmp_path / "hub") as hub:
        env = client_env(cli_env, hub, tmp_path / "home")
        command = [sys.executable, "-m", "hf_soup.publish", str(soup_dir), "--repo_id", REPO]
        published = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert published.returncode == 0, published.stderr[-3000:]
        card = hub.read_file(REPO, "README.md").decode()
        class_name = "AutoModelForSeq2SeqLM" if family == "t5-text2text" else "AutoModelForSequenceClassification"
        assert f"{class_name}.from_pretrained" in card and "rte sentence1: " in card and " sentence2: " in card
        verify = subprocess.run(
            [sys.executable, "-c", VERIFY_SCRIPT, str(soup_dir), REPO, class_name],
            env=client_env(cli_env, hub, tmp_path / "home2"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert verify.returncode == 0, verify.stderr[-3000:]
        printed = verify.stdout.split("SNIPPET ", 1)[1]
    if family == "t5-classification":
        assert "pipeline_tag: text-classification" in card
        assert "'label': 'entailment'" in printed or "'label': 'not_entailment'" in printed
    else:  # a generated answer (a random tiny T5 answers nonsense, but it answers)
        assert "pipeline_tag: text2text-generation" in card and "pipeline_tag: text-classification" not in card
        assert "model.generate(" in card and "one of: entailment, not_entailment" in card and printed.strip()
