"""transformers' own common model tests (``ModelTesterMixin`` + ``ConfigTester`` of the installed version, see
``_transformers_suite.py``) run against every vistok model class, the way transformers' model tests run them.

One ``ModelCase`` per model class: a tiny config, its forward inputs and the shapes the mixin checks. The
capability flags are set as transformers sets them for comparable models (Janus' and Chameleon's VQ-VAEs,
ViT, Llama); each says why. A family added later adds its case to ``CASES`` (``test_families`` checks that
every registered model class has one).
"""

from __future__ import annotations

import ast
import json
import inspect
import textwrap
import unittest
import unittest.mock
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
from transformers.testing_utils import run_test_using_subprocess

import vistok  # noqa: F401  (registers the model types)
from vistok.families import families
from vistok.modeling.flextok.configuration_flextok import FlexTokConfig
from vistok.modeling.gigatok.configuration_gigatok import GigaTokConfig
from vistok.modeling.instella.configuration_instella import InstellaARConfig, InstellaBAEConfig, InstellaDiffusionConfig
from vistok.modeling.llamagen.configuration_llamagen import LlamaGenConfig, LlamaGenVQConfig
from vistok.modeling.maskgen.configuration_maskgen import MaskGenKLConfig, MaskGenVQConfig
from vistok.modeling.maskgit.configuration_maskgit import MaskGITConfig
from vistok.modeling.one_d_piece.configuration_one_d_piece import OneDPieceConfig
from vistok.modeling.open_magvit2.configuration_open_magvit2 import IBQARConfig, IBQConfig, OpenMagvit2ARConfig, OpenMagvit2Config
from vistok.modeling.titok.configuration_titok import TiTokConfig
from vistok.modeling.star.configuration_star import STARConfig
from vistok.modeling.var.configuration_var import VARConfig, VARVQVAEConfig
from vistok.modeling.tokenflow.configuration_tokenflow import TokenFlowConfig, TokenFlowT2IConfig
from transformers import CLIPVisionConfig

import _transformers_suite

ModelTesterMixin, ConfigTester, _common = _transformers_suite.load()

BATCH = 2


@dataclass
class ModelCase:
    config_class: type
    config: dict
    inputs: Callable[[object, torch.Generator], dict]  # (config, generator) -> forward kwargs
    labels: Callable[[object, dict], dict] | None = None  # training targets -> kwargs giving ``loss``
    # what the mixin checks hidden states and attentions against
    num_hidden_layers: int = 1
    seq_length: int = 1
    hidden_size: int = 1
    num_attention_heads: int = 1
    common_properties: list = field(default_factory=list)
    flags: dict = field(default_factory=dict)  # ModelTesterMixin capability flags, each with its reason below
    skips: dict = field(default_factory=dict)  # test name -> reason
    # conv tokenizers: hidden states are feature maps [B, C, h, w]; (count, first shape [C, h, w]) replaces the
    # mixin's [seq_length, hidden_size] check, as transformers' conv models (ResNet, ConvNeXt) override it
    feature_maps: tuple | None = None
    # attention over more keys than queries (a text prefix as keys/values only): the mixin's ``key_length``
    key_length: int | None = None


# Pixels in, codes out: a tokenizer's forward has no input token embedding to get or set (the codebook embeds
# decode's token ids). transformers' VQ-VAE tests (Janus, Chameleon) skip this test for the same reason.
TOKENIZER_SKIPS = {"test_model_get_set_embeddings": "pixels in: no input token embeddings (as Janus' VQ-VAE test)"}
# The conv tokenizers' attention is VQGAN's single-head 1x1-conv block, which transformers' VQ-VAEs (Janus,
# Chameleon) do not expose either: has_attentions=False.
CONV_TOKENIZER_FLAGS = {"is_training": False, "test_resize_embeddings": False, "has_attentions": False}


def _pixels(config, g):
    low, high = config.pixel_range
    return {"pixel_values": low + (high - low) * torch.rand(BATCH, 3, config.image_size, config.image_size, generator=g)}


