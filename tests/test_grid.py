"""Grid expansion, run ids, random search, sharding and the config/flag parser (no models, no data)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import TrainingArguments

from hf_soup.data import DataArguments
from hf_soup.errors import SoupError
from hf_soup.models import ModelArguments
from hf_soup.sweep.arguments import BUNDLED_CONFIG_DIR, SweepArguments, parse_sweep_args, resolve_config
from hf_soup.sweep.grid import (
    Range,
    check_keys,
    coerce_axes,
    digest_of_run_id,
    expand_grid,
    parse_grid_flags,
    parse_scalar,
    parse_shard,
    point_digest,
    run_id_for,
    shard_runs,
)

TYPES = (ModelArguments, DataArguments, SweepArguments, TrainingArguments)


def test_scalars_parse_like_a_user_means_them():
    assert parse_scalar("3") == 3 and isinstance(parse_scalar("3"), int)
    assert parse_scalar("2e-5") == 2e-5
    assert parse_scalar("True") is True and parse_scalar("none") is None
    assert parse_scalar("cosine") == "cosine"


def test_grid_flags_accept_dashes_and_ranges():
    axes = parse_grid_flags(["learning-rate=2e-5,5e-5", "seed=0,1", "weight_decay=uniform:0:0.1"])
    assert axes == {"learning_rate": [2e-5, 5e-5], "seed": [0, 1], "weight_decay": Range("uniform", 0.0, 0.1)}
    with pytest.raises(SoupError, match="no values"):
        parse_grid_flags(["learning_rate="])
    with pytest.raises(SoupError, match="not key=value"):
        parse_grid_flags(["learning_rate"])
    with pytest.raises(SoupError, match="given twice"):
        parse_grid_flags(["seed=0", "seed=1"])
    with pytest.raises(SoupError, match="LOW < HIGH"):
        parse_grid_flags(["learning_rate=loguniform:1e-4:1e-5"])


def test_cartesian_product_order_and_readable_stable_ids():
    runs = expand_grid({"learning_rate": [2e-5, 5e-5], "num_train_epochs": [2.0, 3.0], "seed": [0, 1]})
    assert len(runs) == 8 and [r.index for r in runs] == list(range(8))
    # first axis varies slowest, like nested loops
    assert [(r.values["learning_rate"], r.values["seed"]) for r in runs[:2]] == [(2e-5, 0), (2e-5, 1)]
    assert runs[0].run_id.startswith("lr2e-05_ep2_seed0-") and len(runs[0].run_id.split("-")[-1]) == 8
    assert len({r.run_id for r in runs}) == 8
    # same grid -> same ids; extending an axis keeps the ids of the points already there
    again = expand_grid({"learning_rate": [2e-5, 5e-5, 1e-4], "num_train_epochs": [2.0, 3.0], "seed": [0, 1]})
    assert {r.run_id for r in runs} <= {r.run_id for r in again}


def test_a_points_id_does_not_depend_on_which_other_axes_vary():
    """Widening a single-valued axis must keep the ids of the points already trained (issue 15, item 2)."""
    narrow = expand_grid({"learning_rate": [2e-5], "seed": [0]})
    wide = expand_grid({"learning_rate": [2e-5], "seed": [0, 1]})
    assert narrow[0].run_id == wide[0].run_id and narrow[0].run_id.startswith("lr2e-05_seed0-")
    assert narrow[0].varying == () and wide[0].varying == ("seed",)
    first = expand_grid({"learning_rate": [2e-5, 5e-5], "hidden_dropout_prob": [0.1]})
    second = expand_grid({"learning_rate": [2e-5, 5e-5], "hidden_dropout_prob": [0.2]})
    assert first[0].run_id.startswith("lr2e-05_hdrop0.1-")
    assert first[0].run_id != second[0].run_id  # a different fixed dropout is a different model
    assert digest_of_run_id(first[0].run_id) == point_digest({"learning_rate": 2e-5, "hidden_dropout_prob": 0.1})
    assert digest_of_run_id("lr2e-05-" + point_digest(first[0].values)) == digest_of_run_id(first[0].run_id)


def test_empty_and_repeated_grids_are_errors():
    with pytest.raises(SoupError, match="empty grid"):
        expand_grid({"seed": []})
    with pytest.raises(SoupError, match="repeat"):
        expand_grid({"seed": [0, 0]})
    with pytest.raises(SoupError, match="num_samples"):
        expand_grid({"learning_rate": Range("loguniform", 1e-5, 1e-4)})
    with pytest.raises(SoupError, match="empty grid"):
        expand_grid({"seed": [0, 1]}, num_samples=0)


def test_no_axes_is_one_run():
    (run,) = expand_grid({})
    assert run.values == {} and run.run_id.startswith("run-")


def test_random_search_is_seeded_and_within_ranges():
    axes = {
        "learning_rate": Range("loguniform", 1e-5, 1e-4),
        "seed": [0, 1, 2],
        "freeze_layers": Range("randint", 0, 3),
    }
    runs = expand_grid(axes, num_samples=6, search_seed=7)
    assert len(runs) == 6
    assert runs == expand_grid(axes, num_samples=6, search_seed=7)
    assert [r.run_id for r in runs] != [r.run_id for r in expand_grid(axes, num_samples=6, search_seed=8)]
    for run in runs:
        assert 1e-5 <= run.values["learning_rate"] <= 1e-4
        assert run.values["seed"] in (0, 1, 2) and run.values["freeze_layers"] in range(4)


def test_random_search_over_lists_samples_without_repeats():
    runs = expand_grid({"learning_rate": [1e-5, 2e-5, 3e-5], "seed": [0, 1]}, num_samples=4, search_seed=0)
    assert len({r.run_id for r in runs}) == 4
    with pytest.raises(SoupError, match="> the 6 points"):
        expand_grid({"learning_rate": [1e-5, 2e-5, 3e-5], "seed": [0, 1]}, num_samples=7)


def test_shards_partition_the_grid_deterministically():
    runs = expand_grid({"learning_rate": [1e-5, 2e-5, 3e-5], "seed": [0, 1, 2]})
    shards = [shard_runs(runs, f"{i}/4") for i in range(4)]
    ids = [r.run_id for shard in shards for r in shard]
    assert sorted(ids) == sorted(r.run_id for r in runs) and len(ids) == len(set(ids))
    assert shards[1] == shard_runs(runs, "1/4")
    assert parse_shard(" 2 / 3 ") == (2, 3)
    for bad in ("3/3", "1", "a/b", "-1/2"):
        with pytest.raises(SoupError, match="--shard"):
            parse_shard(bad)


def test_coercion_uses_each_fields_type_and_reports_bad_values():
    axes = coerce_axes({"learning_rate": ["2e-5", 3], "seed": ["1"]}, {"learning_rate": float, "seed": int})
    assert axes == {"learning_rate": [2e-5, 3.0], "seed": [1]}
    assert isinstance(axes["learning_rate"][1], float)
    with pytest.raises(SoupError, match="grid axis 'seed'"):
        coerce_axes({"seed": ["x"]}, {"seed": int})


def test_unknown_key_message_names_it_suggests_and_lists():
    with pytest.raises(SoupError) as err:
        check_keys(["learning_rat"], ["learning_rate", "seed"], "sweep.yaml")
    message = str(err.value)
    assert "'learning_rat'" in message and "did you mean 'learning_rate'" in message and "seed" in message
    assert "\n" not in message


def test_run_id_is_sanitised_and_short():
    run_id = run_id_for({"lr_scheduler_type": "cosine/with restarts", "x" * 50: 1.5})
    assert "/" not in run_id and " " not in run_id and len(run_id) <= 80 + 9


def test_config_file_then_flags_override_it(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(
        "model: some/model\ntask: mrpc\nlearning_rate: 2e-5\nmax-steps: 7\nhidden_dropout_prob: 0.2\n"
        "grid:\n  num_train_epochs: [2, 3]\n  seed: [0, 1]\n"
    )
    parsed = parse_sweep_args(["--config", str(config), "--task", "rte", "--seed", "5"], TYPES)
    model, data, _, training = parsed.arguments
    assert model.model_name_or_path == "some/model" and data.task == "rte"  # flag beats file
    assert training.learning_rate == 2e-5 and isinstance(training.learning_rate, float)  # YAML "2e-5" is a str
    assert training.max_steps == 7 and training.seed == 5
    assert parsed.axes == {"num_train_epochs": [2, 3]}  # --seed replaced the file's seed axis
    assert parsed.extra_fixed == {"hidden_dropout_prob": 0.2}
    assert {"learning_rate", "max_steps", "seed", "task"} <= parsed.explicit
    assert coerce_axes(parsed.axes, parsed.converters()) == {"num_train_epochs": [2.0, 3.0]}


def test_flag_form_with_dashes_and_grid():
    argv = ["--model", "m", "--glue-dir", "g", "--output-dir", "o", "--max-train-samples", "9", "--max-steps", "2",
            "--grid", "learning_rate=2e-5,5e-5", "num_train_epochs=2,3"]  # fmt: skip
    parsed = parse_sweep_args(argv, TYPES)
    model, data, _, training = parsed.arguments
    assert (model.model_name_or_path, data.glue_dir, training.output_dir) == ("m", "g", "o")
    assert data.max_train_samples == 9 and training.max_steps == 2
    assert list(parsed.axes) == ["learning_rate", "num_train_epochs"]


def test_parser_errors_are_one_line_soup_errors(tmp_path):
    with pytest.raises(SoupError, match=r"unrecognized|not used"):
        parse_sweep_args(["--no_such_flag", "1"], TYPES)
    with pytest.raises(SoupError, match="both as a fixed value and as a grid axis"):
        parse_sweep_args(["--seed", "1", "--grid", "seed=0,1"], TYPES)
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [1, 2]\n")
    with pytest.raises(SoupError, match="must be a mapping"):
        parse_sweep_args(["--config", str(bad)], TYPES)
    with pytest.raises(SoupError, match="does not exist"):
        parse_sweep_args(["--config", str(tmp_path / "missing.yaml")], TYPES)


def test_a_config_is_a_path_or_a_bundled_example_named_by_its_task(tmp_path, monkeypatch):
    assert (
        resolve_config("rte")
        == resolve_config("rte.yaml")
        == resolve_config("bundled:rte")
        == (BUNDLED_CONFIG_DIR / "rte.yaml")
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rte.yaml").write_text("task: rte\n")
    assert resolve_config("rte.yaml") == Path("rte.yaml")  # a file that exists wins ...
    assert resolve_config("bundled:rte.yaml") == BUNDLED_CONFIG_DIR / "rte.yaml"  # ... unless bundled: is asked
    with pytest.raises(
        SoupError, match=r"nope: config file does not exist \(a bundled config is named by its task: cola, "
    ):
        resolve_config("nope")
    with pytest.raises(SoupError, match="config file does not exist"):
        resolve_config("sub/rte.yaml")  # a path is never taken for a bundled name
