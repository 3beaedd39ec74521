"""A card folder from a training checkpoint: config.json + model.safetensors + training.json +
training.png + README.md, the only form in which zoo loads models.

    python -m zoo.card_from_checkpoint runs/can-l1/lightning_logs/version_0/checkpoints/last.ckpt --model can-l1 [--out FOLDER]
    python -m zoo.card_from_checkpoint runs/feature-loss-net/.../last.ckpt --feature-loss-net [--out FOLDER]

The checkpoint is one that ``zoo fit`` wrote (safetensors + JSON, ``zoo.checkpoint_io``): nothing
is unpickled; an older pickled ``.ckpt`` is refused with the command that converts it. The
folder is new: without ``--out`` it is ``runs/cards/NAME-stepN`` (``-2``, ``-3`` ... when that
exists), and a published card in ``hub_cards/`` is never written (a maintainer replaces one
deliberately: write it elsewhere, check, copy the files over, re-render its README with
``zoo card``). The folder loads with ``zoo.load(FOLDER)`` and publishes as it is with
``zoo publish FOLDER --repo-id ORG/NAME``; its README.md card is rendered from the folder's own
config.json and training.json, so the two never disagree.

``training.json`` records what a card must state about training (recipe, data, steps, epochs,
wall-clock hours, hardware), read from the run's own logs. (ONNX / TorchScript export of a
model's network is another matter, and another module.)
"""
from __future__ import annotations

import argparse
import csv
import inspect
import json
import platform
import re
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from .audio import atomic_output
from .checkpoint_io import CheckpointFormatError, check_checkpoint, load_checkpoint
from .hub import CONFIG_NAME, WEIGHTS_NAME, save_pretrained, sha256_of, write_json
from .model_folder import (DEFAULT_CARDS_DIR, PUBLISHED_CARDS, CardFolderError, new_folder,  # noqa: F401
                           published_card_of, refuse_published_card)
from .train import RUN_RECORD_NAME
from .registry import PROJECT_ROOT, get_entry

TRAINING_NAME = "training.json"
TRAINING_FIGURE = "training.png"
DATA_CHANGES_NAME = "data_changes.json"


def _load_checkpoint(path: Path) -> dict:
    # A zoo fit checkpoint (safetensors + JSON): a pickled one raises PickledCheckpointError,
    # which names the one-off conversion command.
    return load_checkpoint(path)


def _init_args(cls, hparams: dict) -> dict:
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in hparams.items() if k in accepted}


def default_hardware() -> str:
    if torch.cuda.is_available():
        return f"GPU ({torch.cuda.get_device_name()})"
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"


def read_metrics(paths: list[Path]) -> list[dict]:
    """Rows of Lightning ``metrics.csv`` files of one run, oldest first. A resumed run logs into a
    new file that starts where its checkpoint was saved, so rows of an earlier file at or after
    the next file's first step (work lost by the interruption) are dropped."""
    chain = [list(csv.DictReader(Path(p).open())) for p in paths if Path(p).is_file()]
    rows: list[dict] = []
    for later in chain:
        first = min((int(r["step"]) for r in later if r.get("step")), default=None)
        if first is not None:
            rows = [r for r in rows if int(r["step"]) < first]
        rows += later
    return rows


def run_metrics(checkpoint_path: Path, earlier: list[Path] = ()) -> list[dict]:
    return read_metrics([*earlier, checkpoint_path.parent.parent / "metrics.csv"])


def _run_config(folder: Path) -> dict:
    path = Path(folder) / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    return yaml.safe_load(path.read_text()) or {}


def _changed_settings(before: dict | None, after: dict | None) -> dict:
    """{setting: [before, after]} for every data setting (and the class) that differs."""
    before, after = before or {}, after or {}
    changes = {"class_path": [before.get("class_path"), after.get("class_path")]}
    old, new = before.get("init_args") or {}, after.get("init_args") or {}
    changes.update({key: [old.get(key), new.get(key)] for key in sorted({*old, *new})})
    return {key: pair for key, pair in changes.items() if pair[0] != pair[1]}


