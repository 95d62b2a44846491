"""scripts/sweep.py as a user runs it: bad input, the example configs, SIGKILL + rerun, accelerate launch."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from sweep_helpers import (
    PROJECT_ROOT,
    SWEEP_SCRIPT,
    ingredient_dirs,
    load_sweep_main,
    one_torch_thread,  # noqa: F401 (autouse fixture)
    single_thread_env,
    tiny_flags,
    tiny_glue_fixture,  # noqa: F401 (fixture `tiny_glue`)
)
from transformers import AutoConfig, AutoModelForSequenceClassification

from hf_soup.errors import cli_main
from hf_soup.ingredient import is_ingredient, read_ingredient, weights_sha256
from hf_soup.sweep.arguments import ARGUMENT_TYPES, BUNDLED_CONFIG_DIR, SWEEP_DEFAULTS, parse_sweep_args
from hf_soup.sweep.grid import expand_grid
from hf_soup.sweep.identity import WEIGHT_NEUTRAL_SETTINGS
from hf_soup.sweep.planning import resolve_grid
from hf_soup.tasks import PRESETS as GLUE_PRESETS
from hf_soup.tasks import get_task

sweep_main = load_sweep_main()  # scripts/sweep.py's main(argv), in-process


PRESETS = ("soup_ready",)  # task-free designs; every other bundled config is named by its task
CONFIGS = sorted(p for p in BUNDLED_CONFIG_DIR.glob("*.yaml") if p.stem not in PRESETS)


def _refused(argv, capsys, *, match: str) -> str:
    """Run the CLI in-process; it must exit 2 with exactly one `error:` line naming the problem."""
    capsys.readouterr()
    assert cli_main(sweep_main, argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert match in lines[0], lines[0]
    return lines[0]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_bert_dir, tiny_glue, tmp_path, capsys):
    out = tmp_path / "out"
    ok = tiny_flags(tiny_bert_dir, tiny_glue, out)
    line = _refused([*ok, "--grid", "learning_rat=1e-5,2e-5"], capsys, match="unknown grid axis 'learning_rat'")
    assert "did you mean 'learning_rate'" in line and "hidden_dropout_prob" in line  # lists model-config keys too
    config = tmp_path / "typo.yaml"
    config.write_text("lerning_rate: 1e-5\ngrid:\n  seed: [0, 1]\n")
    _refused([*ok, "--config", str(config)], capsys, match=f"{config}: unknown key 'lerning_rate'")
    _refused([*ok, "--grid", "seed="], capsys, match="empty grid")
    config.write_text("grid:\n  learning_rate: []\n")
    _refused([*ok, "--config", str(config)], capsys, match="empty grid")
    _refused([*ok, "--grid", "head_init_seed=1,2"], capsys, match="cannot be a grid axis")
    missing = tiny_flags(tmp_path / "no-such-model", tiny_glue, out)
    _refused(missing, capsys, match="no-such-model: model folder does not exist")
    mnli = get_task("mnli")
    finetuned = tmp_path / "mnli-model"
    AutoModelForSequenceClassification.from_pretrained(
        tiny_bert_dir, num_labels=3, id2label=mnli.id2label, label2id=mnli.label2id
    ).save_pretrained(finetuned)
    _refused(tiny_flags(finetuned, tiny_glue, out), capsys, match="fine-tuned for labels")
    _refused([*ok, "--shard", "2/2"], capsys, match="--shard")
    _refused([*ok, "--no_such_flag", "3"], capsys, match="no_such_flag")
    assert not out.exists()


def test_foreign_output_dir_is_refused_untouched(tiny_bert_dir, tiny_glue, tmp_path, capsys):
    out = tmp_path / "out"
    assert sweep_main(tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0,1")) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    other = tiny_flags(tiny_bert_dir, tiny_glue, out, "--weight_decay", "0.1", "--grid", "seed=0,1")
    line = _refused(other, capsys, match="holds a different sweep")
    assert "weight_decay" in line and "--output_dir" in line
    # a setting that changes the weights is identity even when its name looks like plumbing (issue 15, item 9)
    drop_last = tiny_flags(tiny_bert_dir, tiny_glue, out, "--dataloader_drop_last", "true", "--grid", "seed=0,1")
    assert "dataloader_drop_last" in _refused(drop_last, capsys, match="holds a different sweep")
    # ... while settings that cannot change them may differ on a rerun
    neutral = tiny_flags(tiny_bert_dir, tiny_glue, out, "--logging_steps", "7", "--dataloader_num_workers", "0",
                         "--per_device_eval_batch_size", "16", "--save_total_limit", "2", "--report_to", "none",
                         "--grid", "seed=0,1")  # fmt: skip
    assert sweep_main(neutral) == 0 and "2 already finished, 0 to train" in capsys.readouterr().out
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    (out / "sweep.json").unlink()  # ingredients alone identify the sweep too
    _refused(other, capsys, match="holds ingredients of a different sweep")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == {p: t for p, t in before.items() if p.exists()}


def test_weight_neutral_settings_are_real_fields_and_spare_what_changes_weights():
    names = {f.name for cls in ARGUMENT_TYPES for f in dataclasses.fields(cls)}
    assert names >= WEIGHT_NEUTRAL_SETTINGS, sorted(WEIGHT_NEUTRAL_SETTINGS - names)
    assert not {"dataloader_drop_last", "precision", "bf16", "tf32", "group_by_length", "eval_strategy",
                "seed", "data_seed", "learning_rate"} & WEIGHT_NEUTRAL_SETTINGS  # fmt: skip


BAD_POINTS = [  # (extra flags, what the one line must say): each reached torch, or trained nothing, before
    (["--grid", "learning_rate=0,1e-4"], "learning_rate=0.0 (grid axis): must be > 0"),
    (["--max_steps", "-1", "--grid", "num_train_epochs=0,1"], "num_train_epochs=0.0 (grid axis): trains no step"),
    (["--num_train_epochs", "0", "--grid", "max_steps=0,2"], "max_steps=0 (grid axis): trains no step"),
    (["--grid", "per_device_train_batch_size=0,8"], "per_device_train_batch_size=0 (grid axis): must be a whole"),
    (["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps=0: must be a whole number >= 1"),
    (["--per_device_eval_batch_size", "0"], "per_device_eval_batch_size=0: must be a whole number >= 1"),
    (["--grid", "weight_decay=-0.1,0"], "weight_decay=-0.1 (grid axis): must be >= 0"),
    (["--grid", "warmup_steps=1.5"], "warmup_steps=1.5 (grid axis): must be a fraction"),
    (["--grid", "warmup_steps=-1"], "warmup_steps = -1"),  # TrainingArguments' own check, named by grid point
    (["--grid", "lr_scheduler_type=nonsense"], "is not a valid SchedulerType"),
    (["--grid", "label_smoothing_factor=1.5"], "label_smoothing_factor=1.5 (grid axis): must be in [0, 1)"),
    (["--grid", "hidden_dropout_prob=0.1,1.0"], "hidden_dropout_prob=1.0 (grid axis): a dropout probability"),
    (["--grid", "freeze_layers=3"], "freeze_layers=3 (grid axis): must be in [0, 2]"),
    (["--freeze_layers", "-1"], "freeze_layers=-1: must be in [0, 2]"),
    (["--grid", "early_stopping_patience=-1"], "early_stopping_patience=-1 (grid axis): must be >= 0"),
    (["--warm_start_epochs", "1", "--warm_start_learning_rate=-1e-5"], "warm_start_learning_rate=-1e-05: must"),
    (["--lp_ft_epochs", "-1"], "lp_ft_epochs=-1.0: must be >= 0"),
    (["--shared_start_timeout", "0"], "shared_start_timeout=0.0: must be > 0"),
    (["--fsdp", "full_shard"], "fsdp: FSDP and DeepSpeed are not supported"),
    (["--deepspeed", "ds.json"], "deepspeed: FSDP and DeepSpeed are not supported"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_POINTS, ids=[" ".join(e) for e, _ in BAD_POINTS])
def test_bad_grid_values_are_refused_before_anything_is_written(extra, message, tiny_bert_dir, tiny_glue, tmp_path,
                                                                capsys):  # fmt: skip
    """Issue 15, item 12: one line naming the setting and value, exit 2, output dir untouched."""
    out = tmp_path / "out"
    flags = tiny_flags(tiny_bert_dir, tiny_glue, out)
    for axis in (item.split("=")[0] for item in extra if "=" in item and not item.startswith("--")):
        if f"--{axis}" in flags:  # tiny_flags fixes it: the axis replaces the fixed value
            index = flags.index(f"--{axis}")
            del flags[index : index + 2]
    _refused([*flags, *extra], capsys, match=message)
    assert not out.exists()


def test_sharded_training_is_refused_from_accelerates_environment_and_the_config(tiny_bert_dir, tiny_glue, tmp_path,
                                                                                 capsys, monkeypatch):  # fmt: skip
    """Issue 15, item 10: FSDP / DeepSpeed would write ingredients from sharded weights; refused up front."""
    out = tmp_path / "out"
    flags = tiny_flags(tiny_bert_dir, tiny_glue, out)
    for variable in ("ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        with monkeypatch.context() as env:
            env.setenv(variable, "true")
            _refused(flags, capsys, match=f"{variable}: FSDP and DeepSpeed are not supported")
    config = tmp_path / "fsdp.yaml"
    config.write_text("fsdp: full_shard\ngrid:\n  seed: [0, 1]\n")
    _refused([*flags, "--config", str(config)], capsys, match="fsdp=True: FSDP and DeepSpeed are not supported")
    assert not out.exists()


def test_a_bad_learning_rate_in_a_subprocess_is_one_line_and_leaves_the_sweep_untouched(tiny_bert_dir, tiny_glue,
                                                                                        tmp_path, cli_env):  # fmt: skip
    """The reported case: `--grid learning_rate=-1e-5` used to end in a torch traceback after
    sweep.json and a .lock were written; widening a finished sweep with it must change nothing."""
    out = tmp_path / "out"
    assert sweep_main(tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "learning_rate=1e-4")) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    flags = tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "learning_rate=1e-4,-1e-5")
    result = subprocess.run([sys.executable, str(SWEEP_SCRIPT), *flags], env=single_thread_env(cli_env),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: learning_rate=-1e-05 (grid axis): must be > 0 (a point "
                                                  "that does not learn is no ingredient)"]  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_entry_point_in_a_subprocess_exits_2_with_one_line(tmp_path, cli_env):
    result = subprocess.run(
        [sys.executable, str(SWEEP_SCRIPT), "--model", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o")],
        env=cli_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing'}: model folder does not exist"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_example_configs_parse_and_expand(config, tiny_bert_dir):
    """Each bundled config, named as a pip user names it (`--config rte`)."""
    parsed = parse_sweep_args(["--config", config.stem, "--model", str(tiny_bert_dir)], ARGUMENT_TYPES,
                              defaults=SWEEP_DEFAULTS)  # fmt: skip
    assert parsed.source == str(config)
    data = next(a for a in parsed.arguments if type(a).__name__ == "DataArguments")
    assert data.task in GLUE_PRESETS and config.stem == data.task
    sweep_args = next(a for a in parsed.arguments if type(a).__name__ == "SweepArguments")
    axes, _ = resolve_grid(parsed, AutoConfig.from_pretrained(tiny_bert_dir))
    runs = expand_grid(axes, num_samples=sweep_args.num_samples, search_seed=sweep_args.search_seed)
    assert len(runs) >= 2 and len({r.run_id for r in runs}) == len(runs)
    lr = [r.values["learning_rate"] for r in runs if "learning_rate" in r.values]
    assert all(isinstance(v, float) and 1e-6 < v < 1e-2 for v in lr)


def test_the_soup_ready_preset_is_run5s_design_on_any_task(tiny_bert_dir):
    """Named like a task config, it holds only the design: the data comes from the user's flags."""
    parsed = parse_sweep_args(["--config", "soup_ready", "--model", str(tiny_bert_dir), "--task", "mrpc"],
                              ARGUMENT_TYPES, defaults=SWEEP_DEFAULTS)  # fmt: skip
    assert parsed.source == str(BUNDLED_CONFIG_DIR / "soup_ready.yaml")
    by_name = {type(a).__name__: a for a in parsed.arguments}
    assert by_name["DataArguments"].task == "mrpc"  # the config names no task
    finetune = by_name["FineTuneArguments"]
    assert finetune.warm_start_epochs == 1 and finetune.warm_start_learning_rate == 5e-5  # one shared start
    sweep_args = by_name["SweepArguments"]
    axes, _ = resolve_grid(parsed, AutoConfig.from_pretrained(tiny_bert_dir))
    assert set(axes) == {"learning_rate", "weight_decay", "hidden_dropout_prob", "label_smoothing_factor", "seed"}
    assert max(axes["learning_rate"]) <= 1e-4  # inside one basin
    runs = expand_grid(axes, num_samples=sweep_args.num_samples, search_seed=sweep_args.search_seed)
    assert len(runs) == 8 and len({r.run_id for r in runs}) == 8


