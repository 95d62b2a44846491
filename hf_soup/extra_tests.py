"""Extra test sets: every model of a merge also scored on data from other distributions.

    python -m hf_soup.merge --ingredients runs/sst2 --output soups/sst2 \\
        --extra_test_files amazon=reviews/amazon.csv imdb=reviews/imdb.csv yelp=org/yelp:test

Why: the writing on model soups says their largest gains are out of distribution, where the
in-distribution test set says nothing. Each set is read with the task's own text columns and
label names, scored like any test split (every ingredient, the best single, each soup, the
ensemble), and each soup's gain over the best single gets the same paired-bootstrap interval as on
test (`hf_soup.stats`). Nothing is ever chosen on these sets: they enter the merge as splits named
`extra:<NAME>` that only `RecipeContext.score` reads, never the held-out selection.

A NAME=SOURCE whose SOURCE has a data-file extension (csv, tsv, json, jsonl, parquet, optionally
compressed) is a file; `org/dataset[:split]` (default split `test`) is a Hub dataset, loaded
with `datasets.load_dataset`. Bad input is refused before scoring, in one line naming the set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hf_soup.errors import SoupError

SPLIT_PREFIX = "extra:"  # the scorer's split name of set NAME, and its key in soup.json result rows
GAINS_KEY = "extra_test_gains"  # a result row's {NAME: interval} (hf_soup.stats.Interval.to_dict)
RECORD_KEY = "extra_tests"  # soup.json's {NAME: {source, sha256 | revision, rows}}
DEFAULT_HUB_SPLIT = "test"
# The result rows the card's section and plot panel show, in order, and their names there.
ROW_LABELS = {
    "best_single": "best single",
    "uniform": "uniform soup",
    "greedy": "greedy soup",
    "greedy-metric": "greedy soup (metric)",
    "greedy-loss": "greedy soup (loss)",
    "filtered-uniform": "filtered uniform soup",
    "model-stock": "model stock soup",
    "learned": "learned soup",
    "ensemble": "logit ensemble",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HUB_ID = re.compile(r"([A-Za-z0-9][\w.-]*/[\w.-]+)(?::([\w.-]+))?")


@dataclass(frozen=True)
class ExtraTest:
    """One `NAME=SOURCE` of --extra_test_files."""

    name: str
    source: str  # a file path, or a Hub dataset id
    hub_split: str | None = None  # None: a file

    @property
    def split(self) -> str:
        return split_name(self.name)

    @property
    def where(self) -> str:
        return f"--extra_test_files {self.name}={self.source}" + (f":{self.hub_split}" if self.hub_split else "")


def split_name(name: str) -> str:
    return f"{SPLIT_PREFIX}{name}"


def names_in(splits: Any) -> list[str]:
    """The extra-test NAMEs among split names (or a result row's keys), in order."""
    return [s.removeprefix(SPLIT_PREFIX) for s in splits if isinstance(s, str) and s.startswith(SPLIT_PREFIX)]


def _is_data_file(source: str) -> bool:
    from hf_soup.data.files import file_format

    try:
        file_format(source)
    except SoupError:
        return False
    return True


def parse_extra_tests(values: list[str] | None) -> list[ExtraTest]:
    """Check the NAME=SOURCE syntax, the names' uniqueness and that files exist (no data read yet)."""
    found: list[ExtraTest] = []
    for value in values or []:
        name, equals, source = value.partition("=")
        if not equals or not source:
            raise SoupError(f"--extra_test_files {value!r}: expected NAME=PATH or NAME=org/dataset[:split]")
        if not _NAME.fullmatch(name):
            raise SoupError(
                f"--extra_test_files {value!r}: NAME {name!r} must be letters, digits, '_', '.' or '-' "
                "(it names the set in the table and the card)"
            )
        if any(extra.name == name for extra in found):
            raise SoupError(f"--extra_test_files: the name {name!r} is given twice")
        if _is_data_file(source):
            if not Path(source).expanduser().is_file():
                raise SoupError(f"--extra_test_files {name}={source}: file not found")
            found.append(ExtraTest(name, source))
            continue
        hub = _HUB_ID.fullmatch(source)
        if hub is None or Path(source).expanduser().exists():
            raise SoupError(
                f"--extra_test_files {name}={source}: neither a csv/tsv/json/jsonl/parquet file nor a Hub "
                "dataset id org/dataset[:split]"
            )
        found.append(ExtraTest(name, hub.group(1), hub.group(2) or DEFAULT_HUB_SPLIT))
    return found


# ----------------------------------------------------------------------------- loading


def _read(extra: ExtraTest, quoting: str) -> tuple[Any, dict[str, Any]]:
    """(the raw dataset, its soup.json description: no local path, only the file name and its sha256)."""
    from hf_soup.data.files import _offline_hint, _one_line, file_sha256, load_data_file

    if extra.hub_split is None:
        try:
            dataset = load_data_file(extra.source, quoting)
        except SoupError as err:
            raise SoupError(f"{extra.where}: {err}") from None
        path = Path(extra.source).expanduser()
        return dataset, {"source": "file", "file": path.name, "sha256": file_sha256(path)}
    from datasets import load_dataset_builder

    try:
        builder = load_dataset_builder(extra.source)
        builder.download_and_prepare()
        dataset = builder.as_dataset(split=extra.hub_split)
    except Exception as err:  # unknown id, offline, no such split...
        raise SoupError(f"{extra.where}: cannot load it{_offline_hint()} ({_one_line(err)})") from None
    revision = builder.hash if isinstance(builder.hash, str) and re.fullmatch(r"[0-9a-f]{40}", builder.hash) else None
    return dataset, {"source": "hub", "dataset_name": extra.source, "split": extra.hub_split, "revision": revision}


def _text_columns(dataset: Any, task: Any, arguments: dict[str, Any]) -> list[str]:
    """The task's text columns: its own field names, else the source columns its data named."""
    from hf_soup.data.arguments import _columns_list

    choices = [list(task.text_fields)]
    given = _columns_list(arguments.get("text_column_names"))
    if given:
        choices.insert(0, given)
    return next((c for c in choices if all(name in dataset.column_names for name in c)), choices[0])


def load_extra_tests(
    extras: list[ExtraTest], task: Any, arguments: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """({split name: dataset with the task's text fields and label ids}, the soup.json `extra_tests` block).

    `arguments` are the recorded data arguments (label column, text columns, tsv quoting).
    Refused in one line: a missing column, a label the task does not know, an empty set.
    """
    from hf_soup.data.labels import _arrow, _standard_split, canonical_labels

    label = arguments.get("label_column_name") or "label"
    datasets, record = {}, {}
    for extra in extras:
        raw, described = _read(extra, arguments.get("tsv_quoting") or "none")
        columns = _text_columns(raw, task, arguments)
        if label not in raw.column_names:
            raise SoupError(
                f"{extra.where}: missing column {label!r}; columns present: {', '.join(raw.column_names) or '(none)'}"
            )
        if len(raw) == 0:
            raise SoupError(f"{extra.where}: no rows")
        _, kind = canonical_labels(_arrow(raw).column(label), None, extra.where, label, task.is_regression)
        datasets[extra.split] = _standard_split(raw, task, columns, label, kind, extra.where)
        record[extra.name] = {**described, "rows": len(raw)}
    return datasets, record


def tokenize_extra_tests(datasets: dict[str, Any], task: Any, tokenizer: Any, max_length: int, encoder: Any = None):
    """The sets tokenised like the task's splits (the family's encoder; `length` for batching), in memory:
    small, and their content is not part of the token cache's key."""
    from hf_soup.data.token_cache import default_text_encoder
    from hf_soup.quiet import quiet_datasets

    encoder = encoder or default_text_encoder(task, tokenizer, max_length)

    def with_length(batch: dict[str, list]) -> dict[str, list]:
        encoded = dict(encoder(batch))
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        return encoded

    with quiet_datasets():
        return {
            split: dataset.map(with_length, batched=True, remove_columns=list(task.text_fields))
            for split, dataset in datasets.items()
        }


# ----------------------------------------------------------------------------- gains and predictions


def add_extra_gains(task: Any, rows: list[Any], references: dict[str, np.ndarray]) -> None:
    """Every soup row's gain over the best single on each extra set, paired bootstrap (`hf_soup.stats`)."""
    from hf_soup.soup_file import NOT_COMPARED
    from hf_soup.stats import bootstrap_gain

    best = next((row for row in rows if row.key == "best_single"), None)
    if best is None:
        return
    for split, labels in references.items():
        if split not in best.scores:
            continue
        for row in rows:
            if row.key not in NOT_COMPARED and split in row.scores:
                gain = bootstrap_gain(task, labels, row.scores[split].logits, best.scores[split].logits)
                row.fields.setdefault(GAINS_KEY, {})[split.removeprefix(SPLIT_PREFIX)] = gain.to_dict()


def prediction_arrays(rows: list[Any], references: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`<row>@<NAME>` logits and `references@<NAME>` labels of every extra set, for the predictions file."""
    arrays: dict[str, np.ndarray] = {}
    for split, labels in references.items():
        name = split.removeprefix(SPLIT_PREFIX)
        arrays[f"references@{name}"] = np.asarray(labels)
        arrays.update({f"{row.key}@{name}": row.scores[split].logits for row in rows if split in row.scores})
    return arrays


# ----------------------------------------------------------------------------- the table and the card


def table_lines(soup: dict[str, Any]) -> list[str]:
    """Printed after the merge table: each soup's gain over the best single on each extra set."""
    record = soup.get(RECORD_KEY) or {}
    if not record:
        return []
    results = soup.get("results") or {}
    sizes = ", ".join(f"{name}: {described.get('rows')} rows" for name, described in record.items())
    lines = [f"extra test sets ({sizes}): scored only, never used to choose; gain vs best single [95% CI]"]
    for key, row in results.items():
        gains = row.get(GAINS_KEY) if isinstance(row, dict) else None
        if key == "soup" or not gains:
            continue
        cells = [f"{name} {g['estimate']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]" for name, g in gains.items()]
        lines.append(f"  {key:24s} " + "; ".join(cells))
    return lines


def _primary(scores: Any) -> float | None:
    value = (scores or {}).get("primary") if isinstance(scores, dict) else None
    return float(value) if isinstance(value, (int, float)) else None


def card_eval_results(soup: dict[str, Any], metric_names: Any) -> list[Any]:
    """model-index entries of the card: the soup's every metric on each extra set, naming the dataset."""
    from huggingface_hub import EvalResult

    found = []
    scores = (soup.get("results") or {}).get("soup") or {}
    for name, described in (soup.get(RECORD_KEY) or {}).items():
        metrics = scores.get(split_name(name)) or {}
        hub = described.get("dataset_name")
        for metric, value in metrics.items():
            if metric in ("primary", "loss") or not isinstance(value, (int, float)):
                continue
            found.append(
                EvalResult(
                    task_type="text-classification",
                    task_name="Text Classification",
                    dataset_type=hub or name,
                    dataset_name=f"{name} ({hub or described.get('file')}; extra test set)",
                    dataset_split=described.get("split") or "all rows",
                    metric_type=metric,
                    metric_value=float(value),
                    metric_name=f"{metric_names(metric)} ({name}, extra test set)",
                )
            )
    return found


def card_text(soup: dict[str, Any], labels: dict[str, str] = ROW_LABELS) -> str:
    """The card's section on the extra test sets: each row's primary score on each, each soup's gain."""
    record = soup.get(RECORD_KEY) or {}
    results = soup.get("results") or {}
    if not record or not results:
        return ""
    names = list(record)
    header = ["model", *[f"{name} ({record[name].get('rows')} rows)" for name in names]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, label in labels.items():
        row = results.get(key)
        if not isinstance(row, dict) or not any(split_name(n) in row for n in names):
            continue
        cells = []
        for name in names:
            score = _primary(row.get(split_name(name)))
            gain = (row.get(GAINS_KEY) or {}).get(name)
            text = "—" if score is None else f"{score:.4f}"
            if gain:
                text += f" ({gain['estimate']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}])"
            cells.append(text)
        lines.append("| " + " | ".join([label, *cells]) + " |")
    sources = "; ".join(
        f"**{name}**: "
        + (f"`{d['dataset_name']}` ({d.get('split')})" if d.get("dataset_name") else f"`{d.get('file')}`")
        for name, d in record.items()
    )
    return (
        "### Extra test sets\n\n"
        f"Scored only, never used to choose anything ({sources}). Each cell: the primary score, and for a "
        "soup its gain over the best single on that set with a paired-bootstrap 95% interval.\n\n" + "\n".join(lines)
    )


def plot_panel(soup: dict[str, Any], axes: Any, labels: dict[str, str] = ROW_LABELS) -> bool:
    """Bars of every row's primary score on test and on each extra set (False: nothing to draw;
    `axes` None only asks)."""
    record = soup.get(RECORD_KEY) or {}
    results = soup.get("results") or {}
    if not record or axes is None:
        return bool(record)
    sets = ["test", *[split_name(n) for n in record]]
    keys = [k for k in labels if isinstance(results.get(k), dict)]
    width = 0.8 / max(len(keys), 1)
    for i, key in enumerate(keys):
        values = [_primary(results[key].get(s)) for s in sets]
        axes.bar(
            [j + i * width for j in range(len(sets))],
            [v if v is not None else 0.0 for v in values],
            width=width,
            label=labels[key],
        )
    axes.set_xticks([j + 0.4 - width / 2 for j in range(len(sets))])
    axes.set_xticklabels([s.removeprefix(SPLIT_PREFIX) for s in sets])
    present = [v for k in keys for s in sets if (v := _primary(results[k].get(s))) is not None]
    if present:
        axes.set_ylim(max(0.0, min(present) - 0.05), min(1.0, max(present) + 0.02) if max(present) <= 1 else None)
    axes.set_title("test and extra test sets")
    axes.legend(loc="lower left", fontsize="x-small")
    return True
