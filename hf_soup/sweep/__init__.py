"""The sweep: fine-tune one pretrained model across a hyperparameter grid, one soup ingredient per point.

    python -m hf_soup.sweep --config configs/rte.yaml              # or: hf-soup-sweep, scripts/sweep.py
    accelerate launch -m hf_soup.sweep --config configs/rte.yaml   # each point data-parallel
    torchrun --nproc_per_node 2 -m hf_soup.sweep ...               # alike, without accelerate's launcher

One module per job, each importing only the ones above it in this list:
  * `launch`       — this process's place in a launch (ranks, CPU gloo groups), locks, agreement;
  * `planning`     — every check, the grid, the sweep's identity (`sweep.json`); writes nothing else;
  * `trainer`      — the Trainer extensions (length-grouped sampler, text2text collator) and the
                     load / train / score / write steps of one model;
  * `shared_start` — LP-FT and warm start, computed once per sweep under a lock;
  * `leaderboard`  — the ranked table of a folder's ingredients;
  * `loop`         — the grid points one after another (`run_sweep`, `run_grid_point`);
  * `cli`          — `main(argv)`: parse, plan, then the loop or `hf_soup.sweep.concurrency`'s worker pool.
"""
