"""The sweep directory: `sweep.yaml` (the expanded points), `sweep.parquet` (the table), `points/<point>/`.

Each point's directory is an ordinary results directory, written through the same checked,
locked, staged and swapped path as `simrun run` (`sim.reporting.output_dir`), plus `point.json`
(its name, label, swept values and offered load). The sweep directory itself is not a results
directory (those cannot nest); it is recognised by `sweep.yaml`, locked while a sweep writes it,
and its two files are replaced atomically. A finished point is one whose results marker is
complete and fingerprints the point's config: rerunning the sweep skips it.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from servesim.sim.experiment.config import ExperimentConfig
from servesim.sim.experiment.sweep_points import SweepPoint
from servesim.sim.reporting.json_output import finite_or_none, json_text
from servesim.sim.reporting.output_dir import claim_output
from servesim.sim.reporting.output_target import MARKER, OutputError, check_location, resolve_target
from servesim.sim.reporting.results import config_yaml
from servesim.sim.sweeps.points import PointOutcome

SWEEP_FILE = "sweep.yaml"
TABLE_FILE = "sweep.parquet"
POINTS_DIR = "points"
POINT_FILE = "point.json"
SWEEP_FORMAT = "servesim-sweep"
SWEEP_VERSION = 1
LOCK_FILE = ".servesim-sweep.lock"


@dataclass(frozen=True)
class SweepDirectory:
    shown: str
    path: Path

    def point_dir(self, name: str) -> Path:
        return self.path / POINTS_DIR / name


def check_sweep_directory(raw: str | os.PathLike[str]) -> SweepDirectory:
    """Refuse, before anything runs, a directory a sweep cannot write or must not touch."""
    shown, path = check_location(raw)
    where = f"sweep directory {shown!r}"
    resolve_target(path / POINTS_DIR / "p")  # a point's directory there: refused inside a results directory
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputError(f"{where} is a symbolic link or a file; give a new directory name or an earlier sweep's "
                          f"directory")
    if path.is_dir() and any(path.iterdir()) and not (path / SWEEP_FILE).is_file():
        what = "a run's results directory" if (path / MARKER).is_file() else "not empty and holds no sweep.yaml"
        raise OutputError(f"{where} is {what}; a sweep writes into a new directory or resumes one it wrote: "
                          f"choose another -o")
    return SweepDirectory(shown, path)


def point_fingerprint(config: ExperimentConfig) -> str:
    """The point's config as its results marker fingerprints it (sha256 of `config.yaml`)."""
    return hashlib.sha256(config_yaml(config).encode()).hexdigest()


def sweep_manifest(config: ExperimentConfig, points: list[SweepPoint]) -> dict[str, Any]:
    """What `sweep.yaml` holds: the sweep as written and every point with its fingerprint."""
    assert config.sweep is not None  # only sweeps are expanded into points
    return {
        "format": SWEEP_FORMAT,
        "version": SWEEP_VERSION,
        "name": config.name,
        "sweep": config.sweep.model_dump(mode="json", exclude_none=True),
        "points": [{"point": p.name, "label": p.label, "values": p.values, "config_sha256": point_fingerprint(p.config)}
                   for p in points],
    }


def check_same_sweep(directory: SweepDirectory, manifest: dict[str, Any]) -> None:
    """An existing sweep directory is resumed only by the same sweep: its points and their configs."""
    path = directory.path / SWEEP_FILE
    if not path.is_file():
        return
    try:
        earlier = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise OutputError(f"{path} cannot be read ({exc}); choose another -o") from None
    if not isinstance(earlier, dict) or earlier.get("format") != SWEEP_FORMAT:
        raise OutputError(f"{path} is not a servesim sweep file; choose another -o")
    old = [(p.get("point"), p.get("config_sha256")) for p in earlier.get("points") or [] if isinstance(p, dict)]
    new = [(p["point"], p["config_sha256"]) for p in manifest["points"]]
    if old == new:
        return
    changed = next((name for (name, digest), other in zip(new, old, strict=False) if (name, digest) != other), None)
    detail = (f"point {changed} now has a different config" if changed else
              f"it had {len(old)} points, this sweep has {len(new)}")
    raise OutputError(f"sweep directory {directory.shown!r} holds a different sweep ({detail}), so its results cannot "
                      f"be resumed; write this sweep to another directory (-o), or remove that one to start over")


def write_atomically(path: Path, write: Callable[[Path], object]) -> None:
    """`write` the file beside its final name and rename it over, so a reader never sees half of it."""
    fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(scratch))
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


@contextmanager
def locked(directory: SweepDirectory) -> Iterator[None]:
    """Hold the sweep directory (created if absent) against a second sweep writing it at the same time."""
    try:
        (directory.path / POINTS_DIR).mkdir(parents=True, exist_ok=True)
        fd = os.open(directory.path / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot create sweep directory {directory.shown!r}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another sweep is writing {directory.shown!r} right now; wait for it to finish or "
                              f"choose another directory") from None
        yield
    finally:
        os.close(fd)


def finished_point(directory: SweepDirectory, point: SweepPoint) -> tuple[dict[str, Any], float] | None:
    """The summary and offered load of a point finished earlier with this same config, else None."""
    folder = directory.point_dir(point.name)
    try:
        marker = json.loads((folder / MARKER).read_text())
        summary = json.loads((folder / "summary.json").read_text())
        described = json.loads((folder / POINT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(marker, dict) and marker.get("complete") is True
            and marker.get("config_sha256") == point_fingerprint(point.config)):
        return None
    offered = described.get("offered_requests_per_s") if isinstance(described, dict) else None
    return summary, float("nan") if offered is None else float(offered)


def write_point(directory: SweepDirectory, point: SweepPoint, outcome: PointOutcome) -> None:
    """The point's results directory, through the same safe path as `simrun run`."""
    target = resolve_target(directory.point_dir(point.name))
    described = {"point": point.name, "label": point.label, "values": point.values,
                 "offered_requests_per_s": outcome.offered_requests_per_s}
    with claim_output(target) as claim:
        with claim.staging("run", config_yaml(point.config)) as staging:
            for name, data in outcome.files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                (staging / name).write_bytes(data)
            (staging / POINT_FILE).write_text(json_text(finite_or_none(described)))
