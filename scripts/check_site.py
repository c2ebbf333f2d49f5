"""Check the built book in a real browser: every page of the table of contents, as a reader gets it.

    python scripts/check_site.py [--build _build/html] [--toc _toc.yml] [--screenshot results.png]
                                 [--screenshot-dir shots/ [--screenshot-height 6000]]

The site is served from 127.0.0.1 by a thread of this process; headless chromium (``chromium``
or ``chromium-browser`` on PATH; this script installs nothing) renders each page, and the
rendered DOM is checked for

- broken links: an ``a`` or ``link`` href, or a ``script`` src, inside the site that the server
  does not serve, or whose ``#anchor`` is no id (or ``a`` name) of the target page;
- missing images: an ``img`` src inside the site that the server does not serve;
- Python tracebacks: a notebook output of error type (myst-nb renders it as
  ``div.output.traceback``), or the text of a traceback header anywhere on the page;
- visible code on a summary page (``book/generated/<profile>/<name>.html`` with a name of
  `SUMMARY_NAMES`): a code cell's input (myst-nb's ``div.cell_input``) outside a folded
  ``details`` (the ``hide-input`` tag); other pages may show their code;
- raw floats in tables: a ``td`` or ``th`` whose whole text is a Python float rendering such as
  ``1199360.0`` or ``5.97e+14`` rather than a number formatted for readers;
- images without text: an ``img`` in the page's ``main`` or ``article`` with no (or an empty)
  ``alt`` that is not in a ``figure`` with a ``figcaption``.

Links and images outside the site are not followed, and the browser resolves no outside host, so
the check runs offline. Exit status: 0 when every page is clean, 1 when a page has a problem (one
line per problem names the page and what is wrong), 2 when the check cannot run (no chromium,
no built site, a page missing from the build).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import yaml
from bs4 import BeautifulSoup, Tag

from tkdlib.profile import STUDY_PAGES, SUMMARY_PAGES

TRACEBACK_HEADER = "Traceback (most recent call last)"
# The pages built from the summary notebooks, book/generated/<profile>/<name>.html: no code shown.
SUMMARY_NAMES = frozenset(SUMMARY_PAGES + STUDY_PAGES)
# A table cell holding a float as Python prints it (1199360.0, 5.97e+14, 1e-05), not as a reader reads
# it. A whole number of three or more digits with ".0" is a count printed as a float; "37.0" or "0.0"
# is a one-decimal accuracy or change that happens to be whole, and passes.
RAW_FLOAT = re.compile(r"[-+]?\d{3,}\.0|[-+]?\d+(?:\.\d+)?[eE][-+]?\d+")
BROWSER_NAMES = ("chromium", "chromium-browser")
# Headless, quiet, nothing fetched or stored beyond the page itself; outside hosts do not resolve.
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
# Element → attribute holding a URL, and what a broken one is called.
CHECKED = (("a", "href", "broken link"), ("link", "href", "broken link"), ("script", "src", "broken link"), ("img", "src", "missing image"))


class CheckError(Exception):
    """The check cannot run: the message says why and what to do."""


def toc_pages(toc: Path) -> list[str]:
    """The HTML files, relative to the site root, of every document in a jupyter-book ``_toc.yml``."""
    entries = yaml.safe_load(toc.read_text())
    found: list[str] = []

    def visit(entry: dict) -> None:
        if "file" in entry or "root" in entry:
            document = str(entry.get("file") or entry["root"])
            found.append(str(Path(document).with_suffix("")) + ".html")
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key, []):
                visit(child)

    visit(entries)
    return found


def find_browser() -> str | None:
    """The path of a chromium binary on PATH, or None."""
    return next((path for name in BROWSER_NAMES if (path := shutil.which(name))), None)


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1 from a thread; yields the base URL (ending in /)."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def run_browser(browser: str, *arguments: str) -> str:
    """Run headless chromium with a fresh profile; its stdout, or `CheckError` with its stderr."""
    with tempfile.TemporaryDirectory(prefix="check-site-") as profile:
        command = [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", *arguments]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        except subprocess.TimeoutExpired as error:
            raise CheckError(f"{browser} did not finish in 120 s: {' '.join(arguments)}") from error
    if done.returncode != 0:
        raise CheckError(f"{browser} failed ({done.returncode}) on {' '.join(arguments)}:\n{done.stderr[-2000:]}")
    return done.stdout


def rendered_dom(browser: str, url: str) -> str:
    """The DOM of `url` after the browser loaded it and ran its scripts, as HTML."""
    dom = run_browser(browser, "--dump-dom", url)
    if not dom.strip():
        raise CheckError(f"{browser} returned an empty page for {url}")
    return dom


def screenshot(browser: str, url: str, path: Path, height: int = 2000) -> None:
    """Save a PNG of `url` as rendered by the browser in a window 1280 px wide and `height` px tall."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # virtual time lets the page's scripts (MathJax typesetting) finish before the capture
    run_browser(browser, f"--screenshot={path.resolve()}", f"--window-size=1280,{height}", "--virtual-time-budget=10000", url)
    if not path.is_file():
        raise CheckError(f"{browser} wrote no screenshot to {path}")


