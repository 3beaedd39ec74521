"""VoiceBank-DEMAND as a LightningDataModule: the real 16 kHz test subset, and the official 48 kHz
layout rebuilt from that real audio inside ``tmp_path`` (resampled to 48 kHz, a few speakers).

The subset has only two speakers (p232, p257); the training folders of the 48 kHz tree give its
files the ids of four official training speakers (p226, p227, p228, p230) so that holding out
whole speakers can be checked. Nothing is written outside ``tmp_path``.
"""
from __future__ import annotations

import math
import shutil
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

import zoo.data.collate
from zoo.audio import AudioError, AudioFileError
from zoo.data.collate import DataLayoutError
from zoo.data.files import DATA_ROOT
from zoo.data.voicebank import VoiceBankDemand

SUBSET = DATA_ROOT / "voicebank-demand-subset"
RATE = 16000
SOURCE_RATE = 48000
TRAIN_SPEAKERS = ["p226", "p227", "p228", "p230"]


def subset_pairs(speaker: str, count: int) -> list[str]:
    """The ``count`` shortest real pairs of a subset speaker (short files keep the tests fast)."""
    names = sorted(SUBSET.glob(f"clean_testset_wav/{speaker}_*.wav"), key=lambda p: sf.info(str(p)).frames)
    return sorted(p.name for p in names[:count])


def write_pair(root: Path, part: str, source_name: str, name: str, rate: int) -> None:
    for side in ("clean", "noisy"):
        data, source_rate = sf.read(str(SUBSET / f"{side}_testset_wav" / source_name), dtype="float32")
        if rate != source_rate:
            data = AF.resample(torch.from_numpy(data), source_rate, rate).numpy()
        folder = root / f"{side}_{part}_wav"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(str(folder / name), data, rate, subtype="PCM_16")


def build_tree(root: Path, rate: int, per_speaker: int = 3) -> Path:
    """Official layout: 4 training speakers x ``per_speaker`` pairs, 2 test speakers x 2 pairs."""
    sources = subset_pairs("p232", 6) + subset_pairs("p257", 6)
    for i, speaker in enumerate(TRAIN_SPEAKERS):
        for j in range(per_speaker):
            source = sources[(i * per_speaker + j) % len(sources)]
            write_pair(root, "trainset_28spk", source, f"{speaker}_{j + 1:03d}.wav", rate)
    for source in subset_pairs("p232", 2) + subset_pairs("p257", 2):
        write_pair(root, "testset", source, source, rate)
    return root


@pytest.fixture(scope="session")
def tree48k(tmp_path_factory) -> Path:
    return build_tree(tmp_path_factory.mktemp("vb48k"), SOURCE_RATE)


@pytest.fixture
def tree16k(tmp_path) -> Path:
    return build_tree(tmp_path / "vb16k", RATE, per_speaker=2)


def module(root, cache, **kwargs) -> VoiceBankDemand:
    kwargs = {"crop_seconds": 1.0, "batch_size": 4, **kwargs}
    return VoiceBankDemand(str(root), cache_dir=str(cache), **kwargs)


def batches(loader) -> list[dict]:
    return list(loader)


# ---------------------------------------------------------------------------------------------
# The real 16 kHz subset (test folders only)


def test_subset_tests_on_whole_real_files_read_in_place(tmp_path):
    data = module("voicebank-demand-subset", tmp_path)  # relative to $ZOO_DATA
    data.setup("test")
    loader = data.test_dataloader()
    assert len(loader) == 69  # every official pair of the subset, one per batch
    first = next(iter(loader))
    assert set(first) == {"noisy", "clean", "lengths", "has_clean", "name", "speaker"}
    noisy, _ = sf.read(str(SUBSET / "noisy_testset_wav" / "p232_001.wav"), dtype="float32")
    assert first["name"] == ["p232_001"] and first["speaker"] == ["p232"]
    assert first["noisy"].shape == (1, noisy.size) and first["lengths"].tolist() == [noisy.size]
    assert torch.equal(first["noisy"][0], torch.from_numpy(noisy))
    assert not list(tmp_path.rglob("*.wav"))  # 16 kHz files are read where they are, never copied
    assert len(data.predict_dataloader()) == 69