def data_changes(checkpoint_path, _seen: frozenset = frozenset()) -> list[dict]:
    """When and how the data settings of a run changed across the sessions it resumed from:
    ``[{"from_step": N, "changes": {setting: [before, after]}}]``, oldest first.

    A run resumed from a checkpoint (its config.yaml's ``ckpt_path``) with other data settings
    than the run that wrote that checkpoint changed them at that checkpoint's step. Earlier
    changes come from the kept state folder it resumed from (``data_changes.json``, written by
    ``save_training_state``) or, for a run resumed from another run's checkpoint, from that run.
    Without this a card's Data line states the last session's settings for the whole run.
    """
    checkpoint_path = Path(checkpoint_path)
    config = _run_config(checkpoint_path.parent.parent)
    resumed = config.get("ckpt_path")
    candidates = [Path(resumed), PROJECT_ROOT / resumed] if resumed else []
    resumed = next((p for p in candidates if p.is_file()), None)
    if resumed is None or resumed.resolve() in _seen | {checkpoint_path.resolve()}:
        return []  # a fresh run, or the checkpoint it resumed from is not on this machine
    if (resumed.parent / DATA_CHANGES_NAME).is_file():  # a kept state folder (training/NAME)
        earlier = json.loads((resumed.parent / DATA_CHANGES_NAME).read_text())
        before = _run_config(resumed.parent).get("data")
    else:  # another run's checkpoints/ folder
        earlier = data_changes(resumed, _seen | {checkpoint_path.resolve()})
        before = _run_config(resumed.parent.parent).get("data") or _run_config(resumed.parent).get("data")
    step = load_checkpoint(resumed, keys=["global_step"]).get("global_step")
    changes = _changed_settings(before, config.get("data")) if before else {}
    if changes and all(entry["from_step"] != step for entry in earlier):
        earlier = [*earlier, {"from_step": step, "changes": changes}]
    return earlier


def training_record(checkpoint_path: Path, checkpoint: dict, recipe: str | None, hardware: str | None = None,
                    rows: list[dict] | None = None) -> dict:
    """Steps and epochs from the checkpoint, training wall time from its Timer callback (present
    when the recipe sets ``max_time``; it survives resuming), the data from the run's config.yaml
    and the last validation scores from its metrics.csv."""
    version = checkpoint_path.parent.parent
    recipe = recipe or run_recipe(version)
    record = {"checkpoint": str(checkpoint_path), "global_step": checkpoint.get("global_step"),
              "epochs": checkpoint.get("epoch"), "hardware": hardware or default_hardware(), "recipe": recipe}
    timer = checkpoint.get("callbacks", {}).get("Timer", {}).get("time_elapsed", {})
    if timer.get("train"):
        record["training_seconds"] = round(timer["train"] + timer.get("validate", 0.0), 1)
        record["hours"] = round(record["training_seconds"] / 3600, 3)
    data_hp = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    if data_hp:  # what the data module saved; config.yaml (LightningCLI runs) below is more complete
        record["data"] = {"class_path": data_hp.pop("_class_path", None),
                          "init_args": {k: v for k, v in data_hp.items() if not k.startswith("_")}}
    loaded = _run_config(version)
    if loaded:
        record["data"] = loaded.get("data")
        record["trainer"] = {k: loaded.get("trainer", {}).get(k) for k in ("max_time", "max_epochs", "accelerator")}
        record["learning_rate"] = learning_rate_record(loaded)
    changes = data_changes(checkpoint_path)
    if changes:
        record["data_changes"] = changes
    lineage = checkpoint.get("callbacks", {}).get("StartFrom")
    if lineage:
        record["started_from"] = lineage
    rows = run_metrics(checkpoint_path) if rows is None else rows
    if rows:
        val = [r for r in rows if r.get("val/si_sdr")]
        if val:
            record["last_val_si_sdr_db"] = float(val[-1]["val/si_sdr"])
        rates = [float(r["lr"]) for r in rows if r.get("lr")]
        if rates and record.get("learning_rate"):
            record["learning_rate"]["last"] = rates[-1]
        for key in ("val/task0_accuracy", "val/task1_accuracy"):
            values = [float(r[key]) for r in rows if r.get(key)]
            if values:
                record[key.replace("/", "_")] = values[-1]
    return record


def run_recipe(version_folder) -> str | None:
    """The recipe a ``zoo fit`` run was given (``recipe.json`` beside its config.yaml), or None."""
    path = Path(version_folder) / RUN_RECORD_NAME
    if not path.is_file():
        return None
    recipes = json.loads(path.read_text()).get("recipe") or []
    return " + ".join(recipes) or None


def card_lineage(folder) -> dict:
    """What ``zoo.train.StartFrom`` records about its source, read from a card folder instead: for
    a run whose checkpoints predate that record (``--started-from``)."""
    from .hub import read_config
    from .train import LINEAGE_KEYS

    folder = Path(folder)
    if not (folder / TRAINING_NAME).is_file():
        raise FileNotFoundError(f"{folder} has no {TRAINING_NAME}: pass the card folder the run started from")
    training = json.loads((folder / TRAINING_NAME).read_text())
    lineage = {"model": folder.name, "source": f"local folder {folder}"}
    width = (read_config(folder).get("init_args") or {}).get("width")
    if width is not None:
        lineage["width"] = width
    lineage.update({key: training[key] for key in LINEAGE_KEYS if key in training})
    return lineage


