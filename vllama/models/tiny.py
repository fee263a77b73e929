"""Make small random-weight chat models offline.

No model hub is reachable on our development and CI machines, yet the whole stack (Ray Serve,
vLLM, the chat template, sampling) must run for real in the tests. A random-weight model with a
real tokenizer and a real ChatML template gives exactly that: its text is gibberish, but greedy
decoding is deterministic, so vLLM's output can be compared token for token with `transformers`.

The weights come from a fixed seed, so the same spec always makes the same model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: ChatML with Qwen's tool calling (as Qwen2.5's template renders tools, calls and results) and
#: an opt-in thinking block (as Qwen3's thinking models do). Without tools and without
#: `enable_thinking` it renders exactly plain ChatML, so the model's answers to plain chats do
#: not depend on these branches.
CHATML_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n"
    "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    "{\"name\": <function-name>, \"arguments\": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- elif message.role == 'assistant' and message.tool_calls %}"
    "{{- '<|im_start|>assistant' }}{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    "{{- '\\n<tool_call>\\n{\"name\": \"' + tool_call.name + '\", \"arguments\": ' }}"
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking %}{{- '<think>\\n' }}{%- endif %}"
    "{%- endif %}"
)

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
)
#: Markup tokens that are text to the tokenizer (not special), as in Qwen's vocabulary: the
#: tool-call and reasoning parsers find them by these exact strings.
MARKUP_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")

# A few sentences are enough for a byte-level BPE to learn merges; bytes cover everything else.
_TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Why is the sky blue? Because air scatters blue light more than red light.",
    "Once upon a time there was a small model that served many users at once.",
    "Hello! How can I help you today? Tell me a story about the sea.",
    "vLLM batches requests continuously; Ray Serve spreads them over replicas.",
    "def add(a, b):\n    return a + b\n",
    "1 2 3 4 5 6 7 8 9 10, one two three four five six seven eight nine ten.",
]


#: Bump when what `make_tiny_model` writes changes for the same spec.
MAKER_REVISION = 2
#: The context of the random models, Qwen2.5's own. Real front-ends need it: Open WebUI sends
#: its 36 built-in tools (about 26 KB of JSON schemas) with every chat, more than a 2,048-token
#: context holds. It costs little: a token's KV cache is 2 KiB in float32 (2 layers, 2 KV heads
#: of 64), so a whole context is 64 MiB, and vLLM allocates by the share of memory, not by this.
TINY_CONTEXT = 32768


@dataclass(frozen=True)
class TinyModelSpec:
    """Shape of a random-weight Qwen2 model. The defaults are the smallest that vLLM's CPU
    attention kernel accepts (it needs head_dim 64: hidden 256 / 4 heads)."""

    hidden_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 512
    vocab_size: int = 512
    max_position_embeddings: int = TINY_CONTEXT
    # Larger than the usual 0.02 so that logits are well separated: greedy decoding then never
    # hinges on float rounding, and vLLM and transformers agree token for token.
    initializer_range: float = 0.08
    seed: int = 0
    #: Give no output weight to tokens that are not text on their own (special tokens, markup
    #: such as `<tool_call>`, control characters, and the byte tokens of an unfinished UTF-8
    #: character). Random weights would otherwise often start an answer with a run of them,
    #: which a server streams as nothing: clients then see the first text late, and a
    #: benchmark's time to first token measures the model's taste for stray bytes.
    text_tokens_only: bool = True

    @property
    def fingerprint(self) -> str:
        # The maker's revision is part of it: a model made by an older maker (another vocabulary
        # or template) is made again, not reused.
        return json.dumps({**asdict(self), "revision": MAKER_REVISION}, sort_keys=True)


def make_tiny_model(path: str | os.PathLike[str], spec: TinyModelSpec | None = None) -> Path:
    """Write a tokenizer and a random-weight `Qwen2ForCausalLM` to `path` and return it.

    Idempotent: a directory already made from the same spec is reused. The directory appears
    whole or not at all (built in a temporary sibling, then renamed), so a crash never leaves
    a half-written model that vLLM would later fail to load.
    """
    spec = spec or TinyModelSpec()
    return build_once(Path(path), spec.fingerprint, lambda staging: (_write_tokenizer(staging, spec), _write_weights(staging, spec)))


def build_once(target: Path, fingerprint: str, write: Callable[[Path], object]) -> Path:
    """`target`, made by `write(directory)` unless a directory made with the same `fingerprint`
    is there already: built in a temporary sibling, then renamed, so it appears whole or not at all."""
    marker = target / "vllama-tiny.json"
    if marker.is_file() and marker.read_text() == fingerprint:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(staging)
        (staging / "vllama-tiny.json").write_text(fingerprint)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_tokenizer(directory: Path, spec: TinyModelSpec) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TRAINING_TEXT, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
    )
    fast.add_tokens([AddedToken(t, special=False, normalized=False) for t in MARKUP_TOKENS])
    fast.chat_template = CHATML_TEMPLATE
    fast.model_max_length = spec.max_position_embeddings
    fast.save_pretrained(directory)


def _write_weights(directory: Path, spec: TinyModelSpec) -> None:
    import torch
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory)
    config = Qwen2Config(**text_config_fields(spec, tokenizer))
    torch.manual_seed(spec.seed)
    model = Qwen2ForCausalLM(config).to(torch.float32).eval()
    if spec.text_tokens_only:
        silence_non_text(model, tokenizer)
    model.save_pretrained(directory, safe_serialization=True)
    # No sampling defaults here: vLLM would apply them to every request, and Ollama's own
    # defaults are what a client of ours expects.
    GenerationConfig(eos_token_id=eos_ids(tokenizer), pad_token_id=tokenizer.pad_token_id).save_pretrained(directory)


def eos_ids(tokenizer: Any) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")]


def text_config_fields(spec: TinyModelSpec, tokenizer: Any) -> dict[str, Any]:
    """The text model's config (Qwen2's or Llama's: the same field names)."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "max_position_embeddings": spec.max_position_embeddings,
        "initializer_range": spec.initializer_range,
        "tie_word_embeddings": not spec.text_tokens_only,
        "bos_token_id": None,
        "eos_token_id": eos_ids(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": "float32",
    }


def silence_non_text(model: Any, tokenizer: Any) -> None:
    """The same output weights as the tied model, except that tokens which are not text alone
    get a zero row: a logit of 0 against the best of ~340 random ones, so greedy decoding never
    picks them (sampling rarely does). Markup too: the model never opens a tool call or a thought
    by itself, so a plain chat stays plain text; a constraint (a forced tool call, a thinking
    budget) still can."""
    import torch

    silent = [i for i in range(len(tokenizer)) if _not_text(tokenizer.decode([i], skip_special_tokens=True))]
    silent += tokenizer.convert_tokens_to_ids(list(MARKUP_TOKENS))
    with torch.no_grad():
        model.lm_head.weight.copy_(model.get_input_embeddings().weight)
        model.lm_head.weight[silent] = 0


def _not_text(decoded: str) -> bool:
    # Control characters too (newlines included): in a JSON string they are invalid unescaped,
    # and the JSON grammars let them through, so a constrained answer (a tool call's arguments)
    # would not parse.
    return decoded == "" or "\ufffd" in decoded or any(ord(c) < 32 or ord(c) == 127 for c in decoded)
