"""What the ensemble would cost at inference, measured in the merge's own run.

A soup is one model; the soft-vote ensemble it is compared with runs every ingredient. The merge
already runs both kinds of forward pass over the test split: once per ingredient while scoring
them, once per soup. `hf_soup.scoring.Scorer` times each pass (the forward loop only, batches
already built), so this costs no extra inference:
  * the soup's rows/s: test rows over the median time of the soups' passes (each is one model, the
    same architecture; the median damps a pass slowed by another process on a shared machine);
  * the ensemble's rows/s: test rows over the sum of the N ingredients' passes plus the time to
    average their probabilities (`hf_soup.ensemble.ensemble_logits`), timed here.
Both come from the same device, batches and run, so their ratio is the cost of N models against
one, as measured, not assumed to be N.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

KEY = "inference_speed"  # not the ensemble row's `inference_cost` (its member count)


def measure(
    seconds: list[float], members: int, rows: int, ensemble_inputs: list[Any], is_regression: bool, device: str
) -> dict[str, Any] | None:
    """soup.json's `inference_cost` from the scorer's timings of the test split (None without both kinds).

    `seconds`: every timed pass over test, the `members` ingredients' first, then the soups'.
    """
    from hf_soup.ensemble import ensemble_logits

    ingredients, soups = seconds[:members], seconds[members:]
    if len(ingredients) < members or not soups or rows == 0:
        return None
    started = time.perf_counter()
    ensemble_logits(ensemble_inputs, is_regression)
    averaging = time.perf_counter() - started
    soup_seconds = statistics.median(soups)
    ensemble_seconds = sum(ingredients) + averaging
    return {
        "split": "test",
        "rows": rows,
        "device": device,
        "soup_rows_per_second": rows / soup_seconds,
        "ensemble_rows_per_second": rows / ensemble_seconds,
        "ensemble_cost": ensemble_seconds / soup_seconds,  # × the soup's inference time
        "members": members,
        "soup_passes": len(soups),
    }


def with_gain(block: dict[str, Any] | None, results: dict[str, Any]) -> dict[str, Any] | None:
    """Add `ensemble_gain_points`: the ensemble's test primary minus the soup's, ×100."""
    if block is None:
        return None
    ensemble = ((results.get("ensemble") or {}).get("test") or {}).get("primary")
    soup = ((results.get("soup") or {}).get("test") or {}).get("primary")
    if isinstance(ensemble, (int, float)) and isinstance(soup, (int, float)):
        block["ensemble_gain_points"] = 100.0 * (ensemble - soup)
    return block


def sentence(soup: dict[str, Any]) -> str:
    """ "the ensemble would cost 7.6× the inference for +0.3 points" (test primary), or ''."""
    block = soup.get(KEY)
    if not isinstance(block, dict) or "ensemble_gain_points" not in block:
        return ""
    return (
        f"the {block['members']}-model ensemble would cost {block['ensemble_cost']:.1f}× the inference for "
        f"{block['ensemble_gain_points']:+.1f} points of test {soup.get('primary_metric') or 'primary score'} "
        f"(measured on {block['device']}: soup {block['soup_rows_per_second']:.0f} rows/s, ensemble "
        f"{block['ensemble_rows_per_second']:.0f} rows/s)"
    )
