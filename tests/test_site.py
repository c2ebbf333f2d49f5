"""The book: it builds from a tiny batch with warnings as errors, and the browser check
(`scripts/check_site.py`) passes on it and fails on a hand-written site with every kind of fault.

Browser tests are skipped where no chromium is on PATH, except under CI (``CI=true``), where
`.ci/run` installs it and a missing browser fails them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

import check_site
from tkdlib.batch import EXAMPLE_NOTEBOOKS
from plain_docstrings import escape_bars

REPO = Path(__file__).resolve().parents[1]
needs_browser = pytest.mark.skipif(
    check_site.find_browser() is None and os.environ.get("CI") != "true",
    reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it under CI)",
)

# A hand-written site: one clean page and pages with each fault the check must catch.
PAGES = {
    "index.html": '<meta http-equiv="refresh" content="0; url=good.html">',
    "good.html": """<h1 id="top">Good</h1><a href="#top">up</a> <a href="other.html#part">other</a>
        <a href="https://example.org/nowhere">outside</a> <img src="ok.png"> <link rel="stylesheet" href="style.css?v=1">""",
    "other.html": '<h2 id="part">Part</h2><a name="old-anchor"></a>',
    "bad.html": """<a href="missing.html">gone</a> <a href="other.html#nowhere">bad anchor</a>
        <a href="#absent">bad own anchor</a> <a href="other.html#old-anchor">fine</a> <img src="img/gone.png">
        <div class="output traceback"><pre>ZeroDivisionError  Traceback (most recent call last)
        ZeroDivisionError: division by zero</pre></div>""",
    "scripted.html": """<p id="here">An image and a traceback appear only once scripts run.</p>
        <script>document.getElementById("here").insertAdjacentHTML("afterend",
        '<img src="late.png"><pre>Traceback' + ' (most recent call last):\\n  ValueError</pre>');</script>""",
    # A summary page as myst-nb renders one: code shown and folded, raw and formatted numbers, images.
    "book/generated/demo/results.html": """<header><img src="../../../ok.png"></header><main><article class="bd-article">
        <div class="cell docutils container"><div class="cell_input docutils container">
        <div class="highlight-ipython3 notranslate"><div class="highlight"><pre><span></span>
        <span class="n">report</span><span class="o">.</span><span class="n">results_table</span><span class="p">()</span>
        <span class="n">more</span></pre></div></div></div></div>
        <div class="cell tag_hide-input docutils container"><details class="hide above-input"><summary>Show code cell source</summary>
        <div class="cell_input docutils container"><div class="highlight-ipython3 notranslate"><div class="highlight">
        <pre>import folded</pre></div></div></div></details></div>
        <table><tr><th>parameters</th><th>FLOPs</th><th>accuracy</th></tr>
        <tr><td>1199360.0</td><td>5.97e+14</td><td>83.2 ± 0.4</td></tr>
        <tr><td>1,199,360</td><td>5.97 × 10¹⁴</td><td> 83.2 </td></tr></table>
        <img src="../../../bare.png"> <img src="../../../ok.png" alt="accuracy against sparsity">
        <figure><img src="../../../ok.png"><figcaption>Accuracy against sparsity.</figcaption></figure>
        </article></main>""",
}
TOC = "format: jb-book\nroot: good\nchapters:\n  - file: bad\n  - file: scripted.md\n  - file: book/generated/demo/results\n"

# What the check reports on the summary page of the hand-written site, in this order.
DEMO_PROBLEMS = [
    "code cell visible on a summary page: 'report.results_table()'",
    "raw float '1199360.0' in a table cell",
    "raw float '5.97e+14' in a table cell",
    "image without alt text or caption '../../../bare.png'",
]


@pytest.fixture
def faulty_site(tmp_path: Path) -> Path:
    """The hand-written site under ``_build/html`` with its ``_toc.yml`` two levels up."""
    build = tmp_path / "_build" / "html"
    build.mkdir(parents=True)
    for name, body in PAGES.items():
        (build / name).parent.mkdir(parents=True, exist_ok=True)
        head = f'<meta charset="utf-8"><title>{name}</title>'
        (build / name).write_text(f"<!doctype html><html><head>{head}</head><body>{body}</body></html>", encoding="utf-8")
    for image in ("ok.png", "bare.png"):
        (build / image).write_bytes(b"\x89PNG\r\n\x1a\n")
    (build / "style.css").write_text("body { margin: 0 }")
    (tmp_path / "_toc.yml").write_text(TOC)
    return build


def test_toc_pages_walks_parts_chapters_and_sections(tmp_path):
    toc = tmp_path / "_toc.yml"
    toc.write_text("root: book/intro\nparts:\n  - chapters:\n    - file: a.ipynb\n      sections:\n      - file: b/c\n    - url: https://x.org\n")
    assert check_site.toc_pages(toc) == ["book/intro.html", "a.html", "b/c.html"]


def test_page_problems_name_each_fault(faulty_site):
    with check_site.serve(faulty_site) as base:
        site = check_site.Site(base)
        doms = {page: (faulty_site / page).read_text(encoding="utf-8") for page in PAGES}
        problems = {page: check_site.page_problems(dom, base + page, site) for page, dom in doms.items()}
    assert problems["good.html"] == problems["other.html"] == []
    assert problems["bad.html"] == [
        "broken link 'missing.html': /missing.html is not served",
        "broken link 'other.html#nowhere': no anchor #nowhere in /other.html",
        "broken link '#absent': no anchor #absent in /bad.html",
        "missing image 'img/gone.png': /img/gone.png is not served",
        "1 notebook output(s) of error type, the first ending 'ZeroDivisionError: division by zero'",
    ]
    assert problems["scripted.html"] == [], "without a browser the scripted faults stay invisible"
    assert problems["book/generated/demo/results.html"] == DEMO_PROBLEMS



def test_summary_pages_are_the_generated_summary_pages():
    summary = ["book/generated/cpu/results.html", "book/generated/sample-2/masks.html", "book/generated/x/runs.html"]
    other = ["book/generated/own_model.html", "book/generated/cpu/magnitude_s0.9.html", "book/results.html"]
    other += ["book/generated/a/b/results.html", "book/generated/cpu/results.ipynb"]
    assert [check_site.is_summary_page(page) for page in summary + other] == [True] * 3 + [False] * 5
    assert check_site.Site("http://127.0.0.1:8000/").relative("http://127.0.0.1:8000/book/generated/cpu/results.html#top") == (
        "book/generated/cpu/results.html"
    )


def test_visible_code_is_a_cell_input_outside_details():
    soup = BeautifulSoup(
        """<div class="cell"><div class="cell_input"><pre>\n\n  x = 1  \ny = 2</pre></div><div class="cell_output">out</div></div>
        <div class="cell"><details class="hide above-input"><div class="cell_input"><pre>hidden()</pre></div></details></div>
        <div class="cell"><div class="cell_output">output only</div></div>""",
        "html.parser",
    )
    assert check_site.visible_code_problems(soup) == ["code cell visible on a summary page: 'x = 1'"]


def test_raw_floats_are_python_renderings_of_whole_cells():
    raw = ["1199360.0", "120.0", "-200.0", "5.97e+14", "1e-05", "2.5E3"]
    fine = ["1,199,360", "83.2", "83.20", "37.0", "-2.0", "0.0", "83.2 ± 0.4", "5.97 × 10¹⁴", "12", "12.0 %", "v1.0", "e+14", "1.05"]
    cells = "".join(f"<td>{text}</td>" for text in raw + fine)
    soup = BeautifulSoup(f"<table><tr><th> 300.0 </th>{cells}</tr></table><p>1000.0</p>", "html.parser")
    assert check_site.raw_float_problems(soup) == [f"raw float {text!r} in a table cell" for text in ["300.0", *raw]]


def test_images_need_alt_text_or_a_caption_inside_the_content():
    soup = BeautifulSoup(
        """<header><img src="logo.png"></header><main><img src="a.png" alt=""><img src="b.png" alt="B">
        <article class="bd-article"><img src="c.png"><figure><img src="d.png"><figcaption>D</figcaption></figure>
        <figure><img src="e.png"><figcaption> </figcaption></figure><figure><img src="f.png" alt="F"></figure></article></main>""",
        "html.parser",
    )
    assert check_site.image_text_problems(soup) == [
        f"image without alt text or caption {src!r}" for src in ("a.png", "c.png", "e.png")
    ]


@needs_browser
def test_check_fails_on_faulty_pages_and_names_them(faulty_site, tmp_path, capsys):
    assert check_site.main(["--build", str(faulty_site)]) == 1
    out = capsys.readouterr().out
    assert "ok    good.html" in out
    assert "bad.html: broken link 'missing.html': /missing.html is not served" in out
    assert "bad.html: missing image 'img/gone.png'" in out
    assert "bad.html: 1 notebook output(s) of error type" in out
    assert "scripted.html: missing image 'late.png': /late.png is not served" in out
    assert "scripted.html: a Python traceback in the page text" in out
    assert all(f"book/generated/demo/results.html: {problem}" in out for problem in DEMO_PROBLEMS), out
    assert out.strip().endswith("4 pages checked in " + check_site.find_browser() + ": 11 problems on 3 pages")


@needs_browser
def test_check_passes_a_clean_site_and_takes_a_screenshot(faulty_site, tmp_path, capsys):
    (faulty_site.parents[1] / "_toc.yml").write_text("root: good\n")
    shot = tmp_path / "shot.png"
    assert check_site.main(["--build", str(faulty_site), "--screenshot", str(shot)]) == 0
    assert shot.read_bytes().startswith(b"\x89PNG")
    assert "no problems" in capsys.readouterr().out


@needs_browser
def test_screenshot_dir_holds_one_png_per_toc_page(faulty_site, tmp_path):
    (faulty_site.parents[1] / "_toc.yml").write_text("root: good\nchapters:\n  - file: book/generated/demo/results\n")
    shots = tmp_path / "shots"
    check_site.main(["--build", str(faulty_site), "--screenshot-dir", str(shots), "--screenshot-height", "600"])
    assert sorted(path.name for path in shots.iterdir()) == ["book__generated__demo__results.png", "good.png"]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in shots.iterdir())


def test_check_without_a_build_says_so(tmp_path, capsys, monkeypatch):
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    monkeypatch.setattr(check_site, "find_browser", lambda: "/bin/true")
    assert check_site.main(["--build", str(tmp_path / "_build" / "html")]) == 2
    assert "index.html missing" in capsys.readouterr().err


def test_docstring_bars_are_escaped_outside_literals():
    assert escape_bars("score |w| and ``a | b`` or |g|") == r"score \|w\| and ``a | b`` or \|g\|"


@pytest.fixture(scope="module")
def built_book(tiny_batch, tmp_path_factory) -> Path:
    """The repository's book built, as `make html` does, around the tiny batch's summary notebooks
    (the example notebooks, which `make book` executes once, are left out of this build's toc)."""
    root = tmp_path_factory.mktemp("book")
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    toc = (REPO / "_toc.yml").read_text()
    for name in EXAMPLE_NOTEBOOKS:
        toc = re.sub(rf"\n *sections:\n *- file: book/generated/{name}\n", "\n", toc)
    assert "generated/own_model" not in toc
    (root / "_toc.yml").write_text(toc)
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("generated", "__pycache__"))
    for profile in sorted(set(re.findall(r"book/generated/([\w-]+)/", toc))):  # every profile the toc shows
        shutil.copytree(tiny_batch.results.parent, root / "book" / "generated" / profile)
    build = "from jupyter_book.cli.main import main; main()"
    done = subprocess.run([sys.executable, "-c", build, "build", str(root), "-W", "-n", "--keep-going"], capture_output=True, text=True)
    assert done.returncode == 0, f"jupyter-book build failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return root / "_build" / "html"


