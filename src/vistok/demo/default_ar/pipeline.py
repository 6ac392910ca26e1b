"""Where this folder's pipeline class lives (written by vistok)."""
from vistok.pipelines import AutoregressiveImagePipeline  # noqa: F401
