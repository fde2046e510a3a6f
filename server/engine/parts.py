"""Assemble a GGUF that the package registry ships in slices (one data-only package per slice).

The part packages are untrusted bytes from an unknown publisher: they are never imported. Their
files are found through the installed distributions' file lists (`importlib.metadata`), each
distribution's version must be the pinned one, and the parts are concatenated in order into the
user cache through a temporary file that is renamed into place only when its size and sha256
are the expected ones. llama.cpp therefore never reads a file that was not checked.

A stamp next to the file (its size, mtime and the checked sha256) spares later starts the hash
of a gigabyte; a file whose size or mtime changed is hashed again, and a bad one is rebuilt
from the parts. Every problem (a part missing or of the wrong version, parts that do not give
the expected file, a full disk) is one `PartsError` naming it, with nothing half-written left.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata as metadata
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from pydantic import BaseModel, ConfigDict

log = logging.getLogger(__name__)

_CHUNK = 8 * 1024 * 1024
_TEMP_SUFFIX = ".assembling"


class PartsError(ValueError):
    """The model cannot be assembled or verified; the message names the problem."""


class PartsModel(BaseModel):
    """A model shipped as numbered part packages of one pinned version."""

    model_config = ConfigDict(frozen=True)

    name: str  # the embedded name users configure, e.g. "qwen2.5-coder-0.5b"
    file_name: str  # the assembled file's name in the cache
    packages: tuple[str, ...]  # distribution names, in concatenation order
    version: str
    size: int
    sha256: str

    def pip_spec(self) -> str:
        return " ".join(f"'{p}=={self.version}'" for p in self.packages)


class PartFile(BaseModel):
    """One installed part: its distribution's name and version and the data file it holds."""

    package: str
    version: str
    path: Path | None  # None: the distribution holds no single data file


# Distribution name -> the installed part, or None when that distribution is not installed.
PartLookup = Callable[[str], PartFile | None]


def installed_part(package: str) -> PartFile | None:
    """The data file of an installed part package, from its file list (never imported)."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    data = [
        f
        for f in dist.files or []
        if not f.name.endswith((".py", ".pyc", ".typed"))
        and ".dist-info" not in str(f)
        and "__pycache__" not in str(f)
    ]
    path = Path(str(dist.locate_file(data[0]))) if len(data) == 1 else None
    return PartFile(package=package, version=dist.version, path=path)


def user_model_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smalltalk-lsp" / "models"


def ensure_assembled(
    spec: PartsModel, cache_dir: Path | None = None, lookup: PartLookup = installed_part
) -> Path:
    """The verified model file in `cache_dir`, assembling it from the parts when it is missing,
    changed or bad. PartsError names what is wrong."""
    cache_dir = cache_dir or user_model_cache()
    target = cache_dir / spec.file_name
    if _stamp_matches(target, spec):
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PartsError(f"{_who(spec)}: cannot create the folder {cache_dir}: {err}") from err
    with _locked(cache_dir / f"{spec.file_name}.lock"):
        # Another process may have finished it while this one waited for the lock.
        if _stamp_matches(target, spec):
            return target
        _remove_leftovers(target)
        if target.is_file() and target.stat().st_size == spec.size:
            log.info("verifying %s (%s)", target, spec.name)
            if _sha256_of(target) == spec.sha256:
                _write_stamp(target, spec)
                return target
            log.warning("%s does not have the expected sha256; assembling it again", target)
        parts = find_parts(spec, lookup)
        # A bad or partial copy is of no use, and removing it leaves room for the new one.
        for stale in (target, _stamp_path(target)):
            stale.unlink(missing_ok=True)
        log.info("assembling %s from %d part packages into %s", spec.name, len(parts), target)
        _assemble(spec, parts, target)
    return target


def find_parts(spec: PartsModel, lookup: PartLookup = installed_part) -> list[Path]:
    """The part files in order; PartsError names every part missing or of the wrong version."""
    problems: list[str] = []
    paths: list[Path] = []
    for package in spec.packages:
        part = lookup(package)
        if part is None:
            problems.append(f"{package} is not installed")
        elif part.version != spec.version:
            problems.append(f"{package} is version {part.version}, needs {spec.version}")
        elif part.path is None or not part.path.is_file():
            problems.append(f"{package} {part.version} holds no part file (damaged install)")
        else:
            paths.append(part.path)
    if problems:
        raise PartsError(
            f"{_who(spec)}: " + "; ".join(problems) + f" (install: pip install {spec.pip_spec()})"
        )
    total = sum(path.stat().st_size for path in paths)
    if total != spec.size:
        raise PartsError(
            f"{_who(spec)}: the part files hold {total:,} bytes, the model has {spec.size:,} "
            f"(a part is truncated or altered; reinstall: pip install --force-reinstall "
            f"{spec.pip_spec()})"
        )
    return paths


def _who(spec: PartsModel) -> str:
    return f"embedded model '{spec.name}'"


def _assemble(spec: PartsModel, parts: Sequence[Path], target: Path) -> None:
    digest = hashlib.sha256()
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed or removed below
        dir=target.parent, prefix=f"{target.name}.", suffix=_TEMP_SUFFIX, delete=False
    )
    temp = Path(handle.name)
    try:
        with handle:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(_CHUNK):
                        digest.update(chunk)
                        _write(handle, chunk)
            handle.flush()
            os.fsync(handle.fileno())
        size = temp.stat().st_size
        if size != spec.size or digest.hexdigest() != spec.sha256:
            raise PartsError(
                f"{_who(spec)}: the assembled file has {size:,} bytes and sha256 "
                f"{digest.hexdigest()}, expected {spec.size:,} and {spec.sha256} (a part is "
                f"altered; reinstall: pip install --force-reinstall {spec.pip_spec()})"
            )
        os.chmod(temp, 0o644)  # a temporary file is private; the model is not
        os.replace(temp, target)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise PartsError(
            f"{_who(spec)}: could not write {target} ({spec.size / 2**20:.0f} MiB): "
            f"{err.strerror or err}"
        ) from err
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _write_stamp(target, spec)


def _write(handle: IO[bytes], chunk: bytes) -> None:
    # One place for the writes, so a test can make the disk run full.
    handle.write(chunk)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified")


def _stamp_matches(target: Path, spec: PartsModel) -> bool:
    try:
        stat = target.stat()
        stamp = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(
        stat.st_size == spec.size
        and stamp == {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": spec.sha256}
    )


def _write_stamp(target: Path, spec: PartsModel) -> None:
    stat = target.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": spec.sha256}
    try:
        temp = _stamp_path(target).with_suffix(".tmp")
        temp.write_text(json.dumps(stamp), encoding="utf-8")
        os.replace(temp, _stamp_path(target))
    except OSError as err:  # only costs a hash at the next start
        log.warning("cannot write %s: %s", _stamp_path(target), err)


def _remove_leftovers(target: Path) -> None:
    """Temporary files of an assembly that was killed (the lock is held: none is running)."""
    for leftover in target.parent.glob(f"{target.name}.*{_TEMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            leftover.unlink()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (two servers starting at once assemble once)."""
    try:
        import fcntl
    except ImportError:  # Windows: no cross-process lock; the rename is still atomic
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
