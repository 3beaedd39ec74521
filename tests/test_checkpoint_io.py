"""Training checkpoints without pickles (issue 19, item 7): what ``zoo fit`` writes is one
safetensors file (every tensor, Adam's moments included) whose header holds the rest as JSON; it
reads back into the same nested dict, a run resumes from it where it stopped, and a pickled
``.ckpt`` is refused with the one command that converts it.

Real parts: real ``zoo fit`` runs of a W=4 CAN on real speech and noise from ../shared/data (the
debug recipe, a few steps), real Lightning trainers, real files.
"""
from __future__ import annotations

import copy
import json
import math
import os
import struct
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from zoo.checkpoint_io import (CheckpointFormatError, PickledCheckpointError, SafetensorsCheckpointIO, convert,
                               flatten, load_checkpoint, save_checkpoint)
from zoo.data import Mixtures
from zoo.models.can import ContextAggregationDenoiser

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--trainer.max_epochs", "10", "--model.init_args.width", "4", "--model.init_args.dilations", "[1, 2, 1]", "--data.init_args.train_size", "8",
        "--data.init_args.val_size", "2", "--data.init_args.crop_seconds", "0.5", "--trainer.enable_progress_bar",
        "false"]


def same(a, b, path="checkpoint"):
    """Equal nested values, tensors equal in dtype, shape and every element; dict order kept."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), path
        assert (a.dtype, tuple(a.shape)) == (b.dtype, tuple(b.shape)), path
        assert torch.equal(a.detach().cpu(), b), path
    elif isinstance(a, dict):
        assert type(b) is dict and list(a) == list(b), path
        for key in a:
            same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(b) is type(a) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    else:
        assert type(b) is type(a), (path, a, b)
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (path, a, b)


def header(path: Path) -> tuple[int, dict]:
    with open(path, "rb") as file:
        (size,) = struct.unpack("<Q", file.read(8))
        return size, json.loads(file.read(size))


def fit(args: list[str], monkeypatch):
    """``zoo fit`` in this process (LightningCLI reads sys.argv; zoo.train sets it)."""
    from zoo.train import run_lightning_cli

    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return run_lightning_cli(["fit", "--config", str(ROOT / "recipes/can/debug.yaml"), *TINY, *args], report=False)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real 2-step ``zoo fit`` of the debug recipe (in a subprocess, as a user runs it)."""
    root = tmp_path_factory.mktemp("run")
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", "recipes/can/debug.yaml", *TINY,
                             "--trainer.max_steps", "2", "--trainer.default_root_dir", str(root),
                             "--trainer.logger.init_args.save_dir", str(root)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return next((root / "lightning_logs/version_0/checkpoints").glob("*.ckpt"))


def test_a_zoo_fit_checkpoint_is_safetensors_with_its_structure_as_json_and_no_pickle(tiny_run):
    data = tiny_run.read_bytes()
    assert not zipfile.is_zipfile(tiny_run) and data[:1] != b"\x80"  # neither torch.save format
    assert b"pickle" not in data and b"torch._utils" not in data and b"_rebuild_tensor" not in data
    size, parsed = header(tiny_run)
    metadata = parsed.pop("__metadata__")
    assert metadata["format"] == "zoo-checkpoint/1"
    structure = json.loads(metadata["zoo_checkpoint"])
    assert structure["global_step"] == 2 and structure["hyper_parameters"]["width"] == 4
    # every tensor under its key path, weights and Adam's moments alike, and the file is exactly
    # the header plus their bytes: nothing else hides in it
    assert parsed["state_dict/network.body.0.weight"]["shape"] == [4, 1, 3]
    assert parsed["optimizer_states/0/state/0/exp_avg"]["shape"] == [4, 1, 3]
    assert parsed["optimizer_states/0/state/0/exp_avg_sq"]["dtype"] == "F32"
    assert structure["state_dict"]["network.body.0.weight"] == {"__tensor__": "state_dict/network.body.0.weight"}
    assert len(data) == 8 + size + max(entry["data_offsets"][1] for entry in parsed.values())


