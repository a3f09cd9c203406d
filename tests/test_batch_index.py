"""OUT_DIR/index.html for hundreds of videos (mer.report.write_index, as the batch driver calls it):
failed and partial videos first with their reasons, links to every report, sortable and
filterable columns and a Plotly overview that work offline in a real headless Chromium (Debian's,
driven by playwright's python package; skipped when absent)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MER_CHROMIUM", "/usr/bin/chromium")
CLASSES = ["Happiness", "Surprise", "Anger"]


def rows(n: int = 300) -> list[dict]:
    """A night's folder: n videos in name order, two failed and one partial deep in the list."""
    out = []
    for k in range(n):
        r = {"video": f"v{k:03d}.mp4", "status": "done", "error": "", "duration_s": 2.0 + k % 7, "frames": 50 + k,
             "fps": 25.0, "faces": 1, "dominant_class": CLASSES[k % 3], "intervals": k % 5, "seconds": 3.0 + k % 11,
             "report": f"v{k:03d}.mp4.html", "class_shares": {c: round((k + i) % 3 / 3, 4) for i, c in enumerate(CLASSES)}}
        out.append(r)
    out[199] = {"video": "v199.mp4", "status": "failed", "error": "worker died with SIGKILL", "seconds": 1.0}
    out[247] = {"video": "v247.mp4", "status": "failed", "error": "v247.mp4: empty file", "seconds": 0.0}
    out[150].update(status="partial", error="decoding failed in frames 40-71")
    return out


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Path:
    from mer.report import write_index, write_plotly_js
    out = tmp_path_factory.mktemp("index")
    write_plotly_js(out)
    return write_index(rows(), out)["index"]


def body_rows(page: str) -> list[tuple[str, str]]:
    """(status, first cell text) of every table row, in page order."""
    return [(s, re.sub("<[^>]+>", "", c)) for s, c in
            re.findall(r"<tr class='(\w+)' data-status='\w+'[^>]*><td>(.*?)</td>", page)]


def test_failed_and_partial_come_first_with_reasons_and_every_report_is_linked(index):
    page = index.read_text()
    got = body_rows(page)
    assert len(got) == 300
    assert got[:3] == [("failed", "v199.mp4"), ("failed", "v247.mp4"), ("partial", "v150.mp4")]
    assert all(s == "done" for s, _ in got[3:]) and [v for _, v in got[3:]] == sorted(v for _, v in got[3:])
    assert "worker died with SIGKILL" in page.split("v247.mp4")[0] and "decoding failed in frames 40-71" in page
    assert "2 failed, 1 partial" in page
    assert len(re.findall(r'<a href="v\d{3}\.mp4\.html">', page)) == 298  # every done and partial video
    # offline: no script from the network, plotly.js from the folder itself
    srcs = re.findall(r"<script[^>]*src=\"([^\"]*)\"", page)
    assert srcs == ["plotly.min.js"] and (index.parent / "plotly.min.js").stat().st_size > 1_000_000
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page)
    # the summary stays in name order
    import pandas as pd
    assert pd.read_csv(index.parent / "summary.csv")["video"].tolist() == [f"v{k:03d}.mp4" for k in range(300)]


@pytest.fixture(scope="module")
def page(index, tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM}")
    pw_api = pytest.importorskip("playwright.sync_api", reason="playwright (requirements-test.txt) not installed")
    with pw_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            ctx = browser.new_context(offline=True)  # the page must not need the network
            p = ctx.new_page()
            errors = []
            p.on("pageerror", lambda e: errors.append(str(e)))
            p.goto(index.as_uri(), wait_until="load", timeout=60_000)
            p.errors = errors
            yield p
        finally:
            browser.close()


def first_cells(page, col: int, n: int = 5) -> list[str]:
    return page.eval_on_selector_all("#videos tbody tr", f"rs => rs.filter(r => r.style.display !== 'none')"
                                     f".slice(0, {n}).map(r => r.cells[{col}].textContent)")


def test_index_sorts_filters_and_draws_the_overview_offline(page):
    assert page.errors == []
    # the overview: three Plotly figures drawn from the table (class shares: one bar trace per class)
    assert page.eval_on_selector_all(".ov .main-svg", "e => e.length") >= 3
    assert page.evaluate("document.getElementById('ov-shares').data.length") == len(CLASSES)
    assert page.evaluate("document.getElementById('ov-secs').data[0].x.length") == 298
    assert page.inner_text("#shown") == "300 of 300 shown"
    # sort by frames, numerically (50 < 100), then reversed
    page.click("#videos th:nth-child(5)")
    assert first_cells(page, 4, 3) == ["50", "51", "52"]
    page.click("#videos th:nth-child(5)")
    assert first_cells(page, 4, 2) == ["349", "348"]
    assert page.get_attribute("#videos th:nth-child(5)", "aria-sort") == "descending"
    # filter by status, then by text
    page.select_option("#status", "failed")
    assert page.inner_text("#shown") == "2 of 300 shown"
    assert sorted(first_cells(page, 0)) == ["v199.mp4", "v247.mp4"]
    page.select_option("#status", "")
    page.fill("#filter", "SIGKILL")
    assert page.inner_text("#shown") == "1 of 300 shown" and first_cells(page, 0) == ["v199.mp4"]
    page.fill("#filter", "")
    assert page.inner_text("#shown") == "300 of 300 shown"


def test_a_report_without_intervals_has_no_apex_frames(media, untrained_checkpoint, tmp_path):
    """A video where nothing was spotted gets no "Apex frames" section (it showed thumbnails of
    frames that are the apex of nothing)."""
    from mer.predict import Predictor
    from mer.report import video_html
    from mer.video import VideoSettings, analyze_video
    res = analyze_video(media / "no_face.mp4", Predictor(untrained_checkpoint, device="cpu"),
                        VideoSettings(detect_every=4))
    page = video_html(res, plotlyjs=False)
    assert len(res.intervals) == 0 and "Spotted intervals (0)" in page
    assert "Apex frames" not in page and "<img" not in page
