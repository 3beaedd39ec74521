"""Checkpoints of every recipe: ``last.ckpt`` is the latest state (what resuming and
``zoo.export`` read), the best-by-validation checkpoint is kept beside it.

Why a test: with Lightning 2.6 a ``ModelCheckpoint(save_last=True, monitor=...)`` only rewrites
``last.ckpt`` when the monitored score improves, so a run that had stopped improving resumed
(and was exported) from an older step. The recipes keep the two jobs in two callbacks.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").glob("*/*.yaml"))
CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"


def _checkpoint_callbacks(recipe: Path) -> list[dict]:
    callbacks = (yaml.safe_load(recipe.read_text()).get("trainer") or {}).get("callbacks") or []
    return [c.get("init_args") or {} for c in callbacks if c.get("class_path") == CHECKPOINT]


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_last_checkpoint_is_never_tied_to_a_monitored_score(recipe):
    callbacks = _checkpoint_callbacks(recipe)
    for args in callbacks:
        assert not (args.get("save_last") and args.get("monitor")), (
            f"{recipe}: save_last with monitor keeps last.ckpt at the best step, not the last")
    if callbacks:  # a recipe that checkpoints keeps the latest state
        assert any(args.get("save_last") for args in callbacks), recipe


def test_the_recipes_pattern_keeps_the_latest_and_the_best(tmp_path):
    """Two callbacks as in the recipes, on a real run whose monitored score (here: lowest SI-SDR,
    so the first epoch stays 'best') stops improving: last.ckpt still follows the run."""
    (tmp_path / "callbacks.yaml").write_text(f"""
trainer:
  callbacks:
    - class_path: {CHECKPOINT}
      init_args: {{monitor: val/si_sdr, mode: min, filename: "best-{{epoch}}-{{step}}"}}
    - class_path: {CHECKPOINT}
      init_args: {{save_last: true}}
""")
    result = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "fit", "--config", "recipes/can/debug.yaml", "--config",
         str(tmp_path / "callbacks.yaml"), "--trainer.max_epochs", "4", "--model.init_args.width", "4",
         "--data.init_args.train_size", "8",
         "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "lightning_logs/version_0/checkpoints"
    steps = {p.name: torch.load(p, weights_only=True)["global_step"] for p in folder.glob("*.ckpt")}
    assert steps["last.ckpt"] == 8  # 4 epochs of 2 batches
    best = [step for name, step in steps.items() if name.startswith("best-")]
    assert len(best) == 1 and best[0] < steps["last.ckpt"]  # the best stayed early; last moved on


def test_recipe_comments_name_only_modules_and_classes_that_exist():
    """A recipe's comments are its instructions: every ``zoo.X`` they name (``python -m zoo.export``,
    ``zoo.train.StartFrom``) must import, or the user's next command fails."""
    import importlib
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    missing = []
    for recipe in sorted((root / "recipes").rglob("*.yaml")):
        comments = "\n".join(line.split("#", 1)[1] for line in recipe.read_text().splitlines() if "#" in line)
        for name in sorted(set(re.findall(r"\bzoo(?:\.[A-Za-z_]\w*)+", comments))):
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    found = importlib.import_module(".".join(parts[:cut]))
                    for attribute in parts[cut:]:
                        found = getattr(found, attribute)
                    break
                except (ImportError, AttributeError):
                    continue
            else:
                found = None
            if found is None:
                missing.append(f"{recipe.relative_to(root)}: {name}")
    assert not missing, missing