def test_subset_cannot_fit_and_says_why(tmp_path):
    data = module(SUBSET, tmp_path)
    with pytest.raises(DataLayoutError, match=r"only the test folders, no clean_trainset_28spk_wav or "
                                              r"noisy_trainset_28spk_wav: it can test and predict but not fit"):
        data.setup("fit")
    with pytest.raises(DataLayoutError, match="clean_trainset_56spk_wav"):
        module(SUBSET, tmp_path, train_set="56spk").setup("validate")


# ---------------------------------------------------------------------------------------------
# The 48 kHz official layout: resampled once, cached


def test_48k_files_are_resampled_once_into_the_cache(tree48k, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    data = module(tree48k, cache)
    data.setup(None)
    assert len(data.examples["test"]) == 4 and len(data.examples["train"]) + len(data.examples["val"]) == 12
    copies = sorted((cache / "16000Hz").rglob("*.wav"))
    assert len(copies) == 32  # 16 pairs, every file once
    example = data.examples["test"][0]
    source, rate = sf.read(str(tree48k / "clean_testset_wav" / f"{example.name}.wav"), dtype="float32")
    cached, cached_rate = sf.read(str(example.clean), dtype="float32")
    assert rate == SOURCE_RATE and cached_rate == RATE and cached.size == math.ceil(source.size / 3)
    expected = AF.resample(torch.from_numpy(source), SOURCE_RATE, RATE).numpy()
    assert np.abs(cached - expected).max() <= 1 / 32768  # PCM_16 copy of the sinc-resampled file
    batch = next(iter(data.test_dataloader()))
    assert batch["clean"].shape == (1, cached.size) and torch.allclose(batch["clean"][0], torch.from_numpy(cached))

    # a second run (another process, say) resamples nothing and opens no audio header
    def refuse(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(zoo.data.collate, "resample", refuse)
    monkeypatch.setattr(zoo.data.collate, "open_audio", refuse)
    again = module(tree48k, cache)
    again.setup(None)
    assert again.examples == data.examples
    monkeypatch.undo()

    # a first run stopped before it saved its index: the copies it made are reused, not redone
    for index in cache.rglob("index.json"):
        index.unlink()
    monkeypatch.setattr(zoo.data.collate, "resample", refuse)
    interrupted = module(tree48k, cache)
    interrupted.setup(None)
    assert interrupted.examples == data.examples
    monkeypatch.undo()

    # a changed source gets a new copy (its old one is removed); the others are kept
    changed = tree48k / "clean_testset_wav" / f"{example.name}.wav"
    original = changed.read_bytes()
    try:
        sf.write(str(changed), 0.5 * source, SOURCE_RATE, subtype="PCM_16")
        calls = []
        monkeypatch.setattr(zoo.data.collate, "resample", lambda *a: calls.append(a) or zoo.audio.resample(*a))
        third = module(tree48k, cache)
        third.setup("test")
        assert len(calls) == 1
        new = third.examples["test"][0].clean
        assert new != example.clean and not example.clean.exists()
        assert np.allclose(sf.read(str(new), dtype="float32")[0], 0.5 * cached, atol=2 / 32768)
        now = sorted((cache / "16000Hz").rglob("*.wav"))
        assert now != copies and len(now) == 32
    finally:
        changed.write_bytes(original)

    # the cache is keyed by target rate too
    module(tree48k, cache, sample_rate=8000).setup("test")
    assert len(list((cache / "8000Hz").rglob("*.wav"))) == 8


def test_validation_holds_out_whole_speakers(tree48k, tmp_path):
    data = module(tree48k, tmp_path)
    data.setup("fit")
    train = {e.meta["speaker"] for e in data.examples["train"]}
    val = {e.meta["speaker"] for e in data.examples["val"]}
    assert len(val) == 2 and len(train) == 2 and not train & val and train | val == set(TRAIN_SPEAKERS)
    assert len(data.examples["val"]) == 6  # every utterance of the held-out speakers
    again = module(tree48k, tmp_path, seed=7)
    again.setup("fit")
    assert {e.meta["speaker"] for e in again.examples["val"]} == val  # the seed does not move speakers

    chosen = module(tree48k, tmp_path, val_speakers=["p227"])
    chosen.setup("validate")
    val_batch = next(iter(chosen.val_dataloader()))
    assert set(val_batch["speaker"]) == {"p227"} and val_batch["noisy"].shape[0] == 3
    longest = max(e.frames for e in chosen.examples["val"])
    assert val_batch["noisy"].shape[1] == longest  # whole files by default, zero-padded

    with pytest.raises(ValueError, match=r"val_speakers \['p999'\] are not in the training set; its speakers "
                                         r"are p226, p227, p228, p230"):
        module(tree48k, tmp_path, val_speakers=["p999"]).setup("fit")
    with pytest.raises(ValueError, match="not all of the 4 training speakers"):
        module(tree48k, tmp_path, val_speakers=TRAIN_SPEAKERS).setup("fit")
    with pytest.raises(ValueError, match="choose between 1 and 3"):
        module(tree48k, tmp_path, val_speakers=4).setup("fit")


def aligned_offset(whole: np.ndarray, crop: np.ndarray) -> int:
    """Where ``crop`` (non-silent, at least 64 samples) starts in ``whole``."""
    head = crop[:64]
    windows = np.lib.stride_tricks.sliding_window_view(whole, 64)
    hits = np.flatnonzero(np.abs(windows - head).max(axis=1) < 1e-7)
    assert hits.size >= 1
    return int(hits[0])


def test_training_crops_are_aligned_reproducible_and_new_each_epoch(tree48k, tmp_path):
    def first_two_epochs(**kwargs):
        data = module(tree48k, tmp_path, **kwargs)
        data.setup("fit")
        loader = data.train_dataloader()
        return data, [batches(loader), batches(loader)]

    data, (epoch0, epoch1) = first_two_epochs()
    batch = epoch0[0]
    assert batch["noisy"].shape == batch["clean"].shape == (4, RATE) and batch["lengths"].tolist() == [RATE] * 4
    assert sum(b["noisy"].shape[0] for b in epoch0) == 6  # every training file once per epoch
    by_name = {e.name: e for e in data.examples["train"]}
    for row, name in enumerate(batch["name"]):
        clean, _ = sf.read(str(by_name[name].clean), dtype="float32")
        noisy, _ = sf.read(str(by_name[name].noisy), dtype="float32")
        start = aligned_offset(clean, batch["clean"][row].numpy())
        assert np.array_equal(batch["noisy"][row].numpy(), noisy[start:start + RATE])  # same crop of both

    _, (same0, same1) = first_two_epochs()
    _, (other0, _) = first_two_epochs(seed=1)
    _, (workers0, workers1) = first_two_epochs(num_workers=2)
    for a, b in [(epoch0, same0), (epoch1, same1), (epoch0, workers0), (epoch1, workers1)]:
        assert [x["name"] for x in a] == [x["name"] for x in b]
        assert all(torch.equal(x["noisy"], y["noisy"]) for x, y in zip(a, b))
    assert not torch.equal(epoch0[0]["noisy"], other0[0]["noisy"])
    assert not torch.equal(epoch0[0]["noisy"], epoch1[0]["noisy"])  # new order and crops each epoch


def test_files_shorter_than_the_crop_are_padded_and_counted(tree48k, tmp_path):
    data = module(tree48k, tmp_path, crop_seconds=12.0, val_crop_seconds=12.0, test_batch_size=3)
    data.setup(None)
    for loader, split in [(data.train_dataloader(), "train"), (data.val_dataloader(), "val")]:
        frames = {e.name: e.frames for e in data.examples[split]}
        batch = next(iter(loader))
        assert batch["noisy"].shape[1] == 12 * RATE
        assert batch["lengths"].tolist() == [frames[n] for n in batch["name"]]
        for row, length in enumerate(batch["lengths"].tolist()):
            assert batch["clean"][row, :length].abs().max() > 0.01
            assert not batch["noisy"][row, length:].any() and not batch["clean"][row, length:].any()
    test = next(iter(data.test_dataloader()))
    assert test["noisy"].shape[0] == 3 and test["noisy"].shape[1] == max(test["lengths"].tolist())
    assert sorted(set(test["lengths"].tolist())) != [test["noisy"].shape[1]]  # padded rows, say which


# ---------------------------------------------------------------------------------------------
# Bad data


def test_missing_folder_names_it_and_the_layout(tree16k, tmp_path):
    shutil.rmtree(tree16k / "noisy_testset_wav")
    with pytest.raises(DataLayoutError, match=r"noisy_testset_wav missing under .*vb16k\. Expected: "
                                              r"clean_testset_wav/ \+ noisy_testset_wav/ \(test, predict\)"):
        module(tree16k, tmp_path).setup("test")
    with pytest.raises(DataLayoutError, match="is not a folder"):
        module(tmp_path / "nowhere", tmp_path).setup("test")


def test_files_without_a_partner_are_counted_with_an_example(tree16k, tmp_path):
    (tree16k / "clean_trainset_28spk_wav" / "p227_002.wav").unlink()
    clean = tree16k / "clean_trainset_28spk_wav"
    shutil.copy(clean / "p226_001.wav", clean / "p231_001.wav")
    with pytest.raises(DataLayoutError, match=r"1 of 8 files in noisy_trainset_28spk_wav/ have no partner in "
                                              r"clean_trainset_28spk_wav/ \(e\.g\. p227_002\.wav\); 1 of 8 files in "
                                              r"clean_trainset_28spk_wav/ have no partner .*p231_001\.wav"):
        module(tree16k, tmp_path).setup("fit")


def test_pairs_of_different_lengths_are_trimmed_with_a_count(tree16k, tmp_path):
    path = tree16k / "noisy_testset_wav" / "p232_162.wav"  # 25539 samples
    noisy, _ = sf.read(str(path), dtype="float32")
    sf.write(str(path), noisy[:-800], RATE, subtype="PCM_16")
    data = module(tree16k, tmp_path)
    with pytest.warns(UserWarning, match=r"VoiceBank-DEMAND test \(noisy_testset_wav\): 1 of 4 examples have files "
                                         r"of different lengths \(e\.g\. p232_162: noisy 1\.546 s, clean 1\.596 s\); "
                                         r"each was trimmed to its shortest file"):
        data.setup("test")
    batch = next(iter(data.test_dataloader()))
    assert batch["name"] == ["p232_162"] and batch["noisy"].shape == batch["clean"].shape == (1, noisy.size - 800)


def test_silent_speech_is_skipped_with_a_count(tree16k, tmp_path):
    path = tree16k / "clean_trainset_28spk_wav" / "p228_002.wav"
    sf.write(str(path), np.zeros(sf.info(str(path)).frames, np.float32), RATE, subtype="PCM_16")
    data = module(tree16k, tmp_path, val_speakers=["p226"])
    with pytest.warns(UserWarning, match=r"VoiceBank-DEMAND train \(noisy_trainset_28spk_wav\): skipped 1 of 6 "
                                         r"examples whose clean speech is silent \(RMS level below -70 dBFS\), "
                                         r"e\.g\. p228_002"):
        data.setup("fit")
    assert len(data.examples["train"]) == 5 and "p228_002" not in {e.name for e in data.examples["train"]}


def test_unreadable_file_is_named(tree16k, tmp_path):
    broken = tree16k / "noisy_testset_wav" / "p257_139.wav"
    broken.write_bytes(b"RIFF not really a wave file" * 10)
    (tree16k / "noisy_testset_wav" / "._p232_162.wav").write_bytes(b"\0" * 10)  # macOS litter is ignored
    with pytest.raises(AudioFileError, match=r"p257_139\.wav could not be read as audio"):
        module(tree16k, tmp_path).setup("test")
    broken.unlink()
    shutil.copy(tree16k / "clean_testset_wav" / "p257_139.wav", broken)
    clean = tree16k / "clean_testset_wav" / "p257_152.wav"
    wave, _ = sf.read(str(clean), dtype="float32")
    wave[100] = np.nan
    sf.write(str(clean), wave, RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"p257_152\.wav contains 1 NaN or infinite samples"):
        module(tree16k, tmp_path).setup("test")


def test_training_file_names_must_say_the_speaker(tree16k, tmp_path):
    for side in ("clean", "noisy"):
        folder = tree16k / f"{side}_trainset_28spk_wav"
        shutil.move(folder / "p226_001.wav", folder / "take1.wav")
    with pytest.raises(DataLayoutError, match=r"cannot tell the speaker of .*take1\.wav: VoiceBank-DEMAND files are "
                                              r"named pSPEAKER_NNN\.wav"):
        module(tree16k, tmp_path).setup("fit")
    with pytest.raises(ValueError, match="train_set must be '28spk' or '56spk'"):
        VoiceBankDemand(str(tree16k), train_set="84spk")
    with pytest.raises(ValueError, match=r"crop_seconds \(0\) and val_crop_seconds \(None\) must be positive"):
        VoiceBankDemand(str(tree16k), crop_seconds=0)


# ---------------------------------------------------------------------------------------------
# Configs and Lightning


def test_a_yaml_recipe_instantiates_it(tree16k, tmp_path):
    """What LightningCLI does with ``data:`` in a recipe (``zoo fit``), without training."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    config = parser.parse_string(f"""
data:
  class_path: zoo.data.voicebank.VoiceBankDemand
  init_args:
    root: {tree16k}
    train_set: 28spk
    val_speakers: [p226, p227]
    val_crop_seconds: null
    crop_seconds: 0.5
    cache_dir: {tmp_path}
""")
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
    data = instantiate(config).data
    assert isinstance(data, VoiceBankDemand)
    assert data.hparams.val_speakers == ["p226", "p227"] and data.hparams.crop_seconds == 0.5
    data.setup("fit")
    assert {e.meta["speaker"] for e in data.examples["val"]} == {"p226", "p227"}
    assert parser.parse_string(f"data: {{class_path: zoo.data.voicebank.VoiceBankDemand, init_args: "
                               f"{{root: {tree16k}, val_speakers: 1}}}}").data.init_args.val_speakers == 1
    with pytest.raises(Exception, match="train_set"):
        parser.parse_string(f"data: {{class_path: zoo.data.voicebank.VoiceBankDemand, init_args: "
                            f"{{root: {tree16k}, train_set: 84spk}}}}")


class Gain(L.LightningModule):
    """The smallest model on the contract: a learnt gain, L1 loss on the valid samples."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))
        self.seen = []

    def step(self, batch):
        mask = torch.arange(batch["noisy"].shape[1]) < batch["lengths"][:, None]
        return ((self.gain * batch["noisy"] - batch["clean"]).abs() * mask).sum() / mask.sum()

    def training_step(self, batch, index):
        self.seen.append(batch["name"])
        return self.step(batch)

    def validation_step(self, batch, index):
        self.log("val/loss", self.step(batch), batch_size=batch["noisy"].shape[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_trains_and_validates_on_it(tree48k, tmp_path):
    model = Gain()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        trainer.fit(model, datamodule=module(tree48k, tmp_path, batch_size=3))
    assert len(model.seen) == 4 and sorted(sum(model.seen[:2], [])) == sorted(sum(model.seen[2:], []))
    assert model.seen[:2] != model.seen[2:]  # reshuffled for the second epoch
    assert "val/loss" in trainer.callback_metrics and float(model.gain.detach()) != 1.0


@pytest.mark.parametrize("name", ["can-l1", "feature-loss-can"])
def test_the_papers_voicebank_recipe_trains_on_the_official_layout(name, tree48k, tmp_path):
    """recipes/NAME/voicebank.yaml as a user runs it, pointed at an official 48 kHz tree: whole
    files, one per step, resampled to 16 kHz; only the network is shrunk to keep the test short."""
    import csv
    import os
    import subprocess
    import sys

    import yaml

    root = Path(__file__).resolve().parent.parent
    from zoo.data.from_config import data_block

    recipe = yaml.safe_load((root / f"recipes/{name}/voicebank.yaml").read_text())
    data = data_block(root / f"recipes/{name}/voicebank.yaml")  # the model recipe names its data block
    assert recipe["model"]["init_args"]["lr"] == 1e-4 and data["init_args"]["batch_size"] == 1
    assert data["init_args"]["crop_seconds"] is None and recipe["trainer"]["max_epochs"] == 320
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([
        sys.executable, "-m", "zoo.cli", "fit", "--config", "recipes/data/voicebank.yaml",
        "--config", f"recipes/{name}/voicebank.yaml",
        "--data.init_args.root", str(tree48k), "--data.init_args.cache_dir", str(tmp_path / "cache"),
        "--data.init_args.num_workers", "0",
        "--model.init_args.width", "4", "--model.init_args.dilations", "[1, 2, 1]",
        "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1", "--trainer.limit_val_batches", "2",
        "--trainer.default_root_dir", str(tmp_path), "--trainer.logger.init_args.save_dir", str(tmp_path),
    ], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    version = tmp_path / "lightning_logs" / "version_0"
    rows = list(csv.DictReader((version / "metrics.csv").open()))
    # one step per training file: 2 of the 4 training speakers are held out, 3 files each remain
    assert len([r for r in rows if r.get("train/loss")]) == 6
    assert any(r.get("val/si_sdr") for r in rows)
    resampled = list((tmp_path / "cache").rglob("*.wav"))
    assert resampled and all(sf.info(str(p)).samplerate == RATE for p in resampled)
