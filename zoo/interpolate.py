"""Weight-space interpolation of a fine-tuned model with the model it started from (WiSE-FT).

Wortsman et al., "Robust fine-tuning of zero-shot models" (CVPR 2022), Eq. 1:
``theta(alpha) = (1 - alpha) * theta_start + alpha * theta_tuned``. A model fine-tuned from another
stays in the same basin of the loss, so the straight line between the two sets of weights is a
family of working models; on the line the fine-tuned model's gains on its new data are largely
kept and what it forgot of the old data largely comes back. It costs no training, only scoring.

Measured here (docs/experiments.md, "feature-loss-can-generalist"): the released feature-loss CAN fine-tuned
on all of ../shared/data (the generalist) gained 0.08 PESQ-wb on held-out mixtures but lost 0.087
on VoiceBank-DEMAND; at alpha = 0.5 it keeps the held-out gain (+0.08) and loses nothing on
VoiceBank-DEMAND (+0.01).

Only models of one architecture with the same tensors (names, shapes) interpolate. Integer
buffers (batch-norm step counters) are the fine-tune's. Batch-norm running statistics are
interpolated like the weights; a model that normalises with them at inference (not the released
CAN, which uses each input's own statistics) may want them re-estimated on the new weights.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from .card_from_checkpoint import TRAINING_FIGURE, TRAINING_NAME, CardFolderError, refuse_published_card
from .hub import CONFIG_NAME, WEIGHTS_NAME, read_config, resolve, save_weights, sha256_of, verify_weights, write_json



class InterpolationError(ValueError):
    """Two models that cannot be interpolated, or an alpha outside [0, 1]."""


def interpolate_states(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                       alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * tuned`` tensor by tensor, computed in float64 and stored in
    each tensor's own dtype (so alpha = 0 and alpha = 1 give back the two models bit for bit);
    integer tensors are the fine-tune's."""
    if not 0.0 <= alpha <= 1.0:
        raise InterpolationError(f"alpha must lie in [0, 1] (0: the start model, 1: the fine-tuned one), not {alpha}")
    if set(start) != set(tuned):
        only = sorted(set(start) ^ set(tuned))
        raise InterpolationError(f"the two models hold different tensors ({len(only)} differ, e.g. {only[0]}): "
                                 "only a model and a fine-tune of it interpolate")
    out = {}
    for key, a in start.items():
        b = tuned[key]
        if a.shape != b.shape:
            raise InterpolationError(f"{key}: shape {tuple(a.shape)} against {tuple(b.shape)}; only a model and a "
                                     "fine-tune of it (same width) interpolate")
        if not a.is_floating_point():  # counters (num_batches_tracked): the fine-tune's, as its config
            out[key] = b.clone()
            continue
        if alpha in (0.0, 1.0):
            out[key] = (a if alpha == 0.0 else b).clone()
            continue
        out[key] = ((1.0 - alpha) * a.double() + alpha * b.double()).to(a.dtype).contiguous()
    return out


def derived_release(config: dict) -> dict | None:
    """The third-party release that weights with this config come from, with its license: their
    own ``converted_from`` record, or the ``derived_from`` of a model made from such weights."""
    if config.get("derived_from"):
        return config["derived_from"]
    if config.get("converted_from"):
        from .convert.cards import LICENSES

        release = config["converted_from"]
        return {**release, "license": LICENSES.get(config.get("name"), release.get("release", "see the source"))}
    return None


def _model(spec: str) -> tuple[Path, str, dict]:
    folder, source = resolve(spec)
    config = read_config(folder)
    verify_weights(folder, config)
    return folder, source, config


