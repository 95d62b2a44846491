"""Merge fine-tuned ingredients into one model: uniform, greedy or learned soup, or checkpoint averaging.

    python -m hf_soup.merge --ingredients runs/rte --recipe greedy --output soups/rte-greedy
    python -m hf_soup.merge --ingredients runs/rte other/*-seed* --recipe uniform --output soups/rte-uniform
    python -m hf_soup.merge --ingredients my_models/a my_models/b --task rte --glue_dir ../shared/glue \\
        --recipe greedy --criterion loss --strict --output soups/mine      # plain HF folders: give the data
    python -m hf_soup.merge --ingredients my_models/* --train_file t.csv --heldout_file unseen.csv --output s
    python -m hf_soup.merge --ingredients out/run1 --recipe average-last --last_n 3 --output out/avg \\
        --skip_scoring                                                     # last 3 checkpoint-* of one run
    python -m hf_soup.merge --ingredients runs/rte --recipe learned --learned_granularity layer --output soups/l

What one run does, in order:
  1. find the ingredients (a sweep folder expands to its runs) and refuse unmixable ones, naming
     the first difference (hf_soup.checkpoints);
  2. rebuild the held-out and test splits the sweep used from ingredient.json's data description,
     with no data flags (hf_soup.data.load_recorded: the fingerprint and the data's sha256 / Hub
     commit must match; moved files are repointed by the same flags), say whether held-out is
     provably not training data (soup.json `heldout_disjoint`), and score every ingredient on
     held-out and every test split (hf_soup.scoring; logits kept for the ensemble);
  3. the baselines every soup is compared with: the best single ingredient chosen on held-out, the
     soft-vote ensemble (k× inference cost), the best single on test reported as an oracle only
     (test, e.g. GLUE dev, never chooses) — then the recipe runs of `hf_soup.recipes` (one registry:
     uniform and greedy always, as baselines, then the requested recipe), each scored alike;
  4. write the recipe's soup as a normal HF model folder (config, tokenizer, model.safetensors,
     sharded when large) + soup.json (docs/FORMATS.md), atomically: a temp folder renamed into
     place, under a lock, so a killed or concurrent merge never leaves a half-written soup.
Memory: the scoring model + at most one soup (greedy's float32 running sum, or the requested
recipe's weights while they are written) + one batch's activations, whatever the number of
ingredients: ingredients are memory-mapped and read one tensor at a time, the uniform baseline is
streamed into the scoring model, and freed memory is returned between recipes (`release_memory`).
The learned soup is the exception (about three models: mixed weights, their gradient, the model).

One module per job, each importing only the ones above it in this list:
  * `arguments`   — the flags (`MergeArguments`, `MergeDataArguments`) and their parser;
  * `ingredients` — step 1: find, deduplicate and check the ingredients; locate model stock's anchor;
  * `scorer`      — step 2: the recorded splits, tokenised, and the scoring model;
  * `rows`        — step 3: the ingredients' scores and the rows every soup is compared with;
  * `make`        — step 3: the recipe runs (`hf_soup.recipes`), one soup at a time, the weights written;
  * `write`       — step 4: config and tokenizer files, soup.json (`hf_soup.soup_file`), the card;
  * `table`       — the comparison table printed after every merge;
  * `api`         — `merge_soup(...) -> SoupResult`: the steps in order, under a lock, into a temporary folder;
  * `cli`         — `main(argv)`: parse the flags, then `merge_soup`.
The names below load on first use (PEP 562), so `import hf_soup.merge` stays cheap.
"""

from __future__ import annotations

from hf_soup.lazy import lazy_exports

_EXPORTS = {
    "arguments": ("DEFAULT_RECIPE", "MergeArguments", "MergeDataArguments", "parse_args"),
    "table": ("format_table",),
    "api": ("SoupResult", "merge_soup"),
    "cli": ("main",),
}
__getattr__, __all__ = lazy_exports(__name__, _EXPORTS)
