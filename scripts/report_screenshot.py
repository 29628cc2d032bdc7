#!/usr/bin/env python3
"""Regenerate docs/report.png: the HTML report of fixtures/ as headless Chromium shows it.

    python3 scripts/report_screenshot.py            # writes docs/report.png

Needs Chromium (apt-get install chromium) and Pillow (installed with matplotlib), which reduces
the image to 96 colours to keep the repository light.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WINDOW = "1200,1600"


def main() -> int:
    """Write the report, take the screenshot, reduce it; return the exit code."""
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("report_screenshot: chromium not found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as work:
        page = Path(work) / "report.html"
        shot = Path(work) / "report.png"
        subprocess.run(
            [sys.executable, "-m", "auditor", "report", "fixtures/", "-q", "-o", str(page)],
            cwd=REPO,
            check=True,
        )
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={work}/profile",
                f"--window-size={WINDOW}",
                "--virtual-time-budget=3000",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            check=True,
            capture_output=True,
        )
        with Image.open(shot) as image:
            reduced = image.convert("RGB").quantize(colors=96, method=Image.Quantize.MEDIANCUT)
            reduced.save(REPO / "docs" / "report.png", optimize=True)
    print(f"wrote {REPO / 'docs' / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
