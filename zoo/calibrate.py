"""Fixed normalisation statistics for a network that normalises with its input's own.

The authors' released CAN (``feature-loss-can``) normalises every layer with the mean and
variance of the signal being enhanced, which needs the whole input before the first output
(``enhance`` measures them in a first pass). ``normalization="calibrated"`` instead uses fixed
statistics measured once on a stated calibration set, folded into the convolutions, so the
network streams with no look-ahead beyond its receptive field (0.5 s).

    python -m zoo.calibrate feature-loss-can [--mixtures 48] [--seconds 4] [--seed 7]

The calibration set is ``--mixtures`` training mixtures of ../shared/data (the training speakers
and noise types of ``zoo/data/splits.py``, never validation or test material) mixed at -5..20 dB
with levels varied by -10..10 dB, as the fine-tuning recipes mix. The statistics are the zoo's own
measurement, so they are committed: ``calibration.safetensors`` in the card folder, named with its
sha256 and the set's description in ``config.json``'s ``calibration`` entry, and laid over the
weights when the model loads.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

CALIBRATION_NAME = "calibration.safetensors"


def calibration_set(n_mixtures: int = 48, seconds: float = 4.0, seed: int = 7, root=None) -> list[torch.Tensor]:
    from .data.files import audio_files
    from .data.mixtures import MixtureDataset
    from .data.splits import TRAIN_NOISE, TRAIN_SPEECH

    data = MixtureDataset(audio_files(TRAIN_SPEECH, root), audio_files(TRAIN_NOISE, root), n_mixtures,
                          int(seconds * 16000), 16000, (-5.0, 20.0), seed=seed, fixed=True, gain_db=(-10.0, 10.0))
    return [torch.from_numpy(np.asarray(data[i]["noisy"], dtype=np.float32)) for i in range(n_mixtures)]


def calibrate_card(folder, n_mixtures: int = 48, seconds: float = 4.0, seed: int = 7) -> Path:
    """Measure the calibrated statistics of the model in ``folder`` and write them beside it."""
    from safetensors.torch import save_file

    from .hub import load_folder, sha256_of, write_json

    folder = Path(folder)
    model = load_folder(folder)
    network = model.network
    network.calibrate(calibration_set(n_mixtures, seconds, seed))
    buffers = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
               if k.endswith(("bn.running_mean", "bn.running_var"))}
    path = folder / CALIBRATION_NAME
    save_file(buffers, str(path), metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["calibration"] = {
        "file": CALIBRATION_NAME, "sha256": sha256_of(path),
        "set": (f"{n_mixtures} training mixtures of {seconds:g} s (../shared/data training speakers x training "
                f"noise types, -5..20 dB, levels -10..10 dB, seed {seed}); per layer the mean of each "
                "mixture's own statistics, earlier layers normalised with the calibrated ones"),
    }
    write_json(folder / "config.json", config)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="measure fixed normalisation statistics for a card folder")
    parser.add_argument("model", help="registered name or card folder")
    parser.add_argument("--mixtures", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    from .registry import get_entry, is_registered

    folder = get_entry(args.model).card_path if is_registered(args.model) else Path(args.model)
    print(calibrate_card(folder, args.mixtures, args.seconds, args.seed))


if __name__ == "__main__":
    main()