def _titok_case(config_class, **extra):
    cfg = dict(image_size=16, patch_size=8, decoder_patch_size=8, num_tokens=4, codebook_size=16, token_dim=4,
               encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2, decoder_hidden_size=32,
               decoder_num_layers=1, decoder_num_heads=2, is_legacy=False, **extra)
    inputs, more = _pixels, {}
    if extra.get("text_conditioned"):  # TA-TiTok: the decoder also reads CLIP text features
        more = {"additional_model_inputs": ["text_features"]}

        def inputs(config, g):
            text = torch.randn(BATCH, config.text_max_length, config.text_hidden_size, generator=g)
            return {**_pixels(config, g), "text_features": text}
    return ModelCase(
        config_class, cfg, inputs,
        # encoder then decoder blocks; the first hidden state is the encoder's input: [class, 4 patches, 4 latent tokens]
        num_hidden_layers=2, seq_length=1 + 4 + 4, hidden_size=32, num_attention_heads=2,
        common_properties=["image_size", "num_tokens", "codebook_size"],
        flags={
            # tokenizer training (reconstruction, perceptual, GAN losses) lives in vistok.training, as for
            # transformers' VQ-VAEs (Janus, Chameleon: is_training=False)
            "is_training": False,
            # no token vocabulary to resize: pixels in, codebook ids out (Janus VQ-VAE sets the same)
            "test_resize_embeddings": False,
            **more,
        },
        skips=TOKENIZER_SKIPS,
    )


def _ids(config, g, n=None):
    n = config.num_tokens if n is None else n
    return torch.randint(0, config.codebook_size, (BATCH, n), generator=g)


def _labels_same_as_ids(config, inputs):
    return {"labels": inputs["input_ids"].clone()}


