"""Issue 18, items 1, 6 and 8, as a user meets them: export and fine-tuning write a new card folder
(never a published one in hub_cards/) that loads and publishes as it is; a fine-tune is one command
from a noise folder to that folder; `zoo fit` says where its checkpoints went; `zoo eval` says which
weights it scored and its BAK figure keeps its axis label.

Real parts throughout: real speech and noise from ../shared/data, real Lightning runs of a few
steps (can-l1, W=32, or a W=4 CAN: the same code path as feature-loss-can, minutes faster), real
card folders loaded back with zoo.load. Publishing is observed with a recording Hub client, as in
test_hub (the local Hub server has no upload endpoints).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

import zoo
from zoo.checkpoint_io import SafetensorsCheckpointIO
from zoo.data import Mixtures
from zoo.models.can import ContextAggregationDenoiser

from conftest import DATA_ROOT, EXAMPLE_NOISY, VOICEBANK_SUBSET

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "hub_cards" / "can-l1"
TINY_DATA = ["--data.init_args.train_size", "4", "--data.init_args.val_size", "2",
             "--data.init_args.crop_seconds", "0.5", "--data.init_args.batch_size", "2"]


class RecordingApi:
    """The Hub client seen by zoo.publish: records the repository and the one commit it would make."""

    def __init__(self):
        self.calls = []

    def create_repo(self, *args, **kwargs):
        self.calls.append(("create_repo", args, kwargs))

    def create_commit(self, repo_id, operations, **kwargs):
        self.calls.append(("create_commit", (repo_id, [op.path_in_repo for op in operations]), kwargs))
        return "commit"


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def published_card_guard():
    """The published can-l1 card's bytes before the test; put back (and the test failed) if they changed."""
    before = {p.name: p.read_bytes() for p in PUBLISHED.iterdir() if p.is_file()}
    yield before
    changed = [name for name, data in before.items() if (PUBLISHED / name).read_bytes() != data]
    added = [p.name for p in PUBLISHED.iterdir() if p.is_file() and p.name not in before]
    for name in changed:
        (PUBLISHED / name).write_bytes(before[name])
    for name in added:
        (PUBLISHED / name).unlink()
    assert not changed and not added, f"hub_cards/can-l1 was written: {changed + added} (restored)"


@pytest.fixture
def tiny_checkpoint(tmp_path) -> Path:
    """A real 3-step Lightning run of a W=4 CAN (the class of can-l1) on real speech and noise."""
    torch.manual_seed(0)
    data = Mixtures(speech=["speech/ljspeech"], noise=["noise/noisex/white.flac"], val_speech=["speech/ljspeech"],
                    val_noise=["noise/noisex/white.flac"], crop_seconds=0.25, batch_size=2, train_size=6,
                    val_size=2, max_files=4)
    model = ContextAggregationDenoiser(width=4, dilations=[1, 2, 1], lr=1e-3)
    trainer = L.Trainer(max_steps=3, default_root_dir=tmp_path / "run", logger=L.pytorch.loggers.CSVLogger(tmp_path / "run"),
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        log_every_n_steps=1, plugins=[SafetensorsCheckpointIO()])  # as zoo fit writes them
    trainer.fit(model, data)
    return next((tmp_path / "run/lightning_logs/version_0/checkpoints").glob("*.ckpt"))


def _publishable(folder: Path) -> None:
    """What `zoo publish FOLDER` checks and sends: it loads back, has a card, one commit of its files."""
    api = RecordingApi()
    assert zoo.publish(str(folder), "someone/my-model", api=api) == "commit"
    sent = api.calls[-1][1][1]
    assert {"README.md", "config.json", "model.safetensors", "training.json"} <= set(sent)


# ---- item 1: a published card is never written by export ----------------------------------------


