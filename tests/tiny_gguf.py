"""Write a tiny Llama checkpoint as a GGUF file, as llama.cpp's converter does, with the `gguf` package.

Independent of hf_distill: the names, the Q/K row permutation and the tokenizer keys follow llama.cpp's
`convert_hf_to_gguf.py`; 2-D weights are stored Q8_0 (blocks of 32 along a row), 1-D weights (norms) F32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _permute(weights: np.ndarray, num_heads: int) -> np.ndarray:
    """llama.cpp's rotary layout for q/k rows (transformers undoes it on load)."""
    return (
        weights.reshape(num_heads, 2, weights.shape[0] // num_heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def quantized_copy(model, qtype_name: str = "Q8_0"):
    """`model`'s state dict with every 2-D weight replaced by its quantise-dequantise round trip: the weights a GGUF
    loader must return."""
    import gguf

    qtype = getattr(gguf.GGMLQuantizationType, qtype_name)
    out = {}
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy()
        if array.ndim == 2:
            array = gguf.quants.dequantize(gguf.quants.quantize(array, qtype), qtype)
        out[name] = torch.from_numpy(np.ascontiguousarray(array))
    return out


def write_llama_gguf(model, tokenizer, path: str | Path, *, qtype_name: str = "Q8_0") -> Path:
    """Write a transformers Llama `model` and its byte-level BPE `tokenizer` as one GGUF file at `path`."""
    import gguf

    config = model.config
    qtype = getattr(gguf.GGMLQuantizationType, qtype_name)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{qtype_name}"))
    _add_tokenizer(writer, tokenizer)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy()
        if name.endswith("q_proj.weight"):
            array = _permute(array, config.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            array = _permute(array, config.num_key_value_heads)
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if array.ndim == 2:
            writer.add_tensor(gguf_name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(gguf_name, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


def _add_tokenizer(writer, tokenizer) -> None:
    import json

    import gguf

    state = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    vocab = sorted(state["vocab"].items(), key=lambda item: item[1])
    special = set(tokenizer.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([token for token, _ in vocab])
    writer.add_token_types([
        gguf.TokenType.CONTROL if index in special else gguf.TokenType.NORMAL for _, index in vocab
    ])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in state["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(False)
    writer.add_chat_template(tokenizer.chat_template)
