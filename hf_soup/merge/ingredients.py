"""The ingredients of a merge, opened and checked before any work: found, deduplicated, mixable, anchored.

    checkpoints, dropped = open_ingredients(args)     # refuses unmixable ones, naming the first difference
    anchor, skip = check_anchor(args, checkpoints)    # model stock's start, located before any scoring

Read-only: bad input leaves no trace, not even a lock file.
"""

from __future__ import annotations

import glob
import sys
from pathlib import Path
from typing import Any

from hf_soup.checkpoints import (
    Checkpoint,
    check_compatible,
    drop_duplicate_runs,
    find_ingredients,
    find_trainer_checkpoints,
)
from hf_soup.errors import SoupError
from hf_soup.heads import check_heads
from hf_soup.identical import drop_identical
from hf_soup.identical import warning as identical_warning
from hf_soup.merge.arguments import MergeArguments
from hf_soup.recipes.registry import RECIPE_RUNS


def open_ingredients(args: MergeArguments) -> tuple[list[Checkpoint], list[dict[str, str]]]:
    """(the ingredients, checked mixable; soup.json rows of the duplicates dropped from them)."""
    hub: dict[str, Any] = {}  # Hub ids among the arguments -> hf_soup.hub_ingredients.HubIngredient
    if args.recipe == "average-last":
        if len(args.ingredients) != 1:
            raise SoupError("--recipe average-last: give exactly one Trainer output folder as --ingredients")
        found = find_trainer_checkpoints(args.ingredients[0])
        if len(found) < args.last_n:
            raise SoupError(
                f"{args.ingredients[0]}: {len(found)} checkpoint-* folders, fewer than --last_n {args.last_n}"
            )
        paths = found[-args.last_n :]
        _refuse_nested_output(Path(args.output), paths)  # beside them in the run folder is fine
    else:
        from hf_soup.hub_ingredients import resolve_ingredients

        hub = resolve_ingredients(args.ingredients, allow_pickle=args.allow_pickle)  # Hub ids: downloaded now
        paths = find_ingredients(args.ingredients, resolved={a: h.folder for a, h in hub.items()})
        local = [Path(a) for a in args.ingredients if a not in hub and not glob.has_magic(a)]
        _refuse_nested_output(Path(args.output), local + paths)
    hub_of = {h.folder: h for h in hub.values()}
    checkpoints = [Checkpoint(path, allow_pickle=args.allow_pickle, hub=hub_of.get(path)) for path in paths]
    checkpoints, duplicates = drop_duplicate_runs(checkpoints)
    for dropped, kept in duplicates:
        print(
            f"warning: {dropped.path}: dropped, the same grid point as {kept.path} (same sweep_id, hyperparameters "
            "and seed: trained twice, e.g. under an old run id)",
            file=sys.stderr,
        )
    checkpoints, twins = drop_identical(checkpoints)  # byte-identical weights: one model, counted once
    for twin in twins:
        print(identical_warning(twin), file=sys.stderr)
    check_compatible(checkpoints)
    check_heads(checkpoints)  # heads drawn from different seeds do not average
    rows = [{"path": str(dropped.path), "duplicate_of": str(kept.path)} for dropped, kept in duplicates]
    return checkpoints, rows + [twin.to_json() for twin in twins]  # told apart by `identical_to`


def _refuse_nested_output(output: Path, inputs: list[Path]) -> None:
    """The output must be neither inside an input (a later merge of that sweep folder would take the
    soup for an ingredient) nor above one (--overwrite would delete the ingredients)."""
    target = output.resolve()
    for path in inputs:
        source = path.resolve()
        if target == source or target.is_relative_to(source):
            raise SoupError(f"--output {output}: inside the ingredient folder {path}; write the soup elsewhere")
        if source.is_relative_to(target):
            raise SoupError(f"--output {output}: holds the ingredient folder {path}; write the soup elsewhere")


def check_anchor(args: MergeArguments, checkpoints: list[Checkpoint]) -> tuple[Any, tuple[str, ...]]:
    """(model stock's anchor, located and checked before any work; recipes to leave out).

    Asked for, a missing anchor is an error; under `--compare all` model stock is only left out, saying why.
    """
    wanted = args.recipe == "model-stock" or (args.compare == "all" and not RECIPE_RUNS[args.recipe].alone)
    if not wanted:
        return None, ()
    from hf_soup.anchors import locate_anchor

    try:
        return locate_anchor(checkpoints, args.anchor), ()
    except SoupError as err:
        if args.recipe == "model-stock":
            raise
        print(f"model-stock not compared: {err}", file=sys.stderr)
        return None, ("model-stock",)
