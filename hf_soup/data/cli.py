"""`python -m hf_soup.data`: load the data the flags describe and print its splits."""

from __future__ import annotations

from hf_soup.data.arguments import DataArguments
from hf_soup.data.splits import load_splits, summary_lines
from hf_soup.errors import DefaultsHelpFormatter, SoupError


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(DataArguments, formatter_class=DefaultsHelpFormatter)

    def one_line_error(message: str) -> None:
        raise SoupError(message)

    parser.error = one_line_error
    (args,) = parser.parse_args_into_dataclasses(args=argv)
    print("\n".join(summary_lines(load_splits(args))))
    return 0
