"""`/api/blobs/:digest`: digests, and uploads stored only when their sha256 matches."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from vllama.errors import InvalidRequest
from vllama.models.blobs import BlobStore, parse_digest

DATA = b"weights" * 1000
HEX = hashlib.sha256(DATA).hexdigest()
OTHER_HEX = hashlib.sha256(b"something else").hexdigest()


async def chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- parse_digest -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digest", "hex_"),
    [
        (f"sha256:{HEX}", HEX),
        (f"sha256-{HEX}", HEX),
        (f"sha256:{HEX.upper()}", HEX),
        ("sha256:" + "0" * 64, "0" * 64),
    ],
)
def test_parse_digest(digest: str, hex_: str) -> None:
    assert parse_digest(digest) == hex_


@pytest.mark.parametrize(
    "digest",
    [
        "",
        HEX,
        f"sha256{HEX}",
        f"sha256_{HEX}",
        f"SHA256:{HEX}",
        f"sha512:{HEX}",
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX}0",
        "sha256:" + "g" * 64,
        f" sha256:{HEX}",
        f"sha256:{HEX}\n",
        f"sha256:../{HEX[3:]}",
    ],
)
def test_parse_digest_rejects(digest: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_digest(digest)
    assert info.value.message == "invalid digest format"
    assert info.value.status_code == 400


def test_path(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.path(f"sha256:{HEX}") == tmp_path / "blobs" / f"sha256-{HEX}"
    assert store.path(f"sha256-{HEX.upper()}") == tmp_path / "blobs" / f"sha256-{HEX}"


# --- write / exists -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parts",
    [[DATA], [DATA[:1], DATA[1:]], [DATA[i : i + 333] for i in range(0, len(DATA), 333)], [b"", DATA, b""]],
)
async def test_write_new_blob(tmp_path: Path, parts: list[bytes]) -> None:
    store = BlobStore(tmp_path)
    assert store.exists(f"sha256:{HEX}") is False
    assert await store.write(f"sha256:{HEX}", chunks(parts)) is True
    assert store.exists(f"sha256:{HEX}") is True
    assert store.exists(f"sha256-{HEX}") is True
    assert (tmp_path / "blobs" / f"sha256-{HEX}").read_bytes() == DATA
    assert tree(tmp_path) == ["blobs", f"blobs/sha256-{HEX}"]


async def test_write_empty_blob(tmp_path: Path) -> None:
    empty = hashlib.sha256(b"").hexdigest()
    assert await BlobStore(tmp_path).write(f"sha256-{empty}", chunks([])) is True
    assert (tmp_path / "blobs" / f"sha256-{empty}").read_bytes() == b""


async def test_write_existing_blob(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert await store.write(f"sha256:{HEX}", chunks([DATA])) is True
    stamp = store.path(f"sha256:{HEX}").stat().st_mtime_ns
    consumed: list[bytes] = []

    async def watched() -> AsyncIterator[bytes]:
        for part in (DATA[:10], DATA[10:]):
            consumed.append(part)
            yield part

    assert await store.write(f"sha256-{HEX}", watched()) is False
    assert consumed == [DATA[:10], DATA[10:]]  # the body is read all the same
    assert store.path(f"sha256:{HEX}").stat().st_mtime_ns == stamp
    assert tree(tmp_path) == ["blobs", f"blobs/sha256-{HEX}"]


async def test_write_digest_mismatch(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(InvalidRequest) as info:
        await store.write(f"sha256:{OTHER_HEX}", chunks([DATA[:100], DATA[100:]]))
    assert info.value.message == f'digest mismatch, expected "sha256:{OTHER_HEX}", got "sha256:{HEX}"'
    assert info.value.status_code == 400
    assert store.exists(f"sha256:{OTHER_HEX}") is False
    assert tree(tmp_path) == ["blobs"]  # no blob, no temporary file


async def test_write_mismatch_keeps_other_blobs(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    await store.write(f"sha256:{HEX}", chunks([DATA]))
    with pytest.raises(InvalidRequest):
        await store.write(f"sha256:{OTHER_HEX}", chunks([DATA]))
    assert tree(tmp_path) == ["blobs", f"blobs/sha256-{HEX}"]


async def test_interrupted_upload_leaves_nothing(tmp_path: Path) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield DATA[:100]
        raise ConnectionResetError("client went away")

    store = BlobStore(tmp_path)
    with pytest.raises(ConnectionResetError):
        await store.write(f"sha256:{HEX}", broken())
    assert store.exists(f"sha256:{HEX}") is False
    assert tree(tmp_path) == ["blobs"]


@pytest.mark.parametrize("digest", ["sha256:abc", "md5:" + "0" * 32, "../../etc/passwd"])
async def test_write_invalid_digest_writes_nothing(tmp_path: Path, digest: str) -> None:
    with pytest.raises(InvalidRequest, match="^invalid digest format$"):
        await BlobStore(tmp_path).write(digest, chunks([DATA]))
    assert tree(tmp_path) == []


@pytest.mark.parametrize("digest", ["sha256:abc", "nonsense"])
def test_exists_invalid_digest(tmp_path: Path, digest: str) -> None:
    with pytest.raises(InvalidRequest, match="^invalid digest format$"):
        BlobStore(tmp_path).exists(digest)


def test_exists_without_store(tmp_path: Path) -> None:
    assert BlobStore(tmp_path / "absent").exists(f"sha256:{HEX}") is False
