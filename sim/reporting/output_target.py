"""Where a run's results go, checked before anything is simulated.

Every way the output side can fail that is knowable in advance (an empty or `.`/`..` name, a
name too long for the filesystem, a path under a file, an unwritable parent, a symbolic link, an
existing file, a directory holding someone else's files) is refused here with one paragraph, so
that `simrun run` never simulates for minutes and then cannot write, and never deletes a file that
servesim did not write. `simrun validate` runs the same checks.
"""
from __future__ import annotations

import enum
import errno
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from servesim.sim.errors import UserInputError

MARKER = ".servesim-results"
RESERVED_PREFIX = ".servesim-"  # the marker, locks and staging directories
MARKER_FORMAT = "servesim-results"
MARKER_VERSION = 1
DEFAULT_NAME_MAX = 255
# Room kept below PATH_MAX for the files written inside the directory (variant/file names).
PATH_HEADROOM = 300


class OutputError(UserInputError):
    """The results directory cannot be written where asked; the message says why and what to do."""


class TargetState(enum.Enum):
    ABSENT = "absent"
    EMPTY = "empty"
    RESULTS = "results"


@dataclass(frozen=True)
class OutputTarget:
    """A checked results directory: `shown` is the user's spelling, `path` the resolved location."""

    shown: str
    path: Path
    state: TargetState

    @property
    def parent(self) -> Path:
        return self.path.parent


def check_directory_name(name: str, what: str, reserved: Iterable[str] = ()) -> None:
    """A name used as one directory name (experiment `name:`, a variant name) is exactly one path component."""
    problem = _name_problem(name, DEFAULT_NAME_MAX)
    if problem is None and name in reserved:
        problem = "is reserved for a file servesim writes beside it"
    if problem is not None:
        raise OutputError(f"{what} {name!r} {problem}; it names a results directory, so use a plain name "
                          f"such as 'baseline' or 'sarathi_chunk512'")


def check_variant_names(names: Iterable[str]) -> None:
    """Variant names become subdirectories beside `comparison.json`: plain, distinct even ignoring case."""
    seen: dict[str, str] = {}
    for name in names:
        check_directory_name(name, "variant name", reserved=("comparison.json",))
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            raise OutputError(f"variant names {other!r} and {name!r} differ only in case; on case-insensitive "
                              f"filesystems (macOS, Windows) their directories would collide; rename one")


def _name_problem(name: str, name_max: int) -> str | None:
    if name in ("", ".", ".."):
        return "is not a directory name" if name else "is empty"
    if "/" in name:
        return "contains '/'"
    if _has_control_character(name):
        return "contains a control character (NUL, newline, tab, ...)"
    if name.startswith(RESERVED_PREFIX):
        return f"starts with {RESERVED_PREFIX!r}, which servesim keeps for its locks and staging directories"
    if len(os.fsencode(name)) > name_max:
        return f"is {len(os.fsencode(name))} bytes long, more than the filesystem's limit of {name_max}"
    return None


