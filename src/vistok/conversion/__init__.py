"""What every converter shares (the converters themselves live in their family folders,
``vistok/modeling/<family>/convert_<family>.py``, listed by the family descriptors)."""

from .common import (
    ConversionError,
    Original,
    Release,
    card_repo_id,
    check_state_dict,
    choose_release,
    converted_config,
    count_numbered,
    find_checkpoint,
    grid_num_tokens,
    hub_base,
    load_config_file,
    load_converted,
    load_model_folder,
    load_state_dict,
    numbered,
    read_original,
    release_image_size,
    rename_key,
    write_model_folder,
)
from .llama import llama_block_renames, llama_heads

__all__ = ["ConversionError", "Original", "Release", "card_repo_id", "check_state_dict", "choose_release", "converted_config", "count_numbered",
           "find_checkpoint", "grid_num_tokens", "hub_base", "llama_block_renames", "llama_heads", "load_config_file", "load_converted",
           "load_model_folder", "load_state_dict", "numbered", "read_original", "release_image_size", "rename_key", "write_model_folder"]
