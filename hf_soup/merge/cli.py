"""`python -m hf_soup.merge` / `hf-soup-merge`: parse the flags, then `merge_soup` (merge, print the table, publish)."""

from __future__ import annotations

import sys

from hf_soup.errors import cli_main
from hf_soup.merge.api import merge_soup
from hf_soup.merge.arguments import options_of, parse_args


def main(argv: list[str] | None = None) -> int:
    args, data = parse_args(argv)
    merge_soup(
        args.ingredients,
        args.recipe,
        output_dir=args.output,
        command=sys.argv[1:] if argv is None else argv,
        report=print,
        **options_of(args, data),
    )
    return 0


def run() -> None:
    """`python -m hf_soup.merge`, `hf-soup-merge`: one `error:` line and exit 2 on bad input."""
    sys.exit(cli_main(main))
