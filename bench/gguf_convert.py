"""Run llama.cpp's `convert_hf_to_gguf.py` (from llama-cpp-python's source distribution) on a
model whose tokenizer it does not know.

    python bench/gguf_convert.py LLAMA_CPP_TREE MODEL_DIR --outfile OUT.gguf --outtype f32

The converter recognises a BPE pre-tokenizer by a hash of how known models tokenize a probe
text; the random test models' tokenizer is trained on the spot, so no hash matches. It uses
GPT-2's byte-level pre-tokenization, so we name it that and let the converter do the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    tree = Path(sys.argv[1])
    sys.path[:0] = [str(tree), str(tree / "gguf-py")]
    import importlib
    import inspect

    import convert_hf_to_gguf as converter

    # Newer llama.cpp keeps the model classes in a `conversion` package; older in the script.
    modules = [converter]
    try:
        modules.append(importlib.import_module("conversion.base"))
    except ImportError:
        pass
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if "get_vocab_base_pre" in vars(cls):
                cls.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
    sys.argv = ["convert_hf_to_gguf.py", *sys.argv[2:]]
    converter.main()


if __name__ == "__main__":
    main()
