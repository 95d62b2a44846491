"""`python -m hf_soup.card SOUP_DIR` (and `hf-soup-card`): (re)write a soup folder's README.md and soup.png."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from hf_soup.card.build import write_card


@dataclass
class CardArguments:
    repo_id: str | None = field(default=None, metadata={"help": "Hub repo id used in the usage snippet"})
    license: str | None = field(default=None, metadata={"help": "License id (default: the local base model card's)"})
    base_model: str | None = field(default=None, metadata={"help": "Base model Hub id when soup.json has a local path"})
    template: str | None = field(
        default=None, metadata={"help": "Jinja template (default: hf_soup/templates/soup_card.md)"}
    )


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    # `python -m hf_soup.card` runs the package's __main__.py: name the command, not that file.
    prog = "python -m hf_soup.card" if Path(sys.argv[0]).name == "__main__.py" else None
    parser = HfArgumentParser(CardArguments, prog=prog)
    parser.add_argument("soup_dir", help="Soup folder with soup.json (written by python -m hf_soup.merge)")
    args, positional = parser.parse_args_into_dataclasses(args=argv)
    path = write_card(
        positional.soup_dir,
        license=args.license,
        repo_id=args.repo_id,
        base_model=args.base_model,
        template=args.template,
    )
    print(f"wrote {path} and {path.with_name('soup.png')}")
    return 0
