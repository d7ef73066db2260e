"""Driving the page in headless Chromium with Playwright, as a user would: for
``scripts/screenshot_app.sh`` and the browser tests (Playwright is needed only here).

    with chromium() as browser:
        page = open_page(browser, "http://127.0.0.1:7860")
        shown = ground(page, "scene.png", "the red square")  # upload, type, press Ground, wait
        shown.box, shown.answer, shown.downloads               # what the page shows

Components are found by their visible labels (**Image**, **Expression**, **Ground**, **Box**,
**Answer**, the Advanced section's) and the page's element ids (``#status``, ``#overlay``,
``#downloads``, ``#maps``). The system's Chromium is used (``$CHROMIUM``, else ``chromium`` on the
PATH, else ``/usr/bin/chromium``): Playwright's own browser downloads are not needed.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 120_000  # the longest a request may take (tiny models on a busy 2-core CPU: seconds)


def find_chromium() -> str | None:
    """The Chromium executable to drive, or None where there is none."""
    named = os.environ.get("CHROMIUM")
    for candidate in (named, shutil.which("chromium"), DEFAULT_CHROMIUM):
        if candidate and (shutil.which(candidate) or Path(candidate).is_file()):
            return shutil.which(candidate) or candidate
    return None


@contextmanager
def chromium(executable: str | None = None):
    """A headless Chromium (Playwright ``Browser``), closed on exit; RuntimeError without one."""
    from playwright.sync_api import sync_playwright

    executable = executable or find_chromium()
    if executable is None:
        raise RuntimeError("no Chromium found: install it (apt-get install chromium) or set CHROMIUM")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser, url: str, width: int = 1400, height: int = 1000):
    """A new tab on the page at ``url``, loaded (the Expression box is shown). ``browser``: a
    Playwright ``Browser`` (the tab gets a fresh context) or ``BrowserContext`` (tabs of one
    context share its cache: later tabs load faster)."""
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.get_by_label("Expression").wait_for()
    return page


@dataclass(frozen=True)
class Shown:
    """What the page shows after a request: the status line, the Box and Answer texts, the
    download links (file name -> URL) and how many stage maps the gallery holds."""

    status: str
    box: str
    answer: str
    downloads: dict
    maps: int


def upload(page, path) -> None:
    """Put ``path`` into the Image input (replacing what is there) and wait until it is uploaded."""
    box = page.locator("#image")
    clear = box.get_by_role("button", name="Clear")
    if clear.count():
        clear.first.click()
        clear.first.wait_for(state="detached")
    box.locator("input[type=file]").set_input_files(str(path))
    page.wait_for_function(  # the file's name is shown once the upload is done
        "name => document.querySelector('#image').innerText.replace(/\\s/g, '').includes(name)",
        arg=Path(path).name.replace(" ", ""))


def advanced(page, numbers: dict | None = None, choices=()) -> None:
    """Open the Advanced section; set sliders by label (``{"Inversion steps": 12}``) and click the
    radio options named in ``choices`` (``["noise", "corrected"]``)."""
    if not page.get_by_text("Inversion steps").first.is_visible():
        page.get_by_text("Advanced", exact=True).click()
    numbers = {label: str(value) for label, value in (numbers or {}).items()}
    for _attempt in range(5):
        for label, value in numbers.items():
            field = page.get_by_label(f"number input for {label}")
            if field.input_value() != value:
                field.fill(value)
                field.press("Tab")  # leaving the field commits the value (the slider's own blur)
        # The section's sliders are mounted when it opens and may take their initial values from the
        # page after a first fill (seen on a slow machine): set again until every slider shows its value.
        page.wait_for_timeout(200)
        if all(page.get_by_label(f"range slider for {label}").input_value() == value
               and page.get_by_label(f"number input for {label}").input_value() == value
               for label, value in numbers.items()):
            break
    else:
        raise RuntimeError(f"the page did not take the settings {numbers}")
    for choice in choices:
        page.get_by_label(choice, exact=True).check()


def status(page) -> str:
    return page.locator("#status").inner_text().strip()


def submit(page, image, text: str) -> str:
    """Upload ``image`` (None: keep the current one), type ``text``, press Ground; returns the status
    line from before (for :func:`wait_result`). Does not wait for the result."""
    if image is not None:
        upload(page, image)
    before = status(page)
    page.get_by_label("Expression").fill(text)
    page.get_by_role("button", name="Ground", exact=True).click()
    return before


def wait_result(page, before: str, timeout_ms: int = TIMEOUT_MS) -> Shown:
    """Wait until the status line is a new ``Request N: ...`` line, then read the results."""
    page.wait_for_function(
        "before => { const t = document.querySelector('#status').innerText.trim();"
        " return t.startsWith('Request') && t !== before; }", arg=before, timeout=timeout_ms)
    page.locator("#overlay img").first.wait_for()
    links = page.locator("#downloads a").evaluate_all(
        "els => els.map(e => [e.getAttribute('download') || e.textContent.trim(), e.href])")
    return Shown(status=status(page), box=page.get_by_label("Box", exact=True).input_value(),
                 answer=page.get_by_label("Answer", exact=True).input_value(),
                 downloads={Path(href.split("file=")[-1]).name: href for _name, href in links},
                 maps=page.locator("#maps img").count())


def ground(page, image, text: str, timeout_ms: int = TIMEOUT_MS) -> Shown:
    """Upload, type, press Ground and wait for the result."""
    return wait_result(page, submit(page, image, text), timeout_ms)


def error_message(page, timeout_ms: int = TIMEOUT_MS) -> str:
    """The text of the error the page shows, after closing it (and waiting until it is gone, so
    that the next call sees the next error)."""
    toasts = page.get_by_test_id("toast-body")
    toasts.first.wait_for(timeout=timeout_ms)
    text = toasts.first.get_by_test_id("toast-text").inner_text()
    toasts.first.get_by_test_id("toast-close").click()
    page.wait_for_function("() => !document.querySelector('[data-testid=toast-body]')", timeout=timeout_ms)
    return text


def use_example(page, caption: str) -> None:
    """Click the example scene labelled ``caption`` and wait until its file is in the Image input."""
    page.get_by_text(caption, exact=True).click()
    page.locator("#image").get_by_role("button", name="Clear").wait_for()


def screenshot(url: str, out, example: str = "synthetic scene 0 (PNG)", width: int = 1400) -> Shown:
    """Ground the example scene ``example`` on the page at ``url`` and save the whole page as the
    PNG ``out``; returns what the page showed."""
    with chromium() as browser:
        page = open_page(browser, url, width=width)
        use_example(page, example)
        shown = wait_result(page, submit(page, None, page.get_by_label("Expression").input_value()))
        page.screenshot(path=str(out), full_page=True)
    return shown
