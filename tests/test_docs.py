"""The documents in the repository: every reference resolves to a file that is there.

(a) no file outside tests/ points at specification files that are not part of the repository;
(b) every ``docs/...`` file and ``<folder>/README.md`` named in a .py/.md/.sh file exists;
(c) every relative link in README.md, docs/*.md and the folder READMEs resolves, anchors included
    (GitHub's heading slugs).
Files are those git knows about (tracked, plus new files that are not ignored).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The names of the specification files kept outside the repository, spelled so that this file
# does not match its own pattern.
EXTERNAL = [name + ".md" for name in ("METHOD", "CONTRACTS", "DATASETS", "STYLE")]
EXTERNAL_RE = re.compile(r"(?<![A-Za-z0-9_])(?:" + "|".join(re.escape(n) for n in EXTERNAL) + r")")
DOC_PATH_RE = re.compile(r"(?<![\w./-])(?:\.\./)*(docs/[\w.-]+\.(?:md|png|jpg|svg)|[\w-]+/README\.md)\b")
LINK_RE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE_RE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
LINKED_DOCS = ("README.md", "docs/*.md", "datasets/README.md", "sam_checkpoint/README.md", "outputs/README.md")


def repo_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                             cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the file list comes from git")
    return [REPO / p for p in sorted(set(out.decode().split("\0"))) if p and (REPO / p).is_file()]


def read_text(path: Path) -> str | None:
    """The file as text, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def strip_code(markdown: str) -> str:
    """Markdown without fenced code blocks and inline code spans (links there are not links)."""
    no_fences = FENCE_RE.sub("", markdown)
    return re.sub(r"`[^`\n]*`", "", no_fences)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces -> '-'."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading anchor of a markdown text (repeated headings get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE_RE.sub("", markdown).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = slug(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def linked_docs() -> list[Path]:
    found = {p for pattern in LINKED_DOCS for p in REPO.glob(pattern) if p.is_file()}
    return sorted(found)


def test_no_reference_to_external_specifications():
    hits = []
    for path in repo_files():
        rel = path.relative_to(REPO)
        if rel.parts[0] == "tests":
            continue
        text = read_text(path)
        if text is None:
            continue
        for lineno, line in enumerate(text.splitlines(), start=1):
            if EXTERNAL_RE.search(line):
                hits.append(f"{rel}:{lineno}: {line.strip()[:100]}")
    assert not hits, ("files refer to specifications that are not in the repository; point them at "
                      "docs/method.md, docs/datasets.md or docs/run-directory.md instead:\n" + "\n".join(hits))


def test_named_documents_exist():
    missing = []
    for path in repo_files():
        if path.suffix not in (".py", ".md", ".sh"):
            continue
        text = read_text(path) or ""
        for lineno, line in enumerate(text.splitlines(), start=1):
            for m in DOC_PATH_RE.finditer(line):
                if not (REPO / m.group(1)).is_file():
                    missing.append(f"{path.relative_to(REPO)}:{lineno}: {m.group(1)}")
    assert not missing, "documents named but not in the repository:\n" + "\n".join(missing)


def test_relative_links_resolve():
    broken = []
    for doc in linked_docs():
        text = doc.read_text()
        for target in LINK_RE.findall(strip_code(text)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (doc.parent / file_part).resolve() if file_part else doc
            where = f"{doc.relative_to(REPO)}: ({target})"
            if not dest.exists():
                broken.append(f"{where}: {file_part} does not exist")
            elif REPO not in dest.parents and dest != REPO:
                broken.append(f"{where}: points outside the repository")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                broken.append(f"{where}: no heading with anchor #{anchor} in {dest.relative_to(REPO)}")
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("heading, expected", [
    ("Released quirks and `--fidelity corrected`", "released-quirks-and---fidelity-corrected"),
    ("Stage 3: Evolve and refine, `rs_evolve.py`", "stage-3-evolve-and-refine-rs_evolvepy"),
    ("`RUN/<stage>_config.json`", "runstage_configjson"),
])
def test_slug_matches_github(heading, expected):
    assert slug(heading) == expected


def test_link_checker_sees_links_but_not_code():
    text = "see [a](notes/a.md) and ![b](b.png \"title\")\n```\n[c](c.md)\n```\n`[d](d.md)`\n"
    assert LINK_RE.findall(strip_code(text)) == ["notes/a.md", "b.png"]
    assert anchors("# Top\n```\n# not a heading\n```\n## Top\n") == {"top", "top-1"}
