"""llama.cpp, Ollama's engine, as a baseline: its server from `llama-cpp-python[server]` (built
from source by pip, several minutes on 2 cores) and the model converted to GGUF by llama.cpp's
own `convert_hf_to_gguf.py`, which ships in that package's source distribution.

Everything lands in a work directory (default `bench/.work`, ignored by git): a virtualenv of its
own (llama-cpp-python's server pins versions that vLLM's environment must not get), the
unpacked source distribution and the converted model. Nothing of llama.cpp is committed.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

VERSION = "0.3.36"


def ensure_server(work: Path) -> Path:
    """The Python of a virtualenv where `python -m llama_cpp.server` runs (built once)."""
    venv = work / "llamacpp-venv"
    python = venv / "bin" / "python"
    marker = venv / f".built-{VERSION}"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"llama-cpp-python[server]=={VERSION}"], check=True)
        marker.touch()
    return python


def converter_source(work: Path) -> Path:
    """The unpacked llama.cpp tree of the source distribution (convert_hf_to_gguf.py, gguf-py)."""
    root = work / f"llama_cpp_python-{VERSION}"
    if not (root / "vendor" / "llama.cpp" / "convert_hf_to_gguf.py").exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             f"llama-cpp-python=={VERSION}", "-d", str(work)],
            check=True,
        )
        with tarfile.open(work / f"llama_cpp_python-{VERSION}.tar.gz") as archive:
            archive.extractall(work, filter="data")
    return root / "vendor" / "llama.cpp"


def convert(model_dir: Path, work: Path) -> Path:
    """`model_dir` (Hugging Face layout) as a float32 GGUF file, converted again when the
    model was made anew since (the random models are remade when their spec changes)."""
    out = work / f"{model_dir.name}-f32.gguf"
    if not out.exists() or out.stat().st_mtime < (model_dir / "config.json").stat().st_mtime:
        subprocess.run(
            [sys.executable, str(Path(__file__).with_name("gguf_convert.py")), str(converter_source(work)),
             str(model_dir), "--outfile", str(out), "--outtype", "f32"],
            check=True,
        )
    return out
