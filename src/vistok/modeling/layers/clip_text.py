"""CLIP text features as OpenCLIP computes them, from transformers' CLIP text models.

The bytedance/1d-tokenizer text-to-image models (TA-TiTok, MaskGen) read OpenCLIP ViT-L-14-336 (openai) text
features; those weights are the text tower of ``openai/clip-vit-large-patch14-336`` in transformers. What differs:

- padding: OpenCLIP pads every prompt to the context length with token id 0 and its consumers read all positions
  (no attention mask), so :func:`open_clip_token_ids` pads with 0 too;
- text cleaning: OpenCLIP's tokenizer applies ``ftfy.fix_text`` and HTML unescaping before BPE, and treats a typed
  ``<|endoftext|>`` as text; :func:`open_clip_token_ids` does the same (ftfy only where it is installed);
- the activation: the OpenAI weights were trained with QuickGELU (transformers' config), but
  ``open_clip.create_model_and_transforms('ViT-L-14-336', pretrained='openai')``, the 1d-tokenizer's call, builds
  ``nn.GELU`` since open_clip 2.29 (QuickGELU before); which one a release saw depends on its open_clip version.

:func:`convert_open_clip_text` turns an OpenCLIP text tower's state dict (``open_clip.CLIP``: ``token_embedding``,
``positional_embedding``, ``transformer.resblocks.*``, ``ln_final``, ``text_projection``) into a transformers
``CLIPTextModelWithProjection`` with either activation (tests/test_openclip_text.py checks both against OpenCLIP
and the 1d-tokenizer code).
"""

from __future__ import annotations

import html
import re
import warnings
from dataclasses import dataclass

import torch


@dataclass
class CLIPTextFeatures:
    """``last_hidden_state`` (after the final layer norm; TA-TiTok's decoder reads it), ``penultimate_hidden_state``
    (the input of the last block, no norm; MaskGen's condition) and ``pooled`` (the projected end-of-text
    feature of a ``CLIPTextModelWithProjection``; ``None`` for a ``CLIPTextModel``)."""

    last_hidden_state: torch.Tensor
    penultimate_hidden_state: torch.Tensor
    pooled: torch.Tensor | None


_WARNED_NO_FTFY: list = []


def open_clip_clean(text: str) -> str:
    """OpenCLIP ``SimpleTokenizer``'s text cleaning before BPE (transformers' ``CLIPTokenizer`` does only NFC,
    whitespace and lower case): ``ftfy.fix_text`` when ftfy is installed (it straightens curly quotes, splits
    ligatures, narrows full-width forms and repairs mojibake), HTML entities unescaped twice, whitespace runs
    collapsed and the ends stripped."""
    try:
        import ftfy
    except ImportError:  # ftfy is not a vistok dependency; without it only its fixes differ from OpenCLIP
        ftfy = None
    if ftfy is not None:
        text = ftfy.fix_text(text)
    elif not text.isascii() and not _WARNED_NO_FTFY:
        _WARNED_NO_FTFY.append(True)
        warnings.warn("ftfy is not installed: prompts with non-ASCII text may be tokenized differently from OpenCLIP "
                      "(which applies ftfy.fix_text: quotes, ligatures, full-width forms, mojibake); pip install ftfy",
                      stacklevel=3)
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def open_clip_token_ids(tokenizer, prompts, context_length: int = 77) -> torch.LongTensor:
    """``[len(prompts), context_length]`` ids as OpenCLIP's tokenizer makes them: the text cleaned as OpenCLIP does
    (:func:`open_clip_clean`), then start, tokens, end, truncated to ``context_length`` (keeping the end token),
    then zeros."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be a string or a list of strings, got {type(prompts).__name__}")
    prompts = [open_clip_clean(p) for p in prompts]
    # split_special_tokens: OpenCLIP's special tokens are <start_of_text>/<end_of_text>, so a "<|endoftext|>" typed in
    # a prompt is text to it, not CLIPTokenizer's special token
    from transformers import PreTrainedTokenizerBase

    extra = {"split_special_tokens": True} if isinstance(tokenizer, PreTrainedTokenizerBase) else {}
    ids = tokenizer(prompts, padding=False, truncation=True, max_length=context_length, **extra)["input_ids"]
    out = torch.zeros(len(prompts), context_length, dtype=torch.long)
    for row, seq in enumerate(ids):
        out[row, : len(seq)] = torch.as_tensor(seq[:context_length], dtype=torch.long)
    return out


def clip_text_features(text_model, tokenizer, prompts, context_length: int | None = None) -> CLIPTextFeatures:
    """Run a transformers ``CLIPTextModel`` / ``CLIPTextModelWithProjection`` on ``prompts`` OpenCLIP's way."""
    length = context_length or text_model.config.max_position_embeddings
    input_ids = open_clip_token_ids(tokenizer, prompts, length).to(text_model.device)
    out = text_model(input_ids=input_ids, output_hidden_states=True)
    return CLIPTextFeatures(out.last_hidden_state, out.hidden_states[-2], getattr(out, "text_embeds", None))


