"""The Python merge API (`hf_soup.merge_soup`): the folder, its record and its table, the same as the CLI's."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest
from soup_factory import run_merge

import hf_soup
from hf_soup.errors import SoupError

# What two runs of one merge may differ in: when it ran, and the inference speed measured while scoring.
MEASURED = {"created", "inference_speed"}


def _unmeasured(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("inference: ")]


def _differences(a: dict, b: dict) -> list[str]:
    return [key for key in {**a, **b} if a.get(key) != b.get(key)]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_merge_soup_writes_what_the_cli_writes(sweep, tmp_path, capsys):
    output = tmp_path / "soup"
    result = hf_soup.merge_soup([sweep], "greedy", output_dir=output, criterion="loss", name="rte-soup")
    assert isinstance(result, hf_soup.SoupResult) and result.folder == output
    assert json.loads((output / "soup.json").read_text()) == result.record
    assert result.record["recipe"] == "greedy" and result.record["criterion"] == "loss"
    assert result.record["name"] == "rte-soup" and len(result.record["ingredients"]) == 3
    assert result.table.startswith("primary metric: accuracy; chosen on held-out by loss")
    assert "greedy soup by loss" in result.table and "<- written" in result.table
    assert (output / "README.md").is_file() and (output / "model.safetensors").is_file()
    # The record names the CLI command that makes the same soup: running it gives the same folder.
    command = result.record["commands"]["merge"].removeprefix("python -m hf_soup.merge ").split()
    named = ["--ingredients", str(sweep), "--recipe", "greedy", "--output", str(output)]
    assert command == [*named, "--criterion", "loss", "--name", "rte-soup"]
    api_weights = _sha256(output / "model.safetensors")
    assert result.record["weights_sha256"] == {"model.safetensors": api_weights}  # what was written, read back
    shutil.move(output, tmp_path / "api-soup")
    capsys.readouterr()
    code, out, _ = run_merge(command, capsys)
    assert code == 0
    cli = json.loads((output / "soup.json").read_text())
    assert set(_differences(cli, result.record)) <= MEASURED
    # The CLI prints what merge_soup returns (but for the measured inference speed).
    assert _unmeasured(out) == _unmeasured(f"{result.table}\nwrote {output}\nsha256 {api_weights}  model.safetensors\n")
    assert _sha256(output / "model.safetensors") == api_weights


def test_merge_soup_checks_options_as_the_cli_does_and_writes_nothing(sweep, tmp_path):
    output = tmp_path / "soup"
    with pytest.raises(SoupError, match="--criterion 'best': must be 'metric' or 'loss'"):
        hf_soup.merge_soup(sweep, output_dir=output, criterion="best")
    with pytest.raises(SoupError, match="'stirct': not an option of the merge"):
        hf_soup.merge_soup(sweep, output_dir=output, stirct=True)
    with pytest.raises(SoupError, match="--skip_scoring: the greedy recipe chooses on held-out scores"):
        hf_soup.merge_soup(sweep, "greedy", output_dir=output, skip_scoring=True)
    assert not output.exists() and list(tmp_path.iterdir()) == [sweep]


def test_an_unscored_sharded_soup_records_and_reports_each_shard_checksum(sweep, tmp_path):
    lines: list[str] = []
    output = tmp_path / "u"
    result = hf_soup.merge_soup(
        sorted(sweep.iterdir()),
        "uniform",
        output_dir=output,
        skip_scoring=True,
        max_shard_size="20KB",
        report=lines.append,
    )
    assert result.record["results"] == {} and result.table == "uniform soup of 3 ingredients written (not scored)"
    shards = sorted(path.name for path in output.glob("model-*-of-*.safetensors"))
    assert len(shards) > 1 and list(result.record["weights_sha256"]) == shards
    assert result.record["weights_sha256"] == {name: _sha256(output / name) for name in shards}
    checksums = [f"sha256 {_sha256(output / name)}  {name}" for name in shards]
    assert lines == [result.table, f"wrote {output}", *checksums]
    assert [row["weight"] for row in result.record["ingredients"]] == pytest.approx([1 / 3] * 3)


def test_import_hf_soup_stays_cheap():
    code = (
        "import sys, hf_soup; cheap = 'torch' not in sys.modules; "
        "from hf_soup.merge.api import merge_soup; sys.exit(not (cheap and hf_soup.merge_soup is merge_soup))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
