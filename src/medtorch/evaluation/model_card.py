"""The report's model card: intended use, data, version, and limitations read off the results.

>>> card = model_card(bundle, summary, source="heart.csv")

Limitations are stated from what the run found (a small test set, flagged subgroup gaps,
duplicates across splits, poor calibration, no external validation), so the card says what a
reviewer would otherwise have to dig for.
"""

from __future__ import annotations

from typing import Any

SMALL_TEST_SET = 100
POOR_CALIBRATION_ECE = 0.1


def model_card(bundle: Any, summary: dict[str, Any], *, source: str | None, intended_use: str | None = None) -> dict[str, Any]:
    """A JSON-safe model card for ``bundle`` evaluated as ``summary`` (metrics.json's content)."""
    from datetime import datetime, timezone

    from medtorch.version import BUNDLE_FORMAT_VERSION, __version__

    task = bundle.task
    what = f"telling {task.positive} from {task.negative}" if task.type == "binary" else f"{task.type} prediction"
    return {
        "model": bundle.model_name,
        "members": bundle.members,
        "modality": bundle.modality.name,
        "task": task.type,
        "intended_use": intended_use
        or (
            f"Research and decision support: {what} from {bundle.modality.name} data. Not a medical device; "
            "validate on local data before any clinical use, and keep a clinician in the loop."
        ),
        "data": {"source": source, "evaluated_on": summary.get("evaluated_on"), "n": summary.get("n"), "splits": summary.get("splits")},
        "version": {
            "medtorch": __version__,
            "bundle_format": BUNDLE_FORMAT_VERSION,
            "evaluated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        "limitations": limitations(summary),
    }


def limitations(summary: dict[str, Any]) -> list[str]:
    """Plain sentences on what limits trust in these results."""
    found = []
    n = summary.get("n") or 0
    if summary.get("evaluated_on") != "external":
        found.append("Evaluated on a held-out split of the training source only; no external validation yet.")
    if n < SMALL_TEST_SET:
        found.append(f"Small evaluation set (n = {n}): the confidence intervals are wide.")
    for column, groups in (summary.get("subgroups") or {}).items():
        flagged = [
            f"{group['group']} ({', '.join(name.replace('_', ' ') for name, gap in group['gaps'].items() if gap.get('flagged'))})"
            for group in groups
            if any(gap.get("flagged") for gap in group["gaps"].values())
        ]
        if flagged:
            found.append(f"Performance differs by {column} (gap whose 95% CI excludes zero): {'; '.join(flagged)}.")
    found += [f"Data check: {warning}." for warning in (summary.get("checks") or {}).get("warnings", [])]
    ece = ((summary.get("calibration") or {}).get("after") or {}).get("ece", {}).get("value")
    if ece is not None and ece > POOR_CALIBRATION_ECE:
        found.append(f"Probabilities are poorly calibrated even after recalibration (ECE {ece:.3f}).")
    if not summary.get("subgroups"):
        found.append("No subgroup columns (sex, age, site) were given, so fairness across groups was not assessed.")
    return found