CASES: dict[str, ModelCase] = {
    "TiTokModel": _titok_case(TiTokConfig),
    "OneDPieceModel": _titok_case(OneDPieceConfig),
    # a second configuration of a class: "Class/variant"
    "TiTokModel/text_conditioned": _titok_case(TiTokConfig, text_conditioned=True, text_hidden_size=8, text_max_length=3),
    "GigaTokModel": ModelCase(
        GigaTokConfig,
        dict(token_layout="2d", image_size=8, codebook_size=16, token_dim=4, hidden_channels=32, encoder_channel_mult=[1, 2],
             z_channels=32, num_res_blocks=1, encoder_hidden_size=32, encoder_num_layers=1, encoder_num_heads=2,
             decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2, distill_depth=1, distill_dim=8),
        _pixels,
        # the encoder's then the decoder's transformer blocks, over the 4x4 grid; the first is the encoder's input
        num_hidden_layers=2, seq_length=16, hidden_size=32, num_attention_heads=2,
        common_properties=["image_size", "num_tokens", "codebook_size"],
        flags={"is_training": False, "test_resize_embeddings": False},  # as TiTok: pixels in, codes out
        skips=TOKENIZER_SKIPS,
    ),
    "FlexTokModel": ModelCase(
        FlexTokConfig,
        # 16 px -> 8x8x4 VAE latent -> 4x4 patches of 2x2; 4 registers; two flow steps, no guidance pass
        dict(image_size=16, num_tokens=4, fsq_levels=[8, 5, 5], patch_size=2,
             vae_config=dict(act_fn="silu", block_out_channels=[32, 32], down_block_types=["DownEncoderBlock2D"] * 2,
                             up_block_types=["UpDecoderBlock2D"] * 2, in_channels=3, out_channels=3, latent_channels=4,
                             layers_per_block=1, norm_num_groups=8, sample_size=16),
             encoder_hidden_size=32, encoder_num_layers=1, encoder_head_dim=16, decoder_hidden_size=32,
             decoder_num_layers=1, decoder_head_dim=16, timestep_frequency_size=32, num_inference_steps=2,
             guidance_scale=1.0),
        # the flow's starting noise given (diffusers' ``latents``), so that forward is a function of its inputs
        lambda config, g: {**_pixels(config, g), "flow_noise": torch.randn(BATCH, 4, 8, 8, generator=g)},
        # the encoder's blocks over [16 patches, 4 registers] (the flow decoder is a sampler's velocity model)
        num_hidden_layers=1, seq_length=16 + 4, hidden_size=32, num_attention_heads=2,
        common_properties=["image_size", "num_tokens", "codebook_size"],
        # as TiTok: pixels in, codes out; FlexTok trains with a flow-matching objective vistok does not implement
        flags={"is_training": False, "test_resize_embeddings": False},
        skips={**TOKENIZER_SKIPS, "test_retain_grad_hidden_states_attentions":
               "a training-mode forward with gradients is refused: FlexTok trains with a flow-matching objective "
               "vistok does not implement (test_flextok.py checks the refusal)"},
    ),
    "InstellaBAEModel": ModelCase(
        InstellaBAEConfig,
        # no resize stage, so every block sees [4 latent tokens; 2x2 patches] (the parity test covers the resize blocks)
        dict(image_size=32, patch_size=16, num_tokens=4, num_bits=8, encoder_hidden_size=32, encoder_num_layers=1,
             encoder_num_heads=2, decoder_hidden_size=32, decoder_num_layers=1, decoder_num_heads=2,
             downsample_layers=[], upsample_layers=[], axes_dims_rope=[4, 6, 6], rope_scale=2.0),
        _pixels,
        num_hidden_layers=2, seq_length=4 + 4, hidden_size=32, num_attention_heads=2,
        common_properties=["image_size", "num_tokens", "codebook_size"],
        flags={"is_training": False, "test_resize_embeddings": False},  # as TiTok: pixels in, codes out
        skips=TOKENIZER_SKIPS,
    ),
    "LlamaGenVQModel": ModelCase(
        LlamaGenVQConfig,
        dict(image_size=16, codebook_size=16, token_dim=4, hidden_channels=32, encoder_channel_mult=[1, 2],
             decoder_channel_mult=[2, 1], z_channels=32, num_res_blocks=1),
        _pixels,
        common_properties=["image_size", "codebook_size"],
        flags=CONV_TOKENIZER_FLAGS, skips=TOKENIZER_SKIPS,
        # conv_in's output, then 2 encoder levels and 2 decoder levels
        feature_maps=(5, (32, 16, 16)),
    ),
    "VARVQVAE": ModelCase(
        VARVQVAEConfig,
        dict(codebook_size=16, z_channels=4, channels=32, channel_mult=[1, 2], patch_nums=[1, 2, 4]),
        _pixels,
        common_properties=["codebook_size", "patch_nums"],
        flags=CONV_TOKENIZER_FLAGS, skips=TOKENIZER_SKIPS,
        feature_maps=(5, (32, 8, 8)),
    ),
    "OpenMagvit2Model": ModelCase(
        OpenMagvit2Config,
        dict(image_size=8, num_bits=4, factorized_bits=[2, 2], hidden_channels=32, channel_mult=[1, 2], num_res_blocks=1),
        _pixels,
        common_properties=["image_size", "num_tokens", "codebook_size"],
        flags=CONV_TOKENIZER_FLAGS, skips=TOKENIZER_SKIPS,
        # conv_in's output, then every ResNet block: encoder level 0, level 1, mid; decoder mid, level 1, level 0
        feature_maps=(7, (32, 8, 8)),
    ),
    "IBQModel": ModelCase(
        IBQConfig,
        dict(image_size=8, codebook_size=16, token_dim=4, z_channels=32, hidden_channels=32, channel_mult=[1, 2],
             num_res_blocks=1),
        _pixels,
        common_properties=["image_size", "num_tokens", "codebook_size"],
        flags=CONV_TOKENIZER_FLAGS, skips=TOKENIZER_SKIPS,
        # conv_in's output, then 2 encoder levels and 2 decoder levels
        feature_maps=(5, (32, 8, 8)),
    ),
    "TokenFlowModel": ModelCase(
        TokenFlowConfig,
        dict(image_size=32, codebook_size=16, semantic_code_dim=4, pixel_code_dim=4, patch_nums=[1, 2, 4],
             # the sub-config as it serialises (ConfigTester compares the JSON with the inputs)
             semantic_encoder_config={k: v for k, v in json.loads(CLIPVisionConfig(
                 hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                 patch_size=8).to_json_string(use_diff=False)).items() if k != "transformers_version"},
             semantic_decoder_hidden_size=32, semantic_decoder_num_layers=1, semantic_decoder_num_heads=2,
             semantic_decoder_grid=4, semantic_feature_dim=8, pixel_channels=32, pixel_channel_mult=[1, 1, 1, 2],
             pixel_num_res_blocks=1, pixel_z_channels=32, decoder_channels=32, decoder_num_res_blocks=1),
        _pixels,
        # hidden states and attentions are the semantic CLIP tower's: its input then its one layer's output,
        # [class + 4x4 patches, 32]
        num_hidden_layers=1, seq_length=17, hidden_size=32, num_attention_heads=2,
        common_properties=["codebook_size", "patch_nums", "embed_dim"],
        flags={"is_training": False, "test_resize_embeddings": False}, skips=TOKENIZER_SKIPS,
    ),
    "TokenFlowT2IForCausalLM": ModelCase(
        TokenFlowT2IConfig,
        dict(vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, codebook_size=16, image_token_start=24, patch_nums=[1, 2], code_dim=6,
             prompt_length=4, pad_token_id=0, bos_token_id=1, image_start_token_id=2),
        # the prompt (no pads: text ids 3..23) ending with <img>, then the inputs of scale 1 (2x2)
        lambda config, g: {"input_ids": torch.cat([torch.randint(3, 24, (BATCH, 4), generator=g),
                                                   torch.full((BATCH, 1), 2)], dim=1),
                           "image_inputs": torch.randn(BATCH, 4, config.code_dim, generator=g)},
        # the codes of scales 0 and 1
        lambda config, inputs: {"labels": torch.randint(0, config.codebook_size, (BATCH, 5),
                                                        generator=torch.Generator().manual_seed(1))},
        num_hidden_layers=2, seq_length=9, hidden_size=32, num_attention_heads=4,
        common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers", "codebook_size"],
        # images come from TokenFlowTextToImagePipeline's next-scale sampler, not from GenerationMixin.generate
        flags={"is_training": True, "additional_model_inputs": ["image_inputs"], "all_generative_model_classes": ()},
    ),
    "LlamaGenTransformer": ModelCase(
        LlamaGenConfig,
        dict(codebook_size=32, num_tokens=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, num_classes=5, token_dropout=0.0, residual_dropout=0.0, ffn_dropout=0.0),
        lambda config, g: {"input_ids": _ids(config, g, config.num_tokens - 1),
                           "class_labels": torch.randint(0, config.num_classes, (BATCH,), generator=g)},
        _labels_same_as_ids,
        num_hidden_layers=2, seq_length=16, hidden_size=32, num_attention_heads=4,
        common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers", "codebook_size"],
        # the condition is an input of its own (transformers' multi-input models list theirs the same way)
        flags={"is_training": True, "additional_model_inputs": ["class_labels"]},
    ),
    "OpenMagvit2ARTransformer": ModelCase(
        OpenMagvit2ARConfig,
        dict(factorized_bits=[2, 3], num_tokens=16, hidden_size=32, num_hidden_layers=2, num_factorized_layers=1,
             num_attention_heads=4, num_key_value_heads=2, intermediate_size=64, num_classes=5, token_dropout=0.0,
             residual_dropout=0.0, ffn_dropout=0.0),
        lambda config, g: {"input_ids": _ids(config, g),
                           "class_labels": torch.randint(0, config.num_classes, (BATCH,), generator=g)},
        _labels_same_as_ids,
        # the spatial layers over [class, tokens 0..n-2] (the factorized layers run per position over two sub-tokens)
        num_hidden_layers=2, seq_length=16, hidden_size=32, num_attention_heads=4,
        common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers", "codebook_size"],
        # the vocabulary is factorized: two sub-token embedding tables and heads sized by factorized_bits, which
        # resize_token_embeddings (one table, one head) cannot resize consistently
        flags={"is_training": True, "additional_model_inputs": ["class_labels"], "test_resize_embeddings": False},
    ),
    "IBQARTransformer": ModelCase(
        IBQARConfig,
        dict(codebook_size=32, num_tokens=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, intermediate_size=64, num_classes=5, token_dropout=0.0, residual_dropout=0.0,
             ffn_dropout=0.0),
        lambda config, g: {"input_ids": _ids(config, g, config.num_tokens - 1),
                           "class_labels": torch.randint(0, config.num_classes, (BATCH,), generator=g)},
        _labels_same_as_ids,
        num_hidden_layers=2, seq_length=16, hidden_size=32, num_attention_heads=4,
        common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers", "codebook_size"],
        flags={"is_training": True, "additional_model_inputs": ["class_labels"]},
    ),
    "MaskGITTransformer": ModelCase(
        MaskGITConfig,
        dict(codebook_size=32, num_tokens=8, num_classes=5, hidden_size=32, num_hidden_layers=2,
             num_attention_heads=2, intermediate_size=64, hidden_dropout=0.0, attention_dropout=0.0),
        lambda config, g: {"input_ids": _ids(config, g),
                           "class_labels": torch.randint(0, config.num_classes, (BATCH,), generator=g)},
        _labels_same_as_ids,
        num_hidden_layers=2, seq_length=9, hidden_size=32, num_attention_heads=2,
        common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers", "codebook_size"],
        # the input vocabulary is [codes, mask token, classes, null class], sized by the tokenizer and
        # num_classes: resize_token_embeddings refuses (as transformers' models without a resizable vocabulary)
        flags={"is_training": True, "additional_model_inputs": ["class_labels"], "test_resize_embeddings": False},
    ),
    "MaskGenKLTransformer": ModelCase(
        MaskGenKLConfig,
        dict(token_dim=4, num_tokens=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, text_hidden_size=16,
             micro_condition_embed_dim=8, diffusion_head_width=16, diffusion_head_depth=2, num_train_timesteps=50,
             diffusion_batch_mul=1,
             sampling_defaults={"num_inference_steps": 4, "num_diffusion_steps": 5, "guidance_scale": 3.0,
                                "guidance_schedule": "linear", "temperature": 1.0, "aesthetic_score": 6.5}),
        lambda config, g: {"latents": torch.randn(BATCH, config.num_tokens, config.token_dim, generator=g),
                           "mask": torch.rand(BATCH, config.num_tokens, generator=g) < 0.5,
                           "encoder_hidden_states": torch.randn(BATCH, 5, config.text_hidden_size, generator=g),
                           "pooled_projections": torch.randn(BATCH, config.text_hidden_size, generator=g)},
        # the diffusion loss of the masked tokens against their clean latents
        lambda config, inputs: {"labels": inputs["latents"].clone()},
        # hidden states: the image stream after each joint block (the first is the embedded input), as MaskGen-VQ
        num_hidden_layers=2, seq_length=8, hidden_size=32, num_attention_heads=2,
        common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers", "token_dim"],
        flags={
            "is_training": True, "additional_model_inputs": ["mask", "encoder_hidden_states", "pooled_projections"],
            # continuous tokens: no vocabulary (as MAR); the input "embedding" is the latent projection
            "test_resize_embeddings": False,
            # diffusers' JointTransformerBlock attention returns no weights (as MaskGen-VQ, diffusers' SD3)
            "has_attentions": False,
        },
        skips={"test_model_get_set_embeddings": "continuous latents in: no token embedding (a Linear projects them, as MAR)"},
    ),
    "MaskGenVQTransformer": ModelCase(
        MaskGenVQConfig,
        dict(codebook_size=32, num_tokens=8, num_classes=5, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
             text_hidden_size=16, micro_condition_embed_dim=8),
        lambda config, g: {"input_ids": _ids(config, g),
                           "encoder_hidden_states": torch.randn(BATCH, 5, config.text_hidden_size, generator=g),
                           "pooled_projections": torch.randn(BATCH, config.text_hidden_size, generator=g)},
        _labels_same_as_ids,
        # hidden states: the image stream after each joint block (the first is the embedded input)
        num_hidden_layers=2, seq_length=8, hidden_size=32, num_attention_heads=2,
        common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers", "codebook_size"],
        flags={
            "is_training": True, "additional_model_inputs": ["encoder_hidden_states", "pooled_projections"],
            # the vocabulary is [codes, mask token, unused class rows], sized by the tokenizer (as MaskGIT)
            "test_resize_embeddings": False,
            # diffusers' JointTransformerBlock attention (as upstream) runs through diffusers' attention
            # processors, which return no attention weights (diffusers' SD3 transformer has none either)
            "has_attentions": False,
        },
    ),
    "VARTransformer": ModelCase(
        VARConfig,
        dict(codebook_size=16, z_channels=4, patch_nums=[1, 2], num_classes=5, depth=2, hidden_size=32,
             num_attention_heads=2),
        lambda config, g: {"class_labels": torch.randint(0, config.num_classes, (BATCH,), generator=g),
                           "inputs": torch.randn(BATCH, 4, config.z_channels, generator=g)},
        lambda config, inputs: {"labels": torch.randint(0, config.codebook_size, (BATCH, 5),
                                                        generator=torch.Generator().manual_seed(1))},
        num_hidden_layers=2, seq_length=5, hidden_size=32, num_attention_heads=2,
        common_properties=["hidden_size", "num_attention_heads", "codebook_size"],
        # the main input is a class label (null class last) and the head predicts codes: no vocabulary to resize
        flags={"is_training": True, "additional_model_inputs": ["inputs"], "test_resize_embeddings": False},
    ),
    "InstellaARModel": ModelCase(
        InstellaARConfig,
        dict(num_bits=8, num_tokens=6, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, text_hidden_size=16),
        # 4 bit vectors after the split token; the text: hidden states 1..2 of a text encoder over 3 tokens
        lambda config, g: {"input_bits": torch.randint(0, 2, (BATCH, 4, config.num_bits), generator=g).float(),
                           "text_hidden_states": torch.randn(BATCH, config.num_hidden_layers, 3, config.text_hidden_size, generator=g),
                           "text_attention_mask": torch.tensor([[1, 1, 1], [0, 1, 1]])},
        num_hidden_layers=2, seq_length=5, hidden_size=32, num_attention_heads=2, key_length=3 + 5,
        common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers"],
        # per-bit logits (a binary cross-entropy) have no loss in forward: vistok train refuses it (see the family),
        # and the bits arrive through a Linear (x_embedder): no token vocabulary to resize
        flags={"is_training": False, "additional_model_inputs": ["text_hidden_states", "text_attention_mask"],
               "test_resize_embeddings": False},
        skips={"test_model_get_set_embeddings": "the inputs are bit vectors embedded by a Linear (x_embedder) and the text "
                                                "arrives as features: no token embedding table"},
    ),
    "InstellaDiffusionModel": ModelCase(
        InstellaDiffusionConfig,
        dict(num_bits=8, num_tokens=6, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, text_hidden_size=16),
        # all 6 noisy bit vectors at a noise level per row; the text: hidden states 1..2 of a text encoder over 3 tokens
        lambda config, g: {"input_bits": torch.randint(0, 2, (BATCH, config.num_tokens, config.num_bits), generator=g).float(),
                           "timestep": torch.rand(BATCH, generator=g),
                           "text_hidden_states": torch.randn(BATCH, config.num_hidden_layers, 3, config.text_hidden_size, generator=g),
                           "text_attention_mask": torch.tensor([[1, 1, 1], [0, 1, 1]])},
        num_hidden_layers=2, seq_length=6, hidden_size=32, num_attention_heads=2, key_length=3 + 6,
        common_properties=["hidden_size", "num_attention_heads", "num_hidden_layers"],
        # per-bit flip logits of noised bits (the diffusion objective) have no loss in forward: vistok train refuses
        # it (see the family), and the bits arrive through a Linear (x_embedder): no token vocabulary to resize
        flags={"is_training": False, "additional_model_inputs": ["timestep", "text_hidden_states", "text_attention_mask"],
               "test_resize_embeddings": False},
        skips={"test_model_get_set_embeddings": "the inputs are bit vectors embedded by a Linear (x_embedder) and the text "
                                                "arrives as features: no token embedding table"},
    ),
    "STARTransformer": ModelCase(
        STARConfig,
        # per-sample cross-attention: the releases' default (every sample gets sample 0's cross-attention output, the
        # original's quirk) couples the rows of a batch, which the batching checks rightly reject
        dict(codebook_size=16, z_channels=4, patch_nums=[1, 2], depth=2, hidden_size=32, num_attention_heads=2,
             text_hidden_size=8, cross_attention_first_sample_only=False),
        lambda config, g: {"encoder_hidden_states": torch.randn(BATCH, 3, config.text_hidden_size, generator=g),
                           "pooled_text_embeds": torch.randn(BATCH, config.text_hidden_size, generator=g),
                           "inputs": torch.randn(BATCH, 4, config.z_channels, generator=g)},
        lambda config, inputs: {"labels": torch.randint(0, config.codebook_size, (BATCH, 5),
                                                        generator=torch.Generator().manual_seed(1))},
        num_hidden_layers=2, seq_length=5, hidden_size=32, num_attention_heads=2,
        common_properties=["hidden_size", "num_attention_heads", "codebook_size"],
        # the main input is the text features; the head predicts codes: no vocabulary to resize
        flags={"is_training": True, "additional_model_inputs": ["pooled_text_embeds", "inputs"], "test_resize_embeddings": False},
        skips={"test_model_get_set_embeddings": "the inputs are VQVAE codes embedded by a Linear (word_embed) and the text "
                                                "arrives as features: no token embedding table"},
    ),
}