def test_export_without_out_writes_a_new_folder_and_never_the_published_card(
        tiny_checkpoint, tmp_path, monkeypatch, capsys, published_card_guard):
    from zoo.card_from_checkpoint import main

    monkeypatch.chdir(tmp_path)
    before = _digests(PUBLISHED)
    main([str(tiny_checkpoint), "--model", "can-l1"])  # the README's old line, without --out
    captured = capsys.readouterr()
    folder = Path(json.loads(captured.out.splitlines()[0])["folder"])
    assert folder == Path("runs/cards/can-l1-step3")
    assert "card folder: runs/cards/can-l1-step3" in captured.err
    assert "zoo publish runs/cards/can-l1-step3 --repo-id ORG/can-l1-step3" in captured.err
    assert _digests(PUBLISHED) == before
    # the published name still loads the published weights; the new folder loads the new ones
    assert zoo.load("can-l1").zoo_folder.resolve() != folder.resolve()
    loaded = zoo.load(str(folder))
    assert loaded.network.body[0].out_channels == 4 and not loaded.training
    _publishable(folder)
    # a second export never lands in the first one's folder
    main([str(tiny_checkpoint), "--model", "can-l1"])
    assert json.loads(capsys.readouterr().out.splitlines()[0])["folder"] == "runs/cards/can-l1-step3-2"


