"""The documentation against the code: README.md is the short front page that opens with the two
commands, its minimal configuration is one `alerter validate` accepts, its links lead somewhere,
and the reference pages in docs/ list every module and every configuration key there is — and
nothing that is not. (`mkdocs build --strict` in .ci/run checks the links inside docs/.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import typing
import unicodedata
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"

README_MAX_LINES = 220


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every ``` block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def commands_of(block: str) -> list[str]:
    return [line for line in block.splitlines() if line and not line.startswith("#")]


# ---------------------------------------------------------------- the front page

def test_readme_is_short_and_opens_with_the_two_commands():
    lines = README.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move the detail into docs/"
    first_heading = next(i for i, line in enumerate(lines) if line.startswith("## "))
    first_block = next(i for i, line in enumerate(lines) if line.startswith("```"))
    assert lines[first_block] == "```sh" and first_block < first_heading, "README.md opens with the two commands"
    demo, tests = commands_of(fenced_blocks(README)[0][1])
    assert demo.endswith("alerter demo") and tests.endswith("pytest -n 4")


def test_the_docs_home_page_shows_the_readme_commands():
    home = (DOCS / "index.md").read_text(encoding="utf-8")
    assert commands_of(fenced_blocks(home)[0][1]) == commands_of(fenced_blocks(README)[0][1])


def test_the_readme_minimal_configuration_validates(tmp_path):
    """The snippet a new user copies, with its secrets in the environment, as `alerter validate` reads it."""
    block = README.split("<!-- minimal config -->", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "alerter.toml"
    config.write_text(block, encoding="utf-8")
    config.chmod(0o600)
    secrets = {"BINANCE_API_KEY": "k" * 24, "BINANCE_API_SECRET": "s" * 24,
               "ALERTER_TELEGRAM_URL": "tgram://123456789:AAHexampleTOKEN/987654"}
    run = subprocess.run([sys.executable, "-m", "alerter", "validate", "--config", str(config)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, **secrets})
    assert run.returncode == 0, run.stdout + run.stderr
    assert not any(value in run.stdout + run.stderr for value in secrets.values())


def slug(heading: str) -> str:
    """A heading's anchor as MkDocs (Python-Markdown's toc) and GitHub both make it for these pages."""
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


def test_the_readme_links_lead_to_files_and_headings_that_exist():
    """GitHub shows README.md outside the site, so mkdocs does not check its links: this does."""
    links = re.findall(r"\]\(([^)\s]+)\)", README)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "README.md links into docs/"
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), f"README.md links to {path}, which does not exist"
        if anchor:
            assert anchor in anchors(target), f"README.md links to {link}: {path} has no heading #{anchor}"


# ---------------------------------------------------------------- the module map

MODULE_MAP_BEGIN = "<!-- module map:"
MODULE_MAP_END = "<!-- end of module map -->"


def mapped_modules() -> list[str]:
    page = (DOCS / "architecture.md").read_text(encoding="utf-8")
    table = page.split(MODULE_MAP_BEGIN, 1)[1].split(MODULE_MAP_END, 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)


def package_modules() -> set[str]:
    """Every module of alerter/: its top-level .py files (but __init__ and __main__) and its subpackages."""
    package = ROOT / "alerter"
    files = {p.name for p in package.glob("*.py") if not p.name.startswith("__")}
    packages = {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()}
    return files | packages


def test_the_architecture_module_map_lists_every_module_once_and_nothing_else():
    rows = mapped_modules()
    assert len(rows) == len(set(rows)), f"listed twice: {sorted({r for r in rows if rows.count(r) > 1})}"
    missing, gone = package_modules() - set(rows), set(rows) - package_modules()
    assert not missing, f"docs/architecture.md's module map misses {sorted(missing)}: add one row each"
    assert not gone, f"docs/architecture.md's module map lists {sorted(gone)}, which alerter/ does not have"


# ---------------------------------------------------------------- the configuration keys

def documented_keys() -> dict[str, set[str]]:
    """The keys of docs/configuration.md's table by section: `[daemon]` → {"database", …}."""
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    table = page.split("## Keys", 1)[1].split("\n## ", 1)[0]
    keys: dict[str, set[str]] = {}
    section = None
    for row in re.findall(r"^\|(.*)\|$", table, flags=re.M):
        cells = [c.strip() for c in row.split("|")]
        if cells[0].startswith("`["):
            section = cells[0].strip("`[]")
        if section and cells[1].startswith("`"):
            keys.setdefault(section, set()).update(re.findall(r"`(\w+)`", cells[1]))
    return keys


def model_keys() -> dict[str, set[str]]:
    from alerter.config import Settings

    keys = {}
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if typing.get_origin(model) is list:
            (model,) = typing.get_args(model)
        elif typing.get_args(model):  # an optional section: `X | None`
            (model,) = [m for m in typing.get_args(model) if m is not type(None)]
        keys[section] = set(model.model_fields)
    return keys


def test_the_configuration_page_documents_every_key_and_no_other():
    documented, models = documented_keys(), model_keys()
    assert set(documented) == set(models), "one table section per configuration section"
    for section, keys in models.items():
        missing, gone = keys - documented[section], documented[section] - keys
        assert not missing, f"docs/configuration.md does not document [{section}] {sorted(missing)}"
        assert not gone, f"docs/configuration.md documents [{section}] {sorted(gone)}, which the configuration does not have"

