"""The sweep's leaderboard: its ingredients ranked by held-out score (printed and `leaderboard.md`).

Reads only ingredient.json files, so it shows every point of the folder, whichever job or
worker trained it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hf_soup.ingredient import is_ingredient, read_ingredient

LEADERBOARD_FILE = "leaderboard.md"


def point_summary(record: dict[str, Any]) -> str:
    """`<run id> heldout 0.6123`: what the grid progress bar shows for a finished point."""
    return f"{record['run_id']} heldout {record['metrics']['heldout']['primary']:.4f}"


def leaderboard(output_dir: Path, sweep_id: str | None = None) -> str:
    """A markdown table of the sweep's ingredients, best heldout score first."""
    records = []
    for child in sorted(Path(output_dir).iterdir()) if Path(output_dir).is_dir() else ():
        if child.is_dir() and not child.name.startswith(".") and is_ingredient(child):
            record = read_ingredient(child)
            if sweep_id is None or record.get("sweep_id") == sweep_id:
                records.append(record)
    if not records:
        return ""
    records.sort(key=lambda r: -r["metrics"]["heldout"]["primary"])
    axes = list(dict.fromkeys(k for r in records for k in r.get("grid_axes", ())))
    metric = records[0].get("primary_metric", "primary")
    header = ["#", "run id", *axes, f"heldout {metric}", f"test {metric}", "train s"]
    rows = []
    for rank, r in enumerate(records, 1):
        values = [r["seed"] if k == "seed" else r["hyperparameters"].get(k, "") for k in axes]
        test = r["metrics"].get("test", {}).get("primary")
        rows.append(
            [
                str(rank),
                r["run_id"],
                *map(_cell, values),
                f"{r['metrics']['heldout']['primary']:.4f}",
                f"{test:.4f}" if test is not None else "-",
                f"{r.get('train', {}).get('runtime_s', 0):.1f}",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |" for row in [header, *rows]]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