def test_book_has_api_page_captions_and_no_code_on_summary_pages(built_book):
    api = BeautifulSoup((built_book / "book" / "api.html").read_text(), "html.parser")
    assert api.find(id="tkdlib.losses.ca_kld") and api.find(id="tkdlib.batch.shard")
    method = (built_book / "book" / "method.html").read_text()
    assert 'href="api.html#tkdlib.losses.ca_kld"' in method
    assert 'src="../_static/mathjax/MathJax.js?config=' in method and "cdn.jsdelivr" not in method  # formulas render offline
    assert (built_book / "_static" / "mathjax" / "MathJax.js").is_file()
    results = BeautifulSoup((built_book / "book" / "generated" / "sample" / "results.html").read_text(), "html.parser")
    images = results.article.find_all("img")
    assert images
    for image in images:
        caption = image.find_parent("figure").figcaption.get_text(" ", strip=True)
        assert "3 finished runs of profile tiny" in caption and "JPEG re-encoding" in caption
    assert not results.select("div.cell.tag_injected-parameters, div.cell.tag_parameters"), "a summary page shows no parameters"
    assert not check_site.visible_code_problems(results), "a summary page shows no code"


@needs_browser
def test_built_book_passes_the_browser_check(built_book, tmp_path, capsys):
    shot = tmp_path / "results.png"
    assert check_site.main(["--build", str(built_book), "--screenshot", str(shot)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert all(f"ok    {page}" in out for page in check_site.toc_pages(built_book.parents[1] / "_toc.yml")), out
    assert shot.read_bytes().startswith(b"\x89PNG")
