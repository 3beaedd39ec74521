"""A new model family is one model file, a recipe and a card: the example in tests/example_model/
goes from recipe to trained checkpoint (real ``zoo fit`` on real speech and noise, composed with
the shared data block) to card folder to ``zoo.load`` to an enhanced file, with nothing else of
the zoo changed. README's "Adding a model" walks through the same steps."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from conftest import EXAMPLE_NOISY

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


@pytest.fixture
def example_family():
    """The example registered for the test, unregistered afterwards (other tests check every
    registered model's bundled card, which the example does not have)."""
    from zoo import registry
    from zoo.module import ARCHITECTURES

    sys.path.insert(0, str(TESTS))
    try:
        from example_model.learned_fir import ExampleFIR
    finally:
        sys.path.remove(str(TESTS))
    # importing the file registered it; set again in case an earlier use of this fixture removed it
    registry._REGISTRY["example-fir"] = registry.ModelEntry(
        "example-fir", ExampleFIR, "tests/example_model/card", "zoo-denoise/example-fir")
    ARCHITECTURES["ExampleFIR"] = ExampleFIR
    yield ExampleFIR
    registry._REGISTRY.pop("example-fir", None)
    ARCHITECTURES.pop("ExampleFIR", None)


def test_the_example_family_goes_from_recipe_to_card_to_enhanced_file(tmp_path, example_family):
    ExampleFIR = example_family
    assert "example-fir" in zoo.list_models()  # registered by importing its file

    env = {**os.environ, "PYTHONPATH": str(TESTS), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", "recipes/data/shared-data.yaml",
                          "--config", "tests/example_model/recipe.yaml", "--trainer.max_steps", "10",
                          "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir",
                          str(tmp_path), "--data.init_args.max_files", "6"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (checkpoint,) = list(tmp_path.rglob("*.ckpt"))  # the epoch's checkpoint (10 steps = 40 rows / 4)
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    logged = {key for row in rows for key, value in row.items() if value}
    assert {"train/loss", "train/loss/l1", "train/loss/spread"} <= logged, sorted(logged)

    from zoo.card_from_checkpoint import card_from_checkpoint

    card = card_from_checkpoint(checkpoint, "example-fir", out=tmp_path / "card")
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in card.iterdir()}
    model = zoo.load(str(card))
    assert isinstance(model, ExampleFIR) and model.hparams.taps == 31
    trained = model.filter.weight.detach().flatten()
    assert not np.allclose(trained.numpy(), np.eye(31)[15])  # it learnt: no longer the identity it started as

    # a checkpoint also loads as Lightning users expect, without unpickling (zoo.checkpoint_io)
    again = ExampleFIR.load_from_checkpoint(checkpoint)
    assert torch.equal(again.filter.weight, model.filter.weight)

    out = model.enhance_file(EXAMPLE_NOISY, tmp_path / "enhanced.wav")
    noisy, rate = sf.read(EXAMPLE_NOISY, dtype="float32")
    enhanced, out_rate = sf.read(out, dtype="float32")
    assert out_rate == rate and enhanced.shape == noisy.shape
    whole = model.enhance(noisy, rate)
    chunked = model.enhance(noisy, rate, chunk_seconds=0.37)  # exact in blocks: context_samples at work
    assert np.abs(whole - chunked).max() < 1e-5
    assert np.abs(enhanced - whole).max() < 1e-4  # the file path is the same waveform path (16-bit output)
