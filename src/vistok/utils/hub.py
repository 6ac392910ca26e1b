"""Publishing to the hub: upload a saved folder (safetensors only, validated first), and push a tokenizer
(with its image processor and card) or a pipeline. Depends on no model code, so the model and pipeline
base classes build their ``push_to_hub`` on it."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

# Pickle-based checkpoint formats: vistok publishes safetensors only.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
_PUSH_KWARGS = {"token", "private", "revision", "commit_message", "commit_description", "create_pr"}


def _uploaded_files(folder: Path) -> list[str]:
    """The relative paths ``upload_folder`` would send (it skips ``.git`` and the hub cache)."""
    from huggingface_hub.hf_api import DEFAULT_IGNORE_PATTERNS
    from huggingface_hub.utils import filter_repo_objects

    paths = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    return sorted(filter_repo_objects(paths, ignore_patterns=DEFAULT_IGNORE_PATTERNS))


def _check_repo_id(repo_id) -> None:
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError(f"repo_id must be a non-empty string like 'namespace/name', got {repo_id!r}")
    validate_repo_id(repo_id)  # HFValidationError is a ValueError


def validate_folder(folder) -> str:
    """Check that ``folder`` is a publishable vistok folder; return its kind, ``"model"`` or ``"pipeline"``.

    A model folder (``save_pretrained``) has ``config.json`` and ``model.safetensors`` (or a sharded
    ``model.safetensors.index.json``); a pipeline folder has ``model_index.json`` and one subfolder per
    component it lists. Pickled checkpoints (``.bin``, ``.pt``, ``.pkl``, ...) anywhere in it are refused.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a directory: expected a vistok save_pretrained or pipeline folder")
    files = _uploaded_files(folder)
    pickles = [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise ValueError(
            f"{folder} contains pickled checkpoint file(s) {pickles}: vistok publishes safetensors only "
            "(save with save_pretrained, or remove them)"
        )
    if (folder / "model_index.json").is_file():
        try:
            index = json.loads((folder / "model_index.json").read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{folder / 'model_index.json'} is not valid JSON: {err}") from None
        missing = [
            name for name, value in index.items()
            if not name.startswith("_") and isinstance(value, list) and len(value) == 2
            and value[0] is not None and not (folder / name).is_dir()
        ]
        if missing:
            raise ValueError(f"pipeline folder {folder} lacks the component folder(s) {missing} listed in model_index.json")
        return "pipeline"
    if not (folder / "config.json").is_file():
        raise ValueError(f"no config.json or model_index.json in {folder}: expected a save_pretrained or pipeline folder")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise ValueError(f"no model.safetensors (or model.safetensors.index.json) in {folder}")
    return "model"


def push_folder(
    folder,
    repo_id: str,
    *,
    token: str | bool | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    create_pr: bool = False,
) -> str:
    """Upload a vistok model or pipeline folder to the Hub repo ``repo_id`` (created if needed).

    The folder is validated first (see :func:`validate_folder`); nothing is created on the Hub when
    it is refused. ``revision`` names a branch, created from ``main`` if it does not exist yet (or an
    existing ``refs/pr/N``); ``create_pr=True`` opens a pull request against ``main`` instead.
    Returns the URL of the (last) commit.
    """
    from huggingface_hub import HfApi

    kind = validate_folder(folder)
    _check_repo_id(repo_id)
    if create_pr and revision not in (None, "main"):
        raise ValueError(f"create_pr=True opens a pull request against main: leave revision unset, got {revision!r}")
    api = HfApi()
    repo_url = api.create_repo(repo_id, token=token, private=private, exist_ok=True)
    repo_id = repo_url.repo_id
    if revision is not None and not create_pr and not revision.startswith("refs/"):
        api.create_branch(repo_id, branch=revision, token=token, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        token=token,
        revision=revision,
        commit_message=commit_message or f"Upload {kind} with vistok",
        commit_description=commit_description,
        create_pr=create_pr,
    )
    if info.pr_url:
        logger.info("opened pull request %s", info.pr_url)
    return str(info.commit_url)


def default_model_card(model, repo_id: str, tags=None) -> str:
    """A minimal card: vistok front matter and a usage snippet for ``AutoModel``/``AutoImageProcessor``."""
    config = model.config
    all_tags = ["vistok", "image-tokenization", config.model_type]
    all_tags += [t for t in (tags or []) if t not in all_tags]
    front = yaml.safe_dump({"library_name": "vistok", "tags": all_tags}, sort_keys=False)
    continuous = getattr(config, "token_layout", None) == "continuous"
    facts = [f"{config.image_size}x{config.image_size} images", f"{config.num_tokens} tokens"]
    if getattr(config, "codebook_size", None):
        facts.append(f"codebook of {config.codebook_size}")
    if continuous:
        roundtrip = "latents = tokenizer.encode(pixel_values).latents\nreconstruction = tokenizer.decode_latents(latents)"
    else:
        roundtrip = "token_ids = tokenizer.encode(pixel_values).token_ids\nreconstruction = tokenizer.decode(token_ids)"
    return (
        f"---\n{front}---\n\n"
        f"# {repo_id.split('/')[-1]}\n\n"
        f"A {'continuous' if continuous else 'discrete'} image tokenizer ({type(model).__name__}; "
        f"{', '.join(facts)}) for the `vistok` library.\n\n"
        "## Usage\n\n"
        "```python\n"
        "import vistok  # registers the vistok families with the Auto classes\n"
        "from PIL import Image\n"
        "from transformers import AutoImageProcessor, AutoModel\n\n"
        f'tokenizer = AutoModel.from_pretrained("{repo_id}")\n'
        f'processor = AutoImageProcessor.from_pretrained("{repo_id}")\n'
        'pixel_values = processor(images=[Image.open("image.png")], return_tensors="pt").pixel_values\n'
        f"{roundtrip}\n"
        'images = processor.postprocess(reconstruction, output_type="pil")\n'
        "```\n"
    )


def _add_tags(card_text: str, tags) -> str:
    if not tags:
        return card_text
    from huggingface_hub import ModelCard

    card = ModelCard(card_text)
    existing = list(card.data.tags or [])
    card.data.tags = existing + [t for t in tags if t not in existing]
    return str(card)


def push_tokenizer_to_hub(
    model,
    repo_id: str,
    *,
    image_processor=None,
    model_card=None,
    max_shard_size: int | str | None = "50GB",
    tags: list[str] | None = None,
    **push_kwargs,
) -> str:
    """Save ``model`` with its image processor and a README.md model card, and push them to ``repo_id``.

    image_processor: defaults to ``VistokImageProcessor.from_model_config(model.config)``.
    model_card: the README text (or a ``huggingface_hub.ModelCard``); default: the README.md of the local
        folder the model was loaded from, else a minimal vistok card.
    tags: extra tags added to the card's front matter.
    push_kwargs: ``token``, ``private``, ``revision``, ``commit_message``, ``commit_description``,
        ``create_pr`` (see :func:`push_folder`). Returns the commit URL.
    """
    config = getattr(model, "config", None)
    if not hasattr(model, "save_pretrained") or config is None:
        raise TypeError(f"model must be a vistok tokenizer (a PreTrainedModel), got {type(model).__name__}")
    if image_processor is not None and not hasattr(image_processor, "save_pretrained"):
        raise TypeError(f"image_processor must be an image processor with save_pretrained, got {type(image_processor).__name__}")
    if model_card is not None and not isinstance(model_card, str):
        if not hasattr(model_card, "content"):  # huggingface_hub RepoCard/ModelCard
            raise TypeError(f"model_card must be a str or a huggingface_hub ModelCard, got {type(model_card).__name__}")
        model_card = str(model_card)
    if isinstance(tags, str):
        tags = [tags]
    unknown = sorted(set(push_kwargs) - _PUSH_KWARGS)
    if unknown:
        raise TypeError(f"unexpected argument(s) {unknown}; push options are {sorted(_PUSH_KWARGS)}")
    _check_repo_id(repo_id)
    if push_kwargs.get("commit_message") is None:
        push_kwargs["commit_message"] = f"Upload {type(model).__name__}"

    if image_processor is None:
        from ..image_processing import VistokImageProcessor

        image_processor = VistokImageProcessor.from_model_config(config)
    model_card = _resolve_card(model, model_card, tags, lambda: default_model_card(model, repo_id, tags))

    with tempfile.TemporaryDirectory(prefix="vistok-push-") as tmp:
        model.save_pretrained(tmp, max_shard_size=max_shard_size)
        image_processor.save_pretrained(tmp)
        Path(tmp, "README.md").write_text(model_card, encoding="utf-8")
        return push_folder(tmp, repo_id, **push_kwargs)


def _resolve_card(obj, model_card, tags, default) -> str:
    """The card to upload: the given text, else the README.md of the local folder ``obj`` was loaded
    from, else ``default()``; ``tags`` are merged into its front matter."""
    if model_card is not None:
        return _add_tags(model_card, tags)
    source = getattr(obj, "name_or_path", "") or ""
    readme = Path(source) / "README.md" if source and os.path.isdir(source) else None
    if readme is not None and readme.is_file():
        return _add_tags(readme.read_text(encoding="utf-8"), tags)
    return default()


def push_pipeline_to_hub(pipeline, repo_id: str, *, model_card=None, tags: list[str] | None = None, **push_kwargs) -> str:
    """Save a vistok diffusers pipeline (all components, safetensors) with its card and push it."""
    unknown = sorted(set(push_kwargs) - _PUSH_KWARGS)
    if unknown:
        raise TypeError(f"unexpected argument(s) {unknown}; push options are {sorted(_PUSH_KWARGS)}")
    _check_repo_id(repo_id)
    push_kwargs.setdefault("commit_message", None)
    if push_kwargs["commit_message"] is None:
        push_kwargs["commit_message"] = f"Upload {type(pipeline).__name__}"
    all_tags = ["vistok", "image-generation"] + [t for t in (tags or []) if t not in ("vistok", "image-generation")]
    front = yaml.safe_dump({"library_name": "vistok", "pipeline_tag": "unconditional-image-generation", "tags": all_tags}, sort_keys=False)
    usage = (f"```python\nimport vistok\nfrom vistok import {type(pipeline).__name__}\n\n"
             f'pipe = {type(pipeline).__name__}.from_pretrained("{repo_id}")\nimages = pipe(class_labels=[0]).images\n```\n')
    card = _resolve_card(pipeline, model_card, tags,
                         lambda: f"---\n{front}---\n\n# {repo_id.split('/')[-1]}\n\nA vistok {type(pipeline).__name__}.\n\n{usage}")
    with tempfile.TemporaryDirectory(prefix="vistok-push-") as tmp:
        pipeline.save_pretrained(tmp)
        Path(tmp, "README.md").write_text(card, encoding="utf-8")
        return push_folder(tmp, repo_id, **push_kwargs)