def _has_control_character(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def resolve_target(raw: str | os.PathLike[str], overwrite: bool = True) -> OutputTarget:
    """Check `raw` as a results directory (see the module docstring); nothing is created."""
    shown, path = check_location(raw)
    where = f"output directory {_abridged(shown)!r}"
    _refuse_inside_results(path.parent, where)
    return OutputTarget(shown, path, _target_state(path, where, overwrite))


def check_location(raw: str | os.PathLike[str]) -> tuple[str, Path]:
    """The user's spelling (`~` expanded) and the resolved path of an output directory that can be created here.

    Checks the name and the way to it, not what is there already (see `resolve_target`).
    """
    shown = os.path.expanduser(os.fspath(raw))
    where = f"output directory {_abridged(shown)!r}"
    if shown == "":
        raise OutputError("the output directory is empty (-o ''); give a directory name such as results/my_run")
    if "\0" in shown:
        raise OutputError(f"{where} contains a NUL byte; give a plain directory name")
    if _has_control_character(shown):
        raise OutputError(f"{where} contains a control character (newline, tab, ...), most likely pasted by "
                          f"mistake; give a plain directory name")
    given = Path(shown)
    name = given.name
    if name in ("", ".", ".."):
        named = "the filesystem root" if given.is_absolute() and not name else "a directory by . or .."
        raise OutputError(f"{where} names {named}; servesim writes (and later replaces) a directory of its "
                          f"own, so give one such as results/my_run")
    if name.startswith(RESERVED_PREFIX):
        raise OutputError(f"{where}: names starting with {RESERVED_PREFIX!r} are servesim's own (locks, staging); "
                          f"choose another name")
    parent = _resolve_parent(given.parent, where)
    existing = _nearest_existing(parent, where)
    name_max = _pathconf(existing, "PC_NAME_MAX", DEFAULT_NAME_MAX)
    for part in given.parts:
        if len(os.fsencode(part)) > name_max:
            raise OutputError(f"{where}: the name {part[:40]!r}... is {len(os.fsencode(part))} bytes long, more "
                              f"than this filesystem's limit of {name_max}; choose a shorter name")
    path = parent / name
    path_max = _pathconf(existing, "PC_PATH_MAX", 4096)
    if len(os.fsencode(str(path))) > path_max - PATH_HEADROOM:
        raise OutputError(f"{where} resolves to a path of {len(os.fsencode(str(path)))} bytes, too long for this "
                          f"filesystem (limit {path_max}, with room for the files inside); choose a shorter path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{where} cannot be created: {existing} is not writable by this user; choose a directory "
                          f"you can write to")
    return shown, path


def _resolve_parent(parent: Path, where: str) -> Path:
    try:
        return parent.resolve()
    except (OSError, RuntimeError) as exc:
        raise OutputError(f"{where}: its parent {parent} cannot be resolved ({_reason(exc)}); "
                          f"check for a symbolic link loop") from None


def _nearest_existing(parent: Path, where: str) -> Path:
    """The closest existing ancestor, which must be a directory (not a file the output would sit under)."""
    for ancestor in (parent, *parent.parents):
        try:
            is_dir = ancestor.is_dir()
            exists = is_dir or ancestor.exists()
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                continue  # reported with the length check
            raise OutputError(f"{where}: {ancestor} cannot be examined ({_reason(exc)})") from None
        if is_dir:
            return ancestor
        if exists:
            raise OutputError(f"{where} would be under {ancestor}, which is a file, not a directory; "
                              f"choose a path outside it")
    raise OutputError(f"{where}: no ancestor of it exists")  # unreachable: '/' always exists


def _refuse_inside_results(parent: Path, where: str) -> None:
    for ancestor in (parent, *parent.parents):
        if (ancestor / MARKER).is_file():
            raise OutputError(f"{where} is inside the servesim results directory {ancestor}, which the next run "
                              f"into it replaces whole; choose a directory outside it")


def _target_state(path: Path, where: str, overwrite: bool) -> TargetState:
    if path.is_symlink():
        raise OutputError(f"{where} is a symbolic link (to {os.readlink(path)}); servesim replaces the directory "
                          f"itself, so give the real directory ({path.resolve()}) or a new name")
    if not path.exists():
        return TargetState.ABSENT
    if not path.is_dir():
        raise OutputError(f"{where} is an existing file, not a directory; choose another name or remove the file")
    if os.path.ismount(path):
        raise OutputError(f"{where} is a mount point (a container volume, a disk); servesim swaps its results "
                          f"directory in whole, which a mount point cannot be: give a directory inside it, such as "
                          f"{_abridged(str(path / 'results'))}")
    try:
        entries = {entry.name for entry in os.scandir(path)}
    except OSError as exc:
        raise OutputError(f"{where} cannot be listed ({_reason(exc)})") from None
    if not entries:
        return TargetState.EMPTY
    manifest = read_manifest(path)
    if manifest is None:
        raise OutputError(f"{where} is not empty and is not a servesim results directory (it has no {MARKER} "
                          f"marker); servesim never deletes files it did not write: choose a new directory, or "
                          f"move its files away")
    foreign = foreign_entries(path, manifest)
    if foreign:
        listed = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(f"{where} holds servesim results but also files servesim did not write ({listed}); "
                          f"replacing it would delete them: move them away or choose another directory")
    if not overwrite:
        raise OutputError(f"{where} already holds servesim results and --no-overwrite was given; choose another "
                          f"directory, or drop --no-overwrite to replace them")
    return TargetState.RESULTS


def read_manifest(directory: Path) -> frozenset[str] | None:
    """The files a complete servesim results directory lists in its marker; None if it is not one."""
    try:
        marker = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format") != MARKER_FORMAT or marker.get("complete") is not True:
        return None
    files = marker.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return frozenset(files)


def foreign_entries(directory: Path, manifest: frozenset[str]) -> list[str]:
    """Entries under `directory` that are neither listed files nor folders holding them."""
    folders = {str(p) for f in manifest for p in Path(f).parents}
    foreign = []
    for root, dirs, files in os.walk(directory):
        for name in sorted(dirs + files):
            relative = os.path.relpath(os.path.join(root, name), directory)
            full = os.path.join(root, name)
            is_folder = os.path.isdir(full) and not os.path.islink(full)
            if relative != MARKER and not (relative in folders if is_folder else relative in manifest):
                foreign.append(relative)
        dirs[:] = [d for d in dirs if os.path.relpath(os.path.join(root, d), directory) in folders]
    return foreign


def _abridged(text: str) -> str:
    return text if len(text) <= 160 else f"{text[:70]}...{text[-70:]}"


def _pathconf(path: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(path, name))
    except (OSError, ValueError):
        return default


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
