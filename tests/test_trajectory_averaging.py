"""`--average_last_k`: every ingredient is the float64 average of its own last K trajectory points."""

from __future__ import annotations

import json

import pytest
import torch
from sweep_helpers import ingredient_dirs, load_sweep_main, tiny_flags, write_tiny_rte

from hf_soup.checkpoints import Checkpoint
from hf_soup.errors import SoupError
from hf_soup.recipes.uniform import average_checkpoints

# Constant learning rate, no warmup: a run stopped at step s has exactly the weights the longer run
# had at step s (same seeded batches, same dropout draws), so the points can be rebuilt independently.
CONSTANT = ("--lr_scheduler_type", "constant", "--warmup_steps", "0", "--learning_rate", "1e-3")


def _sweep(tiny_bert_dir, glue, out, *extra):
    flags = tiny_flags(tiny_bert_dir, glue, out, *CONSTANT, *extra)
    assert load_sweep_main()([*flags, "--grid", "seed=5"]) == 0
    (folder,) = ingredient_dirs(out)
    return folder


def test_the_ingredient_is_the_float64_average_of_its_last_k_points(tmp_path, tiny_bert_dir):
    glue = write_tiny_rte(tmp_path / "glue", train_rows=64, dev_rows=16)
    averaged = _sweep(
        tiny_bert_dir, glue, tmp_path / "avg", "--max_steps", "6", "--average_last_k", "3", "--average_every", "2"
    )
    points = [_sweep(tiny_bert_dir, glue, tmp_path / f"s{steps}", "--max_steps", str(steps)) for steps in (2, 4, 6)]
    expected = average_checkpoints([Checkpoint(p) for p in points])
    written = Checkpoint(averaged)
    assert all(torch.equal(written[name], expected[name]) for name in written)
    final = Checkpoint(points[-1])
    assert not torch.equal(written["classifier.weight"], final["classifier.weight"])  # not just the last point
    record = json.loads((averaged / "ingredient.json").read_text())
    assert record["train"]["averaged"] == {"last_k": 3, "every": 2, "steps": [2, 4, 6]}
    assert record["hyperparameters"]["average_last_k"] == 3 and record["hyperparameters"]["average_every"] == 2
    assert json.loads((points[0] / "ingredient.json").read_text())["train"]["averaged"] is None
    assert not (tmp_path / "avg" / ".work").exists()  # the points were temporary


def test_the_default_spacing_covers_the_last_half_of_training(tmp_path):
    from types import SimpleNamespace

    from hf_soup.callbacks import TrajectoryAveragingCallback

    callback = TrajectoryAveragingCallback(3, tmp_path)
    callback.on_train_begin(None, SimpleNamespace(max_steps=60), None)
    assert callback.steps == [40, 50, 60] and callback.every == 10
    short = TrajectoryAveragingCallback(5, tmp_path, every=3)
    short.on_train_begin(None, SimpleNamespace(max_steps=7), None)
    assert short.steps == [1, 4, 7]  # only the points the run has


def test_bad_settings_are_refused_before_anything_is_written(tmp_path, tiny_bert_dir):
    glue = write_tiny_rte(tmp_path / "glue", train_rows=64, dev_rows=8)
    out = tmp_path / "runs"
    flags = tiny_flags(tiny_bert_dir, glue, out, "--average_last_k", "3", "--early_stopping_patience", "2")
    with pytest.raises(SoupError, match="average_last_k"):
        load_sweep_main()([*flags, "--grid", "seed=1"])
    with pytest.raises(SoupError, match="average_every"):
        load_sweep_main()([*tiny_flags(tiny_bert_dir, glue, out, "--average_every", "-1"), "--grid", "seed=1"])
    assert not out.exists()
