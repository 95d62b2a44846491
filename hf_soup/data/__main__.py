"""`python -m hf_soup.data --train_file FILE` (or `--dataset_name ID`, `--task PRESET`): inspect the splits."""

import sys

from hf_soup.data.cli import main
from hf_soup.errors import cli_main

sys.exit(cli_main(main))
