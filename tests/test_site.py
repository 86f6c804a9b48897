"""The website (`make site`): the notebook pages' preparation, then the built site in a real browser.

The browser half builds build/site/ exactly as `make site` does, serves it on 127.0.0.1, and has
Debian's Chromium (driven by Playwright) load every page; a full-page screenshot of each is
saved under build/site-screenshots/ for people to look at.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlsplit

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "docs" / "_ext"))
import notebook_pages  # noqa: E402
import package_api  # noqa: E402

SITE = REPO / "build" / "site"
SCREENSHOTS = REPO / "build" / "site-screenshots"
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
# The command of `make site` (Makefile), run with this Python.
SPHINX = ["-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-d", "build/site-doctrees", "docs", "build/site"]
CHROMIUM = Path("/usr/bin/chromium")


# --- preparing the notebook pages (fast, no browser) ---


def test_carriage_returns_overwrite_the_line_as_in_a_terminal():
    assert notebook_pages.apply_carriage_returns("epoch 1: 10%\repoch 1: 100%\n") == "epoch 1: 100%\n"
    assert notebook_pages.apply_carriage_returns("abcdef\rXY") == "XYcdef"
    assert notebook_pages.apply_carriage_returns("\r" + " " * 20 + "\r").strip() == ""


def test_clean_outputs_drops_widgets_and_blank_progress_streams_keeps_the_rest():
    widget = {
        "output_type": "display_data",
        "data": {notebook_pages.WIDGET_MIME: {"model_id": "x"}, "text/plain": ["epoch 1/2:   0%|  | 0/938"]},
        "metadata": {},
    }
    bar = [{"output_type": "stream", "name": "stderr", "text": t} for t in ("\r 50%", "\r100%", "\r" + " " * 9, "\r")]
    printed = {"output_type": "stream", "name": "stdout", "text": ["epoch 1 ", "loss 0.3\n"]}
    image = {"output_type": "display_data", "data": {"image/png": "iVBOR"}, "metadata": {}}
    kept, widgets = notebook_pages.clean_outputs([widget, *bar, printed, image])
    assert widgets == 1
    assert kept == [{"output_type": "stream", "name": "stdout", "text": "epoch 1 loss 0.3\n"}, image]


def test_provenance_note_names_device_date_and_download():
    notebook = json.loads(NOTEBOOKS[0].read_text())
    start = notebook_pages.start_line(notebook)
    assert start is not None, f"{NOTEBOOKS[0].name} prints no start line"
    text = notebook_pages.prepare_notebook(NOTEBOOKS[0].read_text(), NOTEBOOKS[0])
    cells = json.loads(text)["cells"]
    assert cells[0]["source"].startswith("# ") and cells[0]["source"].count("\n") == 1  # the title alone
    note = cells[1]["source"]
    assert start["device"] in note and start["torch"] in note and "{download}" in note
    assert re.search(r"committed on \*\*\d{4}-\d\d-\d\d\*\*|not committed yet|unknown date", note)
    assert len({cell.get("id") for cell in cells}) == len(cells)  # cell ids stay unique


def test_provenance_date_is_the_commit_that_last_changed_the_outputs(tmp_path):
    def commit(outputs, source, date):
        cell = {"cell_type": "code", "source": source, "outputs": outputs, "metadata": {}, "execution_count": None}
        (tmp_path / "n.ipynb").write_text(json.dumps({"cells": [cell]}))
        env = {**os.environ, "GIT_COMMITTER_DATE": f"{date}T12:00:00", "GIT_AUTHOR_DATE": f"{date}T12:00:00"}
        for args in (["add", "n.ipynb"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", date]):
            subprocess.run(["git", *args], cwd=tmp_path, check=True, env=env)

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    run = [{"output_type": "stream", "name": "stdout", "text": "torch 2.0 on cpu (x86_64, 2 threads); seed 0\n"}]
    commit(run, "start()", "2026-01-01")
    (tmp_path / "new.ipynb").write_text(json.dumps({"cells": []}))
    assert notebook_pages.outputs_commit(tmp_path / "new.ipynb") == (None, None, True)  # never committed
    commit(run[:0], "start()", "2026-01-02")  # outputs cleared
    commit(run, "start()", "2026-01-03")  # the run again
    commit(run, "start()  # a comment", "2026-01-04")  # code edited, outputs not
    date, _short, uncommitted = notebook_pages.outputs_commit(tmp_path / "n.ipynb")
    assert (date, uncommitted) == ("2026-01-03", False)
    shallow = tmp_path / "shallow"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{tmp_path}", str(shallow)], check=True)
    assert notebook_pages.outputs_commit(shallow / "n.ipynb")[:2] == (None, None)  # 01-03 is not in it
    (tmp_path / "n.ipynb").write_text(json.dumps({"cells": [{"cell_type": "code", "source": "", "outputs": []}]}))
    assert notebook_pages.outputs_commit(tmp_path / "n.ipynb")[2] is True


@pytest.mark.slow  # imports every module of the package (torch included)
def test_api_page_documents_every_public_module_and_top_level_name():
    import mnist_lab

    rst = package_api.api_rst("mnist_lab")
    documented = set(re.findall(r"^\.\. automodule:: (\S+)$", rst, re.M))
    assert {module.__name__ for module in package_api.public_modules(mnist_lab)} == documented
    assert "mnist_lab.models" in documented and "mnist_lab.__main__" not in documented
    for name in mnist_lab.__all__:
        assert re.search(rf"^   \* - .*\b{re.escape(name)}\b", rst, re.M), name


# --- the built site in a browser ---


@pytest.fixture(scope="module")
def site_url():
    """Build the site as `make site` does and serve it on 127.0.0.1 at a free port."""
    done = subprocess.run([sys.executable, *SPHINX], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"the site build failed or warned:\n{done.stdout}\n{done.stderr}"
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


class Visit:
    """One page loaded in a fresh browser context, with what went wrong while loading it."""

    def __init__(self, browser, site_url: str, path: str):
        self.errors: list[str] = []
        self.outside: list[str] = []  # requests that left the local server
        self.context = browser.new_context(viewport={"width": 1600, "height": 1000})
        self.context.route("**/*", functools.partial(self._only_local, site_url))
        self.page = self.context.new_page()
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("requestfailed", lambda request: self.errors.append(f"failed: {request.url}"))
        self.page.goto(site_url + path, wait_until="load")
        self.page.wait_for_load_state("networkidle")

    def _only_local(self, site_url: str, route) -> None:
        if route.request.url.startswith(site_url):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def close(self) -> None:
        self.context.close()


@pytest.fixture(scope="module")
def pages(browser, site_url):
    """Every page of the site's table of contents, each visited once: path -> facts about it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    paths = ["index.html", *(f"notebooks/{nb.stem}.html" for nb in NOTEBOOKS)]
    paths += ["results.html", "troubleshooting.html", "api.html"]
    facts = {}
    for path in paths:
        visit = Visit(browser, site_url, path)
        page = visit.page
        page.wait_for_function("() => !window.MathJax || (MathJax.startup && MathJax.startup.promise)")
        page.evaluate("() => window.MathJax ? MathJax.startup.promise : null")
        facts[path] = {
            "title": page.title(),
            "errors": visit.errors,
            "outside": visit.outside,
            "images": page.evaluate(
                "() => Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
            ),
            "math": page.evaluate("() => document.querySelectorAll('.math').length"),
            "mathjax": page.evaluate("() => document.querySelectorAll('mjx-container').length"),
            # The visible text outside code: where raw LaTeX would show if MathJax failed.
            "prose": page.evaluate(
                """() => { const body = document.querySelector('main').cloneNode(true);
                   body.querySelectorAll('pre, code, script, style, mjx-container').forEach(n => n.remove());
                   return body.innerText; }"""
            ),
            "text": page.evaluate("() => document.querySelector('main').innerText"),
            "links": page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"),
            "next": page.evaluate("() => { const a = document.querySelector('a.right-next'); return a && a.href; }"),
        }
        page.screenshot(path=str(SCREENSHOTS / (path.replace("/", "_").removesuffix(".html") + ".png")), full_page=True)
        visit.close()
    return facts


