"""Drawing a digit in a real browser: JupyterLab, headless Chromium, the canvas of notebook 07.

The test starts JupyterLab on 127.0.0.1 (a free port, a token), opens a two-cell
notebook that shows `DigitPad(model).widget()` (the same canvas notebook 07 shows,
with a small model trained here, so the test does not train notebook 07's nine
models), draws a "1" and then a "7" with the mouse, and reads the prediction the
page shows. It needs Debian's Chromium (`/usr/bin/chromium`, installed by `.ci/run`)
and Playwright; without them it is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from mnist_lab.checkpoints import save_checkpoint
from mnist_lab.handwriting.canvas import PAD_SIDE
from mnist_lab.models import build_model
from mnist_lab.train import fit

CHROMIUM = Path("/usr/bin/chromium")
playwright = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install -y chromium)"),
]

ONE = [(0.55, 0.12), (0.45, 0.88)]  # a stroke, in units of the canvas side
SEVEN = [(0.22, 0.18), (0.78, 0.18), (0.42, 0.88)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(checkpoint: Path) -> dict:
    cells = [
        "from mnist_lab import build_model, load_checkpoint\n"
        "from mnist_lab.handwriting import DigitPad\n"
        f"model = build_model('keras_cnn')\nload_checkpoint({str(checkpoint)!r}, model)\nmodel.eval();",
        "pad = DigitPad(model)\npad.widget()",
    ]
    return {
        "cells": [
            {"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None} for c in cells
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def jupyter_lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a folder with the demo notebook: (url, token)."""
    root = tmp_path_factory.mktemp("lab")
    model = build_model("keras_cnn", seed=0)
    fit(model, device="cpu", limit=10_000, test_limit=1000, epochs=1, batch_size=64, lr=2e-3, progress=False, log=None)
    save_checkpoint(root / "keras_cnn.pt", model)
    (root / "draw.ipynb").write_text(json.dumps(_notebook(root / "keras_cnn.pt")))
    port, token = _free_port(), "mnist-lab-test-token"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(root / "runtime"), JUPYTER_CONFIG_DIR=str(root / "config"))
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}"]
    command += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=''"]
    command += ["--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # CI containers run as root
    log = open(root / "lab.log", "w")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            if server.poll() is not None:
                break
            try:
                local = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy for 127.0.0.1
                local.open(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not answer: {(root / 'lab.log').read_text()[-2000:]}")
        if server.poll() is not None:
            pytest.fail(f"JupyterLab did not start: {(root / 'lab.log').read_text()[-2000:]}")
        yield url, token
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _draw(page, canvas, path) -> None:
    """Drag the mouse along `path` (unit coordinates) over the canvas element."""
    box = canvas.bounding_box()
    scale = box["width"] / PAD_SIDE  # the element may be shown at another size than its pixels
    points = [(box["x"] + x * PAD_SIDE * scale, box["y"] + y * PAD_SIDE * scale) for x, y in path]
    page.mouse.move(*points[0])
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        for t in [i / 12 for i in range(1, 13)]:
            page.mouse.move(x0 + (x1 - x0) * t, y0 + (y1 - y0) * t)
            time.sleep(0.01)
    page.mouse.up()


def test_drawing_a_digit_in_jupyterlab_shows_the_prediction(jupyter_lab):
    url, token = jupyter_lab
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/draw.ipynb?token={token}")
        page.wait_for_selector(".jp-Notebook", timeout=60_000)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        time.sleep(2)  # the kernel starts
        page.click(".jp-Notebook .jp-Cell >> nth=0")
        for _ in range(2):
            page.keyboard.press("Shift+Enter")
        canvas = page.locator(".jp-OutputArea-output canvas").last
        canvas.wait_for(state="visible", timeout=600_000)  # the kernel imports torch and loads the model
        reading = page.locator(".digit-pad-reading")
        assert "Draw one digit" in reading.inner_text(timeout=30_000)

        _draw(page, canvas, ONE)
        page.wait_for_function(
            "() => document.querySelector('.digit-pad-reading').innerText.includes('prediction')", timeout=60_000
        )
        assert reading.inner_text().startswith("prediction: 1 ")

        page.get_by_role("button", name="clear").click()
        page.wait_for_function(
            "() => document.querySelector('.digit-pad-reading').innerText.includes('Draw one digit')", timeout=30_000
        )
        _draw(page, canvas, SEVEN)
        page.wait_for_function(
            "() => document.querySelector('.digit-pad-reading').innerText.includes('prediction')", timeout=60_000
        )
        assert reading.inner_text().startswith("prediction: 7 ")
        page.screenshot(path=str(Path(os.environ.get("MNIST_LAB_SCREENSHOT_DIR", "/tmp")) / "digit_pad.png"))
        browser.close()
