"""Heads drawn from different seeds are refused; heads fine-tuned from one draw are not.

Tiny BERTs (hidden 256, so the classifier has 512 numbers, as a real 2-label head has hundreds)
fine-tuned a few AdamW steps on a toy task: the pairwise test and the test against a known start.
"""

import pytest
import torch
from soup_factory import run_merge

from hf_soup.checkpoints import Checkpoint
from hf_soup.errors import SoupError
from hf_soup.heads import check_heads, check_heads_against


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64, hidden_size=256, num_hidden_layers=1, num_attention_heads=4, intermediate_size=256
    )
    folder = tmp_path_factory.mktemp("base")
    BertModel(config).save_pretrained(folder)
    return folder


def load_with_head(base, head_seed):
    from transformers import AutoModelForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(head_seed)
        return AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)


def fine_tune(base, folder, *, head_seed, data_seed, lr, steps=15, weight_decay=0.0):
    """A few AdamW steps on "does the sequence contain token 5" from a head drawn under `head_seed`."""
    model = load_with_head(base, head_seed)
    generator = torch.Generator().manual_seed(data_seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(steps):
        ids = torch.randint(6, 64, (16, 12), generator=generator)
        labels = torch.randint(0, 2, (16,), generator=generator)
        ids[labels == 1, 3] = 5
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(folder)
    return Checkpoint(folder)


@pytest.fixture(scope="module")
def runs(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    same = [
        fine_tune(base, root / f"same-{i}", head_seed=1, data_seed=i, lr=lr, weight_decay=wd)
        for i, (lr, wd) in enumerate(((2e-5, 0.0), (1e-4, 0.01), (5e-4, 0.1), (1e-3, 0.0)))
    ]
    other = fine_tune(base, root / "other-head", head_seed=2, data_seed=7, lr=1e-4)
    return same, other


def test_heads_from_one_draw_pass_whatever_the_lr_seed_and_weight_decay(runs):
    same, _ = runs
    check_heads(same)
    check_heads(list(reversed(same)))


def test_a_head_from_another_seed_is_refused_naming_both_runs(runs):
    same, other = runs
    with pytest.raises(SoupError) as caught:
        check_heads([*same[:2], other])
    message = str(caught.value)
    assert str(other.path) in message and str(same[0].path) in message and "classifier.weight" in message
    assert "\n" not in message


def test_against_the_start_each_run_claims(base, runs):
    same, other = runs
    start = {name: t.detach() for name, t in load_with_head(base, 1).state_dict().items()}
    check_heads_against([*same, *same], start, "base+head-init, seed 1")
    with pytest.raises(SoupError, match=r"other-head.*the anchor"):
        check_heads_against([same[0], other], start, "base+head-init, seed 1")
    wrong = {name: t.detach() for name, t in load_with_head(base, 3).state_dict().items()}
    with pytest.raises(SoupError, match="same-0"):
        check_heads_against(same, wrong, "base+head-init, seed 3")


def test_the_merge_refuses_in_one_line_and_writes_nothing(runs, base, tmp_path, tokenizer_dir, capsys):
    same, other = runs
    output = tmp_path / "soup"
    argv = ["--ingredients", same[0].path, other.path, "--recipe", "uniform", "--skip_scoring", "--output", output]
    code, _, err = run_merge(argv, capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "other-head" in lines[0], err
    assert not output.exists() and not (tmp_path / "soup.lock").exists()
    argv = ["--ingredients", same[0].path, same[2].path, "--recipe", "uniform", "--skip_scoring", "--output", output]
    code, _, err = run_merge(argv, capsys)
    assert code == 0, err
