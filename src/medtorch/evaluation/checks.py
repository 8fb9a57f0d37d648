"""Leakage and data checks across splits: shared patients, duplicate samples, missingness.

>>> checks = data_checks(modality, records, preprocessor, {"train": tr, "val": va, "test": te})
>>> checks["exact_duplicates"]["test-train"]
0

Shared patients are refused earlier, when the split is made (:mod:`medtorch.data.splits`);
here they are counted again so the report shows the check was done. Duplicates are found from
each modality's fingerprints: a hash of the sample (tables and images) and, for images, a
perceptual hash that also matches resized, re-encoded or slightly altered copies.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

NEAR_DUPLICATE_BITS = 4  # of 64: perceptual hashes this close are the same picture for practical purposes
MAX_MISSING_COLUMNS = 20


def data_checks(modality: Any, records: Any, preprocessor: Any, splits: dict[str, np.ndarray]) -> dict[str, Any]:
    """Counts for the report's checks section; ``splits`` maps split names to indices, in order."""
    splits = {name: np.asarray(idx) for name, idx in splits.items() if len(idx)}
    result: dict[str, Any] = {"patient_overlap": _patient_overlap(records.groups, splits)}
    fingerprints = modality.fingerprints(records, preprocessor)
    if fingerprints is not None:
        result["exact_duplicates"] = _duplicates(fingerprints.exact, splits)
        if fingerprints.perceptual is not None:
            result["near_duplicates"] = _near_duplicates(fingerprints.perceptual, splits, NEAR_DUPLICATE_BITS)
            result["near_duplicate_bits"] = NEAR_DUPLICATE_BITS
    missing = modality.missingness(records)
    if missing is not None:
        result["missingness"] = _shares(missing, splits)
    quality = modality.quality(records, preprocessor)
    if quality is not None:
        result["quality"] = _shares(quality, splits)
    result["warnings"] = _warnings(result)
    return result


def _pairs(splits: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """Later split first ('test-train'): the question is whether a later sample was seen earlier."""
    names = list(splits)
    return [(later, earlier) for earlier, later in combinations(names, 2)]


def _patient_overlap(groups: np.ndarray | None, splits: dict[str, np.ndarray]) -> dict[str, int] | None:
    if groups is None:
        return None
    return {f"{a}-{b}": len(set(groups[splits[a]].tolist()) & set(groups[splits[b]].tolist())) for a, b in _pairs(splits)}


def _duplicates(hashes: np.ndarray, splits: dict[str, np.ndarray]) -> dict[str, int]:
    """Samples of the later split whose exact copy is in the earlier one, and repeated samples within each split."""
    counts = {}
    for a, b in _pairs(splits):
        seen = set(hashes[splits[b]].tolist())
        counts[f"{a}-{b}"] = int(sum(h in seen for h in hashes[splits[a]].tolist()))
    for name, idx in splits.items():
        counts[f"within_{name}"] = int(len(idx) - len(set(hashes[idx].tolist())))
    return counts


def _near_duplicates(hashes: np.ndarray, splits: dict[str, np.ndarray], bits: int) -> dict[str, int]:
    """Samples of the later split with a perceptual hash within ``bits`` of one in the earlier split."""
    counts = {}
    for a, b in _pairs(splits):
        counts[f"{a}-{b}"] = int(np.sum(nearest_distance(hashes[splits[a]], hashes[splits[b]]) <= bits))
    return counts


def nearest_distance(queries: np.ndarray, references: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Hamming distance from each 64-bit query hash to its nearest reference hash."""
    queries, references = queries.astype(np.uint64), references.astype(np.uint64)
    if not len(references):
        return np.full(len(queries), 64)
    nearest = np.empty(len(queries), dtype=int)
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk, None] ^ references[None, :]
        nearest[start : start + chunk] = np.bitwise_count(block).min(axis=1)
    return nearest


def _shares(flags: Any, splits: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Share of samples flagged per column and split (missing values, quality problems), for the
    columns with any flag, most flagged first."""
    overall = flags.mean(axis=0).sort_values(ascending=False)
    columns = [c for c in overall.index if overall[c] > 0][:MAX_MISSING_COLUMNS]
    return {str(c): {name: round(float(flags[c].iloc[idx].mean()), 4) for name, idx in splits.items()} for c in columns}


def _warnings(result: dict[str, Any]) -> list[str]:
    warnings = []
    for pair, count in (result.get("exact_duplicates") or {}).items():
        if count and not pair.startswith("within"):
            warnings.append(f"{count} samples of {pair.replace('-', ' also appear exactly in ')}")
    for pair, count in (result.get("near_duplicates") or {}).items():
        if count:
            warnings.append(f"{count} samples of {pair.replace('-', ' have a near-duplicate in ')}")
    for problem, shares in (result.get("quality") or {}).items():
        warnings.append(f"{problem}: {', '.join(f'{100 * v:.1f}% of {k}' for k, v in shares.items())}")
    for pair, count in (result.get("patient_overlap") or {}).items():
        if count:
            warnings.append(f"{count} patients are in both {pair.replace('-', ' and ')}")
    return warnings
