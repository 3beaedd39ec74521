"""The model card of a converted release: where the weights come from, under which license,
the sha256 of the source files, and what the conversion changed (the layout only)."""
from __future__ import annotations

from pathlib import Path

CARDS = {
    "feature-loss-can": {
        "title": "feature-loss-can: the authors' released deep-feature-loss CAN",
        "summary": ("The context aggregation network (W=64, 14 dilated 3-tap layers, 1 s receptive field) of "
                    "Germain, Chen & Koltun, *Speech Denoising with Deep Feature Losses* (Interspeech 2019; "
                    "`speech-denoising-deep-feature-losses.txt`, sec. II), as its authors trained it with their "
                    "deep feature loss on VoiceBank-DEMAND (28 speakers, 320 epochs on a GPU) and released it."),
    },
    "feature-loss-net-germain2019": {
        "title": "feature-loss-net-germain2019: the authors' feature-loss network",
        "summary": ("The 14 convolution layers of the audio-classification network that Germain, Chen & Koltun "
                    "pretrained on DCASE 2016 acoustic scenes and CHiME-Home domestic audio tags and used, frozen, "
                    "as the deep feature loss (first 6 layers) of their released denoiser. The classifier heads "
                    "are not part of the release."),
    },
}

LICENSES = {
    "feature-loss-can": "MIT license, copyright (c) 2018 François G. Germain (the license text ships with the release).",
    "feature-loss-net-germain2019": (
        "MIT license. The tensors are the authors' (Germain, Chen & Koltun, MIT license, copyright (c) 2018 "
        "François G. Germain): they come from a later project that froze the authors' loss network and saved it "
        "in its own checkpoint (MIT license, copyright (c) 2020 Pranay Manocha; the license text ships with the "
        "release), and each of the 56 tensors has the size and crc32c of the authors' own `loss_model.ckpt` "
        "entry. Only the `loss_conv_*` tensors are converted; that project's own variables are ignored."),
}
CHANGES = {
    "feature-loss-can": ("slim `conv2d` kernels `[1, k, C_in, C_out]` on `[batch, 1, time, channels]` became "
                         "`Conv1d` weights `[C_out, C_in, k]` on `[batch, channels, time]`; the adaptive "
                         "normalisation's `w0`, `w1` became `alpha`, `beta`; `slim.batch_norm` (centre, no scale, "
                         "eps 0.001; no moving averages were saved) became `BatchNorm1d` with its scale fixed at 1, "
                         "eps 0.001 and running statistics 0 and 1, which `normalization: input` does not use."),
    "feature-loss-net-germain2019": (
        "slim `conv2d` kernels `[1, 3, C_in, C_out]` (stride 2 with TensorFlow's SAME padding, the last layer "
        "stride 1) became `Conv1d` weights `[C_out, C_in, 3]` (`padding: tf_same` reproduces the padding); "
        "`slim.batch_norm` (centre, no scale, eps 0.001) became `BatchNorm1d` with its scale fixed at 1, its "
        "`beta`, `moving_mean` and `moving_variance` as they are."),
}


def source_sections(name: str, config: dict) -> str:
    """The card sections a converted release must carry: source, license, the sha256 of the
    source files, what the conversion changed, and why the weights are not committed. Also used
    by ``zoo.cards.render_card`` when the benchmark re-renders the card with scores."""
    sources = "\n".join(f"  - `{file}`: sha256 `{sha}`" for file, sha in config["converted_from"]["files_sha256"].items())
    calibration = config.get("calibration")
    modes = ""
    if calibration:
        modes = f"""
## Normalisation

- `normalization: input` (the default, the authors' inference): every layer is normalised with the mean and
  variance of the input being enhanced. For an input longer than one chunk (`chunk_seconds`, 30 s) the statistics
  are measured first, in one pass over the input per layer (bounded memory), so the output equals processing the
  whole file at once (the authors' graph, padding positions of their dilation-by-reshape included).
- `normalization: calibrated` (`zoo.load("{name}", normalization="calibrated")`, or `{name}:normalization=calibrated`
  wherever a model name is taken): fixed statistics (`{calibration['file']}`, measured by the zoo on {calibration['set']})
  folded into the convolutions; streams with 0.5 s of look-ahead and no first pass, at a cost in quality (see Scores).
"""
    return f"""
## Source

- Release: the authors' code and weights for Germain, Chen & Koltun 2019 (TensorFlow 1.x checkpoint bundle).
- License: {LICENSES[name]}
- Source files:
{sources}
- Converted by `zoo convert` (a TensorFlow V2 bundle reader in `zoo.convert.tf_bundle`, every block and
  tensor crc32c checked; no TensorFlow).

## What the conversion changed

The layout only, no value: {CHANGES[name]}
{modes}
## Not committed

These weights are someone else's release: the zoo's repository holds this card and `config.json` (whose
`weights_sha256` the conversion must reproduce), and `model.safetensors` is produced on set-up
(`make demo`, `make test`, or `zoo convert PATH_TO_RELEASE`).
"""


def write_card(folder, name: str, bundle, config: dict) -> Path:
    from ..hub import CARD_NAME, write_text

    info = CARDS[name]
    text = f"""---
library_name: zoo
license: mit
tags: [audio, speech-enhancement, denoising, converted]
---

# {info['title']}

{info['summary']}
{source_sections(name, config)}"""
    path = Path(folder) / CARD_NAME
    write_text(path, text)
    return path
