"""``zoo fit``: LightningCLI over every LightningModule (DenoiserModules and the parts they pretrain) and LightningDataModule.

A recipe is a YAML file (``recipes/<model>/<recipe>.yaml``) naming a model and a data module by
class path with their init arguments plus trainer settings; any value can be overridden on the
command line (``--trainer.max_epochs 5 --model.init_args.width 32``).
"""
from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import LightningCLI




def run_lightning_cli(args: list[str]) -> LightningCLI:
    import sys

    import zoo.models  # noqa: F401  (make every architecture importable by class path)

    # LightningCLI reads sys.argv itself; hand it exactly the recipe arguments.
    sys.argv = ["zoo", *args]
    return LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