def test_all_nine_glue_tasks_have_a_config():
    assert {c.stem for c in CONFIGS} == set(GLUE_PRESETS) and len(CONFIGS) == 9
    assert (PROJECT_ROOT / "configs").resolve() == BUNDLED_CONFIG_DIR.resolve()  # the README's configs/ paths


@pytest.mark.slow
def test_sigkill_mid_sweep_then_rerun_resumes_to_identical_weights(tiny_bert_dir, tiny_glue, tmp_path,
                                                                   cli_env):  # fmt: skip
    out = tmp_path / "killed"
    flags = tiny_flags(tiny_bert_dir, tiny_glue, out, "--max_steps", "100", "--save_strategy", "steps",
                       "--save_steps", "25", "--learning_rate", "1e-3", "--grid", "seed=0,1")  # fmt: skip
    command = [sys.executable, str(SWEEP_SCRIPT), *flags]
    env = single_thread_env(cli_env)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        if list((out / ".work").glob("*/checkpoint-*/trainer_state.json")):
            break
        time.sleep(0.02)
    assert process.poll() is None, "the sweep ended before it could be killed; make it longer"
    process.kill()  # SIGKILL: no cleanup handlers run
    assert process.wait(timeout=30) == -9
    assert not [f for f in ingredient_dirs(out) if f.name.startswith("seed0")]  # the first point was mid-run

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming seed0-" in rerun.stdout
    folders = ingredient_dirs(out)
    assert [f.name.split("-")[0] for f in folders] == ["seed0", "seed1"] and all(is_ingredient(f) for f in folders)
    assert not list(out.glob(".tmp-*")) and not (out / ".work").exists()
    record = read_ingredient(folders[0])
    assert record["train"]["resumed_from_step"] in (25, 50, 75) and record["train"]["steps"] == 100

    reference = tmp_path / "uninterrupted"  # same point, never killed: the resumed weights must match exactly
    assert sweep_main([*flags[: flags.index("--output_dir") + 1], str(reference),
                       *flags[flags.index("--output_dir") + 2 :], "--shard", "0/2"]) == 0  # fmt: skip
    resumed, clean = (
        load_file(folders[0] / "model.safetensors"),
        load_file(reference / folders[0].name / "model.safetensors"),
    )
    assert resumed.keys() == clean.keys() and all(torch.equal(resumed[k], clean[k]) for k in clean)


