"""Columns and labels: which columns are the text, label values checked and encoded as ids in Arrow."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hf_soup.data.arguments import DataArguments, _columns_list
from hf_soup.errors import SoupError
from hf_soup.tasks import MAX_TEXT_FIELDS, Task

if TYPE_CHECKING:  # imported where used: `python -m hf_soup.merge --skip_scoring` never loads datasets
    from datasets import Dataset


# Text columns when --text_column_names is not given: these usual names first (run_classification.py
# reads "sentence" by default), else the one or two columns besides the label and an id column. The
# output names the columns it took.
USUAL_TEXT_COLUMNS = (
    ("sentence1", "sentence2"), ("premise", "hypothesis"), ("question1", "question2"), ("text_a", "text_b"),
    ("text",), ("sentence",),
)  # fmt: skip


ID_COLUMNS = frozenset({"id", "idx", "index", "guid", "uid", "uuid", "row_id", "example_id"})


def _arrow(dataset: Dataset):
    """The dataset's rows as a pyarrow Table (an index selection is applied first)."""
    if dataset._indices is not None:
        dataset = dataset.flatten_indices()
    return dataset.data.table


def _row_error(where: str, column: str, row: int, message: str) -> SoupError:
    return SoupError(f"{where}: column {column!r}, row {row + 1}: {message}")


_INT = r"\s*[-+]?\d+\s*"


_FLOAT = r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*"


def _first(mask) -> int:
    import pyarrow.compute as pc

    return int(pc.index(mask, True).as_py())


def canonical_labels(column, kind: str | None, where: str, name: str, do_regression: bool | None):
    """A label column as one clean Arrow array of ints, floats or strings, and its kind.

    `kind` None infers it (train); otherwise the column must be of that kind (test, held-out).
    Empty / null / NaN labels are refused, naming the row.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if len(column) == 0:
        raise SoupError(f"{where}: no rows")
    if column.null_count:
        raise _row_error(where, name, _first(column.is_null()), "empty label")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        stripped = pc.utf8_trim_whitespace(column)
        empty = pc.or_(pc.equal(stripped, ""), pc.match_substring_regex(stripped, r"^(?i:nan)$"))
        if pc.any(empty).as_py():
            raise _row_error(where, name, _first(empty), f"empty or NaN label {column[_first(empty)].as_py()!r}")
        is_int = pc.match_substring_regex(column, f"^{_INT}$")
        is_float = pc.match_substring_regex(column, f"^{_FLOAT}$")
        want = kind or ("float" if do_regression else None)
        if want in (None, "int") and not do_regression and pc.all(is_int).as_py():
            return pc.cast(stripped, pa.int64()), "int"
        if want in (None, "int", "float") and pc.all(is_float).as_py():
            floats = pc.cast(stripped, pa.float64())
            if want == "float" or (want is None and do_regression is not False):
                return floats, "float"
            return canonical_labels(floats, kind, where, name, do_regression)  # integral -> classes
        if want in ("int", "float"):
            bad = _first(pc.invert(is_int if want == "int" else is_float))
            kind_text = "an integer" if want == "int" else "a number"
            raise _row_error(where, name, bad, f"label {column[bad].as_py()!r} is not {kind_text}")
        if want is None and do_regression is None and pc.any(is_float).as_py():
            bad = _first(pc.invert(is_float))
            raise _row_error(
                where, name, bad,
                f"label {column[bad].as_py()!r} is not a number, but other labels are; fix the row, or pass "
                "--do_regression false to treat every label as text",
            )  # fmt: skip
        return column, "str"
    if pa.types.is_floating(column.type):
        nan = pc.is_nan(column)
        if pc.any(nan).as_py():
            raise _row_error(where, name, _first(nan), "NaN label")
        integral = pc.all(pc.equal(pc.floor(column), column)).as_py()
        if kind == "int" or (kind is None and do_regression is False and integral):
            if not integral:
                bad = _first(pc.invert(pc.equal(pc.floor(column), column)))
                raise _row_error(where, name, bad, f"label {column[bad].as_py()!r} is not an integer class")
            return pc.cast(column, pa.int64()), "int"
        if kind == "str" or (kind is None and do_regression is False):
            return pc.cast(column, pa.string()), "str"  # non-integral classes keep their text
        return pc.cast(column, pa.float64()), "float"
    if pa.types.is_integer(column.type) or pa.types.is_boolean(column.type):
        if kind == "float" or (kind is None and do_regression):
            return pc.cast(column, pa.float64()), "float"
        if kind == "str":
            raise _row_error(where, name, 0, f"label {column[0].as_py()!r} is a number, the training labels are text")
        return (pc.cast(column, pa.int64()) if pa.types.is_boolean(column.type) else column), "int"
    raise SoupError(f"{where}: column {name!r} holds {column.type} values, not labels")


def encode_labels(task: Task, values, kind: str, where: str, name: str):
    """Canonical label values -> ids (int64), or floats (regression); unknown values are refused."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if task.is_regression:
        if kind != "float":
            raise _row_error(where, name, 0, f"regression label {values[0].as_py()!r} is not a number")
        return pc.cast(values, pa.float32())
    lookup = task.label_lookup()
    keys = [key for key in lookup if isinstance(key, str) == (kind == "str") and not isinstance(key, float)]
    positions = pc.index_in(values, value_set=pa.array(keys, type=values.type)) if keys else None
    if positions is None or positions.null_count:
        bad = 0 if positions is None else _first(positions.is_null())
        known = list(task.label_values or task.label_names)
        raise _row_error(
            where, name, bad, f"label {values[bad].as_py()!r} never appears in the training labels {known}"
        )
    return pc.take(pa.array([lookup[key] for key in keys], type=pa.int64()), positions)


