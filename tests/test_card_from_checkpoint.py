"""`python -m zoo.card_from_checkpoint`: a real Lightning checkpoint becomes a card folder that zoo.load reads
(safetensors only), with the training facts a card must state read from the run itself."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

import zoo
from zoo.audio import read_audio
from zoo.cards import training_section
from zoo.checkpoint_io import SafetensorsCheckpointIO, load_checkpoint
from zoo.data import Mixtures
from zoo.models.can import ContextAggregationDenoiser

from conftest import EXAMPLE_NOISY

ROOT = Path(__file__).resolve().parent.parent


def test_a_trained_checkpoint_exports_to_a_card_that_loads_and_enhances(tmp_path):
    torch.manual_seed(0)
    data = Mixtures(speech=["speech/ljspeech"], noise=["noise/noisex/white.flac"], val_speech=["speech/ljspeech"],
                    val_noise=["noise/noisex/white.flac"], crop_seconds=0.25, batch_size=2, train_size=8,
                    val_size=2, max_files=4)
    model = ContextAggregationDenoiser(width=4, dilations=[1, 2, 1], lr=1e-3)
    trainer = L.Trainer(max_epochs=2, max_time="00:00:10:00", default_root_dir=tmp_path,
                        logger=L.pytorch.loggers.CSVLogger(tmp_path), enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, plugins=[SafetensorsCheckpointIO()])
    trainer.fit(model, data)
    checkpoint = next((tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt"))

    out = tmp_path / "card"
    result = subprocess.run([sys.executable, "-m", "zoo.card_from_checkpoint", str(checkpoint), "--model", "can-l1", "--out",
                             str(out), "--recipe", "recipes/can-l1/shared-data.yaml", "--note", "a test run"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "training.json", "training.png"]  # a card: publishable
    assert (out / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((out / "config.json").read_text())
    assert config["init_args"]["width"] == 4 and config["init_args"]["dilations"] == [1, 2, 1]
    record = json.loads((out / "training.json").read_text())
    assert record["global_step"] == 8 and record["epochs"] == 1 and record["note"] == "a test run"
    # from the checkpoint's Timer (training + validation), not typed in
    assert 0 < record["training_seconds"] < 600 and record["hours"] == round(record["training_seconds"] / 3600, 3)
    section = training_section(out)
    assert "Steps: 8 (2 epochs)" in section and "](training.png)" in section and "recipes/can-l1/shared-data.yaml" in section
    assert "speech: speech/ljspeech; noise: noise/noisex/white.flac" in section  # the data it saw

    loaded = zoo.load(str(out))
    assert type(loaded) is ContextAggregationDenoiser and not loaded.training
    noisy, rate = read_audio(EXAMPLE_NOISY)
    model.eval()
    with torch.no_grad():
        expected = model(noisy)
    enhanced = loaded.enhance(noisy, rate)
    assert torch.allclose(enhanced, expected, atol=1e-5)


def test_metrics_of_a_resumed_run_are_stitched_where_it_resumed(tmp_path):
    from zoo.card_from_checkpoint import read_metrics

    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("epoch,step,train/loss,val/si_sdr\n0,9,5.0,\n0,99,,1.0\n1,109,4.0,\n1,119,3.5,\n")
    second.write_text("epoch,step,train/loss,val/si_sdr\n1,109,4.1,\n1,199,,2.0\n")  # resumed from step 100
    rows = read_metrics([first, second, tmp_path / "missing.csv"])
    assert [(r["step"], r["train/loss"]) for r in rows] == [("9", "5.0"), ("99", ""), ("109", "4.1"), ("199", "")]


def test_kept_training_state_resumes_where_it_stopped(tmp_path):
    """--keep-state copies what a later session needs (checkpoint, config, stitched logs), and a
    run resumed from it continues at the kept step; when the resumed session changes a data
    setting, the card and the kept state say from which step."""
    result = subprocess.run([
        sys.executable, "-m", "zoo.cli", "fit", "--config", "recipes/can/debug.yaml", "--trainer.max_steps", "3",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--model.init_args.width", "4", "--data.init_args.train_size", "12"], cwd=ROOT, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint = next((tmp_path / "lightning_logs/version_0/checkpoints").glob("*.ckpt"))
    kept = tmp_path / "training" / "can-l1"
    result = subprocess.run([sys.executable, "-m", "zoo.card_from_checkpoint", str(checkpoint), "--model", "can-l1", "--out",
                             str(tmp_path / "card"), "--keep-state", str(kept)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in kept.iterdir()) == ["config.yaml", "data_changes.json", "last.ckpt", "metrics.csv"]
    assert json.loads((kept / "data_changes.json").read_text()) == []  # a fresh run: its data never changed
    # the card's curve has the line to beat: the unprocessed validation input's SI-SDR
    import yaml

    from zoo.metrics import si_sdr

    data = yaml.safe_load((kept / "config.yaml").read_text())["data"]["init_args"]
    module = Mixtures(**data)
    module.setup("fit")
    inputs = [si_sdr(b["noisy"][i], b["clean"][i]) for b in module.val_dataloader() for i in range(len(b["noisy"]))]
    record = json.loads((tmp_path / "card" / "training.json").read_text())
    assert record["val_input_si_sdr_db"] == pytest.approx(sum(inputs) / len(inputs), abs=1e-2)
    assert f"(unprocessed input: {record['val_input_si_sdr_db']:.2f} dB)" in training_section(tmp_path / "card")
    assert load_checkpoint(kept / "last.ckpt")["global_step"] == 3
    assert yaml.safe_load((kept / "config.yaml").read_text())["ckpt_path"] == str(kept / "last.ckpt")
    result = subprocess.run([
        sys.executable, "-m", "zoo.cli", "fit", "--config", str(kept / "config.yaml"),  # it names the kept last.ckpt
        "--trainer.max_steps", "6", "--trainer.max_epochs", "10", "--trainer.default_root_dir", str(tmp_path / "later"),
        "--trainer.logger.init_args.save_dir", str(tmp_path / "later"), "--data.init_args.snr_db", "[0.0, 25.0]"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    resumed = next((tmp_path / "later/lightning_logs/version_0/checkpoints").glob("*.ckpt"))
    assert load_checkpoint(resumed)["global_step"] == 6
    from zoo.card_from_checkpoint import read_metrics

    steps = [int(r["step"]) for r in read_metrics([kept / "metrics.csv", resumed.parent.parent / "metrics.csv"])
             if r.get("train/loss")]
    # three steps from the first session, then three from the resumed one, after them
    assert len(steps) == 6 and steps[:3] == [0, 1, 2] and steps == sorted(steps) and steps[3] >= 3

    # the next session keeps its state in the same folder, naming the kept logs as the earlier ones:
    # they are read before the folder is rewritten, so no step is lost
    result = subprocess.run([sys.executable, "-m", "zoo.card_from_checkpoint", str(resumed), "--model", "can-l1", "--out",
                             str(tmp_path / "card"), "--earlier-metrics", str(kept / "metrics.csv"), "--keep-state",
                             str(kept)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_checkpoint(kept / "last.ckpt")["global_step"] == 6
    assert [int(r["step"]) for r in read_metrics([kept / "metrics.csv"]) if r.get("train/loss")] == steps
    record = json.loads((tmp_path / "card" / "training.json").read_text())
    assert record["global_step"] == 6 and record["data"]["init_args"]["snr_db"] == [0.0, 25.0]
    change = {"from_step": 3, "changes": {"snr_db": [data["snr_db"], [0.0, 25.0]]}}
    assert record["data_changes"] == [change] and json.loads((kept / "data_changes.json").read_text()) == [change]
    section = training_section(tmp_path / "card")
    assert "- Data (at the last step): " in section and "snr_db=[0.0, 25.0]" in section
    assert f"- Data changes: from step 3, snr_db {data['snr_db']} -> [0.0, 25.0]" in section

    # exporting the same run again (the kept state now is its own) neither loses nor repeats the change
    result = subprocess.run([sys.executable, "-m", "zoo.card_from_checkpoint", str(resumed), "--model", "can-l1", "--out",
                             str(tmp_path / "card")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "card" / "training.json").read_text())["data_changes"] == [change]


def _tiny_fit(model, root, max_steps, callbacks=(), ckpt_path=None):
    data = Mixtures(speech=["speech/ljspeech"], noise=["noise/noisex/white.flac"], val_speech=["speech/ljspeech"],
                    val_noise=["noise/noisex/white.flac"], crop_seconds=0.25, batch_size=2, train_size=4,
                    val_size=2, max_files=4)
    trainer = L.Trainer(max_steps=max_steps, max_time="00:00:10:00", default_root_dir=root,
                        logger=L.pytorch.loggers.CSVLogger(root), enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, callbacks=list(callbacks),
                        plugins=[SafetensorsCheckpointIO()])
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return root / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"


def test_a_card_says_what_a_widened_run_started_from_even_after_that_card_is_replaced(tmp_path):
    """``StartFrom(widen=True)`` keeps the source's training record (steps, hours, width) in every
    checkpoint; export puts it on the new card with the hours of both runs, also after the source
    card has been overwritten (as publishing the widened run overwrites it) and after a resume."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from zoo.card_from_checkpoint import card_from_checkpoint
    from zoo.train import StartFrom

    torch.manual_seed(0)
    save_last = lambda: ModelCheckpoint(save_last=True)  # noqa: E731
    narrow = _tiny_fit(ContextAggregationDenoiser(width=4, dilations=[1, 2, 1]), tmp_path / "narrow", 2, [save_last()])
    card = card_from_checkpoint(narrow, "can-l1", out=tmp_path / "card", hardware="the narrow machine")
    narrow_record = json.loads((card / "training.json").read_text())
    assert narrow_record["global_step"] == 2 and narrow_record["training_seconds"] >= 0  # from its Timer: 2 tiny steps can round to 0.0 s

    wide = ContextAggregationDenoiser(width=6, dilations=[1, 2, 1])
    run = _tiny_fit(wide, tmp_path / "wide", 2, [StartFrom(str(card), widen=True), save_last()])
    lineage = load_checkpoint(run)["callbacks"]["StartFrom"]
    assert lineage["width"] == 4 and lineage["widened_to"] == 6 and lineage["global_step"] == 2
    assert lineage["hardware"] == "the narrow machine" and lineage["hours"] == narrow_record["hours"]

    # the wide run is published into the card it started from; resuming it afterwards must not
    # take the new card (itself) for its origin
    card_from_checkpoint(run, "can-l1", out=card, hardware="the wide machine")
    resumed = _tiny_fit(ContextAggregationDenoiser(width=6, dilations=[1, 2, 1]), tmp_path / "resumed", 4,
                        [StartFrom(str(card), widen=True), save_last()], ckpt_path=run)
    assert load_checkpoint(resumed)["callbacks"]["StartFrom"] == lineage
    card_from_checkpoint(resumed, "can-l1", out=card, hardware="the wide machine")
    record = json.loads((card / "training.json").read_text())
    assert record["global_step"] == 4 and record["started_from"] == lineage
    section = training_section(card)
    assert (f"- Started from: `{card}` (W=4, 2 steps, {narrow_record['hours']:.2f} h on the narrow machine), "
            "widened to W=6 (Net2WiderNet: the same output) before this run") in section
    assert f"{record['hours']:.2f} h in this run, {record['hours'] + narrow_record['hours']:.2f} h with the" in section

    # a checkpoint from before StartFrom kept this: the source card is named on the command line
    other = tmp_path / "other"
    result = subprocess.run([sys.executable, "-m", "zoo.card_from_checkpoint", str(narrow), "--model", "can-l1", "--out",
                             str(other), "--started-from", str(tmp_path / "missing")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "has no training.json: pass the card folder" in result.stderr
    assert not other.exists()  # nothing written before the error
    card_from_checkpoint(narrow, "can-l1", out=other, started_from=card)
    assert json.loads((other / "training.json").read_text())["started_from"]["global_step"] == 4
    assert "widened_to" not in json.loads((other / "training.json").read_text())["started_from"]
    third = card_from_checkpoint(run, "can-l1", out=tmp_path / "third", started_from=other)  # W=4 card -> W=6 run
    assert json.loads((third / "training.json").read_text())["started_from"]["widened_to"] == 6
