"""CPU benchmark for ``vistok tokenize`` at scale: images/s and peak RSS, sharded writer on 1 and 2 processes
against the previous single-process implementation (every row kept in Python lists, one ``save_to_disk`` at the
end; reproduced below as ``tokenize_in_memory``, the code vistok shipped before the sharded writer), in one run.

Data: a generated imagefolder of ``--sizes`` images (256 px smooth random gradients with noise, two classes; PNG).
Tokenizer: TiTok-S-128-shaped (ViT-S encoder/decoder, 128 tokens, 4096 x 12 codebook, 256 px; random weights:
no download) or, with ``--tokenizer tiny``, a small TiTok for a quick check.

Each configuration runs in a fresh process (torchrun for 2 processes): at the largest size the in-memory baseline
and the sharded writer on 1 process using every core, the sharded writer on 1 process with half the cores and on 2
processes with half the cores each (the scaling figure); at the smaller sizes only the first two (memory growth);
peak RSS is ``ru_maxrss`` of each process (the largest one is reported, and their sum for 2 processes);
images/s counts from the first encoded batch to the end (model loading and dataset indexing excluded the same way
for every configuration). The token ids of every configuration are compared with the in-memory baseline's.

    python benchmarks/bench_tokenize.py [--sizes 1000 5000] [--tokenizer s128|tiny] [--out benchmarks/results/tokenize_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine_info, versions  # noqa: E402

S128 = dict(image_size=256, patch_size=16, decoder_patch_size=16, num_tokens=128, codebook_size=4096, token_dim=12,
            encoder_hidden_size=512, encoder_num_layers=8, encoder_num_heads=8, decoder_hidden_size=512,
            decoder_num_layers=8, decoder_num_heads=8, is_legacy=False)
TINY = dict(image_size=64, patch_size=16, decoder_patch_size=16, num_tokens=128, codebook_size=1024, token_dim=12,
            encoder_hidden_size=128, encoder_num_layers=2, encoder_num_heads=4, decoder_hidden_size=128,
            decoder_num_layers=2, decoder_num_heads=4, is_legacy=False)


def make_images(root: Path, count: int, side: int = 256) -> Path:
    import numpy as np
    import PIL.Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        a, b, c = rng.random(3)
        image = np.stack([xx * a, yy * b, (1 - xx) * c], -1) + rng.normal(0, 0.02, (side, side, 3))
        PIL.Image.fromarray((image.clip(0, 1) * 255).astype(np.uint8)).save(root / "ab"[i % 2] / f"{i:06d}.png")
    return root


def tokenize_in_memory(tokenizer, dataset, output, *, label_column="label", batch_size=32):
    """The previous implementation (vistok before the sharded writer), kept as the benchmark's baseline."""
    import datasets
    import torch
    from transformers import AutoModel

    import vistok  # noqa: F401
    from vistok.data import ImageTransform, load_image_dataset

    with torch.no_grad():
        model = AutoModel.from_pretrained(tokenizer).eval()
        source = load_image_dataset(dataset, label_column=label_column)
        transform = ImageTransform(model.config.image_size, model.config.pixel_range, train=False)
        columns = {"token_ids": [], label_column: []}
        start = None
        for offset in range(0, len(source), batch_size):
            rows = source[offset:offset + batch_size]
            start = start or time.perf_counter()
            ids = model.encode(transform.pixels(rows["image"])).token_ids
            columns["token_ids"].extend(ids.reshape(ids.shape[0], -1).tolist())
            columns[label_column].extend(rows[label_column])
        features = datasets.Features({"token_ids": datasets.Sequence(datasets.Value("int32")),
                                      label_column: source.features[label_column]})
        datasets.Dataset.from_dict(columns, features=features).save_to_disk(output)
        return start