class _Tester:
    """The ``model_tester`` the mixin talks to."""

    def __init__(self, parent, case: ModelCase):
        self.parent, self.case = parent, case
        self.batch_size = BATCH
        self.is_training = case.flags.get("is_training", True)
        self.num_hidden_layers = case.num_hidden_layers
        self.seq_length = case.seq_length
        self.hidden_size = case.hidden_size
        self.num_attention_heads = case.num_attention_heads
        if case.key_length is not None:
            self.key_length = case.key_length

    def get_config(self):
        return self.case.config_class(**self.case.config)

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        return config, self.case.inputs(config, torch.Generator().manual_seed(0))


class _Checks:
    """Counts what a mixin test did: ``self.assert*`` calls and models built. A test that passes having done
    neither (the mixin loops over classes it does not apply to, e.g. only sequence-classification heads) checked
    nothing: it is reported as skipped, not counted as a pass."""

    assertions = 0
    models = 0


def _counting_asserts():
    def wrap(name):
        original = getattr(unittest.TestCase, name)

        def counted(self, *args, **kwargs):
            _Checks.assertions += 1
            return original(self, *args, **kwargs)

        return counted

    return {name: wrap(name) for name in dir(unittest.TestCase)
            if name.startswith("assert") and callable(getattr(unittest.TestCase, name))}


