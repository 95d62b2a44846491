"""`python -m hf_soup.merge` / `hf-soup-merge`: parse the flags, merge, print the table, publish if asked."""

from __future__ import annotations

import sys
from pathlib import Path

from hf_soup.atomic import atomic_dir, clear_temporaries_of, exclusive_lock
from hf_soup.errors import cli_main
from hf_soup.merge.arguments import parse_args
from hf_soup.merge.ingredients import check_anchor, open_ingredients
from hf_soup.merge.make import make_soup
from hf_soup.merge.table import format_table
from hf_soup.merge.write import refuse_existing, write_soup_folder
from hf_soup.temperature import check_request as check_calibration


def main(argv: list[str] | None = None) -> int:
    args, data = parse_args(argv)
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
    print(format_table(soup))
    print(f"wrote {output}")
    if args.push_to_hub:
        from hf_soup.publish import publish_folder

        print(publish_folder(output, args.push_to_hub, private=args.private, license=args.license))
    return 0


def run() -> None:
    """`python -m hf_soup.merge`, `hf-soup-merge`: one `error:` line and exit 2 on bad input."""
    sys.exit(cli_main(main))
