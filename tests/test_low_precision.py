"""bf16 against fp32, per model class (the same weights): how far the outputs move, bounded by the arithmetic.

bf16 keeps 8 significant bits: one rounding moves a value by at most u = 2^-8 relative. A network of D layers
that each round their output once or twice (a matmul or conv, then the residual/normalisation output) moves its
output by at most about 2·D·u relative when the layers are well conditioned (random tiny networks are): the bound
below is ``2 * (D + 1) * u``, with D counted per model (transformer blocks; conv layers of a decoder). Token ids are
compared on the decoding from the SAME ids, so a near-tie that flips one code does not count as decoder error;
the fraction of ids that flip is reported by the assertion message when the bound fails.
"""

from __future__ import annotations

import pytest
import torch

from test_conformance_models import CASES
from vistok.families import families

U_BF16 = 2.0 ** -8
MODEL_CLASSES = {spec.model_class.__name__: spec.model_class for fam in families() for spec in (*fam.tokenizers, *fam.generators)}
# a second configuration of a class is a case named "Class/variant"
MODEL_CLASSES.update({name: MODEL_CLASSES[name.split("/")[0]] for name in CASES if "/" in name})


def _depth(model) -> int:
    """Layers whose outputs bf16 rounds on the way to the compared output."""
    blocks = [m for m in model.modules() if type(m).__name__.endswith(("Block", "Layer", "DecoderLayer"))
              and not isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm))]
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    return len(blocks) if blocks else len(convs)


def _pair(name):
    case = CASES[name]
    config = case.config_class(**case.config)
    torch.manual_seed(0)
    model = MODEL_CLASSES[name](config).eval()
    with torch.no_grad():  # zero-initialised output heads give identically zero logits (nothing to compare): random
        for param in model.parameters():  # values, as a trained head has
            if param.ndim >= 2 and not param.any():
                param.normal_(std=0.02)
    low = MODEL_CLASSES[name](config).eval()
    low.load_state_dict(model.state_dict())
    return case, config, model, low.to(torch.bfloat16)


def _logits(output) -> list[torch.Tensor]:
    """The output's logits: ``logits``, or one field per sub-token (``logits_pre`` / ``logits_post``); a generator of
    continuous tokens (MaskGen-KL) has none and is compared on what its head reads (``last_hidden_state``)."""
    logits = [value for key, value in output.items() if key.startswith("logits")]
    return logits or [output["last_hidden_state"]]


def _relative(reference: torch.Tensor, other: torch.Tensor) -> float:
    reference, other = reference.double(), other.double()
    return float((reference - other).norm() / reference.norm())


@pytest.mark.parametrize("name", sorted(n for n in CASES if hasattr(MODEL_CLASSES[n], "decode")))
def test_tokenizer_bf16_decodes_within_the_rounding_bound(name):
    case, config, model, low = _pair(name)
    inputs = case.inputs(config, torch.Generator().manual_seed(0))
    decode_kwargs = {k: v for k, v in inputs.items() if k != "pixel_values"}  # e.g. a sampling decoder's noise, TA-TiTok's text
    with torch.no_grad():
        encoded = model.encode(inputs["pixel_values"])
        encoded_low = low.encode(inputs["pixel_values"].to(torch.bfloat16))
        reference = model.decode(encoded.token_ids, **decode_kwargs)
        decoded = low.decode(encoded.token_ids, **decode_kwargs)
    assert decoded.dtype == torch.bfloat16 and torch.isfinite(decoded.float()).all()
    bound = 2 * (_depth(low) + 1) * U_BF16
    flipped = float((encoded.token_ids != encoded_low.token_ids).float().mean())
    error = _relative(reference, decoded.float())
    assert error <= bound, f"{name}: bf16 decode moved {error:.4f} relative (bound {bound:.4f}); ids flipped: {flipped:.3f}"


@pytest.mark.parametrize("name", sorted(n for n in CASES if not hasattr(MODEL_CLASSES[n], "decode")))
def test_generator_bf16_logits_within_the_rounding_bound(name):
    case, config, model, low = _pair(name)
    inputs = case.inputs(config, torch.Generator().manual_seed(0))
    low_inputs = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in inputs.items()}
    with torch.no_grad():
        references, lows = _logits(model(**inputs)), _logits(low(**low_inputs))
    bound = 2 * (_depth(low) + 1) * U_BF16
    agree = sum(float((r.argmax(-1) == lo.argmax(-1)).float().mean()) for r, lo in zip(references, lows)) / max(len(lows), 1)
    reference, logits = torch.cat([r.flatten() for r in references]), torch.cat([lo.flatten() for lo in lows])
    error = _relative(reference, logits.float())
    assert len(references) and torch.isfinite(logits.float()).all()
    assert error <= bound, f"{name}: bf16 logits moved {error:.4f} relative (bound {bound:.4f}); argmax agreement {agree:.3f}"