def _has_bare_assert(test) -> bool:
    """A plain ``assert`` or ``raise`` in the test's source (not countable from outside): such a test is taken as
    checking."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(test))))
    except (OSError, TypeError, SyntaxError):
        return True
    return any(isinstance(node, (ast.Assert, ast.Raise)) for node in ast.walk(tree))


# transformers' run_test_using_subprocess: the parent process only launches the test in a child pytest
_SUBPROCESS_WRAPPER = run_test_using_subprocess(lambda: None).__code__


def _not_vacuous(test, model_class):
    if test.__code__ is _SUBPROCESS_WRAPPER or _has_bare_assert(test):
        return test  # judged where it runs (the child process) / by its own asserts

    def run(self, *args, **kwargs):
        _Checks.assertions = _Checks.models = 0
        original_post_init = model_class.post_init

        def post_init(model):
            _Checks.models += 1
            return original_post_init(model)

        with unittest.mock.patch.object(model_class, "post_init", post_init):
            result = test(self, *args, **kwargs)
        if _Checks.assertions == 0 and _Checks.models == 0:
            raise unittest.SkipTest(f"does not apply to {model_class.__name__}: the mixin's test checked nothing")
        return result

    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


def _make_test_class(name: str, model_class: type, case: ModelCase):
    flags = {k: v for k, v in case.flags.items() if k != "is_training"}

    def setUp(self):
        self.model_tester = _Tester(self, case)
        self.config_tester = ConfigTester(self, config_class=case.config_class, has_text_modality=False,
                                          common_properties=list(case.common_properties), **case.config)

    def test_config(self):
        self.config_tester.run_common_tests()

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        inputs = ModelTesterMixin._prepare_for_class(self, inputs_dict, model_class, return_labels)
        if return_labels and case.labels is not None:
            inputs.update(case.labels(self.model_tester.get_config(), inputs))
        return inputs

    body = dict(all_model_classes=(model_class,), setUp=setUp, test_config=test_config,
                _prepare_for_class=_prepare_for_class, **flags)
    if case.feature_maps is not None:
        count, first = case.feature_maps

        def test_hidden_states_output(self):
            config, inputs = self.model_tester.prepare_config_and_inputs_for_common()
            for output_hidden_states in ({"output_hidden_states": True}, {}):
                if not output_hidden_states:
                    config.output_hidden_states = True  # the config default, as the mixin checks too
                model = model_class(config).eval()
                with torch.no_grad():
                    states = model(**inputs, **output_hidden_states).hidden_states
                self.assertEqual(len(states), count)
                self.assertEqual(list(states[0].shape), [BATCH, *first])
                self.assertTrue(all(s.ndim == 4 and s.shape[0] == BATCH for s in states))

        body["test_hidden_states_output"] = test_hidden_states_output
    body.update(_counting_asserts())
    for test_name in dir(ModelTesterMixin):
        if test_name.startswith("test_") and callable(getattr(ModelTesterMixin, test_name)):
            body[test_name] = _not_vacuous(body.get(test_name, getattr(ModelTesterMixin, test_name)), model_class)
    for test_name, reason in case.skips.items():
        body[test_name] = unittest.skip(reason)(lambda self: None)
    return type(f"Test{name}Conformance", (ModelTesterMixin, unittest.TestCase), body)


for _name, _case in CASES.items():
    _class_name = _name.split("/")[0]
    _model_class = next(spec.model_class for fam in families() for spec in (*fam.tokenizers, *fam.generators)
                        if spec.model_class.__name__ == _class_name)
    _test_name = _name.replace("/", "_")
    globals()[f"Test{_test_name}Conformance"] = _make_test_class(_test_name, _model_class, _case)


def test_every_model_class_has_a_case():
    registered = {spec.model_class.__name__ for fam in families() for spec in (*fam.tokenizers, *fam.generators)}
    assert registered == {name.split("/")[0] for name in CASES}, f"add a ModelCase for {sorted(registered - set(CASES))}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_auto_model_loads_with_dtype_and_device_map(name, tmp_path):
    """``AutoModel.from_pretrained(folder, dtype=..., device_map=...)`` gives the class back in that dtype, and it runs."""
    from transformers import AutoModel

    case = CASES[name]
    config = case.config_class(**case.config)
    model_class = next(spec.model_class for fam in families() for spec in (*fam.tokenizers, *fam.generators)
                       if spec.model_class.__name__ == name.split("/")[0])
    model_class(config).save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path, dtype=torch.bfloat16, device_map="cpu").eval()
    assert type(loaded) is model_class and loaded.dtype == torch.bfloat16 and loaded.device.type == "cpu"
    inputs = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v)
              for k, v in case.inputs(config, torch.Generator().manual_seed(0)).items()}
    with torch.no_grad():
        first = loaded(**inputs)[0]
    assert torch.isfinite(first.float()).all()
