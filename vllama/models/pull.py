"""`/api/pull`: download a model's weights from the Hugging Face hub, with Ollama's progress lines.

Ollama pulls from its own registry; vllama's models live on the Hugging Face hub (the catalog
maps Ollama names to repositories, and `org/name` is a repository id itself). A pull lists the
repository's files, downloads what vLLM loads into a staging directory, checks each file's
sha256 where the hub publishes one, and only then renames the directory into place:
`<home>/models/hub/<org>--<name>`, where `resolve` finds it, so that `vllama serve --model
<name>` then starts without the hub. An unreachable hub, a bad digest or an interrupted
download leaves nothing behind.

The download runs in a thread (it blocks); progress goes out through the `emit` callback.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vllama.errors import InvalidRequest, VllamaError
from vllama.models import catalog
from vllama.models.names import DEFAULT_HOST, ModelName

#: What vLLM needs to load a model (weights, config, tokenizer, chat template, remote code).
_WANTED = ("*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja", "*.py")
#: Weights in another format are fetched only when a repository has no safetensors.
_FALLBACK_WEIGHTS = ("*.bin",)
_SKIPPED_DIRS = ("original/", "onnx/", "openvino/", "gguf/")
_HUB_HOSTS = ("hf.co", "huggingface.co")

Emit = Callable[[dict[str, Any]], None]


class PullFailed(VllamaError):
    """The pull could not finish (500, as Ollama answers a failed pull)."""

    status_code = 500


@dataclass(frozen=True)
class RemoteFile:
    name: str
    size: int
    sha256: str | None
    """The hub's sha256 of the file (published for files stored with LFS, that is the weights)."""


class Hub(Protocol):
    def files(self, repo: str) -> list[RemoteFile]: ...

    def download(self, repo: str, file: RemoteFile, directory: Path, progress: Callable[[int], None]) -> None: ...


def hub_repo(name: str) -> str:
    """The Hugging Face repository a name pulls from."""
    parsed = ModelName.parse(name)
    if (entry := catalog.lookup(parsed)) is not None:
        return entry.source
    if parsed.host.lower() in _HUB_HOSTS or (parsed.host.lower() == DEFAULT_HOST and parsed.namespace.lower() != "library"):
        return f"{parsed.namespace}/{parsed.model}"
    if parsed.host.lower() != DEFAULT_HOST:
        raise InvalidRequest(f"vllama pulls from the Hugging Face hub (hf.co/org/name), not from '{parsed.host}'")
    raise InvalidRequest(
        f"model '{name}' is not in vllama's catalog; pull a Hugging Face repository by its id (org/name)"
    )


def pulled_dir(home: Path, repo: str) -> Path:
    return home / "models" / "hub" / repo.replace("/", "--")


def pull(name: str, *, home: Path, hub: Hub, emit: Emit) -> None:
    """Download `name`'s weights into `pulled_dir`; raises `PullFailed` (nothing written) on failure."""
    repo = hub_repo(name)
    target = pulled_dir(home, repo)
    emit({"status": "pulling manifest"})
    if (target / "config.json").is_file():
        emit({"status": "success"})
        return
    try:
        listing = hub.files(repo)
    except Exception as exc:
        raise PullFailed(f"pull model manifest: cannot reach the model hub for '{repo}': {_reason(exc)}") from exc
    wanted = select_files(listing)
    if not any(f.name == "config.json" for f in wanted):
        raise PullFailed(f"pull model manifest: '{repo}' has no config.json: not a model vLLM can load")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        for file in wanted:
            _download(hub, repo, file, staging, emit)
        emit({"status": "verifying sha256 digest"})
        for file in wanted:
            if file.sha256 and _sha256(staging / file.name) != file.sha256:
                raise PullFailed(f"digest mismatch for {file.name}: the download was corrupted; pull again")
        emit({"status": "writing manifest"})
        if target.exists():  # a leftover without config.json (complete ones returned above)
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not another pull finishing first
                raise
    except PullFailed:
        raise
    except Exception as exc:
        raise PullFailed(f"pull {repo}: {_reason(exc)}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    emit({"status": "success"})


def select_files(files: list[RemoteFile]) -> list[RemoteFile]:
    kept = [f for f in files if not f.name.startswith(_SKIPPED_DIRS)]
    chosen = [f for f in kept if _matches(f.name, _WANTED)]
    if not any(f.name.endswith(".safetensors") for f in chosen):
        chosen += [f for f in kept if _matches(f.name, _FALLBACK_WEIGHTS)]
    return chosen


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in patterns)


def _download(hub: Hub, repo: str, file: RemoteFile, directory: Path, emit: Emit) -> None:
    digest = file.sha256 or hashlib.sha256(f"{repo}/{file.name}".encode()).hexdigest()
    line = {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": file.size}
    emit({**line, "completed": 0})
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done = min(done + n, file.size)
        emit({**line, "completed": done})

    hub.download(repo, file, directory, progress)
    if done < file.size:
        emit({**line, "completed": file.size})


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


class HuggingFaceHub:
    """The real hub, through `huggingface_hub` (honours HF_TOKEN, HF_ENDPOINT, proxies)."""

    def files(self, repo: str) -> list[RemoteFile]:
        from huggingface_hub import HfApi

        info = HfApi().model_info(repo, files_metadata=True, timeout=30)
        return [
            RemoteFile(s.rfilename, int(s.size or 0), s.lfs.sha256 if s.lfs is not None else None)
            for s in info.siblings or ()
        ]

    def download(self, repo: str, file: RemoteFile, directory: Path, progress: Callable[[int], None]) -> None:
        from huggingface_hub import hf_hub_download
        from tqdm.auto import tqdm

        class Progress(tqdm):  # type: ignore[misc]
            def update(self, n: float | None = 1) -> bool | None:
                progress(int(n or 0))
                return super().update(n)

        hf_hub_download(repo, file.name, local_dir=directory, tqdm_class=Progress)
