"""The report renders in a real headless browser (Debian's chromium): sections and plots show.

Skipped where chromium is not installed; CI installs it with `apt-get install -y chromium`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from report_models import make_merged, parse_page

from mergesmith.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium); the browser check needs it")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def page(llama: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(make_merged(tmp_path_factory.mktemp("browser"), llama, "ties"))


def test_dom_has_sections_and_png_images(page: Path, tmp_path: Path) -> None:
    done = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = parse_page(done.stdout)
    assert {"summary", "recipe", "manifest", "delta-norms", "cosine", "sign-conflicts",
            "contributions", "distances"} <= set(dom.sections)
    assert sum(src.startswith("data:image/png;base64,") for src in dom.images) >= 6


def test_screenshot_shows_the_plots(page: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "shot.png"
    done = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 3000)
    colors = image.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 200  # text, tables and antialiased plots, not a blank page
    # matplotlib's first line colour (C0, #1f77b4) is drawn only inside the plots
    blue = sum(n for n, (r, g, b) in colors if abs(r - 31) < 12 and abs(g - 119) < 12 and abs(b - 180) < 12)
    assert blue > 500
