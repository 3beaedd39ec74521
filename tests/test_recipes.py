"""Recipes: each parses and composes with its shared data block through LightningCLI's own parser,
the commands in their comments run, and checkpoints keep the latest state.

Checkpoints: ``last.ckpt`` is the latest state (what resuming and checkpoint-to-card export read),
the best-by-validation checkpoint is kept beside it. Why a test: with Lightning 2.6 a
``ModelCheckpoint(save_last=True, monitor=...)`` only rewrites ``last.ckpt`` when the monitored score
improves, so a run that had stopped improving resumed (and was exported) from an older step. The
recipes keep the two jobs in two callbacks.

Composition: a data block (``recipes/data/NAME.yaml``) is written once and given to ``zoo fit`` as
the first ``--config``, the model recipe (model + trainer) as the second, so the model recipe's
values win where both set one.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from zoo.data.from_config import data_block, merge_data_blocks, recipe_configs

ROOT = Path(__file__).resolve().parent.parent
RECIPES = sorted((ROOT / "recipes").glob("*/*.yaml"))
DATA_BLOCKS = sorted((ROOT / "recipes" / "data").glob("*.yaml"))
MODEL_RECIPES = [r for r in RECIPES if r.parent.name != "data"]
CHECKPOINT = "lightning.pytorch.callbacks.ModelCheckpoint"

#: runs ``zoo fit ... --print_config`` for each command in one process (LightningCLI's parser, no
#: model or data built), so that a dozen recipes do not pay torch's import a dozen times
_PRINT_CONFIGS = """
import contextlib, io, json, sys
from zoo.train import run_lightning_cli
results = []
for command in json.loads(sys.argv[1]):
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run_lightning_cli([*command, "--print_config"])
        except SystemExit as stop:
            code = stop.code or 0
    results.append({"code": code, "config": out.getvalue(), "stderr": err.getvalue()[-3000:]})
print(json.dumps(results))
"""


def _print_configs(commands: list[list[str]]) -> list[dict]:
    result = subprocess.run([sys.executable, "-c", _PRINT_CONFIGS, json.dumps(commands)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _comment_commands(recipe: Path) -> list[str]:
    """The ``zoo fit`` commands of a recipe's comments, continuation lines (``\\`` or an open
    quote) joined."""
    lines = [line.split("#", 1)[1].strip() for line in recipe.read_text().splitlines() if line.lstrip().startswith("#")]
    commands, current = [], None
    for line in lines:
        if current is None:
            if not line.startswith("zoo fit "):
                continue
            current = line
        else:
            current = current.rstrip("\\").rstrip() + " " + line
        try:
            shlex.split(current.rstrip("\\"))
        except ValueError:  # a quote still open: the command goes on
            continue
        if current.endswith("\\"):
            continue
        commands.append(current)
        current = None
    return commands


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
    from zoo.checkpoint_io import load_checkpoint

    steps = {p.name: load_checkpoint(p)["global_step"] for p in folder.glob("*.ckpt")}
    assert steps["last.ckpt"] == 8  # 4 epochs of 2 batches
    best = [step for name, step in steps.items() if name.startswith("best-")]
    assert len(best) == 1 and best[0] < steps["last.ckpt"]  # the best stayed early; last moved on


def test_recipe_comments_name_only_modules_and_classes_that_exist():
    """A recipe's comments are its instructions: every ``zoo.X`` they name (``python -m zoo.card_from_checkpoint``,
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


def test_every_data_block_is_written_once_and_used():
    """The point of ``recipes/data/``: no data block is copied into two files, and every shared
    block is one that some model recipe composes with."""
    seen: dict[str, Path] = {}
    for recipe in RECIPES:
        block = yaml.safe_load(recipe.read_text()).get("data")
        if block is None:
            continue
        key = json.dumps(block, sort_keys=True)
        assert key not in seen, f"{recipe.relative_to(ROOT)} repeats the data block of {seen[key].relative_to(ROOT)}"
        seen[key] = recipe
    for data in DATA_BLOCKS:
        assert set(yaml.safe_load(data.read_text())) == {"data"}, f"{data}: a data block holds data only"
        users = [r for r in MODEL_RECIPES if recipe_configs(r)[0] == data.resolve()]
        assert users, f"{data.relative_to(ROOT)}: no model recipe composes with it"
    composed = [r for r in MODEL_RECIPES if len(recipe_configs(r)) == 2]
    assert len(composed) >= 10  # shared-data x3, voicebank x3, finetune-noise x2, widen-w64, generalist
    for recipe in composed:  # a model recipe that composes with a data block holds no data of its own
        assert "data" not in yaml.safe_load(recipe.read_text()), recipe


