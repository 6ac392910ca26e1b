"""What every converter shares (the converters themselves live in their family folders,
``vistok/modeling/<family>/convert_<family>.py``, listed by the family descriptors)."""

from .common import (
    ConversionError,
    Original,
    Release,
    card_repo_id,
    check_state_dict,
    choose_release,
    find_checkpoint,
    load_config_file,
    load_converted,
    load_state_dict,
    read_original,
    rename_key,
    write_model_folder,
)

__all__ = ["ConversionError", "Original", "Release", "card_repo_id", "check_state_dict", "choose_release",
           "find_checkpoint", "load_config_file", "load_converted", "load_state_dict", "read_original", "rename_key",
           "write_model_folder"]
