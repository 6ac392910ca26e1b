"""``vistok tokenize``: the token ids of an image dataset, written as numbered parquet shards for generator training.

Scales out the way the rest of training does (accelerate / torchrun): every process encodes its own shards, images
are decoded in DataLoader workers, and each shard is written atomically as soon as it is done, so memory stays flat
as the dataset grows and a crash loses at most the shards in flight. ``manifest.json`` is written last (by the
main process, once every shard exists) and marks the folder complete; ``resume=True`` skips finished shards.

Map-style datasets are cut into shards of ``shard_size`` consecutive rows, ``shard-00000.parquet``, ... and
process ``r`` of ``N`` takes shards ``r, r + N, ...``: the output does not depend on the process count, and a run
can resume with another one. Streaming datasets are split by node (``split_dataset_by_node``) and each process
writes ``part-<rank>-<k>.parquet`` of ``shard_size`` rows of its stream; resuming them needs the same process count.
Each row keeps the label/caption columns and, for map-style data, ``index`` (the row in the source split).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

MANIFEST = "manifest.json"
FORMAT = "vistok-tokens/1"


def is_token_folder(path: Path) -> bool:
    """A folder written by ``vistok tokenize`` (complete: its manifest exists)."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return False
    try:
        return json.loads(manifest.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def load_token_folder(path: Path):
    """The shards of a ``vistok tokenize`` folder as one ``datasets.Dataset`` (features as written)."""
    import datasets

    manifest = json.loads((path / MANIFEST).read_text())
    files = [str(path / shard["file"]) for shard in manifest["shards"]]
    missing = [f for f in files if not os.path.isfile(f)]
    if missing:
        raise ValueError(f"{path} is missing shards {missing[:3]} listed in its {MANIFEST}: tokenize it again")
    features = datasets.Features.from_dict(manifest["features"])
    parts = [datasets.Dataset.from_parquet(f, features=features, keep_in_memory=False) for f in files]
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


class _Rows(torch.utils.data.Dataset):
    """Rows ``[start, stop)`` of a map-style dataset, decoded and transformed in DataLoader workers."""

    def __init__(self, source, start: int, stop: int, transform, keep: tuple[str, ...]):
        self.source, self.start, self.stop, self.transform, self.keep = source, start, stop, transform, keep

    def __len__(self):
        return self.stop - self.start

    def __getitem__(self, i):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices):  # a whole batch in one read (the DataLoader's batched fetch)
        rows = self.source[[self.start + i for i in indices]]
        pixels = self.transform.pixels(rows[self.transform.image_column])
        return [{"pixel_values": pixels[n], "index": self.start + i, **{name: rows[name][n] for name in self.keep}}
                for n, i in enumerate(indices)]


def _collate(examples: list[dict]) -> dict:
    return {key: (torch.stack([e[key] for e in examples]) if key == "pixel_values" else [e[key] for e in examples])
            for key in examples[0]}


def _write_shard(columns: dict, features, path: Path) -> int:
    """Write one shard atomically (a scratch file renamed into place): a reader never sees half a shard."""
    import datasets

    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(scratch))
        os.replace(scratch, path)
    finally:
        if scratch.exists():
            scratch.unlink()
    return len(columns["token_ids"])