@pytest.mark.integration
@pytest.mark.slow
def test_minilm_rte_two_point_grid_under_accelerate_launch(minilm_dir, glue_dir, tmp_path, cli_env):
    """`accelerate launch -m hf_soup.sweep` (the module a pip user has; the demo runs scripts/sweep.py)."""
    out = tmp_path / "rte"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "-m", "hf_soup.sweep",
        "--model", str(minilm_dir), "--task", "rte", "--glue-dir", str(glue_dir), "--output-dir", str(out),
        "--grid", "learning_rate=2e-5,5e-5", "--max-train-samples", "32", "--max-test-samples", "32",
        "--heldout-size", "100", "--max-steps", "3", "--per-device-train-batch-size", "8", "--max-seq-length", "64",
    ]  # fmt: skip
    result = subprocess.run(command, env=cli_env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    folders = ingredient_dirs(out)
    assert [f.name.split("-")[0] for f in folders] == ["lr2e", "lr5e"]
    records = [read_ingredient(f) for f in folders]
    sha = weights_sha256(minilm_dir)
    for record in records:
        assert record["base_model"]["weights_sha256"] == sha and record["task"] == "rte"
        assert record["split"]["heldout_size"] == 100 and record["split"]["test_size"] == 32
        assert record["train"]["steps"] == 3 and record["command"].startswith("accelerate launch ")
        assert 0.0 <= record["metrics"]["test"]["accuracy"] <= 1.0
    assert records[0]["sweep_id"] == records[1]["sweep_id"]
    model = AutoModelForSequenceClassification.from_pretrained(folders[0])
    assert model.config.id2label == get_task("rte").id2label
    assert "heldout accuracy" in result.stdout and all(f.name in result.stdout for f in folders)
    assert json.loads((out / "sweep.json").read_text())["grid_size"] == 2


@pytest.mark.slow
def test_two_processes_train_every_point_data_parallel_and_rank0_writes(tiny_bert_dir, tiny_glue, tmp_path, cli_env):
    """`torchrun --nproc_per_node 2` (what `accelerate launch --num_processes 2` starts) on CPUs: one
    gloo group, each grid point trained by both ranks on half the batches, written once."""
    out = tmp_path / "ddp"
    flags = tiny_flags(tiny_bert_dir, tiny_glue, out, "--grid", "seed=0,1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "hf_soup.sweep",
        *flags,
    ]  # fmt: skip (`torchrun -m`: the module, as a pip user runs it)
    result = subprocess.run(command, env=single_thread_env(cli_env), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("sweep ") == 1 and "parallel_mode" not in result.stderr  # rank 0 speaks
    folders = ingredient_dirs(out)
    assert [f.name.split("-")[0] for f in folders] == ["seed0", "seed1"] and all(is_ingredient(f) for f in folders)
    for folder in folders:
        train_record = read_ingredient(folder)["train"]
        assert train_record["num_processes"] == 2 and train_record["steps"] == 3
    assert not list(out.glob(".tmp-*")) and not list(out.glob("*.lock")) and not (out / ".work").exists()