def learning_rate_record(config: dict) -> dict | None:
    """The optimizer's configured rate and any ``zoo.train.LearningRateDecay`` of a run, from its
    resolved config.yaml (the card states them: the paper trains at a constant 1e-4)."""
    initial = ((config.get("model") or {}).get("init_args") or {}).get("lr")
    if initial is None:
        return None
    record = {"initial": initial}
    for callback in (config.get("trainer") or {}).get("callbacks") or []:
        if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith("LearningRateDecay"):
            record["decay"] = dict(callback.get("init_args") or {})
    return record


def validation_input_si_sdr(data: dict | None, model=None) -> float | None:
    """Mean SI-SDR of the unprocessed validation input of a run's data module (its config.yaml
    ``data`` block), the figure a model's validation SI-SDR has to beat; with ``model``, that of the
    model's output on the same batches (``zoo finetune`` scores the model it started from, so a
    card says what the fine-tune changed); None if not rebuildable."""
    from .data.from_config import data_module_from_block
    from .module import _si_sdr

    if not data or not data.get("class_path"):
        return None
    try:
        datamodule = data_module_from_block(data)
        with torch.inference_mode():
            scores = [_si_sdr(batch["noisy"] if model is None else model(batch["noisy"]), batch["clean"])
                      for batch in datamodule.val_dataloader()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError):
        return None  # data not here (another machine's paths): the figure goes without the line
    return float(torch.cat(scores).mean()) if scores else None


def card_from_checkpoint(checkpoint_path, name: str, out=None, recipe: str | None = None, hours: float | None = None,
                    hardware: str | None = None, earlier_metrics: list[Path] = (), started_from=None,
                    extra: dict | None = None) -> Path:
    """A new card folder for a checkpoint of the registered model ``name`` (its class and base
    card): ``out``, or ``runs/cards/NAME-stepN`` when None; never a published card in hub_cards/.

    ``started_from``: the card folder the run started from (``zoo.train.StartFrom``), for a
    checkpoint that does not record it. ``extra``: more facts for training.json (a fine-tune's
    noise, its peak memory)."""
    checkpoint_path = Path(checkpoint_path)
    entry = get_entry(name)
    if out is not None:
        refuse_published_card(out)
    checkpoint = _load_checkpoint(checkpoint_path)
    model = entry.cls(**_init_args(entry.cls, checkpoint["hyper_parameters"]))
    missing, unexpected = model.load_state_dict(checkpoint["state_dict"], strict=False)
    if missing:
        raise RuntimeError(f"{checkpoint_path} lacks weights for {name}: {missing[:5]}")
    rows = run_metrics(checkpoint_path, [Path(p) for p in earlier_metrics])
    record = training_record(checkpoint_path, checkpoint, recipe, hardware, rows)
    if started_from is not None:
        record["started_from"] = card_lineage(started_from)
        width = getattr(getattr(model, "hparams", {}), "get", lambda *_: None)("width")
        if width and record["started_from"].get("width") and width > record["started_from"]["width"]:
            record["started_from"]["widened_to"] = width  # StartFrom(widen=True) would have recorded it
    if hours is not None:
        record["hours"] = hours
    record.update(extra or {})
    folder = Path(out) if out is not None else new_folder(DEFAULT_CARDS_DIR, f"{name}-step{record['global_step']}")
    refuse_published_card(folder)  # the default too: run from inside hub_cards/, runs/cards/ would lie in it
    folder = save_pretrained(model.eval(), folder, name=name)
    reference = validation_input_si_sdr(record.get("data"))
    if reference is not None:
        record["val_input_si_sdr_db"] = round(reference, 3)
    if _plottable(rows):
        from .plots import training_figure

        training_figure(rows, folder / TRAINING_FIGURE, title=f"{name}: {record['global_step']} steps",
                        input_si_sdr=reference, initial_lr=(record.get("learning_rate") or {}).get("initial"))
    elif (folder / TRAINING_FIGURE).is_file():  # an older export's curve would describe another run
        (folder / TRAINING_FIGURE).unlink()
    write_json(folder / TRAINING_NAME, record)
    write_card_readme(folder, entry)
    return folder


def _plottable(rows: list[dict]) -> bool:
    """A run that logged a training loss or a validation score: something for training.png to draw."""
    return any(r.get("train/loss") or r.get("val/si_sdr") or r.get("val/loss") for r in rows)