class Site:
    """What the local server serves: whether a URL exists, and the anchors of an HTML page (cached)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self._bodies: dict[str, bytes | None] = {}
        self._anchors: dict[str, set[str]] = {}

    def relative(self, url: str) -> str:
        """The path of `url` relative to the site root (no query or fragment)."""
        return unquote(urlsplit(url).path).removeprefix(urlsplit(self.base).path)

    def contains(self, url: str) -> bool:
        """Whether `url` points inside the served site."""
        return urlsplit(url)[:2] == urlsplit(self.base)[:2]

    def body(self, url: str) -> bytes | None:
        """The bytes served at `url` (no fragment), or None when the server answers with an error."""
        if url not in self._bodies:
            try:
                with urllib.request.urlopen(url, timeout=30) as response:
                    self._bodies[url] = response.read()
            except urllib.error.HTTPError:
                self._bodies[url] = None
        return self._bodies[url]

    def anchors(self, url: str) -> set[str]:
        """The ids (and ``a`` names) of the HTML page served at `url`."""
        if url not in self._anchors:
            self._anchors[url] = anchors_of(BeautifulSoup(self.body(url) or b"", "html.parser"))
        return self._anchors[url]


def anchors_of(soup: BeautifulSoup) -> set[str]:
    """Every id, and every name of an ``a`` element, in a parsed page."""
    return {str(tag["id"]) for tag in soup.find_all(id=True)} | {str(tag["name"]) for tag in soup.find_all("a", attrs={"name": True})}


def page_problems(dom: str, page_url: str, site: Site) -> list[str]:
    """What is wrong with one rendered page: broken links, missing images, tracebacks, visible code
    on a summary page, raw floats in tables, images without text.

    Anchors on the page itself are looked up in its rendered DOM, anchors on other pages in the
    HTML the server sends.
    """
    soup = BeautifulSoup(dom, "html.parser")
    problems = link_problems(soup, page_url, site) + traceback_problems(soup)
    if is_summary_page(site.relative(page_url)):
        problems += visible_code_problems(soup)
    return problems + raw_float_problems(soup) + image_text_problems(soup)


def link_problems(soup: BeautifulSoup, page_url: str, site: Site) -> list[str]:
    """Each link, script or image of the page at `page_url` that does not resolve inside the site."""
    own = (urldefrag(page_url)[0], anchors_of(soup))
    problems = []
    for tag_name, attribute, problem in CHECKED:
        for tag in soup.find_all(tag_name, attrs={attribute: True}):
            reason = _broken(str(tag[attribute]), page_url, site, own)
            if reason:
                problems.append(f"{problem} {tag[attribute]!r}: {reason}")
    return problems


def traceback_problems(soup: BeautifulSoup) -> list[str]:
    """One problem when the page shows a notebook error output or a traceback header, else none."""
    errors = soup.select("div.output.traceback")
    if errors:
        return [f"{len(errors)} notebook output(s) of error type, the first ending {_last_line((errors[0].pre or errors[0]).get_text())!r}"]
    if TRACEBACK_HEADER in soup.get_text():
        return [f"a Python traceback in the page text ({TRACEBACK_HEADER!r})"]
    return []


def is_summary_page(path: str) -> bool:
    """Whether `path` (relative to the site root) is a page built from a summary notebook."""
    parts = path.split("/")
    return len(parts) == 4 and parts[:2] == ["book", "generated"] and parts[3] in {f"{name}.html" for name in SUMMARY_NAMES}


def visible_code_problems(soup: BeautifulSoup) -> list[str]:
    """Each code cell input (myst-nb's ``div.cell_input``) not folded away inside a ``details``."""
    return [
        f"code cell visible on a summary page: {_first_line(cell.get_text())!r}"
        for cell in soup.select("div.cell_input")
        if cell.find_parent("details") is None
    ]


def raw_float_problems(soup: BeautifulSoup) -> list[str]:
    """Each table cell whose whole text is a float as Python prints it (`RAW_FLOAT`)."""
    return [
        f"raw float {text!r} in a table cell"
        for cell in soup.find_all(["td", "th"])
        if RAW_FLOAT.fullmatch(text := cell.get_text().strip())
    ]


def image_text_problems(soup: BeautifulSoup) -> list[str]:
    """Each image of the main content (``main`` or ``article``) with neither alt text nor a caption."""
    return [
        f"image without alt text or caption {image.get('src')!r}"
        for image in soup.select("main img, article img")
        if not str(image.get("alt") or "").strip() and not _captioned(image)
    ]


def _captioned(image: Tag) -> bool:
    """Whether `image` is inside a ``figure`` whose ``figcaption`` has text."""
    figure = image.find_parent("figure")
    caption = figure.find("figcaption") if figure else None
    return bool(caption and caption.get_text().strip())


def _broken(reference: str, page_url: str, site: Site, own: tuple[str, set[str]]) -> str | None:
    """Why `reference` on the page at `page_url` does not resolve inside the site, or None.

    `own` is the page's URL without fragment and the anchors of its rendered DOM.
    """
    target, fragment = urldefrag(urljoin(page_url, reference))
    if not site.contains(target):
        return None
    if site.body(target) is None:
        return f"{urlsplit(target).path} is not served"
    fragment = unquote(fragment)
    if fragment and fragment not in (own[1] if target == own[0] else site.anchors(target)):
        return f"no anchor #{fragment} in {urlsplit(target).path}"
    return None


def _last_line(text: str) -> str:
    """The last non-blank line of a traceback: the exception and its message."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def _first_line(text: str) -> str:
    """The first non-blank line of a code cell."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def screenshot_name(page: str) -> str:
    """The PNG file name of a page's screenshot: its path inside the site, ``/`` as ``__``."""
    return str(Path(page).with_suffix(".png")).replace("/", "__")


def check_site(
    build: Path, pages: list[str], browser: str, shots: Sequence[tuple[str, Path]] = (), height: int = 2000
) -> dict[str, list[str]]:
    """Render each page of `pages` (paths inside `build`) and return its problems, by page.

    Each ``(page, path)`` of `shots` also saves a screenshot of that page, `height` px tall.
    """
    if not (build / "index.html").is_file():
        raise CheckError(f"no built site at {build} (index.html missing): build the book first, e.g. `make html`")
    missing = [page for page in pages if not (build / page).is_file()]
    if missing:
        raise CheckError(f"pages of the table of contents missing from {build}: {', '.join(missing)}")
    with serve(build) as base:
        site = Site(base)
        found = {page: page_problems(rendered_dom(browser, base + page), base + page, site) for page in pages}
        for page, path in shots:
            screenshot(browser, base + page, path, height)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=Path, default=Path("_build/html"), help="the built HTML site (default: _build/html)")
    parser.add_argument("--toc", type=Path, default=None, help="the book's _toc.yml (default: _toc.yml two levels above --build)")
    parser.add_argument("--screenshot", type=Path, default=None, metavar="PATH", help="save a PNG of the results page here")
    parser.add_argument(
        "--screenshot-page", default=None, metavar="PAGE", help="the page to screenshot (default: the first toc page named results)"
    )
    parser.add_argument("--screenshot-dir", type=Path, default=None, metavar="DIR", help="save a PNG of every page in DIR")
    parser.add_argument("--screenshot-height", type=int, default=2000, metavar="PX", help="window height of screenshots (default: 2000)")
    args = parser.parse_args(argv)
    toc = args.toc or args.build.resolve().parents[1] / "_toc.yml"
    try:
        browser = find_browser()
        if browser is None:
            raise CheckError(f"no {' or '.join(BROWSER_NAMES)} on PATH; install one (Debian: apt-get install chromium)")
        if not toc.is_file():
            raise CheckError(f"no table of contents at {toc}; give it with --toc")
        pages = toc_pages(toc)
        shots = []
        if args.screenshot:
            shot_page = args.screenshot_page or next((p for p in pages if Path(p).stem == "results"), pages[0])
            shots.append((shot_page, args.screenshot))
        if args.screenshot_dir:
            shots += [(page, args.screenshot_dir / screenshot_name(page)) for page in pages]
        found = check_site(args.build, pages, browser, shots, args.screenshot_height)
    except CheckError as error:
        print(f"check_site: {error}", file=sys.stderr)
        return 2
    for page, problems in found.items():
        print(f"{'ok  ' if not problems else 'FAIL'}  {page}")
        for problem in problems:
            print(f"      {page}: {problem}")
    bad = sum(bool(problems) for problems in found.values())
    total = sum(len(problems) for problems in found.values())
    print(f"{len(found)} pages checked in {browser}: " + (f"{total} problems on {bad} pages" if bad else "no problems"))
    for page, path in shots:
        print(f"screenshot of {page}: {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
