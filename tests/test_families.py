"""The family descriptors: every family folder is found, and everything outside the folders is built from them."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import vistok
from vistok import families as registry
from vistok.cli import main as cli_main

SRC = Path(vistok.__file__).parent
FAMILY_FOLDERS = sorted(p.name for p in (SRC / "modeling").iterdir() if (p / "__init__.py").is_file()
                        and p.name not in ("layers", "quantizers"))


def test_every_family_folder_exports_a_descriptor():
    found = {f.name for f in registry.families()}
    assert len(registry.families()) == len(FAMILY_FOLDERS) == len(found)
    names = [spec.name for f in registry.families() for spec in f.models]
    assert len(names) == len(set(names)), "model names are unique across families"
    converters = registry.converter_specs()
    for family in registry.families():
        for spec in family.models:
            # one spelling: the model's name is its card template's name and (where it converts) its converter's
            assert (SRC / "model_cards" / f"{spec.name}.md").is_file(), spec.name
            assert spec.name in converters, spec.name
        for spec in family.generators:
            assert spec.pipeline_class().__name__ == spec.pipeline
            assert spec.token_layouts


def test_auto_classes_and_public_names_come_from_the_descriptors():
    from transformers import AutoConfig, AutoModel

    for family in registry.families():
        for spec in family.models:
            assert getattr(vistok, spec.model_class.__name__) is spec.model_class
            config = AutoConfig.for_model(spec.config_class.model_type)
            assert type(config) is spec.config_class
            assert AutoModel._model_mapping[spec.config_class] is spec.model_class


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found += [module] + [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return found


def test_no_module_outside_a_family_folder_imports_it():
    """Code outside ``modeling/<family>/`` reaches a family only through the descriptors. The one exception is a
    variant built on another family's classes (One-D-Piece is legacy TiTok trained with tail-token drop; GigaTok's
    GPTs are LlamaGen's transformer with learned positions, converted by the gigatok family)."""
    # STAR: VAR's transformer and VQVAE made text-conditional; TokenFlow: its pixel branch is LlamaGen's VQ
    # encoder/decoder, converted with LlamaGen's key map; MaskGen: text-to-image MaskGIT (its masking objective and
    # its converter's tokenizer loading)
    variants = {"one_d_piece": {"titok"}, "gigatok": {"llamagen"}, "star": {"var"}, "tokenflow": {"llamagen"},
                "maskgen": {"maskgit"}}
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).parts
        own = parts[1] if parts[0] == "modeling" and len(parts) > 2 else None
        for module in _imported_modules(path):
            for family in FAMILY_FOLDERS:
                if family != own and module.startswith(f"vistok.modeling.{family}") and family not in variants.get(own, ()):
                    offenders.append(f"{path.relative_to(SRC)} imports {module}")
    assert not offenders, "\n".join(offenders)


@pytest.fixture
def extra_family(tmp_path, monkeypatch):
    """A new family added as one folder: a toy 1D tokenizer with a converter and a card template."""
    import vistok.modeling

    folder = tmp_path / "toyfamily"
    folder.mkdir()
    (folder / "__init__.py").write_text(textwrap.dedent('''
        import torch
        from pathlib import Path
        from transformers import PreTrainedConfig, PreTrainedModel

        from vistok.conversion import card_repo_id, load_converted, read_original, write_model_folder
        from vistok.families import TOKENIZER, ConverterSpec, Family, TokenizerSpec


        class ToyConfig(PreTrainedConfig):
            model_type = "vistok_toy_family_test"

            def __init__(self, image_size=8, num_tokens=4, codebook_size=16, **kwargs):
                super().__init__(**kwargs)
                self.image_size, self.num_tokens, self.codebook_size = image_size, num_tokens, codebook_size
                self.pixel_range = [0.0, 1.0]


        class ToyModel(PreTrainedModel):
            config_class = ToyConfig

            def __init__(self, config):
                super().__init__(config)
                self.proj = torch.nn.Linear(3, config.codebook_size)
                self.post_init()


        def convert(source, output, *, preset=None, overwrite=False, push_to_hub=None, scale=None):
            original = read_original(source)
            model = load_converted(ToyModel, ToyConfig(), {"proj." + k: v * float(scale or 1) for k, v in original.items()},
                                   original=original)
            return write_model_folder(output, model, card="# toy", overwrite=overwrite, push_to_hub=push_to_hub)


        FAMILY = Family(name="toy", description="a toy family",
                        tokenizers=(TokenizerSpec("toy", ToyConfig, ToyModel),),
                        converters=(ConverterSpec("toy", TOKENIZER, convert, {}, (("--scale", dict(type=float)),), "toy"),))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(vistok.modeling, "__path__", [*vistok.modeling.__path__, str(tmp_path)])
    monkeypatch.setattr(registry, "_FAMILIES", None)
    yield
    sys.modules.pop("vistok.modeling.toyfamily", None)
    registry._FAMILIES = None


def test_a_new_family_is_one_folder(extra_family, tmp_path):
    from safetensors.torch import save_file
    from transformers import AutoModel

    assert "toy" in {f.name for f in registry.families()}
    registry.register_auto_classes()
    save_file({"weight": torch.ones(16, 3), "bias": torch.zeros(16)}, str(tmp_path / "toy.safetensors"))
    assert cli_main(["convert", "toy", "--original", str(tmp_path / "toy.safetensors"), "--output", str(tmp_path / "out"),
                     "--scale", "2"]) == 0
    model = AutoModel.from_pretrained(tmp_path / "out")
    assert type(model).__name__ == "ToyModel" and torch.equal(model.proj.weight, torch.full((16, 3), 2.0))
    assert (tmp_path / "out" / "preprocessor_config.json").is_file() and (tmp_path / "out" / "README.md").read_text() == "# toy"
