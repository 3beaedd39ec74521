"""``zoo finetune``: one command from a folder of your noise to a card folder that loads and publishes.

    zoo finetune --noise my_noise/ [--model feature-loss-can] [--steps N] [--out FOLDER] [-- LightningCLI overrides]

It runs the model's fine-tuning recipe (``recipes/NAME/finetune-noise.yaml`` with the data block it
names, ``recipes/data/finetune-noise.yaml``: the source of every setting: start from the published
weights, loss, learning rate, data) through the same
LightningCLI path as ``zoo fit``, with your noise as the training noise, then exports the last
checkpoint with ``zoo.card_from_checkpoint`` into a new card folder (``--out``, or ``runs/cards/NAME-NOISE``,
never an existing folder and never ``hub_cards/``) and prints it with the commands to use and
publish it. The training run (checkpoints, logs, config) stays in ``runs/finetune/<card name>``.

``--steps N`` trains N optimizer steps instead of the recipe's epochs; validation then runs every
epoch's worth of steps and at step N whatever N is, so a short run still has a validation
score, a best checkpoint and a training curve.
"""
from __future__ import annotations

import json
import resource
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .paths import PROJECT_ROOT, recipe_name, shown as _shown

RUNS_DIR = Path("runs") / "finetune"
RECIPE_NAME = "finetune-noise.yaml"


class FinetuneError(ValueError):
    """A fine-tune that cannot start as asked; the message names the problem and the fix."""


@dataclass
class FinetuneResult:
    card: Path  # the new card folder
    run: Path  # the training run's log folder (config.yaml, metrics.csv, checkpoints/)
    last_checkpoint: Path
    best_checkpoint: Path | None
    steps: int
    peak_memory_bytes: int
    seconds: float


