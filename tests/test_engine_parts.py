"""Assembling an embedded model from its part packages (server.engine.parts).

The bad inputs use small part files made here, found through an injected lookup (the real
packages are too big to damage in a test); the last tests check the real Qwen2.5-Coder-0.5B
assembled from its installed packages and its resolution by name.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import pytest

from server.engine import embedded, parts
from server.engine.embedded import QWEN_CODER_05B, ModelNotFound, resolve_model_path
from server.engine.gguf_info import read_gguf
from server.engine.parts import PartFile, PartsError, PartsModel, ensure_assembled, installed_part

SLICES = [b"GGUF" + bytes(range(256)) * 40, bytes(range(255, -1, -1)) * 30, b"tail" * 999]


def _spec(data: bytes, version: str = "1.2.0") -> PartsModel:
    return PartsModel(
        name="tiny-test",
        file_name="tiny.gguf",
        packages=("tiny-part1", "tiny-part2", "tiny-part3"),
        version=version,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


class Installed:
    """Part packages "installed" in a folder: name -> (version, data file)."""

    def __init__(self, folder: Path) -> None:
        self.parts: dict[str, PartFile] = {}
        for index, data in enumerate(SLICES, start=1):
            path = folder / f"part{index:02d}.bin"
            path.write_bytes(data)
            self.parts[f"tiny-part{index}"] = PartFile(
                package=f"tiny-part{index}", version="1.2.0", path=path
            )
        self.calls = 0

    def __call__(self, package: str) -> PartFile | None:
        self.calls += 1
        return self.parts.get(package)


@pytest.fixture
def installed(tmp_path: Path) -> Installed:
    folder = tmp_path / "site-packages"
    folder.mkdir()
    return Installed(folder)


@pytest.fixture
def spec() -> PartsModel:
    return _spec(b"".join(SLICES))


def _cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


def test_parts_are_joined_in_order_and_verified(tmp_path, installed, spec) -> None:
    cache = tmp_path / "cache"
    path = ensure_assembled(spec, cache, installed)
    assert path == cache / "tiny.gguf"
    assert path.read_bytes() == b"".join(SLICES)
    assert _cache_files(cache) == ["tiny.gguf", "tiny.gguf.verified"]


def test_a_later_start_trusts_the_stamp_and_rechecks_a_changed_file(
    tmp_path, installed, spec
) -> None:
    cache = tmp_path / "cache"
    path = ensure_assembled(spec, cache, installed)
    calls = installed.calls
    # Unchanged (size and mtime as stamped): no lookup of the parts, no rehash.
    assert ensure_assembled(spec, cache, installed) == path
    assert installed.calls == calls
    # Altered in place, same size: the stamp no longer matches, the hash catches it and the
    # file is assembled again from the parts.
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    assert ensure_assembled(spec, cache, installed).read_bytes() == b"".join(SLICES)
    assert installed.calls > calls


def test_a_truncated_cached_file_is_rebuilt(tmp_path, installed, spec) -> None:
    cache = tmp_path / "cache"
    path = ensure_assembled(spec, cache, installed)
    with path.open("r+b") as handle:
        handle.truncate(1000)
    assert ensure_assembled(spec, cache, installed).read_bytes() == b"".join(SLICES)


def test_a_missing_part_is_named(tmp_path, installed, spec) -> None:
    del installed.parts["tiny-part2"]
    with pytest.raises(PartsError) as err:
        ensure_assembled(spec, tmp_path / "cache", installed)
    message = str(err.value)
    assert "'tiny-test'" in message and "tiny-part2 is not installed" in message
    assert "pip install 'tiny-part1==1.2.0' 'tiny-part2==1.2.0'" in message
    assert _cache_files(tmp_path / "cache") == []


def test_a_part_of_the_wrong_version_is_named(tmp_path, installed, spec) -> None:
    installed.parts["tiny-part3"] = installed.parts["tiny-part3"].model_copy(
        update={"version": "1.3.0"}
    )
    with pytest.raises(PartsError, match="tiny-part3 is version 1.3.0, needs 1.2.0"):
        ensure_assembled(spec, tmp_path / "cache", installed)
    assert _cache_files(tmp_path / "cache") == []


def test_a_truncated_part_is_refused_before_anything_is_written(tmp_path, installed, spec) -> None:
    part = installed.parts["tiny-part2"].path
    assert part is not None
    part.write_bytes(part.read_bytes()[:-7])
    with pytest.raises(PartsError, match="part files hold .* bytes, the model has"):
        ensure_assembled(spec, tmp_path / "cache", installed)
    assert _cache_files(tmp_path / "cache") == []


def test_an_altered_part_gives_no_file(tmp_path, installed, spec) -> None:
    cache = tmp_path / "cache"
    ensure_assembled(spec, cache, installed)
    os.utime(cache / "tiny.gguf", ns=(1, 1))  # as if changed: the next start checks again
    part = installed.parts["tiny-part1"].path
    assert part is not None
    data = bytearray(part.read_bytes())
    data[10] ^= 0x01
    part.write_bytes(bytes(data))
    (cache / "tiny.gguf").write_bytes(b"x" * spec.size)  # and the cached copy went bad too
    with pytest.raises(PartsError) as err:
        ensure_assembled(spec, cache, installed)
    assert "sha256" in str(err.value) and spec.sha256 in str(err.value)
    assert "a part is altered" in str(err.value)
    assert _cache_files(cache) == []  # neither the bad copy nor a half-written one


def test_a_full_disk_leaves_nothing_and_the_next_start_repairs(
    tmp_path, installed, spec, monkeypatch
) -> None:
    cache = tmp_path / "cache"
    written = [0]
    real_write = parts._write

    def write_until_full(handle, chunk: bytes) -> None:
        if written[0] + len(chunk) > 5000:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written[0] += len(chunk)
        real_write(handle, chunk)

    monkeypatch.setattr(parts, "_write", write_until_full)
    with pytest.raises(PartsError) as err:
        ensure_assembled(spec, cache, installed)
    message = str(err.value)
    assert "No space left on device" in message and str(cache / "tiny.gguf") in message
    assert _cache_files(cache) == []
    monkeypatch.setattr(parts, "_write", real_write)
    assert ensure_assembled(spec, cache, installed).read_bytes() == b"".join(SLICES)


def test_leftovers_of_a_killed_assembly_are_removed(tmp_path, installed, spec) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny.gguf.abc123.assembling").write_bytes(b"half")
    ensure_assembled(spec, cache, installed)
    assert _cache_files(cache) == ["tiny.gguf", "tiny.gguf.verified"]


def test_an_uninstalled_distribution_is_not_found() -> None:
    assert installed_part("no-such-part-package-h16") is None


def test_the_real_parts_are_found_from_their_file_lists() -> None:
    found = [installed_part(name) for name in QWEN_CODER_05B.packages]
    assert all(p is not None and p.version == "0.9.0" and p.path for p in found), found
    assert sum(p.path.stat().st_size for p in found if p and p.path) == QWEN_CODER_05B.size


@pytest.fixture(scope="module")
def xdg_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


def test_the_real_assembled_coder_is_verified(xdg_cache: Path) -> None:
    path = ensure_assembled(QWEN_CODER_05B, xdg_cache / "smalltalk-lsp" / "models")
    assert path.stat().st_size == 491_400_064
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    info = read_gguf(path)
    assert info.architecture == "qwen2" and info.has_fim
    assert str(info.metadata.get("general.name")).startswith("Qwen2.5 Coder 0.5B Instruct")
    assert info.fim_tokens == {
        "pre": "<|fim_prefix|>",
        "suf": "<|fim_suffix|>",
        "mid": "<|fim_middle|>",
    }


def test_the_embedded_names_resolve_in_the_user_cache(xdg_cache: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg_cache))
    expected = xdg_cache / "smalltalk-lsp" / "models" / QWEN_CODER_05B.file_name
    assert resolve_model_path("Qwen2.5-Coder-0.5B-Instruct") == expected
    assert resolve_model_path("qwen2.5-coder-0.5b") == expected
    missing = QWEN_CODER_05B.model_copy(
        update={"packages": ("no-such-part-h16",), "file_name": "missing.gguf"}
    )
    monkeypatch.setitem(embedded.PART_MODELS, "qwen-missing", missing)
    with pytest.raises(ModelNotFound, match="no-such-part-h16 is not installed"):
        resolve_model_path("qwen-missing")
