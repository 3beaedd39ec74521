"""ManifestDataModule on ../shared/data's real MANIFEST.json: groups, filters, held-out splits,
mixing shared with Mixtures, and recipe-style configuration of every mixing DataModule."""
from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from zoo.data import Mixtures
from zoo.data.files import DATA_ROOT
from zoo.data.manifest import ManifestDataModule, ManifestError
from zoo.data.noises import BABBLE_SPEECH
from zoo.data.splits import TEST_NOISE, TEST_SPEECH, TRAIN_NOISE, TRAIN_SPEECH, VAL_NOISE, VAL_SPEECH

ROWS = json.loads((DATA_ROOT / "MANIFEST.json").read_text())
FAST = dict(crop_seconds=0.25, batch_size=4, train_size=8, val_size=4)


def _relative(files) -> set[str]:
    return {str(Path(f.path).relative_to(DATA_ROOT.resolve())) for f in files if not isinstance(f, str)}


def _under(path: str, prefixes) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def test_default_pools_are_the_training_groups_with_validation_and_test_held_out():
    data = ManifestDataModule(**FAST)
    data.setup("fit")
    speech, noise = _relative(data.train_set.speech), _relative(data.train_set.noise)
    expected_speech = {r["path"] for r in ROWS if r["group"] in TRAIN_SPEECH}
    assert speech == expected_speech and len(speech) == 392
    # naming all of noise/noisex trains on its training noises only: zoo.data.splits.TRAIN_NOISE
    expected_noise = {r["path"] for r in ROWS if _under(r["path"], TRAIN_NOISE)}
    assert noise == expected_noise and len(noise) == 13
    assert _relative(data.val_set.speech) == {r["path"] for r in ROWS if _under(r["path"], VAL_SPEECH)}
    assert _relative(data.val_set.noise) == {r["path"] for r in ROWS if _under(r["path"], VAL_NOISE)}
    for path in speech | noise:
        assert not _under(path, VAL_SPEECH + VAL_NOISE + TEST_SPEECH + TEST_NOISE)
    batch = next(iter(data.train_dataloader()))
    assert {k: tuple(v.shape) for k, v in batch.items()} == {"noisy": (4, 4000), "clean": (4, 4000),
                                                             "noise": (4, 4000), "snr_db": (4,), "has_clean": (4,)}
    assert torch.allclose(batch["noisy"], batch["clean"] + batch["noise"], atol=1e-6)
    val = next(iter(data.val_dataloader()))
    assert torch.isfinite(val["noisy"]).all() and (val["clean"].abs().amax(dim=1) > 0).all()


def test_speaker_label_and_path_filters_and_generated_noises():
    data = ManifestDataModule(speakers=["103", "1034", "LJ"], labels=["babble", "doing_the_dishes"],
                              exclude=["speech/ljspeech/LJ001-*"],
                              noise_groups=["noise/speech-commands", "noise/noisex", "generated:pink"], **FAST)
    data.setup("fit")
    speakers = {r["path"]: r.get("speaker") for r in ROWS}
    speech = _relative(data.train_set.speech)
    assert {speakers[p] for p in speech} == {"103", "1034", "LJ"}
    assert not any(p.startswith("speech/ljspeech/LJ001-") for p in speech)
    assert _relative(data.train_set.noise) == {"noise/noisex/babble.flac",
                                               "noise/speech-commands/doing_the_dishes.flac"}
    assert "generated:pink" in data.train_set.noise
    fewer = ManifestDataModule(speech_groups=["speech/librispeech-train-clean-100"], exclude_speakers=["103"], **FAST)
    fewer.setup("fit")
    assert len(fewer.train_set.speech) == 250


def test_babble_talkers_are_taken_out_of_the_training_speech():
    data = ManifestDataModule(noise_groups=["generated:babble", "generated:speech-shaped"],
                              val_noise=["generated:babble"], **FAST)
    data.setup("fit")
    talkers = {r["path"] for r in ROWS if _under(r["path"], BABBLE_SPEECH)}
    assert _relative(data.train_set.generated.babble) == talkers and len(talkers) == 20
    assert len(data.train_set.speech) == 392 - 20 and not talkers & _relative(data.train_set.speech)
    batch = next(iter(data.val_dataloader()))
    assert torch.isfinite(batch["noise"]).all() and (batch["noise"].abs().amax(dim=1) > 0).all()


