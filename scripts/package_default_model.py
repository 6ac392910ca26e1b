"""Copy the three training runs of the default model into the package (src/vistok/demo/default: MaskGIT,
src/vistok/demo/default_ar: LlamaGen) with cards.

    python scripts/package_default_model.py --tokenizer-run runs/demo-tokenizer \
        --generator-run runs/demo-generator --ar-generator-run runs/demo-ar-generator --photos data/demo-photos

    python scripts/package_default_model.py --ar-only --ar-generator-run runs/demo-ar-generator --photos data/demo-photos

packages only the autoregressive run, trained over the tokenizer already shipped in the package. A tokenizer
trained on its own data recipe (whole photographs, dead leaves: see configs/demo_tokenizer.yaml) adds
``--tokenizer-photos data/demo-photos-tokenizer``, and the cards then give both recipes; ``--tokenizer-run`` is a
run folder or its ``final`` export.

    python scripts/package_default_model.py --decoder-run runs/demo-tokenizer-decoder --photos data/demo-photos \
        --tokenizer-photos data/demo-photos-tokenizer

puts a retrain of the shipped tokenizer's decoder (configs/demo_tokenizer_decoder.yaml: encoder and quantizer
frozen) into both pipelines, keeping their generators: their token ids are unchanged, which is checked.

Each pipeline folder is a generator run's export (model_index.json, image_tokenizer/, transformer/);
its image_tokenizer must hold exactly the tokenizer run's exported weights. Each card gets the data
recipe and every command, the held-out evaluation (all images, and per photograph against JPEG), and the
tokenizer card the same evaluation (vistok eval) as metadata. Nothing in the package changes unless every step
succeeds.

    python scripts/package_default_model.py --cards-only

re-evaluates the shipped model on today's held-out images and rewrites only the cards' evaluation sections.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import shutil
import tempfile
import textwrap
from pathlib import Path

import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from vistok.utils.io import atomic_output_dir
from vistok.demo import (DEFAULT_AR_PIPELINE, DEFAULT_PIPELINE, DEFAULT_TOKENIZER, DEMO_GRID_IMAGES, DEMO_RD_IMAGES,
                         HELDOUT_IMAGES, evaluate_per_photograph,
                         per_photograph_table)
from vistok.demo.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, WHOLE_SIZE, build_photo_dataset, photos_command
from vistok.evaluation import run_eval
from vistok.evaluation.card import write_card_results

RECIPE = """
## The default model of `vistok demo`

It ships inside the vistok package; load it from there:

```python
import vistok.demo
tokenizer = vistok.demo.load_default_tokenizer()     # AutoModel.from_pretrained(vistok.demo.DEFAULT_TOKENIZER)
pipe = vistok.demo.load_default_pipeline()           # MaskGITPipeline.from_pretrained(vistok.demo.DEFAULT_PIPELINE)
images = pipe(class_labels=pipe.get_label_ids(["astronaut", "china"])).images
ar = vistok.demo.load_default_ar_pipeline()          # AutoregressiveImagePipeline.from_pretrained(vistok.demo.DEFAULT_AR_PIPELINE)
images = ar(class_labels=ar.get_label_ids(["astronaut"]), decoding="sjd").images
```

### How it was made

Data: crops of real photographs that ship inside PyPI packages, split by photograph.

```bash
pip install "vistok[photos]"      # scikit-image, scikit-learn, matplotlib: the photographs
{photos_commands}
```

{training_data}
- Held out, never trained on: {n_heldout_photos} photographs ({heldout}): faces, text, a page, a cat, a still
  life, a clock, a cell; {n_heldout} images: each photograph whole, as the tokenizer's processor sees it
  ({whole_size} px), and crops tiling its centre square (n x n, n = 2..4 or 2..3, stored at 64 px, which the processor
  resizes to {image_size} px); `vistok/demo/heldout/`, licences in its SOURCES.md.

Commands, in order (2-core CPU):

```bash
vistok train tokenizer --config configs/demo_tokenizer.yaml --data.dataset {tokenizer_data}/train \\
    --training.output_dir=runs/demo-tokenizer
vistok train generator --config configs/demo_generator.yaml --data.dataset data/demo-photos/train \\
    --loss.tokenizer runs/demo-tokenizer/final --training.output_dir=runs/demo-generator
vistok train generator --config configs/demo_ar_generator.yaml --data.dataset data/demo-photos/train \\
    --loss.tokenizer runs/demo-tokenizer/final --training.output_dir=runs/demo-ar-generator
python scripts/package_default_model.py --tokenizer-run runs/demo-tokenizer --generator-run runs/demo-generator \\
    --ar-generator-run runs/demo-ar-generator --photos data/demo-photos{tokenizer_photos_option}{decoder_commands}
```