@pytest.mark.slow
def test_every_page_loads_without_errors_and_nothing_from_outside(pages):
    assert len(pages) == len(NOTEBOOKS) + 4 and len(NOTEBOOKS) >= 8
    for path, facts in pages.items():
        assert facts["errors"] == [], path
        assert facts["outside"] == [], f"{path} asked the internet for {facts['outside']}"
        assert (SCREENSHOTS / (path.replace("/", "_").removesuffix(".html") + ".png")).stat().st_size > 10_000


@pytest.mark.slow
def test_every_image_loaded(pages):
    total = 0
    for path, facts in pages.items():
        for src, complete, width in facts["images"]:
            assert complete and width > 0, f"{path}: image {src} did not load"
        total += len(facts["images"])
    assert total >= 30  # the notebooks' figures are there at all


@pytest.mark.slow
def test_maths_rendered_by_mathjax(pages):
    with_maths = 0
    for path, facts in pages.items():
        for raw in ("$$", "\\(", "\\[", "\\begin{", "\\frac"):
            assert raw not in facts["prose"], f"{path} shows raw LaTeX {raw!r}"
        if facts["math"]:
            with_maths += 1
            assert facts["mathjax"] >= facts["math"], f"{path}: {facts['math']} formulas, {facts['mathjax']} rendered"
    assert with_maths >= 4  # notebooks 02-05 are full of maths


