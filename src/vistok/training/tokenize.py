"""``vistok tokenize``: the token ids of an image dataset, saved as a dataset for generator training."""

from __future__ import annotations

from pathlib import Path

import torch


@torch.no_grad()
def tokenize_dataset(tokenizer: str, dataset: str, output: str, *, split: str = "train", image_column: str = "image",
                     label_column: str | None = None, caption_column: str | None = None, batch_size: int = 32,
                     num_tokens: int | None = None, overwrite: bool = False) -> Path:
    """Encode every image (eval transform: resize + center crop) and ``save_to_disk`` a dataset with
    ``token_ids`` plus the label/caption columns, written to a scratch folder renamed into place."""
    import datasets
    from tqdm.auto import tqdm
    from transformers import AutoModel

    import vistok  # noqa: F401

    from ..utils.io import atomic_output_dir
    from ..data import ImageTransform, load_image_dataset

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model = AutoModel.from_pretrained(tokenizer).eval()
    if getattr(model.config, "token_layout", None) in (None, "continuous"):
        raise ValueError(f"{tokenizer} is not a discrete tokenizer (token_layout={getattr(model.config, 'token_layout', None)!r})")
    if num_tokens is not None:
        model.check_num_tokens(num_tokens)
    source = load_image_dataset(dataset, split=split, image_column=image_column, label_column=label_column,
                                caption_column=caption_column)
    transform = ImageTransform(model.config.image_size, model.config.pixel_range, train=False, image_column=image_column)
    columns: dict[str, list] = {"token_ids": []}
    for name in (label_column, caption_column):
        if name is not None:
            columns[name] = []
    for start in tqdm(range(0, len(source), batch_size), desc="tokenize"):
        rows = source[start:start + batch_size]
        ids = model.encode(transform.pixels(rows[image_column]), num_tokens=num_tokens).token_ids
        columns["token_ids"].extend(ids.reshape(ids.shape[0], -1).tolist())
        for name in columns:
            if name != "token_ids":
                columns[name].extend(rows[name])
    features = datasets.Features({"token_ids": datasets.Sequence(datasets.Value("int32")),
                                  **{name: source.features[name] for name in columns if name != "token_ids"}})
    result = datasets.Dataset.from_dict(columns, features=features)
    with atomic_output_dir(output, overwrite=overwrite) as scratch:
        result.save_to_disk(str(scratch))
    return Path(output)