def test_recipes_compose_with_their_data_block_through_lightning_cli():
    """``zoo fit --config recipes/data/X.yaml --config recipes/MODEL/Y.yaml --print_config``, for
    every model recipe, prints one config holding the recipe's model and trainer and the data
    block's class and every value it sets; the same configs in the opposite order are not what the
    recipes say (so the documented order matters), and :func:`data_block` returns what
    LightningCLI merged."""
    commands = [["fit", *[a for path in recipe_configs(r) for a in ("--config", str(path))]] for r in MODEL_RECIPES]
    for recipe, result in zip(MODEL_RECIPES, _print_configs(commands)):
        name = recipe.relative_to(ROOT)
        assert result["code"] == 0, (name, result["stderr"])
        printed = yaml.safe_load(result["config"])
        own = yaml.safe_load(recipe.read_text())
        assert printed["model"]["class_path"] == own["model"]["class_path"], name
        for key, value in (own["model"].get("init_args") or {}).items():
            assert printed["model"]["init_args"][key] == value, (name, key)
        assert printed["trainer"]["default_root_dir"] == own["trainer"]["default_root_dir"], name
        expected = data_block(recipe)
        assert expected and printed["data"]["class_path"] == expected["class_path"], name
        for key, value in expected["init_args"].items():
            assert printed["data"]["init_args"][key] == value, (name, key)


def test_a_model_recipe_overrides_its_data_block_in_the_documented_order(tmp_path):
    """Several ``--config`` merge in order: the later one's data values win and the earlier
    one's other values stay (LightningCLI merges init_args of the same class)."""
    override = tmp_path / "override.yaml"
    override.write_text("data:\n  class_path: zoo.data.Mixtures\n  init_args: {batch_size: 7, crop_seconds: 1.5}\n")
    data, recipe = ROOT / "recipes/data/shared-data.yaml", ROOT / "recipes/can-l1/shared-data.yaml"
    later, earlier = _print_configs([["fit", "--config", str(data), "--config", str(recipe), "--config", str(override)],
                                     ["fit", "--config", str(override), "--config", str(data), "--config", str(recipe)]])
    assert later["code"] == earlier["code"] == 0, (later["stderr"], earlier["stderr"])
    later, earlier = (yaml.safe_load(r["config"])["data"]["init_args"] for r in (later, earlier))
    assert (later["batch_size"], later["crop_seconds"], later["noise_tilt_db"]) == (7, 1.5, [-6.0, 0.0])
    assert (earlier["batch_size"], earlier["crop_seconds"]) == (4, 2.0)
    # data_block merges the same way
    assert data_block(data, recipe, override)["init_args"] == {**data_block(data)["init_args"], "batch_size": 7,
                                                               "crop_seconds": 1.5}


def test_the_zoo_fit_commands_in_recipe_comments_parse():
    """A recipe's header is its instructions: every ``zoo fit`` command in it (placeholders such as
    /path/to/my_noise included) parses with LightningCLI, names the recipe itself, and gives a data
    block; a composed recipe's command names its data block first."""
    runs = []
    for recipe in MODEL_RECIPES:
        found = _comment_commands(recipe)
        assert found, f"{recipe.relative_to(ROOT)}: no zoo fit command in its comments"
        for command in found:
            words = shlex.split(command)[1:]  # without "zoo"
            configs = [words[i + 1] for i, w in enumerate(words) if w == "--config"]
            assert configs[-1] == str(recipe.relative_to(ROOT)), (recipe, command)
            assert [(ROOT / c).resolve() for c in configs] == [p.resolve() for p in recipe_configs(recipe)], command
            runs.append((recipe, command, words))
    for (recipe, command, _), result in zip(runs, _print_configs([words for *_, words in runs])):
        assert result["code"] == 0, (command, result["stderr"])
        assert yaml.safe_load(result["config"])["data"]["class_path"], command


def test_a_model_recipe_alone_has_no_data_and_says_so():
    """A model recipe given alone to zoo fit stops before training, naming the missing data; the
    data block alone is not a run either."""
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", "recipes/can-l1/shared-data.yaml",
                             "--trainer.max_steps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode != 0 and "data" in result.stderr, result.stderr[-2000:]
    assert recipe_configs(ROOT / "recipes/data/shared-data.yaml") == [ROOT / "recipes/data/shared-data.yaml"]


def test_data_block_helpers(tmp_path):
    """data_block() follows a model recipe to its data block; a recipe naming a data block that is
    not there fails with both names; merging replaces a block of another class."""
    assert data_block(ROOT / "recipes/feature-loss-can/widen-w64.yaml") == data_block(ROOT / "recipes/data/shared-data.yaml")
    assert data_block(ROOT / "recipes/can/debug.yaml")["class_path"] == "zoo.data.Mixtures"  # self-contained
    (tmp_path / "model").mkdir()
    lonely = tmp_path / "model" / "r.yaml"
    lonely.write_text("#   zoo fit --config recipes/data/nowhere.yaml --config model/r.yaml\nmodel: {}\n")
    with pytest.raises(FileNotFoundError, match=r"recipes/data/nowhere.yaml"):
        recipe_configs(lonely)
    a = {"class_path": "zoo.data.Mixtures", "init_args": {"batch_size": 4, "val_size": 32}}
    assert merge_data_blocks([a, {"init_args": {"batch_size": 8}}]) == {
        "class_path": "zoo.data.Mixtures", "init_args": {"batch_size": 8, "val_size": 32}}
    b = {"class_path": "zoo.data.VoiceBankDemand", "init_args": {"root": "x"}}
    assert merge_data_blocks([a, b]) == b and merge_data_blocks([None, {}]) is None