@pytest.mark.slow
def test_notebook_pages_show_provenance_and_no_broken_progress_bars(pages, site_url):
    for notebook in NOTEBOOKS:
        facts = pages[f"notebooks/{notebook.stem}.html"]
        start = notebook_pages.start_line(json.loads(notebook.read_text()))
        assert start is not None
        assert f"torch {start['torch']} on {start['device']}" in facts["text"]
        assert re.search(r"outputs (committed on \d{4}-\d\d-\d\d|not committed yet)", facts["text"])
        assert not re.search(r"\b0%\|", facts["text"]), f"{notebook.name} shows a stuck progress bar"
        downloads = [link for link in facts["links"] if link.endswith("/" + notebook.name)]
        assert downloads, f"no download link for {notebook.name}"
        with urllib.request.urlopen(downloads[0]) as response:
            assert response.read() == notebook.read_bytes()


@pytest.mark.slow
def test_every_internal_link_resolves(pages, site_url):
    targets: dict[str, set[str]] = {}
    for facts in pages.values():
        for link in facts["links"]:
            if link.startswith(site_url):
                url, fragment = urldefrag(link)
                targets.setdefault(url, set()).add(fragment)
    assert len(targets) >= len(pages)
    for url, fragments in sorted(targets.items()):
        try:
            with urllib.request.urlopen(url) as response:
                body = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as error:
            pytest.fail(f"{url} answered {error.code}")
        if urlsplit(url).path.endswith(".html") or url.endswith("/"):
            for fragment in fragments - {""}:
                assert f'id="{fragment}"' in body, f"{url}#{fragment}: no such anchor"


@pytest.mark.slow
def test_next_goes_through_the_notebooks_in_order(pages, site_url):
    order, path = [], "index.html"
    while pages.get(path, {}).get("next"):
        path = pages[path]["next"].removeprefix(site_url)
        order.append(path)
    assert order[: len(NOTEBOOKS)] == [f"notebooks/{nb.stem}.html" for nb in NOTEBOOKS]
    assert [pages[p]["title"][:2] for p in order[: len(NOTEBOOKS)]] == [nb.name[:2] for nb in NOTEBOOKS]


@pytest.mark.slow
def test_search_finds_a_word(browser, site_url):
    visit = Visit(browser, site_url, "search.html?q=convolution")
    results = visit.page.locator("ul.search li")
    results.first.wait_for(timeout=20_000)
    links = visit.page.evaluate("() => Array.from(document.querySelectorAll('ul.search li a')).map(a => a.href)")
    visit.page.screenshot(path=str(SCREENSHOTS / "search.png"), full_page=True)
    visit.close()
    assert any("05_cnn" in link for link in links), links
    assert visit.errors == [] and visit.outside == []