def _text_columns(args: DataArguments, known: Task | None, train: Dataset, where: str) -> list[str]:
    given = _columns_list(args.text_column_names)
    if given:
        if len(given) > MAX_TEXT_FIELDS:
            raise SoupError(
                f"text_column_names: {','.join(given)}: at most {MAX_TEXT_FIELDS} text columns (one text or a pair)"
            )
        return given
    if known is not None:
        return list(known.text_fields)
    others = [c for c in train.column_names if c != args.label_column_name]
    for names in USUAL_TEXT_COLUMNS:  # e.g. (id, text, label): the column everyone calls "text"
        if all(name in others for name in names):
            return list(names)
    texts = [c for c in others if c.strip().lower() not in ID_COLUMNS]
    if 1 <= len(texts) <= MAX_TEXT_FIELDS:
        return texts
    raise SoupError(
        f"{where}: pass --text_column_names (one text column or two for pairs); columns present: {', '.join(others)}"
    )


def _check_columns(dataset: Dataset, columns: list[str], where: str) -> None:
    for column in columns:
        if column not in dataset.column_names:
            raise SoupError(
                f"{where}: missing column {column!r}; columns present: {', '.join(dataset.column_names) or '(none)'}"
            )


def _standard_split(dataset: Dataset, task: Task, text_columns: list[str], label: str, kind: str, where: str):
    """(text fields renamed to the task's, `label` ids or floats, `idx` = row in the source split)."""
    import pyarrow as pa
    from datasets import ClassLabel, DatasetInfo, Features, Value
    from datasets import Dataset as ArrowDataset

    _check_columns(dataset, [*text_columns, label], where)
    if len(dataset) == 0:
        raise SoupError(f"{where}: no rows")
    table = _arrow(dataset)
    values, _ = canonical_labels(table.column(label), kind, where, label, None)
    columns = {}
    for source, target in zip(text_columns, task.text_fields):
        text = table.column(source)  # zero-copy: large datasets stay in their (memory-mapped) Arrow buffers
        if pa.types.is_nested(text.type) or pa.types.is_binary(text.type) or pa.types.is_large_binary(text.type):
            raise SoupError(f"{where}: column {source!r} holds {text.type} values, not text (one string per row)")
        if not pa.types.is_string(text.type):
            text = text.cast(pa.string())
        columns[target] = text.fill_null("") if text.null_count else text
    columns["label"] = encode_labels(task, values, kind, where, label)
    columns["idx"] = pa.array(np.arange(len(dataset), dtype=np.int64))
    label_feature = Value("float32") if task.is_regression else ClassLabel(names=list(task.label_names))
    features = Features({**{name: Value("string") for name in task.text_fields}, "label": label_feature})
    features["idx"] = Value("int64")
    return ArrowDataset(pa.table(columns, schema=features.arrow_schema), info=DatasetInfo(features=features))


def _label_kind_of(dataset: Dataset, label: str, do_regression: bool | None, where: str) -> tuple[str, Any]:
    """Infer (kind, sorted distinct values or None for regression, ClassLabel names or None) from train."""
    from datasets import ClassLabel

    feature = dataset.features.get(label)
    values, kind = canonical_labels(_arrow(dataset).column(label), None, where, label, do_regression)
    if isinstance(feature, ClassLabel) and not do_regression:
        return "int", (tuple(range(feature.num_classes)), tuple(feature.names))
    if kind == "float":
        return kind, None
    distinct = sorted(v for v in values.unique().to_pylist())
    return kind, (tuple(distinct), None)


def _has_labels(dataset: Dataset, label: str) -> bool:
    """False for a split without the label column or whose labels are all missing (-1, as on the Hub)."""
    import pyarrow.compute as pc
    from datasets import ClassLabel

    if label not in dataset.column_names or len(dataset) == 0:
        return False
    column = _arrow(dataset).column(label)
    if column.null_count == len(column):
        return False
    if isinstance(dataset.features[label], ClassLabel):
        return bool(pc.any(pc.not_equal(column, -1)).as_py())
    return True
