"""Converters: original release checkpoint -> vistok ``save_pretrained`` folder with processor and card."""

from .common import ConversionError
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


# command-line family -> (convert(source, output, **options), {preset name: object with .hub_id}, kind
#                         [, [(flag, argparse kwargs), ...]: the family's own flags, replacing the kind's])
CONVERTERS = {
    "titok": (lambda *a, **k: convert_titok("titok", *a, **k), TITOK_PRESETS["titok"], "tokenizer"),
    "one-d-piece": (lambda *a, **k: convert_titok("one-d-piece", *a, **k), TITOK_PRESETS["one-d-piece"], "tokenizer"),
    "titok-maskgit": (lambda *a, **k: convert_maskgit("titok", *a, **k),
                      _presets({k: v for k, v in GENERATOR_HUB_IDS.items() if k.startswith("titok")}), "generator"),
    "one-d-piece-maskgit": (lambda *a, **k: convert_maskgit("one-d-piece", *a, **k),
                            _presets({k: v for k, v in GENERATOR_HUB_IDS.items() if k.startswith("one-d-piece")}), "generator"),
    "var-vae": (convert_var_vae, VAR_VAE_PRESETS, "tokenizer", [
        ("--patch-nums", dict(metavar="PN", help="the token-map side of each scale, coarse to fine, e.g. 1,2,3,4,5,6,8,10,13,16 "
                              "(256 px, the default) or 1,2,3,4,6,9,13,18,24,32 (512 px); a preset sets it"))]),
    "var": (convert_var, VAR_PRESETS, "generator", [
        ("--tokenizer", dict(required=True, metavar="SRC", help="the VQVAE: a converted vistok var-vae folder, or the original "
                             "vae_ch160v4096z32.pth (converted on the way with the generator's scales)"))]),
}

__all__ = ["CONVERTERS", "ConversionError", "convert_titok", "convert_maskgit", "convert_var", "convert_var_vae"]
