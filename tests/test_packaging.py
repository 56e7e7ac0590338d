"""The distribution: its metadata, extras, version flag, licence, changelog and import namespace."""
import ast
import re
import subprocess
import sys
from importlib.metadata import metadata, requires, version
from pathlib import Path

from packaging.requirements import Requirement

import servesim.sim

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sim", "policies", "hwmodels", "traces", "profiler")
IMPORT_NAMES = {"pyyaml": "yaml"}
"""Distributions imported under another name."""
USED_WHEN_INSTALLED = {"flash_attn"}
"""Imported inside try/except: the profiler uses it where it exists and declares no need for it."""


def requirements() -> list[Requirement]:
    return [Requirement(line) for line in requires("servesim") or []]


def extra_of(requirement: Requirement) -> str | None:
    found = re.search(r'extra == "([^"]+)"', str(requirement.marker or ""))
    return found.group(1) if found else None


def imported_top_level_modules() -> set[str]:
    names = set()
    for folder in PACKAGES:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names


def test_every_declared_dependency_is_imported_by_the_packages():
    imported = imported_top_level_modules()
    runtime = [r.name.lower() for r in requirements() if r.marker is None]
    never = [name for name in runtime if IMPORT_NAMES.get(name, name) not in imported]
    assert not never, f"declared but never imported: {never}"


def test_every_third_party_import_of_the_packages_is_declared():
    declared = {IMPORT_NAMES.get(r.name.lower(), r.name.lower()) for r in requirements()}
    third_party = imported_top_level_modules() - set(sys.stdlib_module_names) - {"servesim"} - USED_WHEN_INSTALLED
    assert not third_party - declared, f"imported but not declared: {sorted(third_party - declared)}"


def test_the_test_extra_has_no_torch_and_torch_is_always_pinned():
    by_extra: dict = {}
    for requirement in requirements():
        by_extra.setdefault(extra_of(requirement), []).append(requirement)
    assert "torch" not in {r.name for r in by_extra["test"]} | {r.name for r in by_extra[None]}
    torches = [r for r in requirements() if r.name == "torch"]
    assert [extra_of(r) for r in torches] == ["profile"]
    assert all(str(r.specifier).startswith("==") for r in torches)
    assert all(str(r.specifier).startswith("==") for r in by_extra["lint"] if r.name in {"ruff", "mypy"})


def test_every_package_folder_is_in_the_distribution():
    """setuptools installs the packages pyproject.toml lists; a folder left out is missing from a regular
    install, while the editable install's finder (which maps whole folders) hides that."""
    text = (ROOT / "pyproject.toml").read_text()
    listing = text.split("[tool.setuptools]", 1)[1].split("[tool.setuptools.package-dir]", 1)[0]
    listed = set(re.findall(r'"(servesim\.[\w.]+)"', listing))
    folders = {".".join(("servesim", *init.parent.relative_to(ROOT).parts))
               for folder in PACKAGES for init in (ROOT / folder).rglob("__init__.py")}
    assert folders == listed


def test_python_310_is_supported():
    assert metadata("servesim")["Requires-Python"] == ">=3.10"
    assert "py310" in (ROOT / "pyproject.toml").read_text()


def test_simrun_version_prints_the_package_version():
    done = subprocess.run([sys.executable, "-m", "servesim.sim.cli", "--version"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"simrun (servesim) {version('servesim')}"
    assert servesim.sim.__version__ == version("servesim")


def test_licence_and_changelog():
    assert metadata("servesim")["License"] == "MIT"
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "the servesim authors" in licence
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog and f"## [{version('servesim')}]" in changelog


def test_nothing_imports_a_folder_by_its_bare_name():
    bare = []
    for path in ROOT.rglob("*.py"):
        if any(part.startswith(".") or part in {"build", "node_modules"} for part in path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            bare += [f"{path.relative_to(ROOT)}: {m}" for m in modules if m.split(".")[0] in PACKAGES]
    assert not bare
