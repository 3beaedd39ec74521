"""Write a recipe's validation mixtures to folders, so ``zoo eval`` can score runs on them.

    python -m zoo.data.write_mixtures recipes/data/shared-data.yaml OUT [--count 100]
    zoo eval --data folders:OUT/noisy:OUT/clean -m noisy -m ./card-a -m ./card-b

The data block of a recipe or of a run's resolved ``config.yaml`` is built as ``zoo fit`` builds
it, with ``val_size`` set to ``--count``; validation item i is the same mixture whatever the
count (``MixtureDataset(fixed=True)``), so the first ``val_size`` files are the ones the run
validated on. This is how two runs are compared on PESQ and the composite measures without
choosing between them by the evaluation set's score (``../shared/data/README.md``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from ..audio import write_audio
from .from_config import data_block, data_module_from_block


def validation_mixtures(config: Path, count: int):
    """The data module of ``config``'s data block with ``val_size=count``, set up for fitting."""
    data = data_block(config)
    if not data or not data.get("class_path"):
        raise SystemExit(f"{config} has no data block with a class_path (a zoo fit recipe or config.yaml)")
    module = data_module_from_block(data, val_size=count)
    if not hasattr(module, "val_set"):
        raise SystemExit(f"{data['class_path']} has no validation mixtures (val_set)")
    return module


def write(config: Path, out: Path, count: int) -> int:
    module = validation_mixtures(config, count)
    rate = module.hparams.sample_rate
    for folder in ("noisy", "clean"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(len(module.val_set)), desc="validation mixtures", unit="file"):
        item = module.val_set[i]
        for folder in ("noisy", "clean"):
            write_audio(out / folder / f"val_{i:04d}.wav", item[folder][None], rate, subtype="FLOAT")
    return len(module.val_set)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="a zoo fit recipe or a run's config.yaml")
    parser.add_argument("out", type=Path, help="writes OUT/noisy/val_NNNN.wav and OUT/clean/val_NNNN.wav")
    parser.add_argument("--count", type=int, default=100, help="how many validation mixtures (default 100)")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    written = write(args.config, args.out, args.count)
    print(f"{written} validation mixtures in {args.out}/noisy and {args.out}/clean; score them with\n"
          f"  zoo eval --data folders:{args.out}/noisy:{args.out}/clean -m noisy -m MODEL_OR_CARD_FOLDER")


if __name__ == "__main__":
    main()
