"""`/api/pull`: names -> hub repositories, the files fetched, Ollama's progress lines, and
nothing left behind on failure. The hub is a fake that writes bytes into the directory given."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vllama.errors import InvalidRequest, VllamaError
from vllama.models.pull import PullFailed, RemoteFile, hub_repo, pull, pulled_dir, select_files

CONFIG = b'{"model_type": "qwen2"}'
WEIGHTS = b"\x00\x01" * 50
TOKENIZER = b'{"version": "1.0"}'


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


class FakeHub:
    """Serves `contents`; lists the files with the sha256 given (default: the real one for
    weights, none for the rest, as the hub publishes them); reports progress in `steps` parts."""

    def __init__(
        self,
        contents: dict[str, bytes],
        *,
        digests: dict[str, str | None] | None = None,
        steps: int = 2,
        fail_listing: BaseException | None = None,
        fail_on: str | None = None,
    ) -> None:
        self.contents = contents
        self.digests = digests or {n: sha(d) if n.endswith((".safetensors", ".bin")) else None for n, d in contents.items()}
        self.steps = steps
        self.fail_listing = fail_listing
        self.fail_on = fail_on
        self.listed: list[str] = []
        self.downloads: list[tuple[str, str, Path]] = []

    def files(self, repo: str) -> list[RemoteFile]:
        self.listed.append(repo)
        if self.fail_listing is not None:
            raise self.fail_listing
        return [RemoteFile(name, len(data), self.digests.get(name)) for name, data in self.contents.items()]

    def download(self, repo: str, file: RemoteFile, directory: Path, progress: Callable[[int], None]) -> None:
        self.downloads.append((repo, file.name, directory))
        data = self.contents[file.name]
        path = directory / file.name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            step = max(1, -(-len(data) // self.steps)) if self.steps else len(data) + 1
            for start in range(0, len(data), step):
                if file.name == self.fail_on and start > 0:
                    raise OSError("connection reset by peer")
                f.write(data[start : start + step])
                if self.steps:
                    progress(len(data[start : start + step]))


class NoHub:
    """A hub that must not be asked anything."""

    def files(self, repo: str) -> list[RemoteFile]:
        raise AssertionError("the hub was asked for a listing")

    def download(self, *args: Any) -> None:
        raise AssertionError("the hub was asked for a download")


def run(name: str, home: Path, hub: Any) -> list[dict[str, Any]]:
    emitted: list[dict[str, Any]] = []
    pull(name, home=home, hub=hub, emit=emitted.append)
    return emitted


def run_failing(name: str, home: Path, hub: Any) -> tuple[PullFailed, list[dict[str, Any]]]:
    emitted: list[dict[str, Any]] = []
    with pytest.raises(PullFailed) as info:
        pull(name, home=home, hub=hub, emit=emitted.append)
    return info.value, emitted


# --- hub_repo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "repo"),
    [
        ("qwen2.5:1.5b", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("QWEN2.5:1.5B", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("qwen2.5", "Qwen/Qwen2.5-7B-Instruct"),
        ("qwen2.5:1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("qwen3:0.6b", "Qwen/Qwen3-0.6B"),
        ("all-minilm:l6-v2", "sentence-transformers/all-MiniLM-L6-v2"),
        ("registry.ollama.ai/library/llama3.2:1b", "meta-llama/Llama-3.2-1B-Instruct"),
        ("Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("org/name:v1", "org/name"),
        ("hf.co/org/name", "org/name"),
        ("hf.co/Org/Some-Model.v2:Q4_K_M", "Org/Some-Model.v2"),
        ("huggingface.co/org/name", "org/name"),
        ("HF.CO/org/name", "org/name"),
    ],
)
def test_hub_repo(name: str, repo: str) -> None:
    assert hub_repo(name) == repo


@pytest.mark.parametrize("name", ["nosuch", "nosuch:7b", "qwen2.5:999b", "vllama-tiny", "library/nosuch"])
def test_hub_repo_unknown_library_name(name: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        hub_repo(name)
    assert info.value.status_code == 400
    assert info.value.message == (
        f"model '{name}' is not in vllama's catalog; pull a Hugging Face repository by its id (org/name)"
    )


@pytest.mark.parametrize("name", ["", "a/b/c/d", "bad name"])
def test_hub_repo_invalid_name(name: str) -> None:
    with pytest.raises(InvalidRequest, match="^invalid model name$"):
        hub_repo(name)


# --- select_files -------------------------------------------------------------------------------------


def remote(*names: str) -> list[RemoteFile]:
    return [RemoteFile(n, 1, None) for n in names]


@pytest.mark.parametrize(
    ("listing", "chosen"),
    [
        (
            [
                ".gitattributes", "README.md", "config.json", "generation_config.json", "model.safetensors",
                "pytorch_model.bin", "tokenizer.json", "tokenizer.model", "vocab.txt", "merges.txt",
                "chat_template.jinja", "modeling_custom.py", "qwen.tiktoken", "LICENSE", "model.gguf",
                "original/consolidated.00.pth", "original/params.json", "onnx/model.onnx", "onnx/config.json",
                "openvino/config.json", "gguf/model.safetensors", "1_Pooling/config.json",
            ],
            [
                "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer.model",
                "vocab.txt", "merges.txt", "chat_template.jinja", "modeling_custom.py", "qwen.tiktoken",
                "1_Pooling/config.json",
            ],
        ),
        # sharded safetensors: no .bin even though the repository has both
        (
            ["model-00001-of-00002.safetensors", "pytorch_model-00001-of-00002.bin", "config.json",
             "model.safetensors.index.json", "pytorch_model.bin.index.json"],
            ["model-00001-of-00002.safetensors", "config.json", "model.safetensors.index.json",
             "pytorch_model.bin.index.json"],
        ),
        # no safetensors: the .bin weights come last
        (["pytorch_model.bin", "config.json", "README.md"], ["config.json", "pytorch_model.bin"]),
        # safetensors only in a skipped directory do not count
        (["onnx/model.safetensors", "config.json", "pytorch_model.bin"], ["config.json", "pytorch_model.bin"]),
        (["original/pytorch_model.bin", "config.json"], ["config.json"]),
        ([], []),
    ],
)
def test_select_files(listing: list[str], chosen: list[str]) -> None:
    assert [f.name for f in select_files(remote(*listing))] == chosen


def test_select_files_keeps_the_metadata() -> None:
    weights = RemoteFile("model.safetensors", 123, "ab" * 32)
    assert select_files([weights, RemoteFile("README.md", 5, None)]) == [weights]


# --- a successful pull ----------------------------------------------------------------------------------

REPO = "Qwen/Qwen2.5-1.5B-Instruct"
CONTENTS = {"config.json": CONFIG, "model.safetensors": WEIGHTS, "tokenizer.json": TOKENIZER, "README.md": b"# hi"}


def lines_for(name: str, data: bytes, digest: str, completed: list[int]) -> list[dict[str, Any]]:
    line = {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": len(data)}
    return [{**line, "completed": c} for c in completed]


def test_pull(tmp_path: Path) -> None:
    hub = FakeHub(CONTENTS)
    emitted = run("qwen2.5:1.5b", tmp_path, hub)
    config_digest = sha(f"{REPO}/config.json".encode())  # no hub digest: a stable stand-in
    tokenizer_digest = sha(f"{REPO}/tokenizer.json".encode())
    assert emitted == [
        {"status": "pulling manifest"},
        *lines_for("config.json", CONFIG, config_digest, [0, 12, 23]),
        *lines_for("model.safetensors", WEIGHTS, sha(WEIGHTS), [0, 50, 100]),
        *lines_for("tokenizer.json", TOKENIZER, tokenizer_digest, [0, 9, 18]),
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    target = tmp_path / "models" / "hub" / "Qwen--Qwen2.5-1.5B-Instruct"
    assert pulled_dir(tmp_path, REPO) == target
    assert (target / "config.json").read_bytes() == CONFIG
    assert (target / "model.safetensors").read_bytes() == WEIGHTS
    assert (target / "tokenizer.json").read_bytes() == TOKENIZER
    assert tree(tmp_path / "models" / "hub") == [
        "Qwen--Qwen2.5-1.5B-Instruct",
        "Qwen--Qwen2.5-1.5B-Instruct/config.json",
        "Qwen--Qwen2.5-1.5B-Instruct/model.safetensors",
        "Qwen--Qwen2.5-1.5B-Instruct/tokenizer.json",
    ]
    assert hub.listed == [REPO]


def test_pull_downloads_into_a_staging_directory(tmp_path: Path) -> None:
    hub = FakeHub(CONTENTS)
    run("qwen2.5:1.5b", tmp_path, hub)
    assert [(repo, name) for repo, name, _ in hub.downloads] == [
        (REPO, "config.json"), (REPO, "model.safetensors"), (REPO, "tokenizer.json")
    ]
    (staging,) = {directory for _, _, directory in hub.downloads}
    assert staging.parent == tmp_path / "models" / "hub"
    assert staging.name.startswith(".Qwen--Qwen2.5-1.5B-Instruct.partial-")
    assert not staging.exists()


def test_pull_without_progress_reports_the_whole_file(tmp_path: Path) -> None:
    emitted = run("org/tiny", tmp_path, FakeHub({"config.json": CONFIG}, steps=0))
    digest = sha(b"org/tiny/config.json")
    assert emitted == [
        {"status": "pulling manifest"},
        *lines_for("config.json", CONFIG, digest, [0, len(CONFIG)]),
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    assert (pulled_dir(tmp_path, "org/tiny") / "config.json").read_bytes() == CONFIG


def test_pull_progress_never_passes_the_total(tmp_path: Path) -> None:
    class Overreporting(FakeHub):
        def download(self, repo: str, file: RemoteFile, directory: Path, progress: Callable[[int], None]) -> None:
            super().download(repo, file, directory, lambda n: progress(n * 3))

    emitted = run("org/tiny", tmp_path, Overreporting({"config.json": CONFIG}, steps=2))
    assert [line.get("completed") for line in emitted] == [None, 0, 23, 23, None, None, None]


def test_pull_subdirectories_and_hf_names(tmp_path: Path) -> None:
    contents = {"config.json": CONFIG, "1_Pooling/config.json": b"{}", "model.safetensors": WEIGHTS}
    run("hf.co/sentence-transformers/all-MiniLM-L6-v2", tmp_path, FakeHub(contents))
    target = pulled_dir(tmp_path, "sentence-transformers/all-MiniLM-L6-v2")
    assert target.name == "sentence-transformers--all-MiniLM-L6-v2"
    assert (target / "1_Pooling" / "config.json").read_bytes() == b"{}"


def test_already_pulled(tmp_path: Path) -> None:
    target = pulled_dir(tmp_path, REPO)
    target.mkdir(parents=True)
    (target / "config.json").write_bytes(CONFIG)
    assert run("qwen2.5:1.5b", tmp_path, NoHub()) == [{"status": "pulling manifest"}, {"status": "success"}]
    assert tree(target) == ["config.json"]


# --- failures leave nothing behind ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionError("Name or service not known\nretry later"), "Name or service not known"),
        (TimeoutError(), "TimeoutError"),
        (OSError("  "), "OSError"),
    ],
)
def test_hub_unreachable(tmp_path: Path, error: BaseException, reason: str) -> None:
    failure, emitted = run_failing("qwen2.5:1.5b", tmp_path, FakeHub(CONTENTS, fail_listing=error))
    assert failure.message == f"pull model manifest: cannot reach the model hub for '{REPO}': {reason}"
    assert failure.status_code == 500
    assert isinstance(failure, VllamaError)
    assert failure.__cause__ is error
    assert emitted == [{"status": "pulling manifest"}]
    assert tree(tmp_path) == []


def test_repository_without_config(tmp_path: Path) -> None:
    failure, emitted = run_failing("org/weights-only", tmp_path, FakeHub({"model.safetensors": WEIGHTS}))
    assert failure.message == "pull model manifest: 'org/weights-only' has no config.json: not a model vLLM can load"
    assert failure.status_code == 500
    assert emitted == [{"status": "pulling manifest"}]
    assert tree(tmp_path) == []


def test_digest_mismatch(tmp_path: Path) -> None:
    digests = {"config.json": None, "model.safetensors": sha(b"what the hub published"), "tokenizer.json": None}
    failure, emitted = run_failing("qwen2.5:1.5b", tmp_path, FakeHub(CONTENTS, digests=digests))
    assert failure.message == "digest mismatch for model.safetensors: the download was corrupted; pull again"
    assert failure.status_code == 500
    assert emitted[-1] == {"status": "verifying sha256 digest"}
    assert {"status": "writing manifest"} not in emitted
    assert tree(tmp_path) == ["models", "models/hub"]  # no staging directory, no model


def test_download_fails_midway(tmp_path: Path) -> None:
    failure, emitted = run_failing("qwen2.5:1.5b", tmp_path, FakeHub(CONTENTS, fail_on="model.safetensors"))
    assert failure.message == f"pull {REPO}: connection reset by peer"
    assert failure.status_code == 500
    assert isinstance(failure.__cause__, OSError)
    assert emitted[-1]["status"] == f"pulling {sha(WEIGHTS)[:12]}"
    assert "verifying sha256 digest" not in [line["status"] for line in emitted]
    assert tree(tmp_path) == ["models", "models/hub"]


def test_failure_keeps_other_pulled_models(tmp_path: Path) -> None:
    run("org/first", tmp_path, FakeHub({"config.json": CONFIG}))
    run_failing("org/second", tmp_path, FakeHub({"config.json": CONFIG}, fail_on="config.json"))
    assert tree(tmp_path / "models" / "hub") == ["org--first", "org--first/config.json"]


def test_unknown_name_fails_before_anything(tmp_path: Path) -> None:
    emitted: list[dict[str, Any]] = []
    with pytest.raises(InvalidRequest):
        pull("nosuch:7b", home=tmp_path, hub=NoHub(), emit=emitted.append)
    assert emitted == []
    assert tree(tmp_path) == []
