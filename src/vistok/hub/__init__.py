"""Hub helpers: publish vistok tokenizers and pipelines (safetensors only)."""

from .push import default_model_card, push_folder, push_pipeline_to_hub, push_tokenizer_to_hub, validate_folder

__all__ = ["default_model_card", "push_folder", "push_pipeline_to_hub", "push_tokenizer_to_hub", "validate_folder"]
