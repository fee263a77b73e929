"""`/api/blobs/:digest`: content-addressed files, as Ollama stores what clients upload.

A blob is written to a temporary file while its sha256 is computed, and renamed to its name
only when the digest matches: a failed or interrupted upload leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from vllama.errors import InvalidRequest

_DIGEST = re.compile(r"sha256[:-]([0-9a-fA-F]{64})")


def parse_digest(digest: str) -> str:
    """The hex of `sha256:<hex>` or `sha256-<hex>`; 400 for anything else, as Ollama answers."""
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise InvalidRequest("invalid digest format")
    return match.group(1).lower()


class BlobStore:
    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.root = Path(home) / "blobs"

    def path(self, digest: str) -> Path:
        return self.root / f"sha256-{parse_digest(digest)}"

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    async def write(self, digest: str, chunks: AsyncIterator[bytes]) -> bool:
        """Store the uploaded bytes under `digest`; True if the blob is new (Ollama's 201).

        Raises `InvalidRequest` when the bytes do not hash to `digest`."""
        target = self.path(digest)
        expected = parse_digest(digest)
        if target.is_file():
            async for _ in chunks:  # read the body all the same, so the connection stays usable
                pass
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=".upload-", dir=self.root)
        sha = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    sha.update(chunk)
                    f.write(chunk)
            if sha.hexdigest() != expected:
                raise InvalidRequest(f'digest mismatch, expected "sha256:{expected}", got "sha256:{sha.hexdigest()}"')
            os.replace(staging, target)
        finally:
            Path(staging).unlink(missing_ok=True)
        return True
