"""The sweep warns, before training, about a setting that cannot take effect at the run's length."""

from __future__ import annotations

from sweep_helpers import (
    load_sweep_main,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    tiny_flags,
    tiny_glue_fixture,  # noqa: F401 (fixture `tiny_glue`)
)

from hf_soup.errors import cli_main


def test_patience_without_enough_evaluations_and_warmup_past_the_end_are_warned(
    tiny_bert_dir, tiny_glue, tmp_path, capsys
):
    flags = [
        *tiny_flags(tiny_bert_dir, tiny_glue, tmp_path / "out"),
        "--eval_strategy", "steps", "--eval_steps", "2", "--warmup_steps", "5",
        "--grid", "early_stopping_patience=0,3",
    ]  # fmt: skip
    assert cli_main(load_sweep_main(), flags) == 0
    err = capsys.readouterr().err
    assert "warning: early_stopping_patience=3: a point of 3 steps is evaluated 1 time(s)" in err
    assert "warning: warmup_steps=5: longer than a point of 3 steps" in err
    assert "early_stopping_patience=0" not in err.replace("early_stopping_patience=0,3", "")


def test_the_bundled_sst2_config_can_stop_early():
    from pathlib import Path

    import yaml

    config = yaml.safe_load((Path(__file__).parents[1] / "hf_soup" / "configs" / "sst2.yaml").read_text())
    patience = max(config["grid"]["early_stopping_patience"])
    assert config["eval_strategy"] == "steps" and 0 < config["eval_steps"] < 1 / patience  # > patience evaluations


def test_a_point_finished_by_another_job_after_the_scan_is_skipped(tiny_bert_dir, tiny_glue, tmp_path, monkeypatch):
    """The window between the finished-folders scan and the exists() check: another job's rename
    lands in it. Simulated by a scan that saw nothing while the folder is a finished ingredient."""
    import hf_soup.sweep.loop as loop

    flags = tiny_flags(tiny_bert_dir, tiny_glue, tmp_path / "out")
    assert cli_main(load_sweep_main(), flags) == 0
    record = next((tmp_path / "out").glob("*/ingredient.json")).read_bytes()
    monkeypatch.setattr(loop, "finished_folders", lambda *args: {})
    assert cli_main(load_sweep_main(), flags) == 0
    assert next((tmp_path / "out").glob("*/ingredient.json")).read_bytes() == record  # not retrained