def interpolate_models(start: str, tuned: str, alpha: float, out, overwrite: bool = False) -> Path:
    """Write the card folder of ``theta(alpha)`` into ``out``: ``config.json`` (the fine-tuned
    model's, with an ``interpolated`` record of both models, their sha256 and alpha),
    ``model.safetensors``, the fine-tune's ``training.json`` (and figure) with a note, and a
    ``README.md``. ``start`` and ``tuned`` are anything ``zoo.load`` takes. The folder appears
    complete or not at all (written beside it, then renamed)."""
    out = Path(out)
    try:
        refuse_published_card(out)  # as export and fine-tuning: a published card is never rewritten
    except CardFolderError as error:
        raise InterpolationError(str(error)) from error
    if out.exists() and not overwrite:
        raise InterpolationError(f"{out} exists; choose a new folder, or replace it with --overwrite (overwrite=True)")
    (start_dir, start_source, start_config), (tuned_dir, tuned_source, tuned_config) = _model(start), _model(tuned)
    if start_config["architecture"] != tuned_config["architecture"]:
        raise InterpolationError(f"{start} is a {start_config['architecture']} and {tuned} a "
                                 f"{tuned_config['architecture']}: only a model and a fine-tune of it interpolate")
    state = interpolate_states(load_file(start_dir / WEIGHTS_NAME), load_file(tuned_dir / WEIGHTS_NAME), alpha)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would hide the card from other users
    try:
        save_weights(state, staging / WEIGHTS_NAME,
                     metadata={"format": "pt", "architecture": tuned_config["architecture"]})
        config = {k: v for k, v in tuned_config.items() if k not in ("calibration", "weights_sha256", "interpolated")}
        release = derived_release(start_config) or derived_release(tuned_config)
        if release:  # someone else's release (and its license) is in these weights
            config["derived_from"] = release
        config["name"] = out.name
        config["weights_sha256"] = sha256_of(staging / WEIGHTS_NAME)
        config["interpolated"] = {
            "method": "WiSE-FT (Wortsman et al. 2022, Eq. 1): (1 - alpha) * start + alpha * fine-tuned",
            "alpha": alpha,
            "start": {"model": start, "source": start_source, "weights_sha256": start_config.get("weights_sha256")},
            "fine_tuned": {"model": tuned, "source": tuned_source,
                           "weights_sha256": tuned_config.get("weights_sha256")},
        }
        write_json(staging / CONFIG_NAME, config)
        record = {}
        if (tuned_dir / TRAINING_NAME).is_file():
            record = json.loads((tuned_dir / TRAINING_NAME).read_text())
            if (tuned_dir / TRAINING_FIGURE).is_file():
                shutil.copyfile(tuned_dir / TRAINING_FIGURE, staging / TRAINING_FIGURE)
        note = (f"weights interpolated (WiSE-FT): {1 - alpha:g} x {start} + {alpha:g} x {tuned}; the training "
                "record is the fine-tune's")
        record["note"] = f"{record['note']}; {note}" if record.get("note") else note
        write_json(staging / TRAINING_NAME, record)
        _write_card(staging, out.name, config)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _write_card(folder: Path, name: str, config: dict) -> Path:
    """A README.md that says what the weights are and how they were made (no scores: ``zoo eval``
    measures them; ``benchmarks/quality.py --update`` writes them into a registered card)."""
    from huggingface_hub import ModelCard, ModelCardData

    from .cards import card_license, training_section
    from .hub import CARD_NAME, write_text

    made = config["interpolated"]
    start, tuned, alpha = made["start"], made["fine_tuned"], made["alpha"]
    release = config.get("derived_from")
    data = ModelCardData(library_name="zoo", license=card_license(config),
                         pipeline_tag="audio-to-audio", model_name=name,
                         tags=["audio", "speech-enhancement", "denoising", "audio-to-audio", "zoo", "wise-ft"])
    body = f"""
# {name}

The weights of `{start['model']}` and of its fine-tune `{tuned['model']}`, interpolated:
`{1 - alpha:g} x start + {alpha:g} x fine-tuned` (WiSE-FT, Wortsman et al. 2022, Eq. 1; `zoo interpolate`).

- Start: `{start['model']}` ({start['source']}), sha256 `{start['weights_sha256']}`
- Fine-tuned: `{tuned['model']}` ({tuned['source']}), sha256 `{tuned['weights_sha256']}`
- Architecture: `{config['architecture']}` at {config['sample_rate']} Hz
- Weights: `model.safetensors`, sha256 `{config['weights_sha256']}`
""" + (f"- Derived from: {release['release']}; {release['license']}\n" if release else "") + f"""
## Use

```bash
zoo denoise noisy/ -o enhanced/ --model {name}/
zoo eval --model {name}/ --model {start['model']} --data voicebank-demand:PATH
```
{training_section(folder)}"""
    path = folder / CARD_NAME
    write_text(path, ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body).content)
    return path
