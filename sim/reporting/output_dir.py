"""Writing a results directory so that no file is ever lost, whatever happens mid-run.

A run claims its target before simulating: it takes a lock beside it (a second run into the same
directory fails at once), removes what a killed earlier run left behind, and checks the target
again. The results are written into a hidden staging directory beside the target, marked complete,
and swapped in with one atomic exchange (Linux `renameat2(RENAME_EXCHANGE)`); the previous results,
now under the staging name, are removed only after. Where the exchange is unsupported the old
directory is renamed aside first, and a kill between the two renames is repaired by the next run.
A kill at any instant therefore leaves the old or the new complete directory in place.

Leftovers are named `.servesim-<digest>.staging-XXXXXXXX` / `.old-XXXXXXXX` (the digest is of
the target's name) and hold a `.servesim-results` marker from their first instant (kept until
last while removing), so the next run removes only directories that are provably servesim's.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from servesim.sim.reporting.output_target import (
    MARKER,
    MARKER_FORMAT,
    MARKER_VERSION,
    RESERVED_PREFIX,
    OutputError,
    OutputTarget,
    TargetState,
    foreign_entries,
    read_manifest,
    resolve_target,
)

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
SUFFIX = r"[a-z0-9_]{8}"  # tempfile.mkdtemp's random part


@dataclass
class ResultsClaim:
    """A locked target: `staging()` writes the results aside and swaps them in when the block succeeds."""

    target: OutputTarget
    placed: bool = field(default=False, init=False)

    @property
    def prefix(self) -> str:
        return leftover_prefix(self.target.path.name)

    @contextmanager
    def staging(self, kind: str, fingerprint: str) -> Iterator[Path]:
        try:
            staging = Path(tempfile.mkdtemp(prefix=f"{self.prefix}staging-", dir=self.target.parent))
            _write_marker(staging, kind, fingerprint, files=None)
            os.chmod(staging, 0o777 & ~_umask())
        except OSError as exc:
            raise _write_error(self.target, exc) from None
        try:
            yield staging
            _write_marker(staging, kind, fingerprint, files=_listing(staging))
            self._place(staging)
        except BaseException as exc:
            if self.placed:
                exc.results_in_place = self.target.shown  # type: ignore[attr-defined]
                raise
            _discard(staging)
            if isinstance(exc, OSError):
                raise _write_error(self.target, exc) from None
            raise

    def _place(self, staging: Path) -> None:
        target = self.target.path
        with _signals_deferred():
            if self.target.state is TargetState.ABSENT:
                if not _renameat2(staging, target, RENAME_NOREPLACE):
                    os.rename(staging, target)
                self.placed = True
                return
            exchanged = _renameat2(staging, target, RENAME_EXCHANGE)
            old = staging if exchanged else staging.with_name(staging.name.replace(".staging-", ".old-"))
            if not exchanged:
                os.rename(target, old)
                try:
                    os.rename(staging, target)
                except OSError:
                    os.rename(old, target)
                    raise
            foreign = foreign_entries(old, read_manifest(old) or frozenset())
            if foreign:
                self._swap_back(staging, old, exchanged)
                raise OutputError(f"while this run went on, files servesim did not write appeared in "
                                  f"{self.target.shown!r} ({', '.join(foreign[:5])}); nothing was replaced, so they "
                                  f"are untouched: move them away or choose another directory, and run again")
            self.placed = True
            try:
                remove_results_dir(old)
            except OSError as exc:
                warnings.warn(f"the previous results were moved to {old} but could not be removed ({exc}); "
                              f"remove that directory yourself", stacklevel=2)

    def _swap_back(self, staging: Path, old: Path, exchanged: bool) -> None:
        """Put the previous directory back; the new results end up under the staging name again."""
        if exchanged:
            _renameat2(staging, self.target.path, RENAME_EXCHANGE)
        else:
            os.rename(self.target.path, staging)
            os.rename(old, self.target.path)


@contextmanager
def claim_output(target: OutputTarget, overwrite: bool = True) -> Iterator[ResultsClaim]:
    """Lock `target` (held until the block ends), clean up after killed runs, and check it again."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(target, exc) from None
    lock_path = target.parent / f"{leftover_prefix(target.path.name)}lock"
    fd = _acquire_lock(lock_path, target)
    try:
        try:
            _recover(target)
        except OSError as exc:
            raise _write_error(target, exc) from None
        yield ResultsClaim(resolve_target(target.shown, overwrite))
    finally:
        _release_lock(fd, lock_path)


