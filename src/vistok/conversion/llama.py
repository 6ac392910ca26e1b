"""What the converters of the LlamaGen-style GPTs share (LlamaGen, GigaTok's GPT, Open-MAGVIT2 AR, IBQ AR: all
descend from LlamaGen's autoregressive/models/gpt.py ``TransformerBlock``, vistok's ``layers/llama.py``): the block
keys' renames and the head counts the weights cannot tell."""

from __future__ import annotations

from .common import ConversionError


def llama_block_renames(original: str, vistok: str) -> list[tuple[str, str]]:
    """Rename rules ``[(regex, replacement), ...]`` of one ``TransformerBlock``'s keys (fused ``attention.wqkv``,
    ``attention.wo``, SwiGLU ``feed_forward.w1/w3/w2``, ``attention_norm``, ``ffn_norm``) to the shared
    ``LlamaDecoderLayer``'s. ``original`` matches a block's prefix (e.g. ``r"layers\\.(\\d+)"``), ``vistok`` is its
    replacement (e.g. ``r"layers.\\1"``)."""
    parts = [(r"attention\.wqkv", "self_attn.wqkv"), (r"attention\.wo", "self_attn.o_proj"), (r"feed_forward\.w1", "mlp.gate_proj"),
             (r"feed_forward\.w3", "mlp.up_proj"), (r"feed_forward\.w2", "mlp.down_proj"), ("attention_norm", "input_layernorm"),
             ("ffn_norm", "post_attention_layernorm")]
    return [(rf"^{original}\.{old}\.", f"{vistok}.{new}.") for old, new in parts]


def llama_heads(presets: dict, hidden_size: int, num_layers: int, num_heads: int | None, wqkv_rows: int) -> tuple[int, int]:
    """``(num_attention_heads, num_key_value_heads)`` of a GPT ``hidden_size`` wide and ``num_layers`` deep whose
    fused ``wqkv`` has ``wqkv_rows`` rows: the head count is ``num_heads`` (``--num-heads``) or the one of the
    original size table ``presets`` (``{name: {hidden_size, num_hidden_layers, num_attention_heads}}``) of that
    width and depth."""
    if num_heads is None:
        sizes = [name for name, p in presets.items() if p["hidden_size"] == hidden_size and p["num_hidden_layers"] == num_layers]
        if not sizes:
            raise ConversionError(f"width {hidden_size} x {num_layers} layers is none of the original sizes {sorted(presets)}: "
                                  "pass --num-heads")
        num_heads = presets[sizes[0]]["num_attention_heads"]
    if hidden_size % num_heads:
        raise ConversionError(f"--num-heads {num_heads} does not divide the width {hidden_size}")
    return num_heads, (wqkv_rows // (hidden_size // num_heads) - num_heads) // 2
