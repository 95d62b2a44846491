"""Fine-tune a pretrained model across a hyperparameter grid: one soup ingredient per grid point.

    accelerate launch scripts/sweep.py --config configs/rte.yaml
    accelerate launch scripts/sweep.py --model sentence-transformers/all-MiniLM-L6-v2 --task rte \\
        --glue_dir ../shared/glue --output_dir runs/rte \\
        --grid learning_rate=2e-5,5e-5 num_train_epochs=2,3 seed=0,1
    accelerate launch --num_processes 8 scripts/sweep.py --config configs/sst2.yaml   # each point data-parallel
    python scripts/sweep.py --config configs/rte.yaml --shard 0/4                     # job 0 of a 4-job array
    python scripts/sweep.py --config configs/rte.yaml --concurrent 4                  # 4 points at once, one GPU
    python scripts/sweep.py --help                                                    # every flag

A thin wrapper around `python -m hf_soup.sweep` (hf_soup/sweep/cli.py), kept so that launchers
given a script path (`accelerate launch scripts/sweep.py`) keep working. Flags are
HfArgumentParser's over hf_soup's argument dataclasses and `TrainingArguments`, so any
TrainingArguments field can be fixed (`--weight_decay 0.01`) or an axis (`--grid weight_decay=0,0.1`);
model-config fields (`hidden_dropout_prob`) too. Rerunning the same command skips finished points
and resumes an interrupted one. Then: `python -m hf_soup.merge --ingredients runs/rte ...`.
"""

import sys
from pathlib import Path

try:
    import hf_soup  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hf_soup.sweep.cli import main, run

__all__ = ["main"]

if __name__ == "__main__":
    run()
