"""The docs point only inside the repository, and their relative links resolve.

A reader of the docs (or of a script's help) has the repository, nothing else:
a path into someone's notes or working tree is a dead end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: Paths that only exist outside the repository (a checkout's neighbours, notes).
OUTSIDE_RE = re.compile(r"(?<![\w/.-])(?:shared|notes)/|/work/")
#: ``[text](target)``, ``![alt](target)``
MD_LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
#: MyST ``{doc}`target``` or ``{doc}`text <target>```
DOC_ROLE_RE = re.compile(r"\{doc\}`(?:[^`<]*<([^>`]+)>|([^`]+))`")
#: MyST ``{image} target`` / ``{figure} target``
DIRECTIVE_RE = re.compile(r"```\{(?:image|figure)\}\s+(\S+)")
#: A path in backticks that names a file of the repository.
REPO_PATH_RE = re.compile(r"`((?:docs|benchmarks|scripts|tests|hpcspawner|helm)/[\w./-]+)`")

#: The project's prose, and the files whose help and comments readers see.
DOCS = sorted(REPO.glob("docs/**/*.md")) + [REPO / "README.md"]
CODE = (
    [REPO / "jupyterhub_config.py"]
    + sorted(REPO.glob("scripts/**/*.py"))
    + sorted(REPO.glob("scripts/**/*.sh"))
    + sorted(REPO.glob("benchmarks/*.py"))
)


def link_problems(text: str, where: Path, repo: Path) -> list[str]:
    """What in the markdown ``text`` of the file ``where`` points outside ``repo`` or nowhere."""
    problems = [
        f"names a path outside the repository: {m.group(0)!r}" for m in OUTSIDE_RE.finditer(text)
    ]
    targets = [(m.group(1), "") for m in MD_LINK_RE.finditer(text)]
    targets += [(m.group(1) or m.group(2), ".md") for m in DOC_ROLE_RE.finditer(text)]
    targets += [(m.group(1), "") for m in DIRECTIVE_RE.finditer(text)]
    for target, suffix in targets:
        target = target.strip().split("#", 1)[0]
        if not target or re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        base = repo / "docs" if target.startswith("/") else where.parent
        resolved = base / (target.lstrip("/") + ("" if target.endswith(suffix) else suffix))
        resolved = resolved.resolve()
        if not resolved.is_relative_to(repo):
            problems.append(f"link leaves the repository: {target!r}")
        elif not resolved.exists():
            problems.append(f"link does not resolve: {target!r}")
    for match in REPO_PATH_RE.finditer(text):
        path = match.group(1).split("::", 1)[0].rstrip(".")
        if not any(c in path for c in "*{}<>") and not (repo / path).exists():
            problems.append(f"names a repository file that does not exist: {path!r}")
    return problems


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("See {doc}`../howto/login`.", [], id="doc-role-resolves"),
        pytest.param("See {doc}`the login <../howto/login>`.", [], id="doc-role-with-title"),
        pytest.param("![x](../_static/shot.png)", [], id="image-resolves"),
        pytest.param("[up](https://example.org/a/../b)", [], id="external-link-ignored"),
        pytest.param("`tests/unit/test_a.py::test_b`", [], id="test-id-names-its-file"),
        pytest.param("`/shared/jupyter/bin`", [], id="absolute-site-path-is-an-example"),
        pytest.param(
            "(`shared/notes/baseline.md`)",
            ["names a path outside the repository: 'shared/'"],
            id="shared-notes",
        ),
        pytest.param(
            "from notes/x.md", ["names a path outside the repository: 'notes/'"], id="notes"
        ),
        pytest.param(
            "in /work/main/x", ["names a path outside the repository: '/work/'"], id="work-tree"
        ),
        pytest.param(
            "{doc}`../howto/missing`", ["link does not resolve: '../howto/missing'"], id="dead-doc"
        ),
        pytest.param(
            "[x](../../../../etc/passwd)",
            ["link leaves the repository: '../../../../etc/passwd'"],
            id="escapes-the-repo",
        ),
        pytest.param(
            "`tests/unit/test_nothing.py`",
            ["names a repository file that does not exist: 'tests/unit/test_nothing.py'"],
            id="missing-repo-file",
        ),
    ],
)
def test_link_problems(tmp_path, text, expected):
    (tmp_path / "docs" / "howto").mkdir(parents=True)
    (tmp_path / "docs" / "howto" / "login.md").write_text("# Login\n")
    (tmp_path / "docs" / "_static").mkdir()
    (tmp_path / "docs" / "_static" / "shot.png").write_bytes(b"")
    (tmp_path / "tests" / "unit").mkdir(parents=True)
    (tmp_path / "tests" / "unit" / "test_a.py").write_text("")
    (tmp_path / "docs" / "topic").mkdir()
    where = tmp_path / "docs" / "topic" / "page.md"
    assert link_problems(text, where, tmp_path) == expected


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_docs_point_only_inside_the_repository(path):
    assert link_problems(path.read_text(), path, REPO) == []


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(REPO)))
def test_scripts_name_no_path_outside_the_repository(path):
    found = [m.group(0) for m in OUTSIDE_RE.finditer(path.read_text())]
    assert found == [], f"{path.relative_to(REPO)} names paths outside the repository: {found}"
