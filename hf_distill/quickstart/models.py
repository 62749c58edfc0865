"""The quickstart's tokenizer and model shapes: a byte-level BPE tokenizer trained on the task data with `tokenizers`,
and small Llama-architecture teacher and student configs (built from configs, never downloaded)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, PreTrainedTokenizerFast

__all__ = ["ModelShape", "build_config", "train_tokenizer"]

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>")
# Renders a conversation as the task's plain format, so chat front-ends (the Space demo) prompt the models right.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}Q: {{ message['content'] }}\nA:"
    "{% elif message['role'] == 'assistant' %} {{ message['content'] }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}"
)


def train_tokenizer(texts: Iterable[str], *, vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `texts` (deterministic for the same texts), with `<pad>`, `<bos>`,
    `<eos>` and a chat template that renders the task format.

    Example:

    ```python
    >>> tokenizer = train_tokenizer(["Q: what is 2 plus 3\\nA: 5"], vocab_size=300)
    >>> tokenizer.decode(tokenizer("A: 5")["input_ids"])
    'A: 5'
    ```
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=128,
    )


@dataclass(frozen=True)
class ModelShape:
    """Width and depth of a quickstart model; the teacher is wider and deeper than the student."""

    hidden_size: int
    num_layers: int
    num_heads: int = 4


def build_config(shape: ModelShape, tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """A Llama config of `shape` for `tokenizer` (untied embeddings, no dropout, 128 positions)."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=4 * shape.hidden_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