# OpenCLIP text tower key -> transformers CLIPTextModelWithProjection key (the attention's packed in_proj is split)
OPEN_CLIP_TEXT_RENAMES = [
    (r"^token_embedding\.weight$", "text_model.embeddings.token_embedding.weight"),
    (r"^positional_embedding$", "text_model.embeddings.position_embedding.weight"),
    (r"^transformer\.resblocks\.(\d+)\.ln_1\.", r"text_model.encoder.layers.\1.layer_norm1."),
    (r"^transformer\.resblocks\.(\d+)\.ln_2\.", r"text_model.encoder.layers.\1.layer_norm2."),
    (r"^transformer\.resblocks\.(\d+)\.attn\.out_proj\.", r"text_model.encoder.layers.\1.self_attn.out_proj."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"text_model.encoder.layers.\1.mlp.fc1."),
    (r"^transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"text_model.encoder.layers.\1.mlp.fc2."),
    (r"^ln_final\.", "text_model.final_layer_norm."),
]
# what a whole open_clip.CLIP state dict holds beside the text tower
_OPEN_CLIP_NOT_TEXT = re.compile(r"^(visual\.|logit_scale$|logit_bias$|attn_mask$)")


def convert_open_clip_text(state_dict: dict[str, torch.Tensor], *, hidden_act: str = "quick_gelu",
                           num_attention_heads: int | None = None, layer_norm_eps: float = 1e-5):
    """An OpenCLIP text tower (the state dict of an ``open_clip.CLIP``, whole or text-only; a ``text.`` prefix, as
    ``CustomTextCLIP`` writes it, is accepted) as a transformers ``CLIPTextModelWithProjection`` in eval mode.

    Its ``last_hidden_state`` is OpenCLIP's ``ln_final`` output, ``hidden_states[-2]`` the input of the last block and
    ``text_embeds`` ``encode_text`` (pooled at the end token, the largest id, times ``text_projection``), for token
    ids padded with 0 as OpenCLIP's tokenizer pads them.

    ``hidden_act``: the MLP activation, which a state dict does not record: ``"quick_gelu"`` for OpenAI's weights as
    they were trained (and as transformers' ``openai/clip-*`` repos run them), ``"gelu"`` for OpenCLIP's default
    ``nn.GELU`` (what ``open_clip.create_model('ViT-L-14-336', pretrained='openai')`` builds since open_clip 2.29,
    which only warns that the weights were trained with QuickGELU). ``num_attention_heads``: width / 64 unless given
    (OpenCLIP's text configs all use 64-wide heads)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from ...conversion import ConversionError, count_numbered, load_converted, rename_key

    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise TypeError("state_dict must be a dict of tensors (an OpenCLIP model's state_dict())")
    if hidden_act not in ("quick_gelu", "gelu"):
        raise ValueError(f"hidden_act must be 'quick_gelu' or 'gelu', got {hidden_act!r}")
    if "token_embedding.weight" not in state_dict and "text.token_embedding.weight" in state_dict:
        state_dict = {k[len("text."):]: v for k, v in state_dict.items() if k.startswith("text.")}
    required = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "text_projection")
    absent = [k for k in required if k not in state_dict]
    if absent:
        raise ConversionError(f"not an OpenCLIP text tower: missing {absent}")
    vocab_size, width = state_dict["token_embedding.weight"].shape
    context_length = state_dict["positional_embedding"].shape[0]
    layers = count_numbered(state_dict, r"^transformer\.resblocks\.(\d+)\.")
    heads = num_attention_heads or width // 64
    if heads < 1 or width % heads:
        raise ValueError(f"num_attention_heads must divide the width {width}, got {heads}")
    projection = state_dict["text_projection"]
    if projection.ndim != 2 or projection.shape[0] != width:
        raise ConversionError(f"text_projection must be [{width}, projection_dim] (OpenCLIP's x @ text_projection), "
                              f"got {tuple(projection.shape)}")
    intermediate = state_dict["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] if layers else 4 * width

    converted, unused = {"text_projection.weight": projection.t()}, set()
    for key, value in state_dict.items():
        if _OPEN_CLIP_NOT_TEXT.match(key) or key == "text_projection":
            continue
        m = re.match(r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$", key)
        if m:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                converted[f"text_model.encoder.layers.{m[1]}.self_attn.{name}.{m[2]}"] = part
            continue
        new = rename_key(key, OPEN_CLIP_TEXT_RENAMES)
        if new == key:
            unused.add(key)  # e.g. LayerScale (ls_1), scaled attention norms, a learned cls token: no CLIP equivalent
        else:
            converted[new] = value
    config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=width, intermediate_size=intermediate,
                            num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=context_length,
                            projection_dim=projection.shape[1], hidden_act=hidden_act, layer_norm_eps=layer_norm_eps,
                            # OpenCLIP: <start_of_text> = vocab - 2, <end_of_text> = vocab - 1 (so the first end token
                            # is the argmax OpenCLIP pools at), padding 0
                            bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=0)
    return load_converted(CLIPTextModelWithProjection, config, converted, unused, original=state_dict)