Evaluation on the held-out images (`vistok demo` runs the same, and the per-photograph comparison below):

```bash
vistok eval {tokenizer_path} --images {heldout_path} --rd-images {rd} --no-fid --grid-images {grid} --output eval
```

{results}

{per_photograph}

This is a demonstration model: {n_train} photographs are far too few to generalise like an ImageNet tokenizer,
and the generators' samples are textures of its training photographs, not new scenes.
"""


def results_table(report: dict) -> str:
    rows = ["| tokens | bytes/image | PSNR (dB) | SSIM |", "|---|---|---|---|"]
    for row in report["results"]:
        rows.append(f"| {row['num_tokens']} | {row['bytes_per_image']:.1f} | {row['psnr']:.2f} | {row['ssim']:.3f} |")
    rd = report["rate_distortion"]
    jpeg = {p["quality"]: p for p in rd["jpeg"]}
    beaten = rd["dominance"]["jpeg"]["beaten_qualities"]
    lines = ["Held-out reconstruction (PSNR over [0, 255] per image, then averaged; SSIM as vistok eval's conventions):",
             "", *rows, ""]
    if beaten:
        q = beaten[-1]
        lines.append(f"JPEG at qualities {beaten} is beaten outright: a token count with no more bytes and more PSNR "
                     f"(JPEG quality {q}: {jpeg[q]['bytes_per_image']:.0f} bytes, {jpeg[q]['psnr']:.2f} dB). "
                     f"WebP qualities beaten: {rd['dominance']['webp']['beaten_qualities'] or 'none'}.")
    else:
        lines.append("The tokenizer does not beat JPEG at any quality on these images.")
    return "\n".join(lines)


# where the cards' commands put the data: the generators' (and, unless it has its own, the tokenizer's) and the
# tokenizer's own when its recipe differs
GENERATOR_DATA, TOKENIZER_DATA = "data/demo-photos", "data/demo-photos-tokenizer"


def default_recipe() -> dict:
    """The training fields of the recipe.json ``python -m vistok.demo.photos`` writes with no options."""
    defaults = {name: p.default for name, p in inspect.signature(build_photo_dataset).parameters.items()}
    return {"train_classes": {name: defaults["crops_per_class"] for name in TRAIN_PHOTOS},
            "train_size": defaults["train_size"], "heldout_size": defaults["heldout_size"],
            "min_side": defaults["min_side"], "whole_fraction": defaults["whole_fraction"],
            "dead_leaves": defaults["dead_leaves_count"], "permute_fraction": defaults["permute_fraction"],
            "seed": defaults["seed"]}


def describe_training_data(recipe: dict, who: str) -> str:
    crops = next(n for name, n in recipe["train_classes"].items() if name != "dead_leaves")
    text = (f"- {who}: {crops} random square crops per class (side log-uniform between {recipe['min_side']} px and "
            "the photograph's shorter edge")
    if recipe.get("whole_fraction"):
        text += f", {recipe['whole_fraction']:.0%} of them the whole photograph (its full shorter edge)"
    text += f", bicubic-resized to {recipe['train_size']} px"
    if recipe.get("permute_fraction"):
        text += f", {recipe['permute_fraction']:.0%} with their colour channels swapped"
    text += (f"; seed {recipe['seed']}) of {len(TRAIN_PHOTOS)} classes, one class per photograph (the motorcycle "
             f"class is a stereo pair): {', '.join(TRAIN_PHOTOS)}")
    if recipe.get("dead_leaves"):
        text += (f"; and {recipe['dead_leaves']} synthetic dead-leaves images (occluding discs of random colour, "
                 "power-law sizes) as one more class")
    return textwrap.fill(text + ".", width=115, subsequent_indent="  ", break_on_hyphens=False)


def _training_fields(recipe: dict) -> dict:
    return {k: v for k, v in recipe.items() if k in default_recipe()}


DECODER_COMMANDS = f"""
vistok train tokenizer --config configs/demo_tokenizer_decoder.yaml --data.dataset {TOKENIZER_DATA}/train \\
    --model.pretrained runs/demo-tokenizer/final --training.output_dir=runs/demo-tokenizer-decoder
