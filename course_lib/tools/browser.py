"""A built course site opened in a real browser: headless Chromium, driven by Playwright.

Used by `website` (`course site --check`) and `tests/test_website.py`. Playwright drives the
system's Chromium (Debian's `chromium`; never `playwright install`, which downloads a browser).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import tempfile

__all__ = ["CHROMIUM_FLAGS", "PAGE_PROBE", "find_chromium", "browser_check"]

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PAGE_PROBE = """() => ({
  images: [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href)})"""


def find_chromium() -> str | None:
    """Path of a Chromium (or Chrome) executable: $COURSE_CHROMIUM, else the first on PATH."""
    return os.environ.get("COURSE_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def browser_check(site, shots, *, pages=("index.html",), chromium=None) -> dict:
    """Open `pages` of a built site from disk in headless Chromium: {page: problems}; screenshots in `shots`.

    A problem is an image that did not load, a JavaScript error or console error, a request
    that failed or left the site (nothing is fetched from the network), or a link inside the
    site to a file or anchor that does not exist.
    """
    from playwright.sync_api import sync_playwright

    site, shots = pathlib.Path(site).resolve(), pathlib.Path(shots)
    shots.mkdir(parents=True, exist_ok=True)
    chromium = chromium or find_chromium()
    if not chromium:
        raise FileNotFoundError("No Chromium found. Fix: `apt-get install chromium` (Debian), or set "
                                "COURSE_CHROMIUM to a Chromium or Chrome executable.")
    found = {}
    with tempfile.TemporaryDirectory(prefix="course_chromium_") as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900})
        try:
            for name in pages:
                problems = []
                page = browser.new_page()
                page.route(re.compile(r"^(?!file:)"), lambda route: (
                    problems.append(f"request outside the site: {route.request.url}"), route.abort()))
                page.on("pageerror", lambda exc, p=problems: p.append(f"JavaScript error: {exc}"))
                page.on("console", lambda m, p=problems: m.type == "error" and p.append(f"console: {m.text}"))
                page.on("requestfailed", lambda r, p=problems: p.append(f"failed to load {r.url}"))
                page.goto((site / name).as_uri(), wait_until="load")
                if page.locator(".math").count():  # formulas: MathJax typesets them after the load
                    try:
                        page.wait_for_selector("mjx-container", timeout=15_000)
                    except Exception:  # noqa: BLE001 - playwright's TimeoutError
                        problems.append("formulas were not typeset (MathJax did not run)")
                probe = page.evaluate(PAGE_PROBE)
                problems += [f"image did not load: {src}" for src, ok in probe["images"] if not ok]
                problems += [f"broken link: {href}" for href in probe["links"] if _broken(href, site)]
                page.screenshot(path=str(shots / (name.replace("/", "_").removesuffix(".html") + ".png")),
                                full_page=True)
                found[name] = sorted(set(problems))
                page.close()
        finally:
            browser.close()
    return found


def _broken(href: str, site: pathlib.Path) -> bool:
    """True for a link inside the site (file://) whose file, or anchor in it, does not exist."""
    from urllib.parse import unquote, urlsplit

    url = urlsplit(href)
    if url.scheme != "file":
        return False
    path = pathlib.Path(unquote(url.path))
    if not path.is_file() or site not in path.parents:
        return True
    if url.fragment and path.suffix == ".html":
        return f'id="{unquote(url.fragment)}"' not in path.read_text(encoding="utf-8")
    return False
