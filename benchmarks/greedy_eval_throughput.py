"""Greedy-soup evaluation throughput vs a bare inference loop over the same split.

    python benchmarks/greedy_eval_throughput.py --glue_dir ../shared/glue             # RTE held-out
    python benchmarks/greedy_eval_throughput.py --glue_dir ../shared/glue --task sst2 --n 6

One greedy step = read one candidate (memory-mapped), form running sum + candidate tensor by
tensor, copy it into the one scoring model, score the held-out split (length-sorted batches,
metrics included). The baseline is the loop a user writes: the same model and batch size,
`DataLoader` + `DataCollatorWithPadding` in dataset order, `model(**batch)` under
`torch.inference_mode`, no weight swap, no metrics. Goal: one greedy step ≤ 1.3 × one bare pass.
A second baseline runs the bare loop over the scorer's own length-sorted batches, separating
what sorting saves from what the swap and the metrics cost. Ingredients are the real MiniLM with a classification head (one head seed) plus small
independent noise, in a temporary folder deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--glue_dir", required=True)
    parser.add_argument("--task", default="rte")
    parser.add_argument("--n", type=int, default=5, help="ingredients (greedy tries n - 1 candidates)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="bare passes to take the median of")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench_common import minilm_dir
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

    from hf_soup.checkpoints import Checkpoint
    from hf_soup.data import DataArguments, load_splits
    from hf_soup.recipes.greedy import greedy_soup
    from hf_soup.scoring import Scorer, tokenize_for_scoring

    splits = load_splits(DataArguments(task=args.task, glue_dir=args.glue_dir))
    task = splits.task
    minilm = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    tokenized = tokenize_for_scoring(splits, tokenizer, args.max_seq_length)
    heldout = tokenized["heldout"]
    torch.manual_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm, num_labels=task.num_labels, dtype=torch.float32
    ).eval()

    workdir = Path(tempfile.mkdtemp(prefix="hf_soup-greedy-bench-"))
    try:
        base = {k: v.detach().clone() for k, v in model.state_dict().items()}
        generator = torch.Generator().manual_seed(0)
        folders = []
        for i in range(args.n):
            folder = workdir / f"ingredient-{i}"
            folder.mkdir()
            noisy = {k: v + 0.002 * torch.randn(v.shape, generator=generator) for k, v in base.items()}
            save_file(noisy, str(folder / "model.safetensors"), metadata={"format": "pt"})
            model.config.save_pretrained(folder)
            folders.append(folder)

        # -- the bare loop
        inputs = heldout.remove_columns([c for c in heldout.column_names if c in ("label", "idx", "length")])
        loader = DataLoader(inputs, batch_size=args.batch_size, collate_fn=DataCollatorWithPadding(tokenizer))

        def bare_pass() -> float:
            start = time.perf_counter()
            with torch.inference_mode():
                for batch in loader:
                    model(**batch).logits.numpy()
            return time.perf_counter() - start

        bare_pass()  # warm-up (allocator, kernels)
        bare = statistics.median(bare_pass() for _ in range(args.repeats))

        # -- greedy: every candidate costs one swap + one scored pass
        scorer = Scorer(model, task, tokenized, batch_size=args.batch_size, pad_token_id=tokenizer.pad_token_id)
        scorer.score("heldout")  # warm-up + the one-time batch preparation, as in a merge

        def sorted_pass() -> float:  # the bare loop over the scorer's own length-sorted batches
            start = time.perf_counter()
            with torch.inference_mode():
                for batch in scorer.batches("heldout"):
                    model(**batch).logits.numpy()
            return time.perf_counter() - start

        bare_sorted = statistics.median(sorted_pass() for _ in range(args.repeats))
        checkpoints = [Checkpoint(folder) for folder in folders]
        step_times: list[float] = []

        def evaluate(state):
            start = time.perf_counter()
            metrics = scorer.score_state(state, "heldout").metrics
            step_times.append(time.perf_counter() - start)
            return metrics["primary"]

        start = time.perf_counter()
        greedy_soup(checkpoints, [1.0 - i * 0.01 for i in range(args.n)], evaluate)
        per_candidate = (time.perf_counter() - start) / (args.n - 1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = len(heldout)
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M %Z')} | {os.cpu_count()} cores, {args.threads} threads | "
        f"task {task.name} held-out {rows} rows | MiniLM | batch {args.batch_size} | max length {args.max_seq_length}"
    )
    print("| loop | seconds per pass | rows/s | vs bare |")
    print("|---|---|---|---|")
    print(f"| bare `model(**batch)` loop (median of {args.repeats}) | {bare:.2f} | {rows / bare:.0f} | 1.00x |")
    print(
        f"| bare loop over the same length-sorted batches (median of {args.repeats}) | {bare_sorted:.2f} | "
        f"{rows / bare_sorted:.0f} | {bare_sorted / bare:.2f}x |"
    )
    swap_and_score = statistics.median(step_times)
    print(
        f"| greedy: swap + score (median) | {swap_and_score:.2f} | {rows / swap_and_score:.0f} | "
        f"{swap_and_score / bare:.2f}x |"
    )
    print(
        f"| greedy: whole step incl. running-sum update | {per_candidate:.2f} | {rows / per_candidate:.0f} | "
        f"{per_candidate / bare:.2f}x (goal ≤ 1.30x) |"
    )


if __name__ == "__main__":
    main()
