"""`zoo.data.LabelledClipTasks`: the paper's pretraining sets (DCASE 2016 scenes, CHiME-Home
tags) plugged in by path. The fixtures are trees in those layouts cut from real recordings."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.data import LabelledClipTasks
from zoo.data.files import DATA_ROOT
from zoo.data.labelled import read_labels_file
from zoo.models.feature_loss import FeatureLossNetModule

ROOT = Path(__file__).resolve().parent.parent
SCENES = {"cafe": "noise/noisex/babble.flac", "factory": "noise/noisex/factory1.flac",
          "kitchen": "noise/speech-commands/doing_the_dishes.flac", "tram": "noise/noisex/volvo.flac"}
SPEECH = DATA_ROOT / "speech/ljspeech"


def _cut(source: Path, out: Path, start_s: float, seconds: float) -> np.ndarray:
    data, rate = sf.read(str(source), dtype="float32", start=int(start_s * 16000), frames=int(seconds * 16000))
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(out), data, rate)
    return data


@pytest.fixture(scope="module")
def dcase_tree(tmp_path_factory) -> Path:
    """DCASE 2016 task 1 layout: audio/*.wav and a tab-separated meta.txt (file, scene, recording)."""
    root = tmp_path_factory.mktemp("dcase2016")
    lines = []
    for scene, source in SCENES.items():
        for clip in range(6):
            name = f"audio/{scene[0]}{clip:03d}_0_3.wav"
            _cut(DATA_ROOT / source, root / name, 3.0 * clip, 2.5)  # shorter than a crop: looped
            lines.append(f"{name}\t{scene}\t{scene[0]}{clip:03d}")
    (root / "meta.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def tagging_tree(tmp_path_factory) -> Path:
    """CHiME-Home-like tagging: chunks of speech, noise or both, with a header and ;-separated tags."""
    root = tmp_path_factory.mktemp("chime_home")
    speech = sorted(SPEECH.glob("*.flac"))
    rows = ["file,tags"]
    (root / "chunks").mkdir()
    for clip in range(12):
        tags = {0: ["speech"], 1: ["dishes"], 2: ["speech", "dishes"]}[clip % 3]
        mix = np.zeros(int(2.5 * 16000), dtype="float32")
        if "speech" in tags:
            data, _ = sf.read(str(speech[clip]), dtype="float32", frames=mix.size, fill_value=0.0)
            mix += data
        if "dishes" in tags:
            data, _ = sf.read(str(DATA_ROOT / SCENES["kitchen"]), dtype="float32", start=16000 * clip,
                              frames=mix.size)
            mix += 0.5 * data
        sf.write(str(root / "chunks" / f"chunk{clip}.16kHz.wav"), mix, 16000)
        rows.append(f"chunks/chunk{clip}.16kHz.wav,{';'.join(tags)}")
    (root / "tags.csv").write_text("\n".join(rows) + "\n")
    return root


def _tasks(dcase_tree, tagging_tree):
    return [{"name": "scenes", "labels": str(dcase_tree / "meta.txt")},
            {"name": "tags", "labels": str(tagging_tree / "tags.csv"), "multi_label": True}]


def test_dcase_meta_and_tag_csv_are_read_as_they_are(dcase_tree, tagging_tree):
    scenes = read_labels_file(dcase_tree / "meta.txt")
    assert len(scenes) == 24 and scenes[0] == (dcase_tree / "audio/c000_0_3.wav", ["cafe"])
    tags = read_labels_file(tagging_tree / "tags.csv")  # the header line is skipped
    assert len(tags) == 12 and tags[2][1] == ["speech", "dishes"]


def test_batches_alternate_tasks_with_one_hot_and_multi_hot_targets(dcase_tree, tagging_tree):
    data = LabelledClipTasks(_tasks(dcase_tree, tagging_tree), batch_size=8, train_size=16, val_size=8,
                             val_share=0.25)
    data.setup("fit")
    assert data.task_classes == [4, 2] and data.multi_label == [False, True]
    assert data.class_names == [["cafe", "factory", "kitchen", "tram"], ["dishes", "speech"]]
    items = [data.val_set[i] for i in range(8)]
    assert [item["task"] for item in items] == [0, 1] * 4
    for item in items:
        assert item["wave"].shape == (2**15,) and item["target"].shape == (4,)
        assert item["wave"].abs().max() > 0  # 2.5 s clips looped to the 2^15-sample crop
        hot = int(item["target"].sum())
        assert hot == 1 if item["task"] == 0 else hot in (1, 2)
        if item["task"] == 1:
            assert item["target"][2:].sum() == 0  # a 2-class task never sets columns 3 and 4
    # validation clips are the same every time; the held-out clips never train
    assert torch.equal(data.val_set[3]["wave"], data.val_set[3]["wave"])
    train_paths = {p for task in data.train_set.tasks for p, _ in task.clips}
    val_paths = {p for task in data.val_set.tasks for p, _ in task.clips}
    assert train_paths and val_paths and not train_paths & val_paths


def test_lightning_pretrains_the_loss_network_on_them(dcase_tree, tagging_tree, tmp_path):
    torch.manual_seed(0)
    data = LabelledClipTasks(_tasks(dcase_tree, tagging_tree), batch_size=4, train_size=16, val_size=8,
                             val_share=0.25)
    module = FeatureLossNetModule(task_classes=(4, 2), multi_label=(False, True), task_names=("scenes", "tags"))
    trainer = L.Trainer(max_epochs=1, default_root_dir=tmp_path, logger=L.pytorch.loggers.CSVLogger(tmp_path),
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, data)
    logged = trainer.logged_metrics
    assert trainer.global_step == 4
    assert 0 <= float(logged["val/task0_accuracy"]) <= 1 and 0 <= float(logged["val/task1_accuracy"]) <= 1
    assert torch.isfinite(logged["val/loss"])


def test_heads_that_do_not_match_the_data_are_refused_with_the_fix(dcase_tree, tagging_tree, tmp_path):
    data = LabelledClipTasks(_tasks(dcase_tree, tagging_tree), batch_size=4, train_size=8, val_size=4)
    module = FeatureLossNetModule()  # the default (18, 5) heads of the shared-data tasks
    trainer = L.Trainer(max_steps=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False)
    with pytest.raises(ValueError, match=r"--model.init_args.task_classes '\[4, 2\]' "
                                         r"--model.init_args.multi_label '\[false, true\]'"):
        trainer.fit(module, data)


def test_bad_labels_files_say_what_is_wrong(tmp_path, dcase_tree):
    with pytest.raises(FileNotFoundError, match="labels file .* does not exist"):
        read_labels_file(tmp_path / "meta.txt")
    (tmp_path / "nolabel.txt").write_text("audio/a.wav\n")
    with pytest.raises(ValueError, match="line 1: no label after 'audio/a.wav'"):
        read_labels_file(tmp_path / "nolabel.txt")
    (tmp_path / "missing.txt").write_text("gone.wav\tbeach\n")
    with pytest.raises(FileNotFoundError, match="line 1: audio file .*gone.wav does not exist"):
        read_labels_file(tmp_path / "missing.txt")
    several = tmp_path / "several.txt"
    several.write_text(f"{dcase_tree / 'audio/c000_0_3.wav'}\tcafe;tram\n{dcase_tree / 'audio/c001_0_3.wav'}\tcafe\n")
    data = LabelledClipTasks([{"labels": str(several), "val_labels": str(several)}])
    with pytest.raises(ValueError, match="single-label but .* has several labels; set multi_label: true"):
        data.setup("fit")
    with pytest.raises(ValueError, match="unknown keys \\['multilabel'\\]"):
        LabelledClipTasks([{"labels": "x.txt", "multilabel": True}])
    with pytest.raises(ValueError, match="at least 2\\^15"):
        LabelledClipTasks([{"labels": "x.txt"}], crop_samples=16000)


def test_the_paper_recipe_runs_once_given_the_labels_files(dcase_tree, tagging_tree, tmp_path):
    """The DCASE/CHiME-Home recipe: its heads are the real sets' (15 scenes, 7 tags), so on this
    4-scene fixture it stops before the first step and names the values to set; with them it trains."""
    tasks = (f"[{{name: scenes, labels: {dcase_tree / 'meta.txt'}}}, "
             f"{{name: tags, labels: {tagging_tree / 'tags.csv'}, multi_label: true}}]")
    args = [sys.executable, "-m", "zoo.cli", "fit", "--config", "recipes/feature-loss-net/pretrain-dcase-chime-home.yaml",
            "--data.init_args.tasks", tasks, "--data.init_args.train_size", "4", "--data.init_args.val_size", "2",
            "--data.init_args.batch_size", "2", "--trainer.max_steps", "2",
            "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path)]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "--model.init_args.task_classes '[4, 2]' --model.init_args.multi_label '[false, true]'" in result.stderr
    result = subprocess.run([*args, "--model.init_args.task_classes", "[4, 2]"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = next((tmp_path / "lightning_logs").glob("version_*/checkpoints/last.ckpt"))
    from zoo.checkpoint_io import load_checkpoint

    state = load_checkpoint(checkpoint)["state_dict"]
    assert state["net.heads.0.weight"].shape[0] == 4 and state["net.heads.1.weight"].shape[0] == 2
