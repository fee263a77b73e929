"""Reading the repository's Dockerfiles, and running a CPU image's install steps without Docker.

No image registry or Docker daemon is reachable where the tests run, so no image is built. What
can be checked is checked: the instructions are read here, and `run_install_steps` replays a
Dockerfile's ARG/ENV/WORKDIR/COPY/RUN instructions in a fresh virtual environment under a
temporary directory that stands in for the image's root. Its interpreter is what `python3` and
`pip` name there, as they do in a Python image.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHELL = ["/bin/sh", "-c"]


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    arguments: str  # as written, continuation lines joined

    def json_form(self) -> list[str]:
        """The exec form's argument list (`["vllama", "serve"]`)."""
        parsed = json.loads(self.arguments)
        assert isinstance(parsed, list) and all(isinstance(item, str) for item in parsed), self.arguments
        return parsed


def parse(path: Path) -> list[Instruction]:
    """A Dockerfile's instructions, without comments; a line ending in a backslash goes on."""
    instructions: list[Instruction] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(arguments.split())))
        pending = ""
    assert not pending, f"{path}: the last instruction ends in a continuation"
    return instructions


def pinned_vllm(extra: str) -> str:
    """The version that pyproject.toml's `extra` pins its vLLM build to."""
    (requirement,) = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][extra]
    match = re.fullmatch(r"vllm(?:-cpu)?==([\d.]+)", requirement)
    assert match, requirement
    return match.group(1)


def only(instructions: list[Instruction], keyword: str) -> list[Instruction]:
    return [instruction for instruction in instructions if instruction.keyword == keyword]


def fresh_venv(directory: Path) -> Path:
    """A new virtual environment with pip (the host's interpreter, as in a `python:` image)."""
    venv.EnvBuilder(with_pip=True).create(directory)
    return directory


def run_install_steps(
    dockerfile: Path, image_root: Path, environment: Path, *, context: Path = ROOT, timeout_s: float = 1800
) -> list[subprocess.CompletedProcess[str]]:
    """Replays `dockerfile`'s build steps with `image_root` as `/` and `environment` (a virtual
    environment) as the image's Python. An ARG without a value is left unset, as pip reads an
    empty PIP_EXTRA_INDEX_URL as no extra index; pip's own configuration on this machine stays
    in force, as it is how pip reaches packages here."""
    env = {name: value for name, value in os.environ.items() if name not in {"PYTHONPATH", "PYTHONHOME"}}
    env["VIRTUAL_ENV"] = str(environment)
    env["PATH"] = f"{environment / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    workdir = image_root
    shell = DEFAULT_SHELL
    results = []
    for instruction in parse(dockerfile):
        match instruction.keyword:
            case "ARG":
                name, _, default = instruction.arguments.partition("=")
                if default:
                    env.setdefault(name, default)
            case "ENV":
                for pair in shlex.split(instruction.arguments):
                    name, _, value = pair.partition("=")
                    env[name] = value
            case "WORKDIR":
                workdir = _inside(image_root, workdir, instruction.arguments)
                workdir.mkdir(parents=True, exist_ok=True)
            case "COPY":
                *sources, destination = shlex.split(instruction.arguments)
                assert not any(source.startswith("--") for source in sources), instruction
                target = _inside(image_root, workdir, destination)
                for source in sources:
                    _copy(context / source, target, into=destination.endswith("/") or len(sources) > 1)
            case "SHELL":
                shell = instruction.json_form()
            case "RUN":
                result = subprocess.run(
                    [*shell, instruction.arguments],
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout_s,
                    check=False,
                )
                assert result.returncode == 0, f"RUN {instruction.arguments}\n{result.stdout}\n{result.stderr}"
                results.append(result)
            case "FROM" | "EXPOSE" | "ENTRYPOINT" | "CMD" | "LABEL":
                pass  # the image's metadata: checked by the tests, not replayed
            case _:
                raise AssertionError(f"{dockerfile.name}: no replay for {instruction.keyword}")
    return results


def _inside(image_root: Path, workdir: Path, path: str) -> Path:
    return image_root / path.lstrip("/") if path.startswith("/") else workdir / path


def _copy(source: Path, target: Path, *, into: bool) -> None:
    """Docker's COPY: a directory's contents go into the target; a file goes into it when the
    target is a directory (a trailing slash, or several sources), else becomes it."""
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        return
    if into:
        target.mkdir(parents=True, exist_ok=True)
        target = target / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