def peak_memory_bytes() -> int:
    """This process's peak resident memory: VmHWM from /proc/self/status (ru_maxrss elsewhere; in
    this process, not a child, so it is not inherited from a parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def default_recipe(model: str) -> Path:
    return PROJECT_ROOT / "recipes" / model / RECIPE_NAME


def _recipe_settings(recipe: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(recipe.read_text()) or {}
    except yaml.YAMLError as error:
        raise FinetuneError(f"{recipe} is not valid YAML ({error})") from error


def _start_from(settings: dict) -> str | None:
    for callback in (settings.get("trainer") or {}).get("callbacks") or []:
        if isinstance(callback, dict) and str(callback.get("class_path", "")).endswith("StartFrom"):
            return (callback.get("init_args") or {}).get("model")
    return None


def _override(overrides: list[str], key: str):
    """The value of ``--key VALUE`` or ``--key=VALUE`` among LightningCLI overrides, else None."""
    for index, item in enumerate(overrides):
        if item == f"--{key}" and index + 1 < len(overrides):
            return overrides[index + 1]
        if item.startswith(f"--{key}="):
            return item.split("=", 1)[1]
    return None


def batches_per_epoch(settings: dict, overrides: list[str]) -> int | None:
    data = (settings.get("data") or {}).get("init_args") or {}
    try:
        size = int(_override(overrides, "data.init_args.train_size") or data.get("train_size"))
        batch = int(_override(overrides, "data.init_args.batch_size") or data.get("batch_size"))
    except (TypeError, ValueError):
        return None
    return max(1, -(-size // batch))


def validation_interval(steps: int, per_epoch: int | None) -> int:
    """The largest divisor of ``steps`` not above an epoch's batches: validation at least once an
    epoch, and always at the last step."""
    limit = per_epoch or steps
    return max(d for d in range(1, steps + 1) if steps % d == 0 and d <= limit)


def noise_paths(noise: list) -> list[Path]:
    from .data.files import AUDIO_SUFFIXES

    if not noise:
        raise FinetuneError("name your noise: zoo finetune --noise FOLDER (audio files: .wav, .flac, ...)")
    paths = []
    for item in noise:
        path = Path(item).expanduser()
        if not path.exists():
            raise FinetuneError(f"--noise {item}: no such folder or file")
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        if not any(p.suffix.lower() in AUDIO_SUFFIXES for p in files):
            raise FinetuneError(f"--noise {item}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) there")
        paths.append(path.resolve())  # the data layer reads relative paths below ../shared/data
    return paths


def card_folder(out, model: str, noise: list[Path]) -> Path:
    from .card_from_checkpoint import DEFAULT_CARDS_DIR, new_folder, refuse_published_card

    out = new_folder(DEFAULT_CARDS_DIR, f"{model}-{noise[0].stem}") if out is None else Path(out)
    refuse_published_card(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FinetuneError(f"--out {out} exists and is not an empty folder: a fine-tune writes a new card "
                            "folder; choose another name (or leave out --out for a new runs/cards/ folder)")
    return out


def finetune(noise: list, model: str = "feature-loss-can", steps: int | None = None, out=None, recipe=None,
             overrides: list[str] = (), runs_dir=RUNS_DIR) -> FinetuneResult:
    """Fine-tune ``model`` on the noise files or folders ``noise``; return where everything went."""
    from .card_from_checkpoint import CardFolderError, card_from_checkpoint
    from .registry import get_entry, is_registered, list_models
    from .train import checkpoints_of, run_lightning_cli

    if not is_registered(model):
        raise FinetuneError(f"--model {model}: not a registered model ({', '.join(list_models())})")
    recipe = Path(recipe) if recipe is not None else default_recipe(model)
    if not recipe.is_file():
        raise FinetuneError(f"{model} has no fine-tuning recipe ({_shown(recipe)}); pass --recipe FILE")
    if steps is not None and steps < 1:
        raise FinetuneError(f"--steps {steps}: give a positive number of optimizer steps")
    from .data.from_config import data_block, recipe_configs

    settings = _recipe_settings(recipe)
    try:
        configs = recipe_configs(recipe)  # [recipes/data/finetune-noise.yaml, the model's recipe]
        settings["data"] = data_block(*configs)  # batches_per_epoch reads train_size and batch_size from it
    except (OSError, ValueError) as error:
        raise FinetuneError(str(error)) from error
    source = _start_from(settings)
    if source != model:
        raise FinetuneError(f"{_shown(recipe)} starts from {source!r} (its zoo.train.StartFrom), not {model!r}; "
                            f"pass the recipe of {model}")
    get_entry(model)
    noise = noise_paths(noise)
    overrides = list(overrides)
    try:
        card = card_folder(out, model, noise)
    except CardFolderError as error:
        raise FinetuneError(str(error)) from error
    run_root = Path(runs_dir) / card.name
    while run_root.exists():  # a new run folder: its checkpoints are version_0, never an older run's
        run_root = Path(f"{run_root}-new")
    args = ["fit", *[arg for config in configs for arg in ("--config", _shown(config))], "--data.init_args.noise", json.dumps([str(p) for p in noise]),
            "--trainer.default_root_dir", str(run_root), "--trainer.logger.init_args.save_dir", str(run_root)]
    if steps is not None:
        interval = validation_interval(steps, batches_per_epoch(settings, overrides))
        log_every = min(int((settings.get("trainer") or {}).get("log_every_n_steps") or 50), max(1, steps // 10))
        args += ["--trainer.max_steps", str(steps), "--trainer.max_epochs", "-1",
                 "--trainer.val_check_interval", str(interval), "--trainer.check_val_every_n_epoch", "null",
                 "--trainer.log_every_n_steps", str(log_every)]
    args += overrides
    print(f"fine-tuning {model} on {', '.join(map(_shown, noise))} with {' + '.join(map(_shown, configs))}"
          + (f", {steps} steps" if steps else "") + f"; training run in {_shown(run_root)}", file=sys.stderr)
    started = time.monotonic()
    try:
        cli = run_lightning_cli(args, report=False)
    except (KeyboardInterrupt, SystemExit):  # Lightning turns Ctrl-C into sys.exit(1) after its clean-up
        print(f"fine-tune interrupted: no card folder written; the run's logs and checkpoints so far are in "
              f"{_shown(run_root)}", file=sys.stderr)
        raise
    seconds = time.monotonic() - started
    peak = peak_memory_bytes()
    found = checkpoints_of(cli.trainer)
    if not found["last"]:
        raise FinetuneError(f"the run in {_shown(run_root)} kept no checkpoint: its recipe needs a "
                            "ModelCheckpoint(save_last: true) callback")
    start_score = _start_model_score(model, Path(found["log_dir"]))
    extra = {"finetune": {"noise": [_shown(p) for p in noise], "base_model": model, "steps_asked": steps,
                          "val_start_si_sdr_db": start_score,
                          "peak_memory_gb": round(peak / 1e9, 2), "wall_seconds": round(seconds, 1),
                          "fit_command": shlex.join(["zoo", *args]),
                          "best_checkpoint": found["best"] or None}}
    card_from_checkpoint(found["last"], model, out=card, recipe=" + ".join(recipe_name(c) for c in configs), hours=round(seconds / 3600, 4),
                    extra=extra)
    result = FinetuneResult(card, Path(found["log_dir"]), Path(found["last"]),
                            Path(found["best"]) if found["best"] else None, cli.trainer.global_step, peak, seconds)
    print(summary(result, found, start_score), file=sys.stderr)
    return result


def _start_model_score(model: str, log_dir: Path) -> float | None:
    """Validation SI-SDR of the model the fine-tune started from, on the run's own validation
    batches: Lightning validates only after training steps, and without this figure a card could
    not say whether the fine-tune helped (a short run may end below where it started)."""
    import zoo

    from .card_from_checkpoint import _run_config, validation_input_si_sdr

    data = _run_config(log_dir).get("data")
    try:
        start = zoo.load(model)
    except Exception:  # noqa: BLE001 - the figure is optional; the fine-tune itself is done
        return None
    score = validation_input_si_sdr(data, start)
    return round(score, 3) if score is not None else None


def summary(result: FinetuneResult, found: dict, start_score: float | None = None) -> str:
    shown = _shown(result.card)
    shown = shown if "/" in shown else f"./{shown}"
    score = f" ({found['best_score']:.3f})" if found.get("best_score") is not None else ""
    best = (f"\n  best by {found['monitor']}{score}: {_shown(result.best_checkpoint)}"
            if result.best_checkpoint else "")
    if start_score is not None:  # where it started, on the same validation batches
        best += f"\n  validation SI-SDR of the model it started from: {start_score:.3f} dB"
    took = f"{result.seconds / 60:.1f} min" if result.seconds >= 60 else f"{result.seconds:.0f} s"
    return (f"fine-tuned {result.steps} steps in {took}, peak memory "
            f"{result.peak_memory_bytes / 1e9:.2f} GB\n"
            f"training run: {_shown(result.run)}\n  last checkpoint: {_shown(result.last_checkpoint)}{best}\n"
            f"card folder: {shown}\n"
            f"next:\n"
            f"  zoo denoise noisy/ -o enhanced/ --model {shown}\n"
            f"  zoo eval --model {shown} --data voicebank-demand:PATH\n"
            f"  zoo publish {shown} --repo-id ORG/{result.card.name}")
