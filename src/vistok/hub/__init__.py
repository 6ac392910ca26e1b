"""Hub helpers: model cards rendered from the family templates, and publishing vistok tokenizers and
pipelines (safetensors only; the upload itself lives in :mod:`vistok.utils.hub`)."""

from ..utils.hub import default_model_card, push_folder, push_pipeline_to_hub, push_tokenizer_to_hub, validate_folder

__all__ = ["default_model_card", "push_folder", "push_pipeline_to_hub", "push_tokenizer_to_hub", "validate_folder"]
