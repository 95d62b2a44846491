"""Writing a soup folder beside its weights: config and tokenizer files, soup.json (`soup_record`), the card.

    soup = write_soup_folder(args, checkpoints, made, folder, argv)    # the soup.json record written

`folder` is the merge's temporary folder (`hf_soup.atomic.atomic_dir`), renamed into place at the end.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from hf_soup.card import write_card
from hf_soup.checkpoints import Checkpoint, mixed_dropout
from hf_soup.errors import SoupError
from hf_soup.families import family_of
from hf_soup.inference_cost import KEY as COST_KEY
from hf_soup.inference_cost import with_gain as with_cost_gain
from hf_soup.merge.arguments import MergeArguments
from hf_soup.merge.make import MadeSoup
from hf_soup.model_writer import copy_model_files
from hf_soup.recipes.context import metrics_of
from hf_soup.redact import mask_secret_flags
from hf_soup.soup_file import build_soup, write_soup


def soup_record(
    args: MergeArguments,
    checkpoints: list[Checkpoint],
    made: MadeSoup,
    argv: list[str] | None,
    dropped: list[dict[str, str]] | None = None,
) -> dict:
    """The soup.json payload (docs/FORMATS.md)."""
    record = next((c.ingredient for c in checkpoints if c.ingredient), None) or {}
    weights = made.outcome.weights
    rows = []
    for i, checkpoint in enumerate(checkpoints):
        ingredient = checkpoint.ingredient or {}
        row = {
            "name": checkpoint.name,
            "path": str(checkpoint.path),
            "hyperparameters": ingredient.get("hyperparameters", {}),
            "seed": ingredient.get("seed"),
        }
        if checkpoint.hub is not None:
            row["hub"] = checkpoint.hub.describe()  # the commit the revision resolved to
        if made.ingredients is not None:
            row.update(metrics_of(made.ingredients.scored[i]))
            if made.ingredients.calibration:
                row["calibration"] = made.ingredients.calibration[i]
        row["kept"] = weights[i] > 0
        row["weight"] = weights[i]
        rows.append(row)
    if made.ingredients is not None:
        selection = made.ingredients.selection
        rows = [rows[i] for i in sorted(range(len(rows)), key=lambda i: -selection[i])]
    split = made.split or record.get("split")
    payload = {
        "name": args.name or Path(args.output).name,
        "recipe": args.recipe,
        "task": made.task,
        "primary_metric": made.primary_metric or record.get("primary_metric"),
        "model_family": family_of(checkpoints[0].config),  # decides the loader, the card's snippet, the pipeline
        **({"text_fields": made.text_fields} if made.text_fields else {}),
        "criterion": args.criterion,
        "strict": args.strict,
        "base_model": {
            **(record.get("base_model") or {"name_or_path": None, "revision": None, "weights_sha256": None}),
            **({"hub_id": args.base_model_id} if args.base_model_id else {}),
        },
        "split": {
            key: split.get(key)
            for key in ("source", "fingerprint", "heldout_size", "test_size", "test_sizes", "heldout_from")
        }
        if split
        else None,
        "data": (made.split or {}).get("data") or record.get("data"),
        "heldout_disjoint": (made.split or {}).get("heldout_disjoint"),
        "heldout_disjoint_reason": (made.split or {}).get("heldout_disjoint_reason"),
        "ingredients": rows,
        **(
            {"dropped_duplicates": duplicates}
            if (duplicates := [d for d in dropped or [] if "duplicate_of" in d])
            else {}
        ),
        **({"identical_weights": twins} if (twins := [d for d in dropped or [] if "identical_to" in d]) else {}),
        "distinct_kept": sum(1 for row in rows if row["kept"]),  # twins were left out: every row is distinct
        **({"mixed_dropout": mixed} if (mixed := mixed_dropout(checkpoints)) else {}),
        **made.extra,
        "results": made.results,
    }
    with_cost_gain(payload.get(COST_KEY), payload["results"])  # + the ensemble's gain over the soup, in points
    merge_command = "python -m hf_soup.merge " + shlex.join(mask_secret_flags(sys.argv[1:] if argv is None else argv))
    return build_soup(**payload, commands={"sweep": record.get("command"), "merge": merge_command})


def refuse_existing(output: Path, overwrite: bool) -> None:
    if output.exists() and not overwrite:
        raise SoupError(f"{output}: already exists (refusing to overwrite; pass --overwrite)")


def write_soup_folder(
    args: MergeArguments,
    checkpoints: list[Checkpoint],
    made: MadeSoup,
    folder: Path,
    argv: list[str] | None,
    dropped: list[dict[str, str]] | None = None,
) -> dict:
    """Beside the weights: config and tokenizer files, soup.json, and the card (when scored)."""
    files_from = next((c for c in checkpoints if c.tokenizer_files()), checkpoints[-1])
    copy_model_files(checkpoints[0].path, folder)
    copy_model_files(files_from.path, folder)
    if args.recipe == "average-last" and not files_from.tokenizer_files():
        copy_model_files(Path(args.ingredients[0]), folder)  # the run folder's save_model()
    soup = soup_record(args, checkpoints, made, argv, dropped)
    write_soup(folder, soup)
    if soup["results"]:  # the card reports scores; an unscored average gets none
        write_card(
            folder,
            license=args.license,
            repo_id=args.push_to_hub,
            base_model=args.base_model_id,
            local_path=Path(args.output),
        )
    return soup