def write_card_readme(folder, entry) -> Path:
    """README.md of an exported folder, rendered from its own config.json and training.json: what
    it is, what it started from, how to use, score and publish it. No scores: none were measured
    (``zoo eval`` measures them)."""
    from huggingface_hub import ModelCard, ModelCardData

    from .cards import training_section
    from .hub import CARD_NAME, read_config, write_text

    folder = Path(folder)
    config = read_config(folder)
    record = json.loads((folder / TRAINING_NAME).read_text()) if (folder / TRAINING_NAME).is_file() else {}
    started = record.get("started_from") or {}
    base_license = None
    if (entry.card_path / CARD_NAME).is_file():
        base_license = ModelCard.load(entry.card_path / CARD_NAME).data.license
    shown = _shown_folder(folder)
    data = ModelCardData(library_name="zoo", license=base_license or "apache-2.0", pipeline_tag="audio-to-audio",
                         tags=["audio", "speech-enhancement", "denoising", "audio-to-audio", "zoo", entry.name,
                               *(["fine-tuned"] if started else [])],
                         base_model=entry.hub_repo if started.get("model") == entry.name else None,
                         model_name=folder.name)
    origin = (f"`{entry.name}` ({entry.summary.rstrip('.')}), fine-tuned: it started from "
              f"`{started.get('model')}` ({started.get('source', 'source not recorded')})" if started else
              f"`{config['architecture']}` trained as `{entry.name}` ({entry.summary.rstrip('.')})")
    fine_tune = record.get("finetune") or {}
    facts = []
    if fine_tune.get("noise"):
        facts.append(f"- Your noise: {', '.join(fine_tune['noise'])}")
    if fine_tune.get("peak_memory_gb") is not None:
        facts.append(f"- Peak memory of the fine-tuning process: {fine_tune['peak_memory_gb']:.2f} GB "
                     "(VmHWM; training and export)")
    if fine_tune.get("wall_seconds") is not None:
        facts.append(f"- Wall-clock time of the training: {fine_tune['wall_seconds'] / 60:.1f} min")
    body = f"""
# {folder.name}

{origin}. Exported by zoo from `{record.get('checkpoint', 'a training checkpoint')}`.

- Paper: {entry.paper or 'see the base card'}
- Architecture: `{config['architecture']}` at {config['sample_rate']} Hz, init arguments
  `{json.dumps(config.get('init_args', {}), sort_keys=True)}`
- Weights: `model.safetensors`, sha256 `{config.get('weights_sha256', '?')}`
{chr(10).join(facts)}

## Use

```python
import zoo
model = zoo.load("{shown}")
enhanced = model.enhance(noisy, sample_rate=48000)  # any rate, [T] or [channels, T]
```

```bash
zoo denoise noisy/ -o enhanced/ --model {shown}
zoo eval --model {shown} --model {entry.name} --data voicebank-demand:PATH   # scores, beside the base model
zoo publish {shown} --repo-id ORG/{folder.name}
```

## Scores

None measured yet: this folder was exported from a training run. `zoo eval` measures them; the
published card of `{entry.name}` holds the base model's.
{training_section(folder)}"""
    path = folder / CARD_NAME
    write_text(path, ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body).content)
    return path


def _shown_folder(folder: Path) -> str:
    """The folder as a user types it: relative to the working directory when below it, and with a
    slash, so that ``zoo.load`` takes it for a folder even where a model has the same name."""
    try:
        text = str(Path(folder).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)
    return text if "/" in text else f"./{text}"


