"""Models this machine can serve with no download, whether or not the configuration lists them.

Ollama lists and loads whatever has been pulled; vllama does the same for three kinds of model:
- a model directory (with its `config.json`) under `$VLLAMA_HOME/models`, served under the
  directory's name (`$VLLAMA_HOME/models/my-model` is `my-model:latest`);
- a Hugging Face repository `vllama pull` fetched (`$VLLAMA_HOME/models/hub/org--name`), under
  its catalog name when the catalog has it, else as `hf.co/org/name:latest`;
- a catalog model whose weights are on disk: in the Hugging Face cache, or shipped in a Python
  package (`CatalogEntry.offline_package`).
Random-weight models are left out: they exist only where a configuration names them.

Pure (files only): the ingress asks on each listing and on the first request for a name it does
not serve (`serve/available.py`).
"""

from __future__ import annotations

from pathlib import Path

from vllama.config import ModelConfig
from vllama.errors import InvalidRequest
from vllama.models import catalog
from vllama.models.names import ModelName
from vllama.models.pull import hub_repo, pulled_dir

#: Directories under `$VLLAMA_HOME/models` that are not models of their own.
PULLED_SUBDIR = "hub"
RANDOM_DIR_PREFIX = "random-"


def available_models(home: Path) -> list[ModelConfig]:
    """Every available model as a configuration entry loaded on demand, one per name (the first
    found wins, in the order above)."""
    found: dict[str, ModelConfig] = {}
    for config in (*_model_dirs(home), *_pulled(home), *_catalog_on_disk()):
        found.setdefault(ModelName.parse(config.name).key, config)
    return list(found.values())


def find_available(name: str, home: Path) -> ModelConfig | None:
    """The available model a request's `name` means, or None. A pulled repository answers to
    the name it was pulled by too (`org/name` as well as `hf.co/org/name`), and a catalog model
    to each of its tags (`qwen2.5:latest`)."""
    try:
        parsed = ModelName.parse(name)
    except InvalidRequest:
        return None
    for config in available_models(home):
        if ModelName.parse(config.name).key == parsed.key:
            return config
    # Another name for one of them: the same model, under the name it is listed by (one engine).
    entry = catalog.lookup(parsed)
    if entry is not None and _on_disk(entry):
        return ModelConfig(name=_catalog_name(entry.source) or parsed.display, load="demand")
    repo = _repo_of(parsed)
    if repo is not None and (pulled_dir(home, repo) / "config.json").is_file():
        return _pulled_config(repo)
    return None


def _model_dirs(home: Path) -> list[ModelConfig]:
    root = home / "models"
    configs = []
    for directory in sorted(root.iterdir()) if root.is_dir() else ():
        if directory.name == PULLED_SUBDIR or directory.name.startswith(RANDOM_DIR_PREFIX):
            continue
        if not (directory / "config.json").is_file():
            continue
        try:
            display = ModelName.parse(directory.name).display
        except InvalidRequest:  # a directory name Ollama's names cannot spell
            continue
        configs.append(ModelConfig(name=display, source=str(directory), load="demand"))
    return configs


def _pulled(home: Path) -> list[ModelConfig]:
    root = home / "models" / PULLED_SUBDIR
    configs = []
    for directory in sorted(root.iterdir()) if root.is_dir() else ():
        if not (directory / "config.json").is_file() or "--" not in directory.name:
            continue
        if (config := _pulled_config(directory.name.replace("--", "/", 1))) is not None:
            configs.append(config)
    return configs


def _pulled_config(repo: str) -> ModelConfig | None:
    """A pulled repository: under its catalog name (the catalog's defaults apply; resolve()
    finds the pulled copy), else as `hf.co/org/name`; None for a name Ollama's cannot spell."""
    if (name := _catalog_name(repo)) is not None:
        return ModelConfig(name=name, load="demand")
    try:
        display = ModelName.parse(f"hf.co/{repo}").display
    except InvalidRequest:
        return None
    return ModelConfig(name=display, source=repo, load="demand")


def _catalog_on_disk() -> list[ModelConfig]:
    return [ModelConfig(name=name, load="demand") for name, entry in catalog.entries().items() if _on_disk(entry)]


def _on_disk(entry: catalog.CatalogEntry) -> bool:
    source = entry.local_source()
    if Path(source).is_dir():  # shipped in a Python package
        return (Path(source) / "config.json").is_file()
    # A file lookup in the Hugging Face cache (`resolve.weights_dir` asks the hub library for
    # the whole snapshot: 4 ms a model, too slow for a listing of the whole catalog).
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(source, "config.json"), str)
    except Exception:  # not a repository id
        return False


def _catalog_name(repo: str) -> str | None:
    for name, entry in catalog.entries().items():
        if entry.source.lower() == repo.lower():
            return name
    return None


def _repo_of(parsed: ModelName) -> str | None:
    """The Hugging Face repository a name pulls from, when it names one."""
    try:
        return hub_repo(parsed.display)
    except InvalidRequest:
        return None