def test_every_key_lightning_writes_round_trips(tmp_path):
    """The dict Lightning builds (weights, optimizer moments, a scheduler, loops, callbacks with a
    tensor best score and a timer, hyper-parameters) comes back identical from the file: the
    ModelCheckpoint files of the run too."""

    class WithScheduler(ContextAggregationDenoiser):
        def configure_optimizers(self):
            optimizer = torch.optim.Adam(self.parameters(), lr=1e-3)
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)}

    torch.manual_seed(0)
    data = Mixtures(speech=["speech/ljspeech"], noise=["noise/noisex/white.flac"], val_speech=["speech/ljspeech"],
                    val_noise=["noise/noisex/white.flac"], crop_seconds=0.25, batch_size=2, train_size=4, val_size=2,
                    max_files=4)
    best = ModelCheckpoint(monitor="val/loss", save_last=True)
    trainer = L.Trainer(max_epochs=2, max_time="00:00:10:00", default_root_dir=tmp_path, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[best], plugins=[SafetensorsCheckpointIO()])
    trainer.fit(WithScheduler(width=4, dilations=[1, 2, 1]), data)
    checkpoint = trainer._checkpoint_connector.dump_checkpoint()
    for key in ("epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops", "callbacks",
                "optimizer_states", "lr_schedulers", "hparams_name", "hyper_parameters",
                "datamodule_hyper_parameters"):
        assert key in checkpoint, key
    assert checkpoint["lr_schedulers"][0]["_last_lr"] and isinstance(checkpoint["state_dict"], OrderedDict)
    assert isinstance(checkpoint["optimizer_states"][0]["param_groups"][0]["betas"], tuple)
    assert any(isinstance(state.get("best_model_score"), torch.Tensor) for state in checkpoint["callbacks"].values())
    save_checkpoint(checkpoint, tmp_path / "again.ckpt")
    same(checkpoint, load_checkpoint(tmp_path / "again.ckpt"))

    written = load_checkpoint(best.last_model_path)  # what ModelCheckpoint wrote through the plug-in
    assert written["global_step"] == 4 and written["lr_schedulers"] == checkpoint["lr_schedulers"]
    same(checkpoint["state_dict"], written["state_dict"])
    same(checkpoint["optimizer_states"], written["optimizer_states"])


class RecordResume(Callback):
    """What the trainer holds when a resumed run starts training: the step, weights and Adam state."""

    def on_train_start(self, trainer, pl_module):
        self.step = trainer.global_step
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.optimizer = copy.deepcopy(trainer.optimizers[0].state_dict())  # Adam updates it in place


def test_a_resumed_zoo_fit_continues_from_the_same_step_weights_and_moments(tmp_path, monkeypatch):
    fit(["--trainer.max_steps", "3", "--trainer.default_root_dir", str(tmp_path / "a"),
         "--trainer.logger.init_args.save_dir", str(tmp_path / "a")], monkeypatch)
    saved_path = next((tmp_path / "a/lightning_logs/version_0/checkpoints").glob("*.ckpt"))
    saved = load_checkpoint(saved_path)
    assert saved["global_step"] == 3

    import torch.serialization

    def no_unpickling(*args, **kwargs):
        raise AssertionError("torch.load was called while resuming")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(torch.serialization, "load", no_unpickling)
    cli = fit(["--trainer.max_steps", "5", "--ckpt_path", str(saved_path), "--trainer.callbacks+=test_checkpoint_io.RecordResume",
               "--trainer.default_root_dir", str(tmp_path / "b"), "--trainer.logger.init_args.save_dir",
               str(tmp_path / "b")], monkeypatch)
    record = next(c for c in cli.trainer.callbacks if type(c).__name__ == "RecordResume")
    assert record.step == 3
    same(saved["state_dict"], dict(record.weights))
    moments = record.optimizer["state"]
    assert set(moments) == set(saved["optimizer_states"][0]["state"])
    for index, state in saved["optimizer_states"][0]["state"].items():
        for name in ("step", "exp_avg", "exp_avg_sq"):
            same(state[name], moments[index][name], f"state[{index}][{name}]")
    assert float(moments[0]["step"]) == 3 and moments[0]["exp_avg"].abs().sum() > 0  # real moments, not fresh
    assert cli.trainer.global_step == 5  # and it trained on from there
    resumed = load_checkpoint(next((tmp_path / "b/lightning_logs/version_0/checkpoints").glob("*.ckpt")))
    assert resumed["global_step"] == 5
    assert float(resumed["optimizer_states"][0]["state"][0]["step"]) == 5


