"""A run's ``report.html`` opened in a real browser (Debian's headless Chromium, driven by playwright).

It must render, every picture must load, and the page must log no errors. A full-page
screenshot is kept in ``test-artifacts/report.png`` at the repo root for a person to look at.

Chromium comes from ``scripts/install-browser.sh`` (run by ``make test``); playwright from the
``dev`` extra. Either missing skips the test on a laptop and fails it under CI.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import medtorch

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts"
# a closed network: keep Chromium from phoning home (and logging the failures)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.slow


def _required() -> bool:
    return os.environ.get("MEDTORCH_REQUIRE_DATA") == "1" or bool(os.environ.get("CI"))


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium, with playwright importable; requested before ``report_path`` so a
    missing browser skips (or fails, under CI) before any training."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (run scripts/install-browser.sh or `make test`)")
    if importlib.util.find_spec("playwright") is None:
        missing.append('the playwright package (pip install -c constraints.txt -e ".[dev]")')
    if missing:
        message = "report browser test needs " + " and ".join(missing)
        if _required():
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


def _binary_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.normal(size=n)
    group = rng.choice(["a", "b", "c"], n)
    logit = 1.8 * x1 - 0.8 * x2 + 0.6 * (group == "c")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return pd.DataFrame({"x1": x1.round(3), "x2": x2.round(3), "group": group, "y": y})


@pytest.fixture(scope="module")
def report_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``report.html`` of a tiny real run (3 epochs, 50 bootstrap resamples)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like the one_torch_thread fixture (function-scoped, so not usable here)
    try:
        out = tmp_path_factory.mktemp("report") / "run"
        medtorch.train(
            _binary_frame(),
            target="y",
            out=out,
            overrides={"train": {"epochs": 3}, "evaluate": {"bootstrap": 50}},
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    path = out / "report.html"
    assert path.is_file(), f"train() wrote no report.html in {out}"
    return path


def test_report_renders_in_headless_chromium(chromium: Path, report_path: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda msg: errors.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.goto(report_path.as_uri(), wait_until="load", timeout=30_000)

            title = page.title()
            h1 = page.locator("h1")
            assert title.strip(), "report has no <title>"
            assert h1.count() >= 1, "report has no <h1>"
            assert h1.first.inner_text().strip(), "report's <h1> is empty"

            images = page.evaluate(
                """() => Array.from(document.images, (img, i) => ({
                    index: i,
                    src: (img.getAttribute('src') || '').slice(0, 60),
                    alt: img.alt,
                    complete: img.complete,
                    width: img.naturalWidth,
                    height: img.naturalHeight,
                }))"""
            )
            assert images, "report has no <img>"
            broken = [img for img in images if not img["complete"] or img["width"] == 0 or img["height"] == 0]
            assert not broken, f"{len(broken)} of {len(images)} images did not load: {broken}"

            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert not errors, "the report logged errors in the browser:\n" + "\n".join(errors)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", "screenshot is not a PNG"
    assert shot.stat().st_size > 10_000, f"screenshot is suspiciously small ({shot.stat().st_size} bytes)"
    ARTIFACTS.mkdir(exist_ok=True)
    kept = ARTIFACTS / "report.png"
    shutil.copyfile(shot, kept)
    assert kept.stat().st_size == shot.stat().st_size
