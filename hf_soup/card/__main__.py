"""`python -m hf_soup.card SOUP_DIR`: see `hf_soup.card.cli`."""

from hf_soup.card.cli import main
from hf_soup.errors import cli_main

if __name__ == "__main__":
    raise SystemExit(cli_main(main))
