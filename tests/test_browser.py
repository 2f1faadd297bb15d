"""The notebooks as a person sees them: a real JupyterLab, driven by a real (headless) Chromium.

Papermill proves the cells run; this proves the widgets render and respond. JupyterLab is started from this
environment on 127.0.0.1 with a free port and a token; Playwright drives Debian's chromium (no browser
download). If the browser cannot start, the test fails and says why.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(os.environ.get("SVDKIT_TEST_ROOT", Path(__file__).resolve().parents[1]))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over a copy of the notebooks; yields (base_url, token, folder)."""
    folder = tmp_path_factory.mktemp("lab")
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(nb, folder / nb.name)
    port, token = _free_port(), secrets.token_hex(16)
    log = open(folder / "jupyterlab.log", "w")
    env = {**os.environ, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--ServerApp.open_browser=False",
         f"--LabApp.workspaces_dir={folder / '.workspaces'}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         *(["--allow-root"] if os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("JupyterLab did not start:\n" + (folder / "jupyterlab.log").read_text()[-3000:])
            time.sleep(0.5)
    yield base, token, folder
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import Error, sync_playwright
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: install Debian's package (apt-get install chromium); "
                    ".ci/run does this when it is missing")
    with sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        except Error as e:
            pytest.fail(f"Chromium at {CHROMIUM} could not start: {e}")
        yield b
        b.close()


def open_and_run_all(browser, lab, name, shots: Path):
    """Open notebook `name` in JupyterLab, run all cells, wait until the kernel is idle; return the page."""
    base, token, _ = lab
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    # a workspace of its own, reset: only this notebook is open
    page.goto(f"{base}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", state="attached", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                           "#jp-main-statusbar :text('Idle')", timeout=90_000)
    _accept_dialogs(page)  # e.g. a kernel choice for a notebook without kernel metadata
    page.click(".jp-Notebook")  # focus the notebook so that the menu command targets it
    page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
    page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
    # done when no cell shows the busy prompt [*] and the kernel is idle again
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(2)
        busy = page.locator(".jp-InputPrompt:text('[*]')").count()
        pending = page.locator(".jp-InputArea-prompt:text-is('[ ]:')").count()
        if not busy and not pending:
            break
    else:
        page.screenshot(path=str(shots / f"{Path(name).stem}-timeout.png"), full_page=True)
        pytest.fail(f"{name} did not finish running within 300 s")
    page.wait_for_timeout(1500)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] "
                          ":text('Traceback')").count()
    errors += page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").count()
    if errors:
        page.screenshot(path=str(shots / f"{Path(name).stem}-error.png"), full_page=True)
        pytest.fail(f"{name}: a cell raised an error (see screenshot in {shots})")
    return page


def _accept_dialogs(page):
    page.wait_for_timeout(1000)
    for _ in range(3):
        button = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        if not button.count():
            return
        button.first.click()
        page.wait_for_timeout(1000)


def widget_image(page, box) -> bytes:
    """The pixels of the first image shown inside a widget box, as a PNG screenshot of that element."""
    img = box.locator("img").first
    img.wait_for(timeout=60_000)
    img.scroll_into_view_if_needed()
    return img.screenshot()


def slider_readout(slider) -> str:
    return slider.locator(".widget-readout").first.inner_text()


def move_slider(page, slider, presses: int, key: str = "ArrowRight"):
    """Move an ipywidgets slider with the keyboard, as a person would."""
    handle = slider.locator(".noUi-handle, .ui-slider-handle").first
    handle.focus()
    for _ in range(presses):
        handle.press(key)


def wait_for_change(box, before: bytes, seconds: float = 60) -> bytes:
    """Poll the widget's image until it differs from `before` (the kernel may be slow to answer)."""
    deadline = time.time() + seconds
    while True:
        after = widget_image(None, box)
        if after != before or time.time() > deadline:
            return after
        time.sleep(1)


def assert_no_widget_errors(page, name):
    text = page.locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in text, f"{name}: a widget failed to display"
    assert "Loading widget..." not in text, f"{name}: a widget never loaded"


def test_denoising_scrubber_in_jupyterlab(browser, lab, tmp_path):
    page = open_and_run_all(browser, lab, "02_denoising.ipynb", tmp_path)
    assert_no_widget_errors(page, "02_denoising")
    box = page.locator(".svdkit-scrubber").first
    box.scroll_into_view_if_needed()
    before = widget_image(page, box)
    slider = box.locator(".widget-slider:has(label:text-is('step'))").first
    readout = slider_readout(slider)
    move_slider(page, slider, 3, "ArrowLeft")  # the scrubber opens on the last step
    assert slider_readout(slider) != readout, "the step slider did not move"
    after = wait_for_change(box, before)
    page.screenshot(path=str(tmp_path / "02_denoising.png"), full_page=False)
    print(f"screenshot: {tmp_path / '02_denoising.png'}")
    assert before and after and before != after, "moving the step slider did not change the displayed image"
    assert_no_widget_errors(page, "02_denoising")
    page.close()


def test_bucket_compare_in_jupyterlab(browser, lab, tmp_path):
    page = open_and_run_all(browser, lab, "03_motion_bucket_sweep.ipynb", tmp_path)
    assert_no_widget_errors(page, "03_motion_bucket_sweep")
    box = page.locator(".svdkit-compare").first
    box.scroll_into_view_if_needed()
    img = box.locator("img").first  # svdkit shows the two clips side by side, in sync, as one animation
    img.wait_for(timeout=60_000)
    width, height = img.evaluate("el => [el.naturalWidth, el.naturalHeight]")
    page.screenshot(path=str(tmp_path / "03_compare.png"), full_page=False)
    print(f"screenshot: {tmp_path / '03_compare.png'}")
    assert width >= 2 * height * 0.9, f"the comparison is {width}x{height}: not two clips side by side"
    page.close()
