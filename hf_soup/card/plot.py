"""soup.png: held-out against test score of every ingredient and soup, with the extra-test and geometry
panels beside it when soup.json has them. Byte-identical for the same soup.json (no date metadata)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hf_soup import extra_tests, geometry
from hf_soup.card.cells import _metric_name, _primary
from hf_soup.card.facts import test_split_text
from hf_soup.recipes.catalog import plot_styles


def render_plot(soup: dict[str, Any], path: str | os.PathLike) -> Path:
    """soup.png: every ingredient and every soup, held-out vs test primary score (Agg, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    primary = _metric_name(soup["primary_metric"])
    wanted = (extra_tests.plot_panel, geometry.matrix_panel, geometry.pairwise_panel)
    panels = [draw for draw in wanted if draw(soup, None)]  # beside the scatter, when wanted
    figure = Figure(figsize=(6.4 * (1 + len(panels)), 4.8), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1 + len(panels), 1)
    for position, draw in enumerate(panels, start=2):
        draw(soup, figure.add_subplot(1, 1 + len(panels), position))
    points: list[tuple[float, float]] = []

    def scatter(items: list[dict[str, Any]], **style: Any) -> None:
        xy = [(_primary(i.get("heldout")), _primary(i.get("test"))) for i in items]
        xy = [(x, y) for x, y in xy if isinstance(x, (int, float)) and isinstance(y, (int, float))]
        if xy:
            points.extend(xy)
            axes.scatter([x for x, _ in xy], [y for _, y in xy], **style)

    ingredients = soup["ingredients"]
    scatter([i for i in ingredients if i.get("kept")], s=36, color="tab:blue", label="ingredient (kept)", zorder=3)
    scatter(
        [i for i in ingredients if not i.get("kept")],
        s=36,
        facecolors="none",
        edgecolors="tab:gray",
        label="ingredient (not kept)",
        zorder=3,
    )
    results = soup["results"]
    styles = plot_styles()
    for key, style in styles.items():
        if isinstance(results.get(key), dict):
            scatter([results[key]], zorder=4, **{"s": 80, **style})
    if soup["recipe"] not in styles:
        scatter([results["soup"]], marker="P", color="black", s=100, label="this model", zorder=5)
    oracle = _primary((results.get("oracle_best_single") or {}).get("test"))
    if isinstance(oracle, (int, float)):
        axes.axhline(oracle, color="tab:gray", linestyle=":", linewidth=1, label="oracle best single (test)")
    if points:
        low = min(min(p) for p in points)
        high = max(max(p) for p in points)
        pad = max((high - low) * 0.08, 0.005)
        axes.plot([low - pad, high + pad], [low - pad, high + pad], color="0.85", linewidth=1, zorder=1)
        axes.set_xlim(low - pad, high + pad)
    axes.set_xlabel(f"held-out {primary}")
    axes.set_ylabel(f"test {primary} ({test_split_text(soup)})")
    axes.set_title(f"{soup['name']}: ingredients and soups")
    axes.grid(True, linewidth=0.3)
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    # No "Software"/date metadata: the same soup.json must give the same bytes (re-push = no-op).
    figure.savefig(tmp, format="png", metadata={"Software": None})
    os.replace(tmp, path)
    return path
