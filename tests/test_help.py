"""`--help` of the stages: short, hf_soup's own flags first, every TrainingArguments flag one flag away."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from hf_soup.errors import SoupError
from hf_soup.sweep.arguments import bundled_configs, load_yaml_config, resolve_config


def _run(cli_env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=cli_env, timeout=300)


def test_sweep_help_is_short_and_leads_with_our_flags(cli_env):
    short = _run(cli_env, "hf_soup.sweep", "--help")
    assert short.returncode == 0, short.stderr
    text = short.stdout
    assert len(text) < 20_000  # the full list is ~60 KB
    entries = ("--model_name_or_path", "--train_file", "--grid", "--launcher", "--learning_rate")
    positions = [text.index(f"\n  {flag} ") for flag in entries]  # each flag's own entry
    assert positions == sorted(positions)  # model, data, grid, launcher, then TrainingArguments
    assert "--adam_beta2" not in text and "--help-all" in text  # a rarely used TrainingArguments flag: not here

    full = _run(cli_env, "hf_soup.sweep", "--help-all")
    assert full.returncode == 0 and "--adam_beta2" in full.stdout and "--grid" in full.stdout
    assert len(full.stdout) > 3 * len(text)


def test_no_help_line_states_its_default_twice(cli_env):
    for module in ("hf_soup.data", "hf_soup.merge"):
        result = _run(cli_env, module, "--help")
        assert result.returncode == 0, result.stderr
        flat = " ".join(result.stdout.split())
        assert not re.search(r"default[^()]*\) \(default:", flat), module  # "(default: inferred) (default: None)"


def test_a_config_setting_a_key_twice_is_refused(tmp_path):
    config = tmp_path / "twice.yaml"
    config.write_text("max_seq_length: 128\ntask: rte\nmax_seq_length: 64\n")
    with pytest.raises(SoupError, match=r"'max_seq_length' is set twice \(lines 1 and 3\)"):
        load_yaml_config(str(config))


@pytest.mark.parametrize("name", bundled_configs())
def test_bundled_configs_set_each_key_once(name):
    load_yaml_config(str(resolve_config(name)))
