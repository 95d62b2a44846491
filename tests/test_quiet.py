"""Sub-second library steps print no progress bar and no LOAD REPORT; the switches are restored."""

from __future__ import annotations

from hf_soup.data import DataArguments, load_splits, tokenize_splits
from hf_soup.models import load_for_task, load_ingredient_model
from hf_soup.quiet import quiet_datasets, quiet_transformers
from hf_soup.tasks import get_task


def test_plain_transformers_is_noisy_here(tiny_bert_dir, capfd, caplog):
    """The control: without hf_soup's switch, these loads do print the bar and the report."""
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2)
    err = capfd.readouterr().err + caplog.text
    assert "Loading weights" in err and "LOAD REPORT" in err


def test_loading_for_fine_tuning_and_saving_is_quiet(tiny_bert_dir, tmp_path, capfd, caplog):
    from transformers.utils import logging as hf_logging

    before = (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity())
    model, new = load_for_task(tiny_bert_dir, "encoder", get_task("rte"), head_init_seed=42)
    assert new  # the head is new, which is what the report would have listed
    with quiet_transformers():
        model.save_pretrained(tmp_path / "out")
    load_ingredient_model(tmp_path / "out")
    err = capfd.readouterr().err + caplog.text
    assert "Loading weights" not in err and "LOAD REPORT" not in err and "Writing model shards" not in err
    assert (hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()) == before


def test_tokenising_and_caching_draw_no_bars(glue_dir, tokenizer_dir, tmp_path, capfd):
    from datasets.utils import logging as datasets_logging
    from transformers import AutoTokenizer

    splits = load_splits(DataArguments(task="rte", glue_dir=str(glue_dir), max_train_samples=32, max_test_samples=16))
    capfd.readouterr()
    tokenize_splits(splits, AutoTokenizer.from_pretrained(tokenizer_dir), 32, cache_dir=tmp_path)
    err = capfd.readouterr().err
    assert "tokenizing" not in err and "Saving the dataset" not in err
    assert datasets_logging.is_progress_bar_enabled()


def test_switches_are_restored_when_already_off():
    from datasets.utils import logging as datasets_logging
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets_logging.disable_progress_bar()
    try:
        with quiet_transformers(), quiet_datasets():
            pass
        assert not hf_logging.is_progress_bar_enabled() and not datasets_logging.is_progress_bar_enabled()
        assert hub_utils.are_progress_bars_disabled()
    finally:
        hf_logging.enable_progress_bar()
        datasets_logging.enable_progress_bar()


def test_a_sweep_logged_to_a_file_has_lines_not_cursor_codes(tiny_bert_dir, tmp_path, cli_env):
    """Training bars on, stderr a file: one line per grid point and no `ESC[A` of nested bars."""
    import subprocess
    import sys

    from sweep_helpers import tiny_flags, write_tiny_rte

    glue = write_tiny_rte(tmp_path / "glue")
    flags = tiny_flags(tiny_bert_dir, glue, tmp_path / "runs", "--grid", "seed=0,1")
    flags[flags.index("--disable_tqdm") + 1] = "false"
    log = tmp_path / "sweep.log"
    with log.open("wb") as handle:
        result = subprocess.run(
            [sys.executable, "-m", "hf_soup.sweep", *flags], stdout=handle, stderr=subprocess.STDOUT, env=cli_env
        )
    text = log.read_bytes()
    assert result.returncode == 0, text.decode()[-2000:]
    assert b"\x1b[A" not in text
    assert b"grid 1/2: " in text and b"grid 2/2: " in text
    assert b"Loading weights" not in text and b"Writing model shards" not in text and b"tokenizing" not in text
