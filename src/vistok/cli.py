"""The ``vistok`` command line."""

from __future__ import annotations

import argparse
import sys


def _convert_parser(sub) -> None:
    from .conversion import CONVERTERS

    convert = sub.add_parser("convert", help="convert an original checkpoint to a vistok folder")
    families = convert.add_subparsers(dest="family", required=True, metavar="FAMILY")
    for family, (_, presets, kind, *extra) in CONVERTERS.items():
        lines = "\n".join(f"  {name:<22} {p.hub_id}" for name, p in presets.items())
        parser = families.add_parser(
            family,
            help=f"{family.replace('-maskgit', '')} {kind}" + (" -> a pipeline folder (tokenizer + generator)" if kind == "generator" else ""),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            description=f"Convert a {family} tokenizer checkpoint. Architecture is inferred from the checkpoint's "
            "shapes; the original config supplies the rest.",
            epilog=f"release presets (--preset):\n{lines}",
        )
        parser.add_argument("--original", required=True, metavar="SRC",
                            help="original release folder (config.json + model.safetensors), a .bin/.safetensors "
                            "file (with --config or --preset), or a hub repo id")
        parser.add_argument("--output", required=True, metavar="DIR", help="folder to write (must not exist or be empty)")
        parser.add_argument("--config", metavar="YAML", help="the original config (YAML/JSON) for a bare checkpoint file")
        parser.add_argument("--preset", choices=sorted(presets), help="a released checkpoint's settings and card data")
        if extra:  # the family's own flags: [(flag, argparse keyword arguments), ...]
            for flag, spec in extra[0]:
                parser.add_argument(flag, **spec)
        elif kind == "tokenizer":
            parser.add_argument("--pixel-decoder", metavar="BIN",
                                help="maskgit-vqgan-imagenet-f16-256.bin, for stage-1 legacy checkpoints without pixel_* weights")
        else:
            parser.add_argument("--tokenizer", required=True, metavar="SRC",
                                help="the generator's tokenizer: a converted vistok folder, or an original release (converted on the way)")
            parser.add_argument("--tokenizer-config", metavar="YAML", help="original config for a bare tokenizer checkpoint file")
        parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
        parser.add_argument("--push-to-hub", metavar="REPO", help="upload the converted folder to this hub repo")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vistok", description="vistok: discrete image tokenizers for the HF stack")
    sub = parser.add_subparsers(dest="command", required=True)
    _convert_parser(sub)
    push = sub.add_parser("push", help="upload a vistok folder (weights, config, processor config, card) to the hub")
    push.add_argument("folder")
    push.add_argument("repo_id")
    push.add_argument("--private", action="store_true")
    push.add_argument("--commit-message")
    args = parser.parse_args(argv)

    try:
        if args.command == "convert":
            from .conversion import CONVERTERS

            convert, _, kind, *extra = CONVERTERS[args.family]
            options = dict(config=args.config, preset=args.preset, overwrite=args.overwrite, push_to_hub=args.push_to_hub)
            if extra:
                options.update({flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_"))
                                for flag, _ in extra[0]})
            elif kind == "tokenizer":
                options["pixel_decoder"] = args.pixel_decoder
            else:
                options.update(tokenizer=args.tokenizer, tokenizer_config=args.tokenizer_config)
            out = convert(args.original, args.output, **options)
            print(f"wrote {out}")
        elif args.command == "push":
            from .hub import push_folder

            url = push_folder(args.folder, args.repo_id, private=args.private or None, commit_message=args.commit_message)
            print(url)
    except (ValueError, TypeError, OSError) as err:
        print(f"vistok {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
