"""Every install line we print names our distribution, `service-lifecycle`, never the bare `lifecycle`.

`lifecycle` on PyPI is somebody else's project: a doc, example or error message telling users to
`pip install lifecycle` would install it instead of this library.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "service-lifecycle"
# What a user reads: the front door, the docs site, the examples, the library's own messages.
SOURCES = ["README.md", "docs/**/*.md", "examples/**/*.py", "lifecycle/**/*.py", "mkdocs.yml"]

_COMMAND = re.compile(r"\b(?:pip3?|python3? -m pip|uv pip|uv) (?:install|add)\b([^`\n|;&#]*)")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def requirement_names(text: str) -> list[str]:
    """The distribution names every `pip install ...` in `text` asks for (paths and options skipped)."""
    names = []
    for match in _COMMAND.finditer(text):
        try:
            words = shlex.split(match.group(1))
        except ValueError:  # an unbalanced quote cut by the line's end: fall back to plain words
            words = match.group(1).replace("'", " ").replace('"', " ").split()
        for word in words:
            if word.startswith(("-", ".", "/", "~", "$")) or "://" in word:
                continue
            name = _NAME.match(word)
            if name:
                names.append(re.sub(r"[-_.]+", "-", name.group(0)).lower())
    return names


def user_facing_files() -> list[Path]:
    return sorted({path for pattern in SOURCES for path in ROOT.glob(pattern) if path.is_file()})


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("pip install 'lifecycle[flask]'", ["lifecycle"]),
        ("`pip install lifecycle`", ["lifecycle"]),
        ("python -m pip install -U lifecycle==0.1", ["lifecycle"]),
        ("pip install 'service-lifecycle[django,gunicorn]'", ["service-lifecycle"]),
        ("pip install -e '.[test]' && python -m pytest -q", []),
        ("pip install freezegun", ["freezegun"]),
    ],
)
def test_the_checker_reads_install_lines(line: str, names: list[str]) -> None:
    assert requirement_names(line) == names


def test_no_doc_example_or_message_installs_the_bare_name() -> None:
    files = user_facing_files()
    assert {ROOT / "README.md", ROOT / "docs" / "index.md", ROOT / "lifecycle" / "testing.py"} <= set(files)
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "lifecycle" in requirement_names(line)
    ]
    assert offenders == [], "install `service-lifecycle`, not `lifecycle` (someone else's project):\n" + "\n".join(
        offenders
    )


def test_the_readme_installs_our_distribution_by_name() -> None:
    assert DISTRIBUTION in requirement_names((ROOT / "README.md").read_text())


def test_the_installed_distribution_is_service_lifecycle_and_provides_the_lifecycle_package() -> None:
    distribution = importlib.metadata.distribution(DISTRIBUTION)
    assert distribution.metadata["Name"] == DISTRIBUTION
    extras = set(distribution.metadata.get_all("Provides-Extra") or [])
    assert {"flask", "django", "gunicorn", "testing", "docs"} <= extras
    import lifecycle

    assert Path(lifecycle.__file__).resolve().parent == ROOT / "lifecycle"
