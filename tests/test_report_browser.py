"""The HTML report as a browser shows it: headless Chromium renders the file:// page.

Checks what a reader would notice: the page renders (a screenshot with real content), every
figure is an embedded PNG that decodes and that Chromium actually loads (naturalWidth > 0),
and no section of the page is empty. Skipped only when no Chromium binary is installed.
"""
from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# write_rich_run comes from a sibling module (pytest puts tests/ on sys.path)
from test_reports import write_rich_run

from reports import build_report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
BROWSER = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WINDOW = (1280, 3000)

pytestmark = [pytest.mark.slow, pytest.mark.own_processes]  # a full report and Chromium twice (≈20 s, 2 CPUs); no Ray
needs_browser = pytest.mark.skipif(
    BROWSER is None, reason=f"no Chromium binary on PATH (tried {', '.join(BROWSERS)})")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    run = write_rich_run(tmp_path_factory.mktemp("browser_run"), tasks=("d2t", "qg"))
    return build_report([run])


def test_every_image_is_an_embedded_png(report):
    page = report.read_text(encoding="utf-8")
    sources = re.findall(r'<img\s[^>]*src="([^"]*)"', page)
    assert len(sources) == len(re.findall(r"<img\b", page)) == 5
    for src in sources:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:40]
        data = base64.b64decode(src[len(prefix):], validate=True)
        assert data.startswith(PNG_MAGIC)
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            assert image.format == "PNG" and min(image.size) > 200


def test_no_section_is_empty(report):
    page = report.read_text(encoding="utf-8")
    sections = re.findall(r"<section>(.*?)</section>", page, flags=re.DOTALL)
    assert len(sections) >= 8
    for section in sections:
        title = re.search(r"<h2>(.*?)</h2>", section).group(1)
        body = section.split("</h2>", 1)[1]
        assert re.search(r"<(table|img|p)\b", body), f"section {title!r} is empty"
        for table in re.findall(r"<table.*?</table>", body, flags=re.DOTALL):
            assert "<td" in table, f"a table of section {title!r} has no rows"


@needs_browser
def test_chromium_renders_the_page(report, tmp_path):
    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, f"--screenshot={shot}",
                       f"--window-size={WINDOW[0]},{WINDOW[1]}", report.resolve().as_uri())
    assert shot.exists(), result.stderr[-2000:]
    assert shot.stat().st_size > 50_000  # a blank page is a few KB
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.shape == (WINDOW[1], WINDOW[0])
    assert (pixels < 200).mean() > 0.02  # text, tables and figures, not an empty page
    assert pixels.std() > 20


@needs_browser
def test_chromium_loads_every_image(report, tmp_path):
    """A copy of the page with a probe that records each image's decoded width on load."""
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load',()=>{document.body.setAttribute("
              "'data-widths',Array.from(document.images).map(i=>i.complete?i.naturalWidth:-1)"
              ".join(','))});</script></body>")
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", script),
                     encoding="utf-8")
    result = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    match = re.search(r'data-widths="([^"]*)"', result.stdout)
    assert match, result.stderr[-2000:]
    widths = [int(w) for w in match.group(1).split(",")]
    assert len(widths) == 5 and all(w > 200 for w in widths), widths