def leftover_prefix(name: str) -> str:
    return f"{RESERVED_PREFIX}{hashlib.sha256(os.fsencode(name)).hexdigest()[:16]}."


def remove_results_dir(path: Path) -> None:
    """Remove a servesim-written directory, its marker last, so a half-removed one stays recognisable."""
    for entry in os.scandir(path):
        if entry.name == MARKER:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    (path / MARKER).unlink(missing_ok=True)
    path.rmdir()


def _recover(target: OutputTarget) -> None:
    """Restore or remove what a killed run into `target` left: only marked (or empty) leftovers of its own."""
    pattern = re.compile(re.escape(leftover_prefix(target.path.name)) + rf"(staging|old)-{SUFFIX}")
    leftovers = sorted(p for p in target.parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir()
                       and not p.is_symlink())
    if not os.path.lexists(target.path):
        for old in (p for p in leftovers if ".old-" in p.name and read_manifest(p) is not None):
            os.rename(old, target.path)
            leftovers.remove(old)
            break
    for leftover in leftovers:
        if (leftover / MARKER).is_file() or not any(leftover.iterdir()):
            try:
                remove_results_dir(leftover)
            except OSError as exc:
                warnings.warn(f"could not remove {leftover}, left by an interrupted run ({exc}); remove it yourself",
                              stacklevel=2)


def _acquire_lock(path: Path, target: OutputTarget) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _write_error(target, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise OutputError(f"another simrun{who} is writing output directory {target.shown!r} right now (it holds "
                              f"{path}); wait for it to finish or choose another directory") from None
        except OSError as exc:
            _release_lock(fd, path)  # no one can hold a lock this filesystem does not offer
            raise OutputError(f"cannot lock {path} to write output directory {target.shown!r} ({exc.strerror}); "
                              f"the filesystem may not support file locks: write the results to a local "
                              f"directory") from None
        if _same_file(fd, path):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)  # the holder removed it between our open and flock: take the new one


def _release_lock(fd: int, path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _write_marker(directory: Path, kind: str, fingerprint: str, files: list[str] | None) -> None:
    marker = {"format": MARKER_FORMAT, "version": MARKER_VERSION, "kind": kind, "complete": files is not None,
              "config_sha256": hashlib.sha256(fingerprint.encode()).hexdigest(), "files": files or []}
    scratch = directory / f"{MARKER}.tmp"
    scratch.write_text(json.dumps(marker, indent=2) + "\n")
    os.replace(scratch, directory / MARKER)


def _listing(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if not p.is_dir() and p.name != MARKER)


def _discard(staging: Path) -> None:
    try:
        remove_results_dir(staging)
    except OSError:
        pass  # left for the next run into the same directory, which removes marked leftovers


def _write_error(target: OutputTarget, exc: OSError) -> OutputError:
    where = f" ({exc.filename})" if exc.filename else ""
    reason = exc.strerror or str(exc).splitlines()[0]
    hint = " Free some space and run again." if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
    return OutputError(f"could not write the results to {target.shown!r}: {reason}{where}. Nothing was replaced: "
                       f"earlier results there, if any, are untouched.{hint}")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT/SIGTERM wait while the swap happens, so the run knows whether its results are in place.

    Python-level handlers, not the thread's signal mask: the kernel may deliver a signal to any
    thread (pyarrow's, BLAS's), and Python runs handlers in the main thread whatever the mask.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    deferred = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum)) for signum in deferred}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for pending in dict.fromkeys(received):
            signal.raise_signal(pending)


def _renameat2(source: Path, destination: Path, flags: int) -> bool:
    """Linux's renameat2; False where the platform or the filesystem does not offer it."""
    function = _libc_renameat2()
    if function is None:
        return False
    if function(AT_FDCWD, os.fsencode(source), AT_FDCWD, os.fsencode(destination), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(destination))


@functools.cache
def _libc_renameat2() -> Callable[..., int] | None:
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:
        return None
    if function is not None:
        function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
        function.restype = ctypes.c_int
    return function
