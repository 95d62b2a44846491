"""The merge as one Python call: `merge_soup(...) -> SoupResult`, which `python -m hf_soup.merge` itself runs.

    from hf_soup import merge_soup
    result = merge_soup(["runs/rte"], "greedy", output_dir="soups/rte-greedy")
    result.folder, result.record["results"]["soup"]["test"]      # the soup folder, its soup.json
    print(result.table)                                          # the table the CLI prints

Options are the CLI's flags as keywords (`criterion="loss"`, `strict=True`, `skip_scoring=True`,
`task="rte"`, `glue_dir="../shared/glue"`, ...) and are checked as the CLI checks them: bad input
raises `hf_soup.errors.SoupError` naming the option, and writes nothing. The folder is written
atomically (a temporary folder renamed into place, under a lock), as by the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_soup.atomic import atomic_dir, clear_temporaries_of, exclusive_lock
from hf_soup.merge.arguments import DEFAULT_RECIPE, arguments_from, command_of
from hf_soup.merge.ingredients import check_anchor, open_ingredients
from hf_soup.merge.make import make_soup
from hf_soup.merge.table import format_table
from hf_soup.merge.write import refuse_existing, write_soup_folder
from hf_soup.soup_file import WEIGHTS_SHA256_KEY
from hf_soup.temperature import check_request as check_calibration


@dataclass(frozen=True)
class SoupResult:
    """What a merge made: the soup folder, its soup.json record (docs/FORMATS.md) and the comparison table."""

    folder: Path
    record: dict[str, Any]
    table: str


def merge_soup(
    ingredients: str | os.PathLike | Sequence[str | os.PathLike],
    recipe: str = DEFAULT_RECIPE,
    *,
    output_dir: str | os.PathLike,
    command: Sequence[str] | None = None,
    report: Callable[[str], Any] | None = None,
    **options: Any,
) -> SoupResult:
    """Merge `ingredients` (model folders, sweep folders, globs or Hub ids) with `recipe` into `output_dir`.

    `options`: any flag of `python -m hf_soup.merge`, by name. `command`: the flags soup.json records
    as the merge command (default: the flags equivalent to this call). `report`: called with each
    line the CLI prints (the table, "wrote ...", the publisher's answer); None prints nothing.
    With `push_to_hub`, the soup is published after it is written, as by the CLI.
    """
    paths = [ingredients] if isinstance(ingredients, (str, os.PathLike)) else list(ingredients)
    args, data = arguments_from([os.fspath(p) for p in paths], recipe, os.fspath(output_dir), options)
    argv = list(command) if command is not None else command_of(args, data)
    output = Path(args.output)
    refuse_existing(output, args.overwrite)  # fail fast, before any work
    checkpoints, dropped = open_ingredients(args)  # read-only: bad input leaves no trace, not even a lock file
    anchor, skip = check_anchor(args, checkpoints)
    check_calibration(args.calibrate, checkpoints[0].config)  # regression, text-to-text: refused before any work
    with exclusive_lock(output, tidy=True):
        refuse_existing(output, args.overwrite)  # another merge may have finished meanwhile
        clear_temporaries_of(output)  # what a killed merge into `output` left behind
        with atomic_dir(output, overwrite=args.overwrite) as folder:
            made = make_soup(args, data, checkpoints, folder, anchor, skip)
            soup = write_soup_folder(args, checkpoints, made, folder, argv, dropped)
    result = SoupResult(output, soup, format_table(soup))
    checksums = [f"{digest}  {name}" for name, digest in soup.get(WEIGHTS_SHA256_KEY, {}).items()]
    for line in (result.table, f"wrote {output}", *(f"sha256 {line}" for line in checksums)):
        if report is not None:
            report(line)
    if args.push_to_hub:
        from hf_soup.publish import publish_folder  # the publisher is a later stage: loaded only when asked

        published = publish_folder(output, args.push_to_hub, private=args.private, license=args.license)
        if report is not None:
            report(published)
    return result