def test_the_manifest_module_mixes_with_the_mixtures_code():
    """Same files, same seed: ManifestDataModule and Mixtures give the very same batches."""
    speech = [r["path"] for r in ROWS if r.get("speaker") in ("103", "1034", "LJ")]
    noise = ["noise/speech-commands/doing_the_dishes.flac", "noise/noisex/babble.flac"]  # in the manifest's order
    manifest = ManifestDataModule(speakers=["103", "1034", "LJ"], labels=["babble", "doing_the_dishes"], seed=7, **FAST)
    mixtures = Mixtures(speech=speech, noise=noise, seed=7, **FAST)
    manifest.setup("fit")
    mixtures.setup("fit")
    assert [f.path for f in manifest.train_set.speech] == [f.path for f in mixtures.train_set.speech]
    assert [f.path for f in manifest.train_set.noise] == [f.path for f in mixtures.train_set.noise]
    for ours, theirs in zip(manifest.train_dataloader(), mixtures.train_dataloader()):
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_bad_groups_and_missing_files_are_named(tmp_path):
    with pytest.raises(ManifestError, match="voicebank-demand-subset is evaluation data"):
        ManifestDataModule(speech_groups=["voicebank-demand-subset"])
    with pytest.raises(ManifestError, match="group 'speech/timit' is not in .*its groups are: noise/noisex"):
        ManifestDataModule(speech_groups=["speech/timit"], **FAST).setup("fit")
    with pytest.raises(ManifestError, match="selects no file"):
        ManifestDataModule(speakers=["nobody"], **FAST).setup("fit")
    with pytest.raises(FileNotFoundError, match=f"manifest {tmp_path}/MANIFEST.json does not exist; set ZOO_DATA"):
        ManifestDataModule(data_root=str(tmp_path), **FAST).setup("fit")
    rows = [r for r in ROWS if r["group"] in ("speech/ljspeech", "noise/noisex")]
    for row in rows:  # a copy of the data (links) ...
        (tmp_path / row["path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / row["path"]).symlink_to(DATA_ROOT / row["path"])
    (tmp_path / "speech/ljspeech/LJ001-0009.flac").unlink()  # ... with one file lost
    (tmp_path / "MANIFEST.json").write_text(json.dumps(rows))
    with pytest.raises(FileNotFoundError, match=r"1 of the files listed in \S*MANIFEST.json are missing, e.g. "
                                                r"\S*LJ001-0009.flac; set ZOO_DATA or data_root"):
        ManifestDataModule(speech_groups=["speech/ljspeech"], noise_groups=["noise/noisex"],
                           val_speech=["speech/ljspeech/LJ003-0098.flac"], data_root=str(tmp_path), **FAST).setup("fit")


RECIPES = {
    "zoo.data.Mixtures": """
        speech: [speech/librispeech-train-clean-100, speech/ljspeech]
        noise: [noise/speech-commands, generated:pink, generated:speech-shaped, generated:babble]
        snr_db_choices: [0, 5, 10]
        gain_db: [-6, 6]
        crop_seconds: 0.25
        max_files: 30
    """,
    "zoo.data.manifest.ManifestDataModule": """
        speech_groups: [speech/librispeech-train-clean-100, speech/ljspeech]
        noise_groups: [noise/speech-commands, noise/noisex, generated:brown]
        speakers: [LJ]
        snr_db: [0, 15]
        crop_seconds: 0.25
    """,
    "zoo.data.semisupervised.SemiSupervisedMixtures": """
        noise_only: [noise/noisex/volvo.flac]
        noisy: [noise/noisex/babble.flac]
        noise_only_share: 0.25
        batch_size: 4
        crop_seconds: 0.25
    """,
}


@pytest.mark.parametrize("class_path", sorted(RECIPES))
def test_recipes_select_each_module_by_class_path(class_path):
    """What LightningCLI does with a recipe's data section: jsonargparse builds the module."""
    parser = ArgumentParser()
    parser.add_argument("--data", type=L.LightningDataModule)
    config = parser.parse_object({"data": {"class_path": class_path, "init_args": yaml.safe_load(RECIPES[class_path])}})
    data = parser.instantiate(config).data
    assert type(data).__name__ == class_path.rsplit(".", 1)[1]
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["noisy"].shape[-1] == 4000 and torch.isfinite(batch["noisy"]).all()