@torch.no_grad()
def tokenize_dataset(tokenizer: str, dataset: str, output: str, *, split: str = "train", image_column: str = "image",
                     label_column: str | None = None, caption_column: str | None = None, batch_size: int = 32,
                     num_tokens: int | None = None, overwrite: bool = False, resume: bool = False,
                     streaming: bool = False, shard_size: int = 10000, num_workers: int = 0) -> Path:
    """Encode every image (the image processor's resize + center crop) into ``output`` (see the module docstring)."""
    import shutil

    import datasets
    from accelerate import PartialState
    from tqdm.auto import tqdm
    from transformers import AutoModel

    import vistok  # noqa: F401

    from ..data import ImageTransform, load_image_dataset
    from ..utils.io import OutputExistsError

    for name, value, low in (("batch_size", batch_size, 1), ("shard_size", shard_size, 1), ("num_workers", num_workers, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if overwrite and resume:
        raise ValueError("overwrite and resume exclude each other: overwrite starts again, resume keeps finished shards")
    # without a GPU, accelerate forms a multi-process (gloo) group under torchrun only when told cpu=True
    state = PartialState(cpu=not torch.cuda.is_available())
    out = Path(output).expanduser()
    if state.is_main_process:
        if out.exists() and not out.is_dir():
            raise OutputExistsError(f"{out} exists and is not a folder")
        if out.is_dir() and any(out.iterdir()):
            if overwrite:
                shutil.rmtree(out)
            elif not resume:
                hint = "it is complete" if (out / MANIFEST).is_file() else "it holds an unfinished run: pass resume=True (--resume)"
                raise OutputExistsError(f"{out} already exists and is not empty ({hint}); pass overwrite=True (--overwrite) to replace it")
            elif (out / MANIFEST).is_file():
                return out  # already complete
        out.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()

    model = AutoModel.from_pretrained(tokenizer).eval()
    if getattr(model.config, "token_layout", None) in (None, "continuous"):
        raise ValueError(f"{tokenizer} is not a discrete tokenizer (token_layout={getattr(model.config, 'token_layout', None)!r})")
    if num_tokens is not None:
        model.check_num_tokens(num_tokens)
    model.to(state.device)
    source = load_image_dataset(dataset, split=split, image_column=image_column, label_column=label_column,
                                caption_column=caption_column, streaming=streaming)
    transform = ImageTransform(model.config.image_size, model.config.pixel_range, train=False, image_column=image_column)
    keep = tuple(name for name in (label_column, caption_column) if name is not None)
    source_features = source.features
    if source_features is None and keep:  # (a stream whose features are unknown until read)
        raise ValueError(f"{dataset}: the streaming dataset does not declare the features of {list(keep)}; tokenize it map-style")
    features = datasets.Features({"token_ids": datasets.Sequence(datasets.Value("int32")),
                                  **({} if streaming else {"index": datasets.Value("int64")}),
                                  **{name: source_features[name] for name in keep}})

    def encode(batch) -> list[list[int]]:
        ids = model.encode(batch["pixel_values"].to(state.device), num_tokens=num_tokens).token_ids
        return ids.reshape(ids.shape[0], -1).to(torch.int32).tolist()

    written = []  # (file, rows) this process wrote or found finished
    if not streaming:
        num_shards = max(1, -(-len(source) // shard_size))
        mine = range(state.process_index, num_shards, state.num_processes)
        for k in tqdm(mine, desc=f"tokenize (process {state.process_index})", disable=not state.is_local_main_process):
            path = out / f"shard-{k:05d}.parquet"
            if path.is_file():  # finished before a crash: keep it
                continue
            start, stop = k * shard_size, min(len(source), (k + 1) * shard_size)
            loader = torch.utils.data.DataLoader(_Rows(source, start, stop, transform, keep), batch_size=batch_size,
                                                 num_workers=num_workers, collate_fn=_collate)
            columns = {name: [] for name in features}
            for batch in loader:
                columns["token_ids"].extend(encode(batch))
                columns["index"].extend(batch["index"])
                for name in keep:
                    columns[name].extend(batch[name])
            _write_shard(columns, features, path)
    else:
        from datasets.distributed import split_dataset_by_node

        stream = split_dataset_by_node(source, rank=state.process_index, world_size=state.num_processes)
        prefix = f"part-{state.process_index:05d}-"
        done = sorted(int(m[1]) for p in out.glob(f"{prefix}*.parquet") if (m := re.fullmatch(rf"{prefix}(\d+)\.parquet", p.name)))
        if done != list(range(len(done))):
            raise ValueError(f"{out}: the finished parts of process {state.process_index} are not consecutive ({done}); "
                             "tokenize again with overwrite")
        skip = len(done) * shard_size  # rows of this process's stream already written
        loader = torch.utils.data.DataLoader(
            stream.skip(skip).with_format(None).map(lambda row: {"pixel_values": transform.pixels([row[image_column]])[0]}),
            batch_size=batch_size, num_workers=num_workers,
            collate_fn=lambda rows: {"pixel_values": torch.stack([torch.as_tensor(r["pixel_values"]) for r in rows]),
                                     **{n: [r[n] for r in rows] for n in keep}})
        columns, k = {name: [] for name in features}, len(done)
        for batch in loader:
            columns["token_ids"].extend(encode(batch))
            for name in keep:
                columns[name].extend(batch[name])
            while len(columns["token_ids"]) >= shard_size:
                head = {name: values[:shard_size] for name, values in columns.items()}
                _write_shard(head, features, out / f"{prefix}{k:05d}.parquet")
                columns, k = {name: values[shard_size:] for name, values in columns.items()}, k + 1
        if columns["token_ids"] or k == 0:
            _write_shard(columns, features, out / f"{prefix}{k:05d}.parquet")

    state.wait_for_everyone()
    if state.is_main_process:
        import pyarrow.parquet as pq

        files = sorted(out.glob("shard-*.parquet") if not streaming else out.glob("part-*.parquet"))
        written = [{"file": f.name, "rows": pq.ParquetFile(f).metadata.num_rows} for f in files]
        manifest = {"format": FORMAT, "tokenizer": str(tokenizer), "dataset": str(dataset), "split": split,
                    "num_tokens": num_tokens, "token_layout": model.config.token_layout, "streaming": streaming,
                    "shard_size": shard_size, "num_processes": state.num_processes,
                    "rows": sum(s["rows"] for s in written), "shards": written, "features": features.to_dict()}
        scratch = out / f".{MANIFEST}.tmp"
        scratch.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(scratch, out / MANIFEST)
    state.wait_for_everyone()
    return out