def test_a_pickled_checkpoint_is_refused_with_the_command_that_converts_it(tiny_run, tmp_path):
    checkpoint = load_checkpoint(tiny_run)
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)  # what Lightning's default TorchCheckpointIO and zoo before this release wrote
    with pytest.raises(PickledCheckpointError, match=rf"{old} is a pickled PyTorch checkpoint .* zoo never unpickles"):
        load_checkpoint(old)

    # the commands a user runs say the same, without a traceback
    card = subprocess.run([sys.executable, "-m", "zoo.card_from_checkpoint", str(old), "--model", "can-l1", "--out",
                           str(tmp_path / "card")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert card.returncode == 2 and "Traceback" not in card.stderr
    assert f"python -m zoo.checkpoint_io convert {old} " in card.stderr and not (tmp_path / "card").exists()
    resume = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", "recipes/can/debug.yaml", *TINY,
                             "--trainer.max_steps", "3", "--ckpt_path", str(old), "--trainer.default_root_dir",
                             str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert resume.returncode != 0 and "Traceback" not in resume.stderr
    assert f"zoo: error: {old} is a pickled PyTorch checkpoint" in resume.stderr
    assert f"python -m zoo.checkpoint_io convert {old} " in resume.stderr

    # the one-off conversion: the same dict, and the old file left as it was
    new = tmp_path / "new.ckpt"
    before = old.read_bytes()
    result = subprocess.run([sys.executable, "-m", "zoo.checkpoint_io", "convert", str(old), str(new)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"wrote {new} (step 2, " in result.stderr and old.read_bytes() == before
    same(checkpoint, load_checkpoint(new))
    again = subprocess.run([sys.executable, "-m", "zoo.checkpoint_io", "convert", str(new), str(tmp_path / "x.ckpt")],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "is already a zoo checkpoint (safetensors): nothing to convert" in again.stderr
    with pytest.raises(CheckpointFormatError, match="is the file being converted: write a new file"):
        convert(old, old)


class NotPlainData:
    pass


def test_conversion_never_unpickles_objects(tmp_path):
    """weights_only=True: a pickle holding an object is refused, and the object's class never runs."""
    old = tmp_path / "old.ckpt"
    torch.save({"state_dict": {}, "callbacks": {"X": NotPlainData()}}, old)
    with pytest.raises(CheckpointFormatError, match="holds objects other than tensors and plain data, which zoo "
                                                    "does not unpickle"):
        convert(old, tmp_path / "new.ckpt")
    assert not (tmp_path / "new.ckpt").exists()


def test_values_a_checkpoint_cannot_hold_are_named_by_their_key_path(tmp_path):
    with pytest.raises(TypeError, match=r"checkpoint\['callbacks'\]\['Mine'\]\['counts'\]\[1\] is a numpy.int64"):
        save_checkpoint({"callbacks": {"Mine": {"counts": [1, np.int64(2)]}}}, tmp_path / "bad.ckpt")
    with pytest.raises(TypeError, match=r"checkpoint\['state'\] is a torch.complex64 tensor"):
        flatten({"state": torch.zeros(2, dtype=torch.complex64)})
    assert not (tmp_path / "bad.ckpt").exists()  # nothing half-written


def test_plain_values_keep_their_types(tmp_path):
    """Tuples stay tuples, int keys stay ints (optimizer state), floats stay floats (nan and inf
    too), tensors sharing memory are stored once each, a dict shaped like a tag stays a dict."""
    base = torch.arange(6, dtype=torch.float64)
    value = {"betas": (0.9, 0.999), "state": {0: {"step": torch.tensor(3.0)}, 7: {}}, "t": (1, (2, "x")),
             "floats": [1.0, 2, float("nan"), float("inf"), -float("inf")], "none": None, "flag": True,
             "shared": [base, base[2:4], base.view(2, 3)], "empty": torch.zeros(0, 3, dtype=torch.bfloat16),
             "looks_like_a_tag": {"__tensor__": "state_dict/x"}, "tuple_key": {(1, "a"): "b"}, "text": "ü/ß"}
    save_checkpoint(value, tmp_path / "plain.ckpt")
    same(value, load_checkpoint(tmp_path / "plain.ckpt"))


def test_a_header_length_that_starts_like_a_pickle_is_still_read(tmp_path):
    """A safetensors file starts with its header's length: when its first byte is 0x80, the
    first byte of a pickle, the file is still a checkpoint (it was once taken for a pickle)."""
    for padding in range(256):
        value = {"global_step": 3, "hyper_parameters": {"note": "x" * padding}, "w": torch.ones(2)}
        save_checkpoint(value, tmp_path / "c.ckpt")
        if (tmp_path / "c.ckpt").read_bytes()[0] == 0x80:
            break
    assert (tmp_path / "c.ckpt").read_bytes()[0] == 0x80
    same(value, load_checkpoint(tmp_path / "c.ckpt"))


def test_zoo_fit_adds_the_plugin_unless_a_recipe_chooses_its_own():
    """A resolved config's ``plugins: null`` and a precision plug-in still get safetensors
    checkpoints; an explicit checkpoint plug-in is the recipe's choice; an AsyncCheckpointIO
    without its own wraps ours (Lightning would put TorchCheckpointIO there)."""
    from lightning.fabric.plugins.io import TorchCheckpointIO
    from lightning.pytorch.plugins import AsyncCheckpointIO, MixedPrecision

    from zoo.checkpoint_io import with_safetensors_checkpoints

    assert [type(p) for p in with_safetensors_checkpoints(None)] == [SafetensorsCheckpointIO]
    precision = MixedPrecision("bf16-mixed", "cpu")
    assert [type(p) for p in with_safetensors_checkpoints(precision)] == [MixedPrecision, SafetensorsCheckpointIO]
    torch_io = TorchCheckpointIO()
    assert with_safetensors_checkpoints([torch_io]) == [torch_io]
    wrapper = AsyncCheckpointIO()
    assert with_safetensors_checkpoints([wrapper]) == [wrapper]
    assert isinstance(wrapper.checkpoint_io, SafetensorsCheckpointIO)


def test_a_card_weights_file_is_not_taken_for_a_checkpoint():
    card_weights = ROOT / "hub_cards/can-l1/model.safetensors"
    with pytest.raises(CheckpointFormatError, match="a safetensors file but not a zoo training checkpoint"):
        load_checkpoint(card_weights)
