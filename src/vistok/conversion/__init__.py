"""Converters: original release checkpoint -> vistok ``save_pretrained`` folder with processor and card."""

from .common import ConversionError
from .llamagen import GPT_RELEASES as LLAMAGEN_GPT_RELEASES
from .llamagen import VQ_RELEASES as LLAMAGEN_VQ_RELEASES
from .llamagen import convert_gpt as convert_llamagen_gpt
from .llamagen import convert_vq as convert_llamagen_vq
from .maskgit import GENERATOR_HUB_IDS
from .maskgit import convert as convert_maskgit
from .titok import PRESETS as TITOK_PRESETS
from .titok import convert as convert_titok
from .var import VAE_PRESETS as VAR_VAE_PRESETS
from .var import VAR_PRESETS
from .var import convert as convert_var
from .var import convert_vae as convert_var_vae


def _presets(hub_ids: dict) -> dict:
    return {name: type("Preset", (), {"hub_id": hub})() for name, hub in hub_ids.items()}


# command-line family -> (convert(source, output, **options), {preset name: object with .hub_id}, kind);
# a convert function with a ``cli_options`` list [(flag, argparse kwargs)] gets those flags instead of TiTok's
CONVERTERS = {
    "titok": (lambda *a, **k: convert_titok("titok", *a, **k), TITOK_PRESETS["titok"], "tokenizer"),
    "one-d-piece": (lambda *a, **k: convert_titok("one-d-piece", *a, **k), TITOK_PRESETS["one-d-piece"], "tokenizer"),
    "titok-maskgit": (lambda *a, **k: convert_maskgit("titok", *a, **k),
                      _presets({k: v for k, v in GENERATOR_HUB_IDS.items() if k.startswith("titok")}), "generator"),
    "one-d-piece-maskgit": (lambda *a, **k: convert_maskgit("one-d-piece", *a, **k),
                            _presets({k: v for k, v in GENERATOR_HUB_IDS.items() if k.startswith("one-d-piece")}), "generator"),
    "llamagen-vq": (convert_llamagen_vq, LLAMAGEN_VQ_RELEASES, "tokenizer"),
    "llamagen-gpt": (convert_llamagen_gpt, LLAMAGEN_GPT_RELEASES, "generator"),
    "var-vae": (convert_var_vae, VAR_VAE_PRESETS, "tokenizer"),
    "var": (convert_var, VAR_PRESETS, "generator"),
}

__all__ = ["CONVERTERS", "ConversionError", "convert_titok", "convert_maskgit", "convert_llamagen_vq", "convert_llamagen_gpt",
           "convert_var", "convert_var_vae"]