def save_training_state(checkpoint_path, folder, earlier_metrics: list[Path] = ()) -> Path:
    """Copy what resuming a run needs into ``folder`` (committed, e.g. ``training/NAME``): the
    checkpoint as ``last.ckpt``, the run's resolved ``config.yaml`` and one ``metrics.csv`` with
    the logs of this run and the runs it resumed from, stitched where each resumed, and
    ``data_changes.json``: when the data settings changed, for the cards of later sessions."""
    import shutil

    checkpoint_path, folder = Path(checkpoint_path), Path(folder)
    check_checkpoint(checkpoint_path)  # kept state is never a pickle (a later session resumes from it)
    folder.mkdir(parents=True, exist_ok=True)
    version = checkpoint_path.parent.parent
    changes = data_changes(checkpoint_path)  # before last.ckpt and config.yaml, which it reads, are replaced
    with atomic_output(folder / "last.ckpt") as temporary:
        shutil.copyfile(checkpoint_path, temporary)
    if (version / "config.yaml").is_file():
        # The run's config names the checkpoint it resumed from (a path under runs/, which is not
        # kept); point it at the kept one so `zoo fit --config folder/config.yaml` resumes. A line
        # edit, not a YAML round trip: PyYAML reads an unquoted max_time like 00:12:00:00 as a
        # base-60 integer.
        config, found = re.subn(r"^ckpt_path:.*$", f"ckpt_path: {folder / 'last.ckpt'}",
                                (version / "config.yaml").read_text(), flags=re.M)
        if not found:
            config = f"{config.rstrip()}\nckpt_path: {folder / 'last.ckpt'}\n"
        (folder / "config.yaml").write_text(config)
    rows = run_metrics(checkpoint_path, [Path(p) for p in earlier_metrics])
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_output(folder / "metrics.csv") as temporary, open(temporary, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    write_json(folder / DATA_CHANGES_NAME, changes)
    return folder


def feature_loss_net_card(checkpoint_path, out=None, recipe: str | None = None, hours: float | None = None,
                            hardware: str | None = None) -> Path:
    """The loss network's own card: its weights and its held-out classification accuracy."""
    from .models.feature_loss import FeatureLossNet

    checkpoint_path = Path(checkpoint_path)
    checkpoint = _load_checkpoint(checkpoint_path)
    hp = checkpoint["hyper_parameters"]
    init_args = {"task_classes": list(hp["task_classes"])}
    net = FeatureLossNet(**init_args)
    state = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    net.load_state_dict(state)
    if out is not None:
        refuse_published_card(out)
    folder = Path(out) if out is not None else new_folder(DEFAULT_CARDS_DIR,
                                                          f"feature-loss-net-step{checkpoint.get('global_step')}")
    refuse_published_card(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(folder / WEIGHTS_NAME) as temporary:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, temporary, metadata={"format": "pt"})
    write_json(folder / CONFIG_NAME, {"architecture": "FeatureLossNet", "init_args": init_args, "sample_rate": 16000,
                                      "weights_sha256": sha256_of(folder / WEIGHTS_NAME),
                                      "task_names": list(hp.get("task_names", []))})
    record = training_record(checkpoint_path, checkpoint, recipe, hardware)
    if hours is not None:
        record["hours"] = hours
    write_json(folder / TRAINING_NAME, record)
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--model", help="registered name the checkpoint was trained as (its class and base card)")
    group.add_argument("--feature-loss-net", action="store_true")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"the card folder to write (default: a new {DEFAULT_CARDS_DIR}/NAME-stepN); never hub_cards/")
    parser.add_argument("--recipe", default=None)
    parser.add_argument("--hours", type=float, default=None,
                        help="wall-clock training hours, for the card (default: the checkpoint's Timer)")
    parser.add_argument("--hardware", default=None, help="what it trained on, for the card (default: this machine)")
    parser.add_argument("--note", default=None, help="a sentence for the card's training section")
    parser.add_argument("--earlier-metrics", nargs="*", type=Path, default=[],
                        help="metrics.csv files of the sessions this run resumed from, oldest first")
    parser.add_argument("--started-from", type=Path, default=None, metavar="CARD",
                        help="the card folder a StartFrom run started from, if its checkpoint does not record it")
    parser.add_argument("--keep-state", type=Path, default=None, metavar="FOLDER",
                        help="also copy checkpoint, config and stitched logs there, to resume later (training/NAME)")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.exit(2, f"zoo.card_from_checkpoint: error: {args.checkpoint}: no such checkpoint file\n")
    try:
        if args.feature_loss_net:
            folder = feature_loss_net_card(args.checkpoint, args.out, args.recipe, args.hours, args.hardware)
        else:
            folder = card_from_checkpoint(args.checkpoint, args.model, args.out, args.recipe, args.hours, args.hardware,
                                     args.earlier_metrics, args.started_from)
    except (CardFolderError, CheckpointFormatError, KeyError) as error:  # KeyError: an unknown --model name
        parser.exit(2, f"zoo.card_from_checkpoint: error: {error}\n")
    if args.keep_state:
        save_training_state(args.checkpoint, args.keep_state, args.earlier_metrics)
    if args.note:
        record = json.loads((folder / TRAINING_NAME).read_text())
        write_json(folder / TRAINING_NAME, {**record, "note": args.note})
        if args.model:
            write_card_readme(folder, get_entry(args.model))  # the card's training section shows the note
    print(json.dumps({"folder": str(folder), "files": sorted(p.name for p in folder.iterdir())}))
    if args.model:
        shown = _shown_folder(folder)
        print(f"card folder: {shown}\nnext:\n  zoo denoise noisy/ -o enhanced/ --model {shown}\n"
              f"  zoo publish {shown} --repo-id ORG/{folder.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