@pytest.mark.parametrize("target", ["hub_cards/can-l1", "hub_cards/can-l1/sub", "hub_cards/new-name"])
def test_export_into_hub_cards_is_refused_with_the_fix(tiny_checkpoint, capsys, target, published_card_guard):
    from zoo.card_from_checkpoint import main

    with pytest.raises(SystemExit) as exit_:
        main([str(tiny_checkpoint), "--model", "can-l1", "--out", str(ROOT / target)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "exports and fine-tunes never write there; pass --out NEW_FOLDER" in err
    assert not (ROOT / "hub_cards/new-name").exists() and not (ROOT / "hub_cards/can-l1/sub").exists()


def test_exported_card_states_the_config_it_ships(tiny_checkpoint, tmp_path):
    """The issue saw config.json and the card disagree (warmup_epochs 10 vs 2, recipe null): the card
    is now rendered from the folder's own config.json and training.json."""
    from huggingface_hub import ModelCard

    from zoo.card_from_checkpoint import card_from_checkpoint

    folder = card_from_checkpoint(tiny_checkpoint, "can-l1", out=tmp_path / "card")
    config = json.loads((folder / "config.json").read_text())
    card = (folder / "README.md").read_text()
    assert f"`{json.dumps(config['init_args'], sort_keys=True)}`" in card
    assert f"sha256 `{config['weights_sha256']}`" in card
    assert ModelCard.load(folder / "README.md").data.library_name == "zoo"


# ---- item 6: zoo fit says where its checkpoint went; zoo finetune is one command ----------------


def test_a_run_that_logged_no_curve_gets_no_blank_training_figure(tiny_checkpoint, tmp_path):
    """Under log_every_n_steps and without validation, FeatureLossCAN's metrics.csv holds only its
    epoch-end loss weights: the exported training.png was an empty frame. Now the card has no figure;
    a run that logged its steps (zoo finetune sets log_every_n_steps for short runs) has one."""
    from zoo.card_from_checkpoint import card_from_checkpoint

    metrics = tiny_checkpoint.parent.parent / "metrics.csv"
    logged = metrics.read_text()
    metrics.write_text("epoch,loss_weight/1,loss_weight/2,step\n0,1.5,0.5,2\n")
    bare = card_from_checkpoint(tiny_checkpoint, "can-l1", out=tmp_path / "bare")
    assert not (bare / "training.png").exists() and "training.png" not in (bare / "README.md").read_text()
    metrics.write_text(logged)
    curve = card_from_checkpoint(tiny_checkpoint, "can-l1", out=tmp_path / "curve")
    assert (curve / "training.png").is_file() and "](training.png)" in (curve / "README.md").read_text()


def test_fit_records_its_recipe_and_says_where_the_checkpoint_went(tmp_path, monkeypatch, capsys):
    from zoo.cli import main
    from zoo.card_from_checkpoint import card_from_checkpoint

    monkeypatch.setattr(sys, "argv", list(sys.argv))  # LightningCLI reads sys.argv; zoo.train sets it
    monkeypatch.chdir(tmp_path)
    assert main(["fit", "--config", str(ROOT / "recipes/can/debug.yaml"), "--trainer.max_steps", "2",
                 "--trainer.default_root_dir", "run", "--trainer.logger.init_args.save_dir", "run",
                 "--model.init_args.width", "4", "--model.init_args.dilations", "[1, 2, 1]",
                 "--data.init_args.train_size", "8", "--trainer.enable_progress_bar", "false"]) == 0
    err = capsys.readouterr().err
    checkpoint = Path("run/lightning_logs/version_0/checkpoints/epoch=0-step=2.ckpt")
    assert checkpoint.is_file()
    assert f"training finished at step 2; logs: run/lightning_logs/version_0\n  last checkpoint: {checkpoint}\n" in err
    assert f"next: a card folder from it (a new folder; hub_cards/ is never written):\n" \
           f"  python -m zoo.card_from_checkpoint {checkpoint} --model NAME --out my-NAME" in err  # can-l1 and can-l2 share the class
    record = json.loads((card_from_checkpoint(checkpoint, "can-l1", out=tmp_path / "card") / "training.json").read_text())
    assert record["recipe"] == "recipes/can/debug.yaml"  # was null


@pytest.fixture
def my_noise(tmp_path) -> Path:
    noise = tmp_path / "my noise"
    noise.mkdir()
    shutil.copy(DATA_ROOT / "noise/noisex/babble.flac", noise / "kitchen.flac")
    return noise


def test_finetune_is_one_command_from_a_noise_folder_to_a_card_folder(
        tmp_path, my_noise, monkeypatch, capsys, published_card_guard):
    from zoo.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    code = main(["finetune", "--noise", str(my_noise), "--model", "can-l1", "--steps", "3", "--",
                 *TINY_DATA, "--trainer.enable_progress_bar", "false"])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    folder = Path("runs/cards/can-l1-my noise")
    # the end of the output names the folder and the next commands
    tail = err[err.index("card folder:"):]
    assert tail.startswith(f"card folder: {folder}\nnext:\n")
    assert f"zoo denoise noisy/ -o enhanced/ --model {folder}" in tail
    assert f"zoo publish {folder} --repo-id ORG/{folder.name}" in tail
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md", "config.json", "model.safetensors", "training.json", "training.png"]

    # loadable, started from the published weights and moved by three steps
    tuned, published = zoo.load(str(folder)), zoo.load("can-l1")
    change = (tuned.network.body[3].weight - published.network.body[3].weight).abs().max().item()
    assert 0 < change < 1e-2
    from zoo.audio import read_audio

    noisy, rate = read_audio(EXAMPLE_NOISY)
    assert tuned.enhance(noisy, rate).shape == noisy.shape
    _publishable(folder)

    # under one epoch (2 batches of 2), validation still ran at the last step and a best checkpoint is kept
    record = json.loads((folder / "training.json").read_text())
    assert record["global_step"] == 3 and "last_val_si_sdr_db" in record
    run = Path(record["checkpoint"]).parent
    assert any(p.name.startswith("best-") for p in run.iterdir()) and (run / "last.ckpt").is_file()
    from zoo.card_from_checkpoint import read_metrics

    rows = read_metrics([run.parent / "metrics.csv"])
    assert [int(r["step"]) for r in rows if r.get("val/si_sdr")][-1] == 2  # Lightning logs step 3 as 2
    assert len([r for r in rows if r.get("train/loss")]) == 3  # every step of a short run is on the curve
    # the card, config.json and training.json agree, and training.json says what the run was
    config = json.loads((folder / "config.json").read_text())
    assert f"`{json.dumps(config['init_args'], sort_keys=True)}`" in (folder / "README.md").read_text()
    assert record["recipe"] == "recipes/data/finetune-noise.yaml + recipes/can-l1/finetune-noise.yaml"
    assert record["finetune"]["noise"] == [str(my_noise.resolve().relative_to(tmp_path.resolve()))]
    assert record["finetune"]["peak_memory_gb"] > 0.1
    assert "Peak memory of the fine-tuning process" in (folder / "README.md").read_text()
    assert record["data"]["init_args"]["noise"] == [str(my_noise.resolve())]
    assert record["started_from"]["model"] == "can-l1"
    # where it started, on the same validation batches: the published can-l1 beats the input there
    start = record["finetune"]["val_start_si_sdr_db"]
    assert start > record["val_input_si_sdr_db"], (start, record["val_input_si_sdr_db"])
    assert f"validation SI-SDR of the model it started from: {start:.3f} dB" in err
    assert f"the model it started from: {start:.2f} dB" in (folder / "README.md").read_text()

    # a second fine-tune never reuses the first one's folders
    code = main(["finetune", "--noise", str(my_noise), "--model", "can-l1", "--steps", "1", "--",
                 *TINY_DATA, "--trainer.enable_progress_bar", "false"])
    assert code == 0
    assert "card folder: runs/cards/can-l1-my noise-2\n" in capsys.readouterr().err
    assert Path("runs/finetune/can-l1-my noise-2/lightning_logs/version_0/checkpoints/last.ckpt").is_file()


@pytest.mark.parametrize("case, message", [
    ("missing", "--noise {tmp}/nowhere: no such folder or file"),
    ("empty", "--noise {tmp}/empty: no audio files"),
    ("out-exists", "exists and is not an empty folder: a fine-tune writes a new card folder"),
    ("out-published", "exports and fine-tunes never write there"),
    ("no-recipe", "wiener has no fine-tuning recipe (recipes/wiener/finetune-noise.yaml); pass --recipe FILE"),
])
def test_finetune_refuses_what_it_cannot_do_before_training(tmp_path, my_noise, capsys, case, message,
                                                            published_card_guard):
    from zoo.cli import main

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/notes.txt").write_text("no audio")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken/config.json").write_text("{}")
    args = {"missing": ["--noise", str(tmp_path / "nowhere")], "empty": ["--noise", str(tmp_path / "empty")],
            "out-exists": ["--noise", str(my_noise), "--out", str(tmp_path / "taken")],
            "out-published": ["--noise", str(my_noise), "--out", str(PUBLISHED)],
            "no-recipe": ["--noise", str(my_noise)]}[case]
    model = "wiener" if case == "no-recipe" else "can-l1"
    assert main(["finetune", *args, "--model", model, "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_validation_interval_reaches_the_last_step():
    from zoo.finetune import validation_interval

    assert validation_interval(20, 100) == 20  # one validation, at step 20
    assert validation_interval(800, 100) == 100  # once an epoch
    assert validation_interval(150, 100) == 75
    assert validation_interval(7, 2) == 1


# ---- item 8: zoo eval -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_eval():
    from zoo.evaluate import evaluate

    return evaluate(["wiener"], f"voicebank-demand:{VOICEBANK_SUBSET}", workers=1, limit=4, progress=False)


def test_eval_summary_says_which_weights_were_scored(small_eval, tmp_path):
    from zoo.evaluate import write_reports
    from zoo.hub import sha256_of

    paths = write_reports(small_eval, tmp_path)
    sources = json.loads(paths["json"].read_text())["sources"]
    wiener = zoo.load("wiener")
    assert sources["wiener"]["source"] == wiener.zoo_source
    assert sources["wiener"]["weights_sha256"] == sha256_of(Path(wiener.zoo_folder) / "model.safetensors")
    assert sources["wiener"]["weights_sha256"] == json.loads(
        (Path(wiener.zoo_folder) / "config.json").read_text())["weights_sha256"]
    assert sources["noisy"] == {"source": "the unprocessed noisy input"}
    assert f"- wiener: {wiener.zoo_source} (weights sha256 `{sources['wiener']['weights_sha256']}`)" in (
        paths["markdown"].read_text())


def test_bak_distribution_keeps_its_axis_label_inside_the_image(small_eval, tmp_path):
    import matplotlib.image

    from zoo.evaluate import write_reports

    paths = write_reports(small_eval, tmp_path)
    for key in ("bak_distribution", "tranches"):
        gray = matplotlib.image.imread(paths[key])[..., :3].mean(axis=-1)
        ink_rows = np.flatnonzero((gray < 0.5).any(axis=1))
        ink_columns = np.flatnonzero((gray < 0.5).any(axis=0))
        # text and axes end inside a white margin: nothing runs off an edge
        assert ink_rows.min() > 2 and ink_rows.max() < gray.shape[0] - 3, key
        assert ink_columns.min() > 2 and ink_columns.max() < gray.shape[1] - 3, key
