"""Tiny models, tokenizers and datasets for tests: built from configs and trained on the spot, never downloaded."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]

_WORDS = (
    "the cat dog sat on mat red blue green one two three four five six seven eight nine ten add sum of and is "
    "what answer question colour animal small big fast slow runs jumps sleeps eats reads writes north south"
).split()
CORPUS = [" ".join(random.Random(i).choices(_WORDS, k=12)) for i in range(400)]
OTHER_CORPUS = [" ".join(random.Random(i).choices([w[::-1] + "x" for w in _WORDS], k=12)) for i in range(400)]


def build_tokenizer(corpus=CORPUS, vocab_size: int = 384, seed_words=()) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `corpus`, with pad/bos/eos tokens and a chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(list(corpus) + list(seed_words), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", chat_template=CHAT_TEMPLATE
    )
    return fast



def build_sentencepiece_tokenizer(corpus=CORPUS, vocab_size: int = 300, seed_words=()) -> PreTrainedTokenizerFast:
    """A SentencePiece-style BPE tokenizer (Llama/Gemma family: `▁` marks a space, unknown bytes fall back to
    `<0xNN>` tokens) trained on `corpus`, with the same special tokens and chat template as `build_tokenizer`."""
    tok = Tokenizer(models.BPE(byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never")
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    byte_tokens = [f"<0x{byte:02X}>" for byte in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size + 256, special_tokens=SPECIAL_TOKENS + byte_tokens)
    tok.train_from_iterator(list(corpus) + list(seed_words), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", chat_template=CHAT_TEMPLATE
    )

_ARCHITECTURES = {
    "llama": lambda v, h, L, **kw: LlamaConfig(
        vocab_size=v, hidden_size=h, intermediate_size=2 * h, num_hidden_layers=L, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, **kw
    ),
    "qwen2": lambda v, h, L, **kw: Qwen2Config(
        vocab_size=v, hidden_size=h, intermediate_size=2 * h, num_hidden_layers=L, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, **kw
    ),
    "gpt2": lambda v, h, L, **kw: GPT2Config(
        vocab_size=v, n_embd=h, n_layer=L, n_head=4, n_positions=256, tie_word_embeddings=True, resid_pdrop=0.0,
        embd_pdrop=0.0, attn_pdrop=0.0, **kw
    ),
    "gemma2": lambda v, h, L, **kw: Gemma2Config(
        vocab_size=v, hidden_size=h, intermediate_size=2 * h, num_hidden_layers=L, num_attention_heads=4,
        num_key_value_heads=2, head_dim=h // 4, max_position_embeddings=256, final_logit_softcapping=5.0,
        attn_logit_softcapping=None, sliding_window=64, **kw
    ),
}
ARCHITECTURES = tuple(_ARCHITECTURES)


class ModelFactory:
    """Builds tiny causal LMs for a tokenizer: `factory("llama", hidden=32, layers=2, seed=0)`."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, arch="llama", *, hidden=32, layers=2, seed=0, vocab_size=None, dtype=torch.float32):
        tok = self.tokenizer
        ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        config = _ARCHITECTURES[arch](vocab_size or len(tok), hidden, layers, **ids)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        return model

    def save(self, path, arch="llama", **kwargs):
        model = self(arch, **kwargs)
        model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        return str(path)

    def save_pickled(self, path, arch="llama", **kwargs):
        """Like `save`, with the weights in a pickled `pytorch_model.bin` (as old checkpoints hold them) instead of
        `model.safetensors`."""
        from safetensors.torch import load_file

        weights = Path(self.save(path, arch, **kwargs)) / "model.safetensors"
        torch.save(load_file(str(weights)), weights.with_name("pytorch_model.bin"))
        weights.unlink()
        return str(path)


def text_dataset(n=32, seed=0) -> Dataset:
    rng = random.Random(seed)
    return Dataset.from_dict({"text": [" ".join(rng.choices(_WORDS, k=rng.randint(6, 14))) for _ in range(n)]})


def prompt_completion_dataset(n=32, seed=0) -> Dataset:
    rng = random.Random(seed)
    prompts, completions = [], []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        prompts.append(f"what is {a} add {b}")
        completions.append(f" the answer is {a + b} and {rng.choice(_WORDS)}")
    return Dataset.from_dict({"prompt": prompts, "completion": completions})


def messages_dataset(n=32, seed=0) -> Dataset:
    rows = prompt_completion_dataset(n, seed)
    return Dataset.from_dict(
        {
            "messages": [
                [{"role": "user", "content": p}, {"role": "assistant", "content": c.strip()}]
                for p, c in zip(rows["prompt"], rows["completion"], strict=True)
            ]
        }
    )


def conversational_prompt_completion_dataset(n=32, seed=0) -> Dataset:
    rows = prompt_completion_dataset(n, seed)
    return Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": p}] for p in rows["prompt"]],
            "completion": [[{"role": "assistant", "content": c.strip()}] for c in rows["completion"]],
        }
    )


DATASETS = {
    "text": text_dataset,
    "prompt_completion": prompt_completion_dataset,
    "messages": messages_dataset,
    "conversational_prompt_completion": conversational_prompt_completion_dataset,
}
