"""`zoo fit` trains from a YAML recipe with command-line overrides; `zoo demo` does the main job."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from conftest import EXAMPLE_NOISY

ROOT = Path(__file__).resolve().parent.parent
ZOO = [sys.executable, "-m", "zoo.cli"]


def _run(args, **kwargs):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*ZOO, *args], cwd=ROOT, env=env, capture_output=True, text=True, **kwargs)


def test_fit_runs_a_recipe_with_overrides(tmp_path):
    result = _run([
        "fit", "--config", "recipes/can/debug.yaml",
        "--trainer.max_steps", "4", "--trainer.default_root_dir", str(tmp_path),
        "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--model.init_args.width", "8", "--data.init_args.train_size", "16",
    ], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    version = tmp_path / "lightning_logs" / "version_0"
    config = yaml.safe_load((version / "config.yaml").read_text())
    assert config["model"]["init_args"]["width"] == 8  # the override, not the recipe's 16
    assert config["trainer"]["max_steps"] == 4
    checkpoints = list((version / "checkpoints").glob("*.ckpt"))
    assert len(checkpoints) == 1 and "step=4" in checkpoints[0].name
    rows = list(csv.DictReader((version / "metrics.csv").open()))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    # The CAN's losses are in 16-bit sample units, as in the authors' code (zoo/models/can.py)
    assert len(losses) == 4 and all(0 < x < 2**15 for x in losses)
    assert any(r.get("val/loss") for r in rows) and any(r.get("val/si_sdr") for r in rows)


def test_fit_reports_a_bad_override():
    result = _run(["fit", "--config", "recipes/can/debug.yaml", "--model.init_args.no_such_option", "3"],
                  timeout=120)
    assert result.returncode != 0
    assert "no_such_option" in result.stderr


def test_demo_writes_audio_figure_and_scores(tmp_path):
    result = _run(["demo", "--out", str(tmp_path), "--model", "wiener"], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "scores.json").read_text())
    wav = Path(report["enhanced"])
    noisy = sf.info(str(EXAMPLE_NOISY))
    assert sf.info(str(wav)).frames == noisy.frames and sf.info(str(wav)).samplerate == 16000
    png = Path(report["spectrogram"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    scores = report["scores"]
    assert abs(scores["noisy"]["pesq_wb"] - 1.413) < 0.01  # measured with pesq on this pair
    assert scores["wiener"]["pesq_wb"] > scores["noisy"]["pesq_wb"] + 0.1
    assert scores["wiener"]["si_sdr"] > scores["noisy"]["si_sdr"] + 2
    assert "| wiener |" in result.stdout and "PESQ-wb" in result.stdout
    assert "model wiener:" in result.stderr  # says where the model came from


def test_the_flagship_is_the_default_once_it_has_weights_that_beat_the_baseline(monkeypatch):
    import zoo
    from zoo import cli
    from zoo.registry import get_entry

    flagship = cli.FLAGSHIP_MODEL
    assert flagship == "feature-loss-can" and flagship in zoo.list_models()
    has_weights = (get_entry(flagship).card_path / "model.safetensors").is_file()  # converted on set-up
    score, baseline = cli.card_score(flagship), cli.card_score("wiener")  # the cards' published PESQ-wb
    assert baseline is not None and 1.0 < baseline < 4.6  # the Wiener filter's card is always scored
    beats = score is not None and score >= baseline
    assert cli.default_model()[0] == (flagship if has_weights and beats else "wiener")  # what the cards say today
    if not has_weights:  # the released weights are not here: the same logic on the CPU-trained CAN's card
        flagship = "feature-loss-can-cpu"
        monkeypatch.setattr(cli, "FLAGSHIP_MODEL", flagship)
    scores = {flagship: 2.5, "wiener": 1.97}
    monkeypatch.setattr(cli, "card_score", lambda name, *a, **k: scores[name])
    assert cli.default_model() == (flagship, "the flagship")
    scores[flagship] = 1.5
    name, why = cli.default_model()
    assert name == "wiener" and "below wiener's (1.97)" in why and f"--model {flagship}" in why
    # A card without published scores (the authors' released network until it is benchmarked) falls back.
    scores[flagship] = None
    assert cli.default_model() == ("wiener", f"{flagship}'s card publishes no PESQ-wb on VoiceBank-DEMAND yet; "
                                             f"ask for it with --model {flagship}")
    # A checkout without the CAN's weights (no `zoo convert` yet) falls back.
    monkeypatch.setattr(cli, "FLAGSHIP_MODEL", "no-such-model")
    assert cli.default_model() == ("wiener", "no-such-model has no weights here")


def test_denoise_without_a_model_says_which_it_used(tmp_path):
    from zoo import cli

    result = _run(["denoise", str(EXAMPLE_NOISY), "-o", str(tmp_path / "out.wav")],
                  timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    name, why = cli.default_model()
    assert f"no --model given: using {name} ({why})" in result.stderr and f"model {name}:" in result.stderr
    assert sf.info(str(tmp_path / "out.wav")).frames == sf.info(str(EXAMPLE_NOISY)).frames


def test_fine_tuning_on_my_noise_starts_from_the_published_weights(tmp_path):
    """The one-command fine-tuning recipe with a user's own noise folder (real noise files)."""
    import shutil

    import torch
    from safetensors.torch import load_file

    from zoo.data.files import DATA_ROOT

    noise = tmp_path / "my_noise"
    noise.mkdir()
    shutil.copy(DATA_ROOT / "noise/noisex/babble.flac", noise / "kitchen.flac")
    result = _run([
        "fit", "--config", "recipes/data/finetune-noise.yaml", "--config", "recipes/feature-loss-can/finetune-noise.yaml",
        "--data.init_args.noise", f"[{noise}]", "--data.init_args.train_size", "4",
        "--data.init_args.val_size", "2", "--data.init_args.crop_seconds", "0.5", "--data.init_args.batch_size", "2",
        "--trainer.max_steps", "1", "--trainer.default_root_dir", str(tmp_path),
        "--trainer.logger.init_args.save_dir", str(tmp_path),
    ], timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting from feature-loss-can" in result.stdout
    from zoo.checkpoint_io import load_checkpoint  # zoo fit writes safetensors + JSON, no pickle

    checkpoint = load_checkpoint(tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt")
    published = load_file(str(ROOT / "hub_cards/feature-loss-can/model.safetensors"))
    weight = "network.body.3.weight"
    change = (checkpoint["state_dict"][weight] - published[weight]).abs().max()
    assert 0 < change < 1e-3  # one Adam step at lr 2e-5 away from the published weights
    # The authors did not release their layer weights lambda_m: the card carries ones, not yet fixed,
    # and fine-tuning measures them over its first epoch (warmup_epochs: 1), here its one step.
    assert torch.equal(published["feature_loss.weights"], torch.ones(6)) and not published["feature_loss.weights_fixed"]
    measured = checkpoint["state_dict"]["feature_loss.weights"]
    assert bool(checkpoint["state_dict"]["feature_loss.weights_fixed"]) and not torch.equal(measured, torch.ones(6))
    assert (1 / measured).mean().item() == pytest.approx(1.0, abs=1e-4)  # inverse relative losses


def test_compiling_the_training_path_keeps_checkpoints_loadable(tmp_path):
    import torch

    result = _run([
        "fit", "--config", "recipes/can/debug.yaml", "--trainer.max_steps", "2",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--model.init_args.width", "4", "--model.init_args.dilations", "[1, 2, 1]", "--data.init_args.train_size", "8",
        "--trainer.callbacks+=zoo.train.CompileNetwork",
    ], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = next((tmp_path / "lightning_logs/version_0/checkpoints").glob("*.ckpt"))
    from zoo.checkpoint_io import load_checkpoint

    keys = load_checkpoint(checkpoint)["state_dict"].keys()
    assert "network.body.0.weight" in keys and not any("_orig_mod" in k for k in keys)

    from zoo.models.can import ContextAggregationDenoiser
    from zoo.train import CompileNetwork

    model = ContextAggregationDenoiser(width=4, dilations=[1, 2, 1])
    CompileNetwork("network.body").setup(None, model, "fit")  # the CAN recipes' value
    assert model.network.body._compiled_call_impl is not None  # compiled in place
    assert model.network.output._compiled_call_impl is None


def test_starting_from_a_model_of_another_kind_says_what_to_change():
    import pytest

    from zoo.models.can import ContextAggregationDenoiser
    from zoo.train import StartFrom

    with pytest.raises(ValueError, match="WienerFilter but the recipe trains a ContextAggregationDenoiser"):
        StartFrom("wiener").setup(None, ContextAggregationDenoiser(width=4, dilations=[1, 1]), "fit")
    StartFrom("wiener").setup(None, ContextAggregationDenoiser(width=4, dilations=[1, 1]), "validate")  # fit only
    with pytest.raises(ValueError, match="other shapes .* use the published init_args"):
        StartFrom("can-l1").setup(None, ContextAggregationDenoiser(width=4), "fit")


def test_learning_rate_decay_is_a_function_of_the_step():
    import pytest

    from zoo.train import LearningRateDecay

    decay = LearningRateDecay(start_step=100, end_step=300, final_lr=1e-4)
    assert decay.rate(0, 5e-4) == decay.rate(100, 5e-4) == 5e-4
    assert decay.rate(200, 5e-4) == pytest.approx((5e-4 * 1e-4) ** 0.5)  # geometric: halfway is the mean
    assert decay.rate(300, 5e-4) == pytest.approx(1e-4) and decay.rate(10_000, 5e-4) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="start_step < end_step"):
        LearningRateDecay(start_step=300, end_step=300, final_lr=1e-4)
    with pytest.raises(ValueError, match="positive final_lr"):
        LearningRateDecay(start_step=0, end_step=10, final_lr=0)


def test_learning_rate_decay_segments_chain_from_where_the_last_one_ended(tmp_path):
    """An annealing phase added to a run that levelled off at the first segment's rate: the second
    segment starts from the first one's final rate, never from the configured one."""
    import pytest

    from zoo.cards import training_section
    from zoo.train import LearningRateDecay

    decay = LearningRateDecay(start_step=[7000, 14500], end_step=[10000, 16500], final_lr=[1e-4, 2e-5])
    assert decay.rate(7000, 5e-4) == 5e-4 and decay.rate(10_000, 5e-4) == pytest.approx(1e-4)
    assert decay.rate(14_500, 5e-4) == pytest.approx(1e-4)  # held between the segments
    assert decay.rate(15_500, 5e-4) == pytest.approx((1e-4 * 2e-5) ** 0.5)
    assert decay.rate(16_500, 5e-4) == pytest.approx(2e-5) and decay.rate(30_000, 5e-4) == pytest.approx(2e-5)
    single = LearningRateDecay(start_step=[100], end_step=[300], final_lr=[1e-4])
    assert single.rate(200, 5e-4) == LearningRateDecay(100, 300, 1e-4).rate(200, 5e-4)
    with pytest.raises(ValueError, match="as many start_step"):
        LearningRateDecay(start_step=[0, 10], end_step=[5], final_lr=[1e-4, 1e-5])
    with pytest.raises(ValueError, match="must not overlap"):
        LearningRateDecay(start_step=[0, 4], end_step=[5, 10], final_lr=[1e-4, 1e-5])

    # the card names both segments, as training.json records them from the run's config.yaml
    (tmp_path / "training.json").write_text(json.dumps({
        "global_step": 17000, "epochs": 169, "hours": 10.0, "learning_rate": {
            "initial": 5e-4, "last": 2e-5,
            "decay": {"start_step": [7000, 14500], "end_step": [10000, 16500], "final_lr": [1e-4, 2e-5]}}}))
    assert ("Learning rate (Adam): 0.0005, decayed geometrically to 0.0001 from step 7000 to 10000, then to "
            "2e-05 from step 14500 to 16500 (`zoo.train.LearningRateDecay`); 2e-05 at the last step"
            ) in training_section(tmp_path)


def test_learning_rate_decay_added_to_a_resumed_run_follows_the_step(tmp_path):
    """The multi-session CPU case: a run saved without a schedule is resumed with one. Adam's
    restored state carries the old rate; the callback must override it from the first resumed step."""
    import torch

    common = ["--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
              "--model.init_args.width", "4", "--model.init_args.dilations", "[1, 2, 1]",
              "--data.init_args.train_size", "16"]  # lr 1e-3 from the recipe; 4 steps an epoch
    first = _run(["fit", "--config", "recipes/can/debug.yaml", *common], timeout=300)  # one epoch
    assert first.returncode == 0, first.stderr[-3000:]
    saved = tmp_path / "lightning_logs/version_0/checkpoints/epoch=0-step=4.ckpt"
    from zoo.checkpoint_io import load_checkpoint

    assert load_checkpoint(saved)["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-3

    resumed = _run(["fit", "--config", "recipes/can/debug.yaml", "--trainer.max_epochs", "2",
                    "--ckpt_path", str(saved), *common,
                    "--trainer.callbacks+=zoo.train.LearningRateDecay", "--trainer.callbacks.start_step", "2",
                    "--trainer.callbacks.end_step", "6", "--trainer.callbacks.final_lr", "1e-5"], timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "lightning_logs/version_1/metrics.csv").open()))
    rates = {int(r["step"]): float(r["lr"]) for r in rows if r.get("lr")}
    # 1e-3 * (1e-5 / 1e-3) ** ((step - 2) / 4), held at 1e-5 from step 6: halfway down at the first resumed step
    expected = {4: 1e-4, 5: 1e-3 * 1e-2 ** 0.75, 6: 1e-5, 7: 1e-5}
    assert sorted(rates) == sorted(expected)
    for step, lr in rates.items():
        assert abs(lr - expected[step]) < 1e-6 * expected[step]  # logged as float32
    last_path = tmp_path / "lightning_logs/version_1/checkpoints/epoch=1-step=8.ckpt"
    last = load_checkpoint(last_path)
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-5

    # the card says how the rate went, from the run's own config and logs
    from zoo.cards import training_section

    card = tmp_path / "card"
    exported = subprocess.run([sys.executable, "-m", "zoo.card_from_checkpoint", str(last_path), "--model", "can-l1", "--out",
                               str(card)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr[-2000:]
    rate = json.loads((card / "training.json").read_text())["learning_rate"]
    assert rate["initial"] == 1e-3 and rate["decay"] == {"start_step": 2, "end_step": 6, "final_lr": 1e-5}
    assert abs(rate["last"] - 1e-5) < 1e-11
    assert ("Learning rate (Adam): 0.001, decayed geometrically to 1e-05 from step 2 to 6 "
            "(`zoo.train.LearningRateDecay`); 1e-05 at the last step") in training_section(card)


def test_demo_says_where_its_input_comes_from_and_what_to_do_without_one(tmp_path, monkeypatch, capsys):
    from zoo import cli

    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "no-data"))
    assert cli.main(["demo", "--out", str(tmp_path / "out"), "--model", "wiener"]) == 2
    missing = tmp_path / "no-data/voicebank-demand-subset/noisy_testset_wav/p232_013.wav"
    assert capsys.readouterr().err == (
        f"zoo: error: no example to denoise: {missing} does not exist; set ZOO_DATA to the folder that holds "
        "voicebank-demand-subset/ (the shared data), or pass your own file: zoo demo --input NOISY.wav "
        "[--clean CLEAN.wav]\n")
    assert cli.main(["demo", "--out", str(tmp_path / "out"), "--input", str(tmp_path / "mine.wav")]) == 2
    assert capsys.readouterr().err == f"zoo: error: {tmp_path / 'mine.wav'}: no such file\n"
    mine = tmp_path / "mine.wav"
    sf.write(str(mine), sf.read(str(EXAMPLE_NOISY), frames=16000)[0], 16000)
    assert cli.main(["demo", "--out", str(tmp_path / "out"), "--input", str(mine), "--model", "wiener"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"input: {mine} (your file; no clean reference, no scores)\n")
    report = json.loads((tmp_path / "out/scores.json").read_text())
    assert report["input"] == str(mine) and "scores" not in report and report["clean"] is None
