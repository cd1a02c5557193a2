"""The real thing: `streamlit run app/main.py` headless on 127.0.0.1, looked at with Debian's Chromium.

A URL with the query in it must render the results page (checked in the DOM the browser built, and in the
screenshot's pixels), and a query typed into the box must land in the URL. Skipped when Chromium is absent;
`.ci/run` installs it.
"""

from __future__ import annotations

import json
import os
import shutil
from urllib.parse import parse_qs, urlparse

import pytest

import index
from app.testing import Browser, chromium, png_stats, serve

pytestmark = pytest.mark.skipif(
    chromium() is None,
    reason="Chromium is not installed (apt-get install -y chromium; .ci/run installs it): browser test skipped",
)

CORPUS = {
    "wings.md": "# Wings\n\nA wing produces lift because the airflow over it is deflected downwards.\n\n"
                "The boundary layer on the upper surface can separate at high angles of attack.",
    "bread.txt": "Banana bread needs very ripe bananas, flour, butter and a hot oven.",
    "harbor.html": "<html><head><title>Harbor lights</title></head><body><h1>Harbor lights</h1>"
                   "<p>The violet lantern at the harbor is lit every evening at dusk.</p></body></html>",
}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    from encoder.testing import tiny_model

    root = tmp_path_factory.mktemp("browser")
    docs = root / "docs"
    docs.mkdir()
    for name, text in CORPUS.items():
        (docs / name).write_text(text)
    with index.open(root / "index", tiny_model(), model_source="tiny") as ix:
        report = ix.ingest(docs)
    assert len(report.added) == 3
    return root


def test_results_page_from_a_url_renders_in_chromium(ingested, tmp_path):
    args = ["--index", str(ingested / "index"), "--uploads", str(ingested / "uploads"), "--model", "tiny"]
    shot = tmp_path / "results.png"
    with serve(args, timeout=120, log_path=tmp_path / "server.log") as url, Browser(window=(1400, 1000)) as browser:
        browser.goto(url + "/?q=violet+lantern+harbor&mode=hybrid&k=3")
        browser.wait_for_text("results for", timeout=120)
        browser.wait_idle(timeout=60)
        browser.screenshot(shot)
        page = browser.html()
        text = browser.text()
        query_box = browser.eval("document.querySelector('input[aria-label=\"Query\"]').value")

        # a query typed into the box and submitted with Enter goes into the URL and shows its results
        browser.type_and_submit('input[aria-label="Query"]', "banana bread oven")
        browser.wait_for(f"location.search.includes({json.dumps('banana')})", timeout=60)
        browser.wait_for_text("“banana bread oven”", timeout=60)
        browser.wait_idle(timeout=60)
        typed = parse_qs(urlparse(browser.eval("location.href")).query)
        first_card = browser.eval("document.querySelector('.nv-meta').innerText")
        exceptions = browser.eval("document.querySelectorAll('[data-testid=\"stException\"]').length")

    assert query_box == "violet lantern harbor"
    assert page.count('class="nv-head"') == 3  # three result cards, k=3
    assert "The violet lantern at the harbor is lit every evening at dusk." in text.replace("\n", " ")
    assert "harbor.html" in text and "RRF" in text and "Harbor lights" in text
    assert '<mark class="nv-hit">lantern</mark>' in page
    assert "Traceback" not in text
    width, height, colours = png_stats(shot)
    assert (width, height) == (1400, 1000) and colours > 50, (width, height, colours)  # not a blank page

    # the mode stays hybrid: spelled out, or left out of the URL because it is the default
    assert typed["q"] == ["banana bread oven"] and typed.get("mode", ["hybrid"]) == ["hybrid"] and typed["k"] == ["3"]
    assert "bread.txt" in first_card and exceptions == 0
    out = os.environ.get("NVEMBED_SCREENSHOT_OUT")
    if out:  # keep the screenshot, e.g. to look at it
        shutil.copy(shot, out)
