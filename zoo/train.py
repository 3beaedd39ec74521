"""``zoo fit``: LightningCLI over every LightningModule (DenoiserModules and the parts they pretrain) and LightningDataModule.

A recipe is a YAML file (``recipes/<model>/<recipe>.yaml``) naming a model and a data module by
class path with their init arguments plus trainer settings; any value can be overridden on the
command line (``--trainer.max_epochs 5 --model.init_args.width 32``).

Checkpoints are written and read by ``zoo.checkpoint_io.SafetensorsCheckpointIO`` (safetensors +
JSON, no pickle): ``zoo fit`` adds it to every trainer, so recipes need not name it and
``--ckpt_path`` resumes without unpickling.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

from .paths import recipe_name, shown as _shown

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback


class StartFrom(Callback):
    """Fine-tuning: start training from a published model's weights (a registered name, a card
    folder or ``ORG/NAME`` on the Hub, resolved like ``zoo.load``).

    In a recipe::

        trainer:
          callbacks:
            - class_path: zoo.train.StartFrom
              init_args: {model: feature-loss-can}

    The weights are copied in Lightning's ``setup`` hook, before ``--ckpt_path`` is restored, so
    resuming an interrupted fine-tuning run continues from its own checkpoint. What the run started
    from (the source, its width, and the steps, hours and hardware of its card's ``training.json``)
    is kept in every checkpoint as this callback's state, so that ``python -m zoo.card_from_checkpoint``
    can say on the new card how much training lies behind it, even after the card it started from
    has been replaced (a resumed run keeps the lineage of its first session, not the card of the
    day). The recipe's model must be the same class with the same shapes as the published one,
    except with ``widen: true``: then a published model narrower than the recipe's is first widened
    to the recipe's width by the model itself (:class:`Widenable`: the CAN's Net2WiderNet keeps its
    output unchanged), so training at the paper's W=64 continues from weights trained at W=32.
    """

    def __init__(self, model: str, revision: str | None = None, widen: bool = False):
        self.model, self.revision, self.widen = model, revision, widen
        self.lineage: dict = {}

    def state_dict(self) -> dict:
        return dict(self.lineage)

    def load_state_dict(self, state_dict: dict) -> None:
        self.lineage = dict(state_dict)

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        import zoo

        source = zoo.load(self.model, revision=self.revision)
        if type(source) is not type(pl_module):
            raise ValueError(f"StartFrom({self.model!r}) is a {type(source).__name__} but the recipe trains a "
                             f"{type(pl_module).__name__}: set the recipe's model class_path to match")
        self.lineage = source_lineage(self.model, source)
        if self.widen:
            self._widen(source, pl_module)
            self.lineage["widened_to"] = pl_module.width
        theirs, ours = source.state_dict(), pl_module.state_dict()
        mismatched = [k for k in theirs if k in ours and theirs[k].shape != ours[k].shape]
        if mismatched:
            raise ValueError(f"StartFrom({self.model!r}): the recipe's model has other shapes ({mismatched[0]}: "
                             f"{tuple(ours[mismatched[0]].shape)} here, {tuple(theirs[mismatched[0]].shape)} "
                             "published); use the published init_args (zoo info NAME shows them)")
        pl_module.load_state_dict(theirs)
        print(f"starting from {self.model}: {source.zoo_source}")


    def _widen(self, source, pl_module) -> None:
        if not isinstance(source, Widenable):
            raise ValueError(f"StartFrom({self.model!r}, widen=True): {type(source).__name__} cannot be widened (a "
                             "model that can declares `width` and `widen_to(width)`, keeping its output, as the "
                             "context aggregation networks do); drop widen")
        ours, theirs = pl_module.width, source.width
        if ours < theirs:
            raise ValueError(f"StartFrom({self.model!r}, widen=True): the recipe's width {ours} is below the "
                             f"published {theirs}; set --model.init_args.width {theirs} or more")
        if ours > theirs:
            source.widen_to(ours)
            print(f"widened {self.model} from W={theirs} to W={ours} (same output)")


@runtime_checkable
class Widenable(Protocol):
    """A model that ``StartFrom(widen=True)`` can carry to a larger width: it says its ``width``
    and grows to a larger one in place with the same output (the CAN: Net2WiderNet, Chen,
    Goodfellow & Shlens 2016, :meth:`zoo.models.can.ContextAggregationNetwork.widened`)."""

    @property
    def width(self) -> int: ...

    def widen_to(self, width: int) -> None: ...


# What a card needs about the training behind the weights a run started from.
#: written beside a run's config.yaml (SaveRunConfig): the recipe(s) it was given
RUN_RECORD_NAME = "recipe.json"

LINEAGE_KEYS = ("global_step", "epochs", "hours", "hardware", "recipe", "data_changes", "started_from")


def source_lineage(name: str, source) -> dict:
    """``{"model", "source", "width", <LINEAGE_KEYS of its training.json>}`` of a loaded model."""
    import json
    from pathlib import Path

    lineage = {"model": name, "source": getattr(source, "zoo_source", name)}
    if isinstance(source, Widenable):  # a model with a width says it; the card shows it beside the steps
        lineage["width"] = int(source.width)
    folder = getattr(source, "zoo_folder", None)
    record = Path(folder) / "training.json" if folder else None
    if record is not None and record.is_file():
        training = json.loads(record.read_text())
        lineage.update({key: training[key] for key in LINEAGE_KEYS if key in training})
    return lineage


class CompileNetwork(Callback):
    """``torch.compile`` the model, or one of its submodules, in place for training
    (``module.compile()``: the state-dict keys and checkpoints stay as they are, so cards and
    resuming are unaffected).

    ``module``: the dotted name of the submodule to compile; by default the whole model's
    ``forward``. The CAN recipes name ``network.body``, the CAN's training path (inference folds
    the normalisation into the convolutions and runs a different, uncompiled function). Measured
    on the 2-core CPU: a W=64 training step on 4 x 1 s takes 0.72x the eager time after about a
    minute of compiling.
    """

    def __init__(self, module: str | None = None):
        self.module = module

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage != "fit":
            return
        import operator

        try:
            target = operator.attrgetter(self.module)(pl_module) if self.module else pl_module
        except AttributeError:
            raise ValueError(f"CompileNetwork(module={self.module!r}): {type(pl_module).__name__} has no such "
                             "submodule; name one of its modules (print the model to see them) or drop module "
                             "to compile the whole model") from None
        target.compile()


class LearningRateDecay(Callback):
    """Geometric learning-rate decay as a function of the optimizer step alone.

    Until ``start_step`` the optimizer keeps the rate it was configured with; from ``start_step``
    to ``end_step`` the rate falls geometrically to ``final_lr``, and stays there after. Written
    as a function of ``trainer.global_step`` rather than as an LR scheduler because the CPU runs
    here span sessions: a schedule added to a run that is resumed from a checkpoint saved without
    one would start from scratch (and Adam's restored param groups carry the old rate), while a
    rate computed from the step is the same however often the run is interrupted. The rate is
    logged as ``lr`` each step.

    In a recipe::

        - class_path: zoo.train.LearningRateDecay
          init_args: {start_step: 7000, end_step: 10000, final_lr: 1.0e-4}

    Lists chain segments, each starting from where the one before ended (an annealing phase added
    to a run that has levelled off at the first segment's rate)::

          init_args: {start_step: [7000, 14500], end_step: [10000, 16500], final_lr: [1.0e-4, 2.0e-5]}

    The feature-loss paper trains the CAN at a constant 1e-4 (appendix, "Training"); the shared-data recipes start at
    5e-4 for the CPU budget and decay to the paper's rate once validation has levelled off.
    """

    def __init__(self, start_step: int | list[int], end_step: int | list[int], final_lr: float | list[float]):
        starts, ends, finals = (list(v) if isinstance(v, (list, tuple)) else [v] for v in (start_step, end_step, final_lr))
        if not len(starts) == len(ends) == len(finals) >= 1:
            raise ValueError("LearningRateDecay needs as many start_step as end_step and final_lr values, got "
                             f"{len(starts)}, {len(ends)} and {len(finals)}")
        previous_end = 0
        for start, end, final in zip(starts, ends, finals):
            if not 0 <= start < end:
                raise ValueError(f"LearningRateDecay needs 0 <= start_step < end_step, got {start} and {end}")
            if start < previous_end:
                raise ValueError(f"LearningRateDecay segments must not overlap: one starts at step {start} "
                                 f"before the one before it ends at step {previous_end}")
            if final <= 0:
                raise ValueError(f"LearningRateDecay needs a positive final_lr, got {final}")
            previous_end = end
        self.segments = list(zip(starts, ends, finals))

    def rate(self, step: int, initial_lr: float) -> float:
        """The learning rate at optimizer step ``step`` for a run configured with ``initial_lr``."""
        current = initial_lr
        for start, end, final in self.segments:
            if step <= start:
                return current
            fraction = min(1.0, (step - start) / (end - start))
            if fraction < 1.0:
                return current * (final / current) ** fraction
            current = final
        return current

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        initial = pl_module.hparams.lr  # the configured rate, not the one restored with Adam's state
        lr = self.rate(trainer.global_step, initial)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        pl_module.log("lr", lr, on_step=True, on_epoch=False)


class SaveRunConfig(SaveConfigCallback):
    """LightningCLI's config.yaml, plus ``recipe.json`` beside it: the recipe file(s) and the
    command line the run was given, which the resolved config.yaml does not keep (so that
    ``python -m zoo.card_from_checkpoint`` states the recipe on the card). Refuses a run whose logs or
    checkpoints would go into a published card folder (``hub_cards/``)."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        from .model_folder import refuse_published_card

        # on every rank: ``trainer.log_dir`` is a collective call (a broadcast) under DDP, and
        # ``save_config`` below runs on rank 0 only, where calling it would wait forever
        self.run_log_dir = trainer.log_dir
        if self.run_log_dir:
            refuse_published_card(self.run_log_dir)
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer, pl_module, stage: str) -> None:
        log_dir = getattr(self, "run_log_dir", None)
        if not log_dir:
            return
        recipes = [recipe_name(getattr(path, "absolute", path)) for path in (self.config.get("config") or [])]
        record = {"recipe": recipes, "command": " ".join(["zoo", *sys.argv[1:]])}
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        (Path(log_dir) / RUN_RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")


def checkpoints_of(trainer) -> dict:
    """``{"last": path, "best": path, "best_score": float, "monitor": str, "log_dir": path}`` of a
    finished run (paths empty where the run kept none)."""
    found = {"last": "", "best": "", "best_score": None, "monitor": None, "log_dir": trainer.log_dir or ""}
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        if callback.monitor:
            score = callback.best_model_score
            found.update(best=callback.best_model_path, monitor=callback.monitor,
                         best_score=None if score is None else float(score))
        elif callback.last_model_path or callback.best_model_path:
            found["last"] = found["last"] or callback.last_model_path or callback.best_model_path
    return found


def model_name_of(trainer, pl_module) -> str:
    """The registered name a run trains: its StartFrom model, else the one name of its class, else NAME."""
    from .registry import entries

    for callback in trainer.callbacks:
        if isinstance(callback, StartFrom):
            return callback.model
    names = [entry.name for entry in entries() if entry.cls is type(pl_module)]
    return names[0] if len(names) == 1 else "NAME"


def report_run(trainer, pl_module) -> dict:
    """Say where a finished ``zoo fit`` run put its checkpoints and what to run next."""
    found = checkpoints_of(trainer)
    shown = {key: _shown(found[key]) if found[key] else "" for key in ("last", "best", "log_dir")}
    lines = [f"training finished at step {trainer.global_step}; logs: {shown['log_dir']}"]
    if shown["last"]:
        lines.append(f"  last checkpoint: {shown['last']}")
    if shown["best"]:
        score = f" ({found['best_score']:.3f})" if found["best_score"] is not None else ""
        lines.append(f"  best by {found['monitor']}{score}: {shown['best']}")
    elif found["monitor"]:
        lines.append(f"  no best checkpoint: {found['monitor']} was never logged (no validation ran; "
                     "under one epoch, set --trainer.val_check_interval, or use zoo finetune --steps)")
    if shown["last"]:
        name = model_name_of(trainer, pl_module)
        lines += ["next: a card folder from it (a new folder; hub_cards/ is never written):",
                  f"  python -m zoo.card_from_checkpoint {shown['last']} --model {name} --out my-{name}"]
    if trainer.is_global_zero:  # every rank gets here (log_dir is a collective call); one says it
        print("\n".join(lines), file=sys.stderr)
    return found


class ZooCLI(LightningCLI):
    """LightningCLI whose trainer writes and reads checkpoints as safetensors + JSON
    (``zoo.checkpoint_io``), whatever the recipe or a kept run's resolved config says about
    ``trainer.plugins``: added at instantiation rather than as a ``trainer_defaults`` value,
    which a config's ``plugins: null`` (every resolved config.yaml has one) or a precision plug-in
    would replace, silently bringing back pickles. A recipe that names a checkpoint plug-in of its
    own keeps it."""

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        from .checkpoint_io import with_safetensors_checkpoints

        configured = kwargs.pop("plugins", (self._get(self.config_init, "trainer", default={}) or {}).get("plugins"))
        return super().instantiate_trainer(plugins=with_safetensors_checkpoints(configured), **kwargs)

    def _parse_ckpt_path(self) -> None:
        """LightningCLI's own, reading the hyper-parameters of ``--ckpt_path`` into the model's
        config, as LightningCLI does, but from a zoo checkpoint: Lightning's reads the file with
        ``torch.load`` (a pickle), before any trainer or plug-in exists. A pickled file is refused
        here, with the command that converts it."""
        from .checkpoint_io import load_checkpoint

        if not self.config.get("subcommand"):
            return
        ckpt_path = self.config[self.config.subcommand].get("ckpt_path")
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        hparams = dict(load_checkpoint(ckpt_path, keys=["hyper_parameters"]).get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        try:
            self.config = self.parser.parse_object({self.config.subcommand: {"model": hparams}}, self.config)
        except SystemExit:
            sys.stderr.write("Parsing of ckpt_path hyperparameters failed!\n")
            raise


def run_lightning_cli(args: list[str], report: bool = True) -> LightningCLI:
    import zoo.models  # noqa: F401  (make every architecture importable by class path)

    # LightningCLI reads sys.argv itself; hand it exactly the recipe arguments.
    sys.argv = ["zoo", *args]
    cli = ZooCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=SaveRunConfig,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    if report and args and args[0] == "fit" and getattr(cli, "trainer", None) is not None:
        report_run(cli.trainer, cli.model)
    return cli
