"""The documentation is checked like code: its examples run and its links resolve.

Every ```python block of README.md and docs/*.md runs here, in-process: the blocks of one
page run in order in one namespace (a module of its own), as the examples of a doctest
page do, in a fresh working folder. ```bash blocks are shown, not run. The examples use
small budgets and the micro tier, offline and on the CPU; math ids read ``$COLA_DATA_DIR``.
"""

from __future__ import annotations

import re
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import cola_gym  # noqa: F401 - its ids are registered before any page runs: a page removes only the ids it adds

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = (README, *sorted(DOCS.glob("*.md")))
FRONT_PAGE_LINES = 200
"""The README is a front page: read in five minutes."""

FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^\n`]*)$", re.MULTILINE)
SHOWN_LANGUAGES = ("bash", "toml", "text", "mermaid", "json")
"""Code fences shown but not run (every other fence must be ``python``)."""
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def code_blocks(text: str) -> list[tuple[str, int, str]]:
    """``(language, first line, code)`` of every fenced block of a Markdown page, in order.

    ``first line`` is the 1-based line of the block's first code line; a block indented under
    a list item is dedented.

    >>> code_blocks("text\\n```python\\nx = 1\\n```\\n- item\\n\\n  ```bash\\n  ls\\n  ```\\n")
    [('python', 3, 'x = 1\\n'), ('bash', 8, 'ls\\n')]
    """
    fences = list(FENCE.finditer(text))
    if len(fences) % 2:
        raise ValueError(f"unclosed code fence at line {text.count(chr(10), 0, fences[-1].start()) + 1}")
    blocks = []
    for opening, closing in zip(fences[::2], fences[1::2], strict=True):
        if closing.group("info"):
            line = text.count("\n", 0, closing.start()) + 1
            raise ValueError(f"line {line}: a fence that closes a block carries no language")
        first_line = text.count("\n", 0, opening.end()) + 2
        code = textwrap.dedent(text[opening.end() + 1 : closing.start()])
        blocks.append((opening.group("info").strip(), first_line, code))
    return blocks


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """``(first line, code)`` of the page's ```python blocks."""
    return [
        (line, code) for language, line, code in code_blocks(page.read_text(encoding="utf-8")) if language == "python"
    ]


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread while examples run: their models are tiny, and on a busy machine a second
    thread only waits for cores (several times slower); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
@pytest.mark.usefixtures("one_thread")
def test_examples_run(page: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of the page runs, in order, in one namespace (tracebacks name page and line)."""
    monkeypatch.setenv("COLA_DATA_DIR", str(data_dir))
    monkeypatch.chdir(tmp_path)
    name = "docs_example_" + re.sub(r"\W", "_", page.stem.lower())
    module = types.ModuleType(name)  # a real module: dataclasses, pickling and "module:Class" paths find it
    monkeypatch.setitem(sys.modules, name, module)
    registered = set(gym.registry)
    try:
        for first_line, code in python_blocks(page):
            compiled = compile("\n" * (first_line - 1) + code, str(page), "exec")
            exec(compiled, module.__dict__)
    finally:
        for env_id in set(gym.registry) - registered:  # ids a page registers end with it
            del gym.registry[env_id]


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_code_fences_name_their_language(page: Path) -> None:
    """A block is either run (python) or shown (bash, toml, ...): none is skipped by a misspelt fence."""
    for language, line, _ in code_blocks(page.read_text(encoding="utf-8")):
        assert language == "python" or language in SHOWN_LANGUAGES, f"{page_id(page)}:{line}: fence {language!r}"


def test_every_page_is_reachable_and_examples_exist() -> None:
    """The README links every docs page, and the README shows at least one runnable example per use."""
    readme = README.read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"
    assert len(python_blocks(README)) >= 4


def test_readme_is_a_front_page() -> None:
    """At most ~200 lines, and the test command CI runs is spelt out."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= FRONT_PAGE_LINES, f"README.md has {len(lines)} lines; move details to docs/"
    assert any("`make test`" in line for line in lines)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading.

    >>> github_anchor("## `claims.py`: the paper's four claims, with seeds and CIs")
    'claimspy-the-papers-four-claims-with-seeds-and-cis'
    """
    text = heading.lstrip("#").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (outside code blocks)."""
    text = re.sub(r"^ *```.*?^ *```$", "", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    return {github_anchor(line) for line in text.splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_links_resolve(page: Path) -> None:
    """Every relative link names a file of the repository (and, with ``#``, one of its headings)."""
    text = re.sub(r"^ *```.*?^ *```$", "", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    for found in LINK.finditer(text):
        target = found.group("target")
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page_id(page)}: link to missing {target}"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page_id(page)}: no heading #{anchor} in {file.relative_to(REPO)}"
