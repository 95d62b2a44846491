"""The comparison table a merge prints: one row per baseline and soup (labels from the recipe catalog).

    print(format_table(read_soup("soups/rte-greedy")))

A pure function of soup.json, so the table can be printed again for any soup folder.
"""

from __future__ import annotations

from hf_soup.calibration import table_lines as calibration_table_lines
from hf_soup.card import learned_nothing_text, test_split_names, test_split_text
from hf_soup.extra_tests import RECORD_KEY as EXTRA_TESTS_KEY
from hf_soup.extra_tests import table_lines as extra_table_lines
from hf_soup.geometry import table_lines as geometry_table_lines
from hf_soup.identical import table_line as identical_table_line
from hf_soup.inference_cost import sentence as cost_sentence
from hf_soup.recipes.catalog import result_rows
from hf_soup.soup_file import GAIN_KEY
from hf_soup.temperature import table_lines as temperature_table_lines


def format_table(soup: dict) -> str:
    """The comparison printed after every merge: one row per baseline/soup, held-out and test (and every
    further test split), and each soup's test gain over the best single with its paired-bootstrap 95%
    interval."""
    results = soup["results"]
    if not results:
        return f"{soup['recipe']} soup of {len(soup['ingredients'])} ingredients written (not scored)"
    metric = soup.get("primary_metric") or "primary"
    n = len(soup["ingredients"])
    more_tests = [s for s in test_split_names(soup) if s != "test"]  # e.g. MNLI's test_mismatched
    more_tests += [f"extra:{name}" for name in soup.get(EXTRA_TESTS_KEY) or {}]  # extra test sets' primary
    lines = [
        f"primary metric: {metric}; chosen on held-out by {soup['criterion']}",
        f"{'':52s} {'heldout':>8s} {'h. loss':>8s} {'test':>8s} {'t. loss':>8s}"
        + "".join(f" {name.removeprefix('test_').removeprefix('extra:')[:8]:>8s}" for name in more_tests)
        + "  test gain vs best single [95% CI]",
    ]

    def cell(row: dict, split: str, key: str) -> str:
        value = row.get(split, {}).get(key)
        return f"{value:8.4f}" if isinstance(value, (int, float)) else f"{'-':>8s}"

    def gain(row: dict) -> str:
        found = row.get(GAIN_KEY)
        if not found:
            return ""
        return f"  {found['estimate']:+.4f} [{found['low']:+.4f}, {found['high']:+.4f}]"

    written = "uniform" if soup["recipe"] == "average-last" else soup["recipe"]
    for display in result_rows():
        key = display.key
        if key in results:
            row = results[key]
            marker = "  <- written" if key == written else ""
            lines.append(
                f"{display.table_label(row, soup)[:52]:52s} {cell(row, 'heldout', 'primary')} {cell(row, 'heldout', 'loss')} "
                f"{cell(row, 'test', 'primary')} {cell(row, 'test', 'loss')}"
                + "".join(f" {cell(row, name, 'primary')}" for name in more_tests)
                + f"{gain(row)}{marker}"
            )
    lines.extend(extra_table_lines(soup))
    if (twins := identical_table_line(soup)) is not None:
        lines.append(twins)
    lines.extend(calibration_table_lines(soup))
    lines.extend(temperature_table_lines(soup))
    lines.extend(geometry_table_lines(soup))
    if cost_sentence(soup):
        lines.append(f"inference: {cost_sentence(soup)}")
    if soup["recipe"] == "average-last":
        lines.append(f"written: the average of the last {n} checkpoints (row 'uniform')")
    if "learned" in results:
        lines.append("learned: its coefficients were fitted on held-out, so its held-out score is optimistic.")
    lines.append(
        f"test = {test_split_text(soup)}: reported, never used to choose; 'oracle' rows are chosen on test. The "
        "interval is a paired bootstrap over the test rows: it covers the luck of which rows are in test, not of "
        "training."
    )
    if (nothing := learned_nothing_text(soup)) is not None:
        lines.append(f"warning: {nothing}")
    if soup.get("heldout_disjoint") is False:
        lines.append(f"warning: held-out may overlap the ingredients' training data: {soup['heldout_disjoint_reason']}")
    return "\n".join(lines)