python scripts/package_default_model.py --decoder-run runs/demo-tokenizer-decoder --photos {GENERATOR_DATA} \\
    --tokenizer-photos {TOKENIZER_DATA}"""


def card_section(report: dict, per_photograph: dict, generator_recipe: dict, tokenizer_recipe: dict,
                 decoder_retrain: bool = False) -> str:
    """The cards' default-model section. ``decoder_retrain``: the tokenizer's encoder was trained on the generators'
    data and its decoder retrained on ``tokenizer_recipe`` (configs/demo_tokenizer_decoder.yaml)."""
    shared = _training_fields(generator_recipe) == _training_fields(tokenizer_recipe)
    tokenizer_data = GENERATOR_DATA if shared or decoder_retrain else TOKENIZER_DATA
    commands = [photos_command(generator_recipe, GENERATOR_DATA)]
    first = ("Training" if shared else "The generators' and the tokenizer encoder's training data" if decoder_retrain
             else "The generators' training data")
    training_data = describe_training_data(generator_recipe, first if shared else f"{first} (`{GENERATOR_DATA}`)")
    if not shared:
        commands.append(photos_command(tokenizer_recipe, TOKENIZER_DATA))
        second = "The tokenizer decoder's retrain" if decoder_retrain else "The tokenizer's"
        training_data += "\n" + describe_training_data(tokenizer_recipe, f"{second} (`{TOKENIZER_DATA}`)")
    return RECIPE.format(
        photos_commands="\n".join(commands), training_data=training_data, tokenizer_data=tokenizer_data,
        tokenizer_photos_option="" if shared or decoder_retrain else f" \\\n    --tokenizer-photos {TOKENIZER_DATA}",
        decoder_commands=DECODER_COMMANDS if decoder_retrain else "",
        n_train=len(TRAIN_PHOTOS), heldout=", ".join(HELDOUT_PHOTOS), n_heldout_photos=len(HELDOUT_PHOTOS),
        n_heldout=report["num_images"], whole_size=WHOLE_SIZE,
        tokenizer_path="$(python -c 'import vistok.demo as d; print(d.DEFAULT_TOKENIZER)')",
        heldout_path="$(python -c 'import vistok.demo as d; print(d.HELDOUT_IMAGES)')",
        rd=DEMO_RD_IMAGES, grid=DEMO_GRID_IMAGES, image_size=report["image_size"], results=results_table(report),
        per_photograph=per_photograph_table(per_photograph))


SECTION_START = "\n## The default model of `vistok demo`"


def evaluate(tokenizer_folder: Path) -> tuple[dict, dict]:
    from transformers import AutoModel

    with tempfile.TemporaryDirectory() as tmp:
        report = run_eval(tokenizer_folder, Path(tmp) / "eval", images=HELDOUT_IMAGES,
                          rate_distortion_images=DEMO_RD_IMAGES, fid=False, grid_images=DEMO_GRID_IMAGES,
                          progress=False)
    per_photograph = evaluate_per_photograph(HELDOUT_IMAGES, AutoModel.from_pretrained(str(tokenizer_folder)))["per_photograph"]
    return report, per_photograph


def refresh_cards(dests: tuple[Path, ...], recipes: tuple[dict, dict]) -> None:
    """Rewrite the cards' evaluation sections (and the tokenizer cards' metadata) for the shipped weights."""
    with contextlib.ExitStack() as stack:
        for dest in dests:
            scratch = stack.enter_context(atomic_output_dir(dest, overwrite=True))
            for item in dest.iterdir():
                (shutil.copytree if item.is_dir() else shutil.copyfile)(item, scratch / item.name)
            report, per_photograph = evaluate(scratch / "image_tokenizer")
            # a card whose recipe has the decoder retrain keeps it
            decoder_retrain = "demo_tokenizer_decoder.yaml" in (dest / "README.md").read_text()
            section = card_section(report, per_photograph, *recipes, decoder_retrain=decoder_retrain)
            tokenizer_card = scratch / "image_tokenizer" / "README.md"
            for card_path in (tokenizer_card, scratch / "README.md"):
                text = card_path.read_text()
                if SECTION_START not in text:
                    raise SystemExit(f"{card_path} has no section {SECTION_START.strip()!r} to refresh")
                card_path.write_text(text[:text.index(SECTION_START)].rstrip() + "\n" + section)
            write_card_results(tokenizer_card, report, model_name="vistok default tokenizer")


def package_run(scratch: Path, generator_run: Path, tokenizer: Path, photos: tuple[Path, Path], section: str,
                report: dict) -> None:
    """Fill ``scratch`` with one generator run's pipeline export, the tokenizer's processor and card (``tokenizer``:
    a tokenizer run's ``final`` export, or the shipped tokenizer folder; ``photos``: the generators' and the
    tokenizer's data folders), and the cards' default-model section."""
    exported = generator_run / "final"
    tokenizer_weights = load_file(str(tokenizer / "model.safetensors"))
    shipped = load_file(str(exported / "image_tokenizer" / "model.safetensors"))
    if tokenizer_weights.keys() != shipped.keys() or any(not torch.equal(tokenizer_weights[k], shipped[k]) for k in shipped):
        raise SystemExit(f"{exported}/image_tokenizer is not the tokenizer {tokenizer}")
    for item in exported.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copyfile)(item, scratch / item.name)
    # the pipeline export carries no image processor: ship the tokenizer run's, for AutoImageProcessor
    shutil.copyfile(tokenizer / "preprocessor_config.json", scratch / "image_tokenizer" / "preprocessor_config.json")
    tokenizer_run = tokenizer.parent if tokenizer.name == "final" else tokenizer
    write_cards(scratch, tokenizer, photos, {tokenizer_run: "runs/demo-tokenizer",
                                             generator_run: f"runs/{generator_run.name}"}, section, report)


def package_decoder(scratch: Path, shipped: Path, tokenizer: Path, photos: tuple[Path, Path], section: str,
                    report: dict) -> None:
    """Fill ``scratch`` with the shipped pipeline folder ``shipped``, its image_tokenizer replaced by ``tokenizer``: a
    retrain of the shipped tokenizer's decoder only, so the generators' token ids stay valid (checked: every weight
    outside the decoder, and the config, are the shipped ones)."""
    old = load_file(str(shipped / "image_tokenizer" / "model.safetensors"))
    new = load_file(str(tokenizer / "model.safetensors"))
    changed = sorted(k for k in old.keys() & new.keys() if not k.startswith("decoder.") and not torch.equal(old[k], new[k]))
    if old.keys() != new.keys() or changed:
        raise SystemExit(f"{tokenizer} is not a decoder retrain of {shipped}/image_tokenizer (weights outside the "
                         f"decoder differ: {changed[:3] or sorted(old.keys() ^ new.keys())[:3]}): the generators' token "
                         "ids would change; package it with new generator runs (--tokenizer-run ...) instead")
    from transformers import AutoConfig

    volatile = ("_name_or_path", "transformers_version")  # loaded, so that fields added since compare at their defaults
    configs = [{k: v for k, v in AutoConfig.from_pretrained(str(folder)).to_dict().items() if k not in volatile}
               for folder in (shipped / "image_tokenizer", tokenizer)]
    if configs[0] != configs[1]:
        raise SystemExit(f"{tokenizer}/config.json differs from the shipped tokenizer's")
    for item in shipped.iterdir():
        (shutil.copytree if item.is_dir() else shutil.copyfile)(item, scratch / item.name)
    for name in ("model.safetensors", "config.json", "preprocessor_config.json"):
        shutil.copyfile(tokenizer / name, scratch / "image_tokenizer" / name)
    decoder_run = tokenizer.parent if tokenizer.name == "final" else tokenizer
    write_cards(scratch, tokenizer, photos, {decoder_run: "runs/demo-tokenizer-decoder"}, section, report)


def write_cards(scratch: Path, tokenizer: Path, photos: tuple[Path, Path], runs: dict[Path, str], section: str,
                report: dict) -> None:
    """The tokenizer run's card into ``scratch/image_tokenizer`` and, in both cards, the default-model section."""
    tokenizer_card = scratch / "image_tokenizer" / "README.md"
    shutil.copyfile(tokenizer / "README.md", tokenizer_card)
    # the runs' own folders appear in the cards as the recipe's relative paths; the data is no hub dataset
    generator_photos, tokenizer_photos = photos
    relative = {str(tokenizer_photos.resolve()): GENERATOR_DATA if tokenizer_photos == generator_photos else TOKENIZER_DATA,
                str(generator_photos.resolve()): GENERATOR_DATA,
                **{str(run.resolve()): short for run, short in runs.items()}}
    for card_path in (tokenizer_card, scratch / "README.md"):
        card = ModelCard.load(card_path)
        card.data.datasets = None
        text = str(card)
        for absolute, short in relative.items():
            text = text.replace(absolute, short)
        if SECTION_START in text:  # the shipped tokenizer's card already has one: replace it
            text = text[:text.index(SECTION_START)]
        card_path.write_text(text.rstrip() + "\n" + section)
    write_card_results(tokenizer_card, report, model_name="vistok default tokenizer")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer-run", type=Path)
    parser.add_argument("--generator-run", type=Path)
    parser.add_argument("--ar-generator-run", type=Path)
    parser.add_argument("--decoder-run", type=Path,
                        help="a decoder retrain of the shipped tokenizer (configs/demo_tokenizer_decoder.yaml): replaces "
                        "the tokenizer in both pipelines, keeping their generators")
    parser.add_argument("--photos", type=Path, help="the folder python -m vistok.demo.photos wrote for the generators "
                        "(its recipe.json; --cards-only without it assumes the recipe's defaults)")
    parser.add_argument("--tokenizer-photos", type=Path,
                        help="the tokenizer's data folder when it was trained on another recipe (default: --photos)")
    parser.add_argument("--dest", type=Path, default=DEFAULT_PIPELINE)
    parser.add_argument("--ar-dest", type=Path, default=DEFAULT_AR_PIPELINE)
    parser.add_argument("--ar-only", action="store_true",
                        help="package only --ar-generator-run, trained over the tokenizer already shipped in the package")
    parser.add_argument("--cards-only", action="store_true",
                        help="keep the shipped weights; re-evaluate them and rewrite the cards' evaluation sections")
    args = parser.parse_args(argv)
    if args.photos is None and not args.cards_only:
        parser.error("--photos is required to package new runs")
    args.tokenizer_photos = args.tokenizer_photos or args.photos
    recipes = tuple(json.loads((folder / "recipe.json").read_text()) if folder is not None else default_recipe()
                    for folder in (args.photos, args.tokenizer_photos))
    if args.cards_only:
        refresh_cards((args.dest, args.ar_dest), recipes)
        print(f"refreshed the cards in {args.dest} and {args.ar_dest}")
        return
    photos = (args.photos, args.tokenizer_photos)
    if args.decoder_run is not None:
        tokenizer = args.decoder_run / "final" if (args.decoder_run / "final").is_dir() else args.decoder_run
        report, per_photograph = evaluate(tokenizer)
        section = card_section(report, per_photograph, *recipes, decoder_retrain=True)
        with contextlib.ExitStack() as stack:  # neither folder changes unless both are complete
            for dest in (args.dest, args.ar_dest):
                scratch = stack.enter_context(atomic_output_dir(dest, overwrite=True))
                package_decoder(scratch, dest, tokenizer, photos, section, report)
        print(f"wrote the retrained decoder into {args.dest} and {args.ar_dest}")
        return
    if args.ar_only:
        if args.ar_generator_run is None:
            parser.error("--ar-only needs --ar-generator-run")
        report, per_photograph = evaluate(DEFAULT_TOKENIZER)
        section = card_section(report, per_photograph, *recipes)
        with atomic_output_dir(args.ar_dest, overwrite=True) as scratch:
            package_run(scratch, args.ar_generator_run, DEFAULT_TOKENIZER, photos, section, report)
        print(f"wrote {args.ar_dest}")
        return
    if args.tokenizer_run is None or args.generator_run is None or args.ar_generator_run is None:
        parser.error("--tokenizer-run, --generator-run and --ar-generator-run are required (or --cards-only)")
    # a tokenizer run's folder or its from_pretrained export
    tokenizer = args.tokenizer_run / "final" if (args.tokenizer_run / "final").is_dir() else args.tokenizer_run
    report, per_photograph = evaluate(tokenizer)
    section = card_section(report, per_photograph, *recipes)
    with contextlib.ExitStack() as stack:  # neither folder changes unless both are complete
        for dest, run in ((args.dest, args.generator_run), (args.ar_dest, args.ar_generator_run)):
            package_run(stack.enter_context(atomic_output_dir(dest, overwrite=True)), run, tokenizer, photos, section,
                        report)
    print(f"wrote {args.dest} and {args.ar_dest}")


if __name__ == "__main__":
    main()
