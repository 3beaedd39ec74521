"""Nothing third-party is committed: no tracked file is a copy of a file in ../shared.

../shared holds the audio data, the papers and the released weights of other projects; the zoo
reads them from there (``$ZOO_DATA``, ``zoo convert``) and commits only what it made itself.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

SHARED = PROJECT_ROOT.parent / "shared"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tracked_copies_of(repo: Path, shared: Path) -> list[tuple[str, Path]]:
    """(tracked path, shared file) for every git-tracked file of ``repo`` byte-identical to a file
    under ``shared``. Sizes are compared first; only files of equal size are hashed. Empty files
    hold nothing of anyone's; a tracked file deleted from the working tree (not yet staged) is
    not there to compare."""
    by_size: dict[int, list[Path]] = {}
    for path in shared.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size:
            by_size.setdefault(path.stat().st_size, []).append(path)
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    hashes: dict[Path, str] = {}
    copies = []
    for name in filter(None, listed.decode().split("\0")):
        path = repo / name
        if not path.is_file() or path.is_symlink():
            continue
        candidates = by_size.get(path.stat().st_size)
        if not candidates:
            continue
        digest = _sha256(path)
        for other in candidates:
            if other not in hashes:
                hashes[other] = _sha256(other)
            if hashes[other] == digest:
                copies.append((name, other))
    return copies


@pytest.fixture(scope="module")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: there is nothing third-party to compare the tracked files with")
    return SHARED


def test_no_tracked_file_is_a_copy_of_a_shared_file(shared):
    copies = tracked_copies_of(PROJECT_ROOT, shared)
    assert not copies, ("third-party files are committed (read them from ../shared instead, or produce them on "
                        "set-up): " + "; ".join(f"{name} = {other}" for name, other in copies))


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=zoo test", "-c", "user.email=zoo@test.invalid", *args], cwd=repo,
                   check=True, capture_output=True)


def test_the_check_finds_a_committed_copy(shared, tmp_path):
    """The checker is able to fail: a repository tracking a copy of a shared file (under another
    name) is caught; the same bytes left untracked, or one byte changed, are not reported."""
    source = next(p for p in sorted((shared / "weights").rglob("*")) if p.is_file() and p.stat().st_size > 0)
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    shutil.copyfile(source, repo / "renamed.bin")
    (repo / "own.txt").write_text("the zoo's own file\n")
    altered = bytearray(source.read_bytes())
    altered[len(altered) // 2] ^= 0xFF
    (repo / "altered.bin").write_bytes(bytes(altered))
    _git(repo, "add", "renamed.bin", "own.txt", "altered.bin")
    shutil.copyfile(source, repo / "untracked.bin")
    assert tracked_copies_of(repo, shared) == [("renamed.bin", source)]
    _git(repo, "rm", "-q", "--cached", "renamed.bin")
    assert tracked_copies_of(repo, shared) == []