def child(mode: str, tokenizer: str, dataset: str, output: str, batch_size: int) -> None:
    """One configuration in this process; prints JSON with its timing and ru_maxrss."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    import vistok.data

    # peak RSS once the dataset is indexed (datasets' imagefolder index grows with the number of files), to tell that
    # growth apart from the tokenization's own
    after_load = {}
    load = vistok.data.load_image_dataset

    def load_and_measure(*args, **kwargs):
        dataset = load(*args, **kwargs)
        after_load.setdefault("max_rss_mib", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return dataset

    vistok.data.load_image_dataset = load_and_measure
    begin = time.perf_counter()
    if mode == "in_memory":
        first = tokenize_in_memory(tokenizer, dataset, output, batch_size=batch_size)
    else:
        from vistok.training import tokenize as tok

        first_batch = []
        import vistok.modeling.base as base

        encode = base.VisualTokenizerMixin.encode

        def first_encode(self, *args, **kwargs):  # the clock starts at the first encoded batch, as for the baseline
            if not first_batch:
                first_batch.append(time.perf_counter())
            return encode(self, *args, **kwargs)

        base.VisualTokenizerMixin.encode = first_encode
        tok.tokenize_dataset(tokenizer, dataset, output, label_column="label", batch_size=batch_size, shard_size=500)
        first = first_batch[0] if first_batch else begin
    end = time.perf_counter()
    rank = int(os.environ.get("RANK", 0))
    record = {"rank": rank, "seconds": end - first, "total_seconds": end - begin,
              "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "max_rss_mib_after_dataset_load": after_load.get("max_rss_mib")}
    # one file per rank: two ranks printing at once can interleave their lines on a shared stdout
    Path(f"{output}.rank{rank}.json").write_text(json.dumps(record))


def run(mode: str, processes: int, threads: int, tokenizer: str, dataset: Path, output: Path, batch_size: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    args = [__file__, "--child", mode, tokenizer, str(dataset), str(output), str(batch_size)]
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
               "--master_port", str(29600 + os.getpid() % 1000), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr[-2000:]}
    ranks = [json.loads(Path(f"{output}.rank{r}.json").read_text()) for r in range(processes)]
    return {"processes": processes, "threads_per_process": threads,
            "seconds": max(r["seconds"] for r in ranks),
            "peak_rss_mib_largest_process": round(max(r["max_rss_mib"] for r in ranks), 1),
            "peak_rss_mib_all_processes": round(sum(r["max_rss_mib"] for r in ranks), 1),
            # the tokenization's own peak: above the peak reached once the dataset was indexed
            "peak_rss_mib_above_dataset_index": round(max(r["max_rss_mib"] - (r["max_rss_mib_after_dataset_load"] or 0)
                                                          for r in ranks), 1),
            "peak_rss_mib_after_dataset_index": round(max(r["max_rss_mib_after_dataset_load"] or 0 for r in ranks), 1)}


def token_ids(output: Path) -> list:
    from vistok.data import load_image_dataset

    ds = load_image_dataset(output, image_column=None)
    if "index" in ds.column_names:
        return [ids for _, ids in sorted(zip(ds["index"], ds["token_ids"]))]
    return ds["token_ids"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--tokenizer", choices=["s128", "tiny"], default="s128")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results/tokenize_cpu.json")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, tokenizer, dataset, output, batch_size = args.child
        child(mode, tokenizer, dataset, output, int(batch_size))
        return

    import torch

    from vistok import TiTokConfig, TiTokModel

    results = {"benchmark": "vistok tokenize: sharded writer (1 and 2 processes) vs the in-memory implementation",
               "machine": machine_info(), "versions": versions("torch", "transformers", "datasets", "accelerate", "vistok"),
               "tokenizer": args.tokenizer, "config": S128 if args.tokenizer == "s128" else TINY,
               "batch_size": args.batch_size, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        config = S128 if args.tokenizer == "s128" else TINY
        TiTokModel(TiTokConfig(**config)).eval().save_pretrained(tmp / "tokenizer")
        for size in args.sizes:
            data = make_images(tmp / f"images{size}", size, side=config["image_size"])
            reference = None
            cores = os.cpu_count() or 2
            # 1 process on every core (what one user's machine gains), 1 process on one core and 2 processes on one
            # core each (the scaling figure: resources per process fixed, as with one GPU per process)
            configs = [("in_memory", 1, cores), ("sharded", 1, cores), ("sharded", 1, max(1, cores // 2)),
                       ("sharded", 2, max(1, cores // 2))]
            if size != max(args.sizes):  # the smaller size only shows how peak memory grows with the dataset
                configs = configs[:2]
            for mode, processes, threads in configs:
                out = tmp / f"out-{size}-{mode}-{processes}-{threads}"
                record = {"images": size, "mode": mode,
                          **run(mode, processes, threads, str(tmp / "tokenizer"), data, out, args.batch_size)}
                if "error" not in record:
                    record["images_per_s"] = round(size / record["seconds"], 2)
                    ids = token_ids(out)
                    reference = reference if reference is not None else ids
                    record["ids_equal_in_memory"] = ids == reference
                results["runs"].append(record)
                print(json.dumps(record), flush=True)
    by = {(r["images"], r["mode"], r.get("processes"), r.get("threads_per_process")): r
          for r in results["runs"] if "error" not in r}
    summary = {}
    cores = os.cpu_count() or 2
    for size in args.sizes:
        one, all_cores = by.get((size, "sharded", 1, max(1, cores // 2))), by.get((size, "sharded", 1, cores))
        two = by.get((size, "sharded", 2, max(1, cores // 2)))
        if one and two:
            summary[f"speedup_2_over_1_processes_same_threads_each_at_{size}"] = round(
                two["images_per_s"] / one["images_per_s"], 3)
        if all_cores and two:
            summary[f"speedup_2_processes_over_1_process_on_all_cores_at_{size}"] = round(
                two["images_per_s"] / all_cores["images_per_s"], 3)
    if len(args.sizes) >= 2:
        small, large = min(args.sizes), max(args.sizes)
        for mode in ("in_memory", "sharded"):
            a, b = by.get((small, mode, 1, cores)), by.get((large, mode, 1, cores))
            if a and b:
                summary[f"{mode}_peak_rss_growth_mib_{small}_to_{large}"] = round(
                    b["peak_rss_mib_largest_process"] - a["peak_rss_mib_largest_process"], 1)
                summary[f"{mode}_dataset_index_rss_growth_mib_{small}_to_{large}"] = round(
                    b["peak_rss_mib_after_dataset_index"] - a["peak_rss_mib_after_dataset_index"], 1)
                summary[f"{mode}_peak_rss_above_index_growth_mib_{small}_to_{large}"] = round(
                    b["peak_rss_mib_above_dataset_index"] - a["peak_rss_mib_above_dataset_index"], 1)
    results["summary"] = summary
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
