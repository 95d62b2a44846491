"""`python -m hf_soup.hpo` (the search's CLI entry) and `hf_soup.hpo.TrialExportCallback`; the code is `hf_soup.sweep.hpo`."""

import sys

from hf_soup.errors import cli_main
from hf_soup.sweep.hpo import SearchArguments, TrialExportCallback, main, run_search

__all__ = ["SearchArguments", "TrialExportCallback", "main", "run_search"]

if __name__ == "__main__":
    sys.exit(cli_main(main))
