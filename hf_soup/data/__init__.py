"""Load a task's data (a GLUE preset, any Hub dataset, your own files), split it, tokenise once and cache.

    python -m hf_soup.data --train_file news.csv --text_column_names title,description   # inspect the splits
    python -m hf_soup.data --dataset_name stanfordnlp/imdb
    python -m hf_soup.data --task rte --glue_dir ../shared/glue

Where the data comes from (the flags of transformers' `run_classification.py`, so habits carry over):
  * `--train_file` [`--validation_file`, `--test_file`]: csv, tsv, json / jsonl, parquet, chosen by
    the extension (also compressed: `.csv.gz`…), loaded with `datasets`. CSV is RFC 4180 (quoted
    fields may hold commas, quotes and newlines). TSV is read *without* quote processing
    (`--tsv_quoting none`, the IANA TSV rule GLUE's files follow: a field cannot hold a tab or a
    newline and a `"` is just a character; with CSV quoting, GLUE's unbalanced quotes silently merge
    rows). A TSV written with CSV-style quotes (pandas' `to_csv(sep="\\t")`) needs
    `--tsv_quoting csv`; the output says so when most text fields look quoted. Every cell of a
    csv/tsv is read as text (no per-chunk type guessing); label types are inferred below.
  * `--dataset_name ID` [`--dataset_config_name`, `--dataset_revision`]: any Hub dataset
    (`datasets.load_dataset_builder`; the commit it resolved to is recorded), or a local folder
    (data files, or a `save_to_disk` folder).
  * `--task PRESET`: a GLUE preset (hf_soup.tasks), from `nyu-mll/glue` on the Hub or from
    `--glue_dir` (GLUE's original TSV folders). Combined with `--train_file` or `--dataset_name`,
    the preset's labels, metrics and primary score apply to that data (columns by the flags below).
Columns: `--text_column_names a` or `a,b` (default: the preset's; else the train split's one or two
columns named as usual, `USUAL_TEXT_COLUMNS` ("text", "sentence1,sentence2", ...); else the one or
two columns besides the label and an id column), `--label_column_name` (default `label`).
Labels: a ClassLabel feature's names, else the sorted distinct training values (ints stay ints:
AG News' 1..4 become ids 0..3 named "1".."4"; strings keep their text). Regression: `--do_regression`,
default inferred (float labels -> regression; csv/tsv labels that all parse as integers are
classes, as numbers otherwise, as text otherwise; a column mixing numbers and text is refused).
Test labels never seen in train, empty or NaN labels, non-numeric regression labels: one-line
errors naming the file, column and row (1-based data row, header not counted).

Splits, every source alike (nothing is ever chosen on a test split):
  * `test` — `--test_file`, else the dataset's `test` split when it has labels, else its
    `validation` split (`--test_split a,b` names them; MNLI's preset has two: `test`,
    `test_mismatched`). With no such split, test is carved from train first: `--test_split_size`
    (default 10 %, at least 100, at most 5,000 rows) with the fixed seed `CARVED_TEST_SEED`,
    independent of `--heldout_seed`; the output announces it and the data description records it;
  * `heldout` — what greedy soup and every other choice uses: carved from the rest of train with
    `--heldout_seed` (`--heldout_size`: a fraction clamped to [`--heldout_min`, `--heldout_max`],
    defaults 10 %, 100, 2,000; or a count), or a split of its own (`--heldout_split validation`,
    `--heldout_file`);
  * `train` — the rest, optionally subsampled (`--max_train_samples`, a prefix of the seeded
    permutation: growing it only adds rows, and the held-out split never moves).
`TaskSplits.fingerprint` identifies the held-out rows themselves (their source indices, texts and
labels): equal fingerprints mean the same held-out examples, whatever the command. The data
description (`TaskSplits.description()`, the `data` block of sweep.json / ingredient.json /
soup.json, docs/FORMATS.md) holds the task, the arguments that rebuild these splits and what
identifies the bytes (file sha256s, the Hub commit), so a merge needs no data flags; if the files
moved, the same flags point at them, and their sha256 must match.

Large datasets stay in Arrow tables: columns are selected, cast and label-encoded with pyarrow
compute, splits are index selections, and only the held-out rows are hashed row by row.

Modules, one job each (none imports back up: `arguments` <- `files` <- `labels` <- `splits` <-
`reload`, `token_cache`, `cli`):
  * `arguments`: `DataArguments` (the flags) and their checks before anything is read;
  * `files`: your files, GLUE's TSV folders, Hub datasets and dataset folders, and their sha256s;
  * `labels`: text columns and label values, checked and encoded in Arrow;
  * `splits`: test / held-out carving, fingerprints, `TaskSplits`, `load_splits`;
  * `reload`: the merge's reload from a recorded data description (`load_recorded`);
  * `token_cache`: `tokenize_splits`, tokenised once and cached on disk;
  * `cli` / `__main__`: `python -m hf_soup.data`.
"""

from hf_soup.data.arguments import (
    FLAG_ALIASES,
    LOCATION_FIELDS,
    DataArguments,
    arguments_from_description,
    check_numbers,
)
from hf_soup.data.cli import main
from hf_soup.data.files import (
    COMPRESSIONS,
    FILE_FORMATS,
    check_origin,
    file_format,
    file_sha256,
    folder_sha256,
    load_data_file,
    read_glue_tsv,
)
from hf_soup.data.labels import ID_COLUMNS, USUAL_TEXT_COLUMNS, canonical_labels, encode_labels
from hf_soup.data.reload import MERGE_OVERRIDES, HeldoutCheck, heldout_check, load_recorded, overlap_with_train
from hf_soup.data.splits import (
    CARVED,
    CARVED_TEST_SEED,
    GENERIC_FILE_STEMS,
    TEST_SUBSAMPLE_SEED,
    TaskSplits,
    carve_heldout,
    content_digest,
    heldout_count,
    heldout_fingerprint,
    load_splits,
    summary_lines,
)
from hf_soup.data.token_cache import (
    TOKENIZE_CACHE_VERSION,
    default_cache_dir,
    default_text_encoder,
    tokenize_splits,
    tokenizer_fingerprint,
)

__all__ = [
    "CARVED",
    "CARVED_TEST_SEED",
    "COMPRESSIONS",
    "FILE_FORMATS",
    "FLAG_ALIASES",
    "GENERIC_FILE_STEMS",
    "ID_COLUMNS",
    "LOCATION_FIELDS",
    "MERGE_OVERRIDES",
    "TEST_SUBSAMPLE_SEED",
    "TOKENIZE_CACHE_VERSION",
    "USUAL_TEXT_COLUMNS",
    "DataArguments",
    "HeldoutCheck",
    "TaskSplits",
    "arguments_from_description",
    "canonical_labels",
    "carve_heldout",
    "check_numbers",
    "check_origin",
    "content_digest",
    "default_cache_dir",
    "default_text_encoder",
    "encode_labels",
    "file_format",
    "file_sha256",
    "folder_sha256",
    "heldout_check",
    "heldout_count",
    "heldout_fingerprint",
    "load_data_file",
    "load_recorded",
    "load_splits",
    "main",
    "overlap_with_train",
    "read_glue_tsv",
    "summary_lines",
    "tokenize_splits",
    "tokenizer_fingerprint",
]
