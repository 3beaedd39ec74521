"""CHiME-4 as a LightningDataModule, on a tree in the official layout built by the test.

No CHiME-4 audio exists here (its speech is licensed), so the tree is made of real speech
(LibriSpeech) and real noise (NOISEX-92) from ``../shared/data``: for each simulated utterance
and microphone CH1..CH6, ``isolated_ext/<set>_<env>_simu/<name>.CH<c>.Clean.wav`` and
``.Noise.wav`` and their sum ``isolated/<set>_<env>_simu/<name>.CH<c>.wav`` (as the official
simulation writes them); real utterances have only the noisy microphone files (and CH0, the
close-talk microphone); ``data/annotations/<set>_<kind>.json`` lists them all.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.audio import AudioFileError
from zoo.data.chime4 import Chime4
from zoo.data.batch import check_batch
from zoo.data.collate import DataLayoutError
from zoo.data.files import DATA_ROOT

RATE = 16000
ENVIRONMENTS = {"bus": "volvo", "caf": "babble", "ped": "factory1", "str": "m109"}  # noise each one is made of
SETS = {  # set -> (kind, speakers, utterances per environment)
    "tr05": {"simu": (["F01", "M01"], 2), "real": (["F02"], 1)},
    "dt05": {"simu": (["F03"], 1), "real": (["M03"], 1)},
    "et05": {"simu": (["F05"], 1), "real": (["M05"], 1)},
}
QUANTUM = 1 / 32768


def build_chime4(top: Path) -> Path:
    """``top/data/...`` in the official layout; returns ``top`` (the CHiME-4 folder)."""
    speech = sorted((DATA_ROOT / "speech" / "librispeech-train-clean-100").rglob("*.flac"))
    data = top / "data"
    rng = np.random.default_rng(4)
    count = 0
    for set_name, kinds in SETS.items():
        for kind, (speakers, per_environment) in kinds.items():
            records = []
            for env, noise_name in ENVIRONMENTS.items():
                noise_all, _ = sf.read(str(DATA_ROOT / "noise" / "noisex" / f"{noise_name}.flac"), dtype="float32")
                for u in range(per_environment):
                    speaker = speakers[u % len(speakers)]
                    wsj_name = f"{40 + count:03d}C02{u:02d}"
                    utterance = f"{speaker}_{wsj_name}_{env.upper()}"
                    frames = int(RATE * (1.0 + 0.1 * (count % 8)))  # 1.0 .. 1.7 s
                    voice, _ = sf.read(str(speech[count]), dtype="float32", start=8000, frames=frames)
                    count += 1
                    record = {"speaker": speaker, "wsj_name": wsj_name, "environment": env.upper(),
                              "start": 1.0 + count, "end": 1.0 + count + frames / RATE, "prompt": "...",
                              "dot": "..."}
                    if kind == "real":
                        record["wavfile"] = f"{speaker}_05{count:04d}_{env.upper()}"
                    records.append(record)
                    folder = f"{set_name}_{env}_{kind}"
                    for channel in range(0 if kind == "real" else 1, 7):
                        start = int(rng.integers(0, noise_all.size - frames))
                        gain = 0.9 + 0.05 * channel if channel != 2 else 0.3  # CH2 faces away from the speaker
                        clean = (0.5 * gain * voice).astype(np.float32)
                        noise = (0.1 * gain * noise_all[start:start + frames]).astype(np.float32)
                        if channel == 0:  # close-talk microphone of real recordings
                            noise = 0.05 * noise
                        noisy = data / "audio" / "16kHz" / "isolated" / folder / f"{utterance}.CH{channel}.wav"
                        write(noisy, clean + noise)
                        if kind == "simu":
                            ext = data / "audio" / "16kHz" / "isolated_ext" / folder
                            write(ext / f"{utterance}.CH{channel}.Clean.wav", clean)
                            write(ext / f"{utterance}.CH{channel}.Noise.wav", noise)
            (data / "annotations").mkdir(parents=True, exist_ok=True)
            (data / "annotations" / f"{set_name}_{kind}.json").write_text(json.dumps(records, indent=1))
    return top


def write(path: Path, wave: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, RATE, subtype="PCM_16")


@pytest.fixture(scope="session")
def chime_tree(tmp_path_factory) -> Path:
    return build_chime4(tmp_path_factory.mktemp("chime") / "CHiME4")


@pytest.fixture
def chime_copy(chime_tree, tmp_path) -> Path:
    """A private copy to break."""
    return Path(shutil.copytree(chime_tree, tmp_path / "CHiME4"))


def module(root, cache, **kwargs) -> Chime4:
    return Chime4(str(root), cache_dir=str(cache), **{"batch_size": 4, "crop_seconds": 1.2, **kwargs})


def isolated(root: Path, *parts) -> Path:
    return root / "data" / "audio" / "16kHz" / Path(*parts)


# ---------------------------------------------------------------------------------------------
# Simulated data


def test_simulated_sets_follow_the_annotations(chime_tree, tmp_path):
    data = module(chime_tree, tmp_path)
    data.setup(None)
    assert [len(data.examples[s]) for s in ("train", "val", "test")] == [8, 4, 4]  # CH5 of every utterance
    annotated = json.loads((chime_tree / "data/annotations/et05_simu.json").read_text())
    assert [e.name for e in data.examples["test"]] == [f"{r['speaker']}_{r['wsj_name']}_{r['environment']}.CH5"
                                                       for r in annotated]
    batch = next(iter(data.test_dataloader()))
    assert set(batch) == {"noisy", "clean", "noise", "lengths", "has_clean", "name", "speaker", "environment", "channel"}
    assert bool(batch["has_clean"].all())
    name = batch["name"][0]
    assert name.endswith("_BUS.CH5") and batch["environment"] == ["bus"] and batch["channel"] == [5]
    clean, _ = sf.read(str(isolated(chime_tree, "isolated_ext", "et05_bus_simu", name + ".Clean.wav")), dtype="float32")
    assert batch["clean"].shape == (1, clean.size) and torch.equal(batch["clean"][0], torch.from_numpy(clean))
    assert (batch["noisy"] - batch["clean"] - batch["noise"]).abs().max() <= 1.5 * QUANTUM  # noisy = clean + noise
    assert not list(tmp_path.rglob("*.wav"))  # 16 kHz files are read where they are


def test_training_crops_keep_noisy_clean_and_noise_aligned(chime_tree, tmp_path):
    data = module(chime_tree, tmp_path, seed=3)
    data.setup("fit")
    loader = data.train_dataloader()
    epoch0, epoch1 = list(loader), list(loader)
    frames = {e.name: e.frames for e in data.examples["train"]}
    for batch in epoch0:
        assert batch["noisy"].shape[1] == int(1.2 * RATE)
        assert batch["lengths"].tolist() == [min(frames[n], int(1.2 * RATE)) for n in batch["name"]]
        assert (batch["noisy"] - batch["clean"] - batch["noise"]).abs().max() <= 1.5 * QUANTUM  # same offsets
        for row, length in enumerate(batch["lengths"].tolist()):
            assert not batch["noisy"][row, length:].any()
    assert any(length < int(1.2 * RATE) for b in epoch0 for length in b["lengths"].tolist())  # some are padded
    again = module(chime_tree, tmp_path, seed=3)
    again.setup("fit")
    assert all(torch.equal(a["noisy"], b["noisy"]) for a, b in zip(epoch0, again.train_dataloader()))
    assert not torch.equal(epoch0[0]["noisy"], epoch1[0]["noisy"])
    val = next(iter(data.val_dataloader()))
    assert set(val["environment"]) == set(ENVIRONMENTS) and val["noisy"].shape[1] == max(val["lengths"].tolist())


def test_several_channels_are_separate_examples(chime_tree, tmp_path):
    data = module(chime_tree, tmp_path, channels=[1, 5], environments=["CAF", "str"], test_batch_size=4)
    data.setup("test")
    names = [e.name for e in data.examples["test"]]
    assert len(names) == 4 and {n.split(".")[1] for n in names} == {"CH1", "CH5"}
    assert {e.meta["environment"] for e in data.examples["test"]} == {"caf", "str"}
    batch = next(iter(data.test_dataloader()))
    assert batch["channel"] == [1, 5, 1, 5] and batch["noisy"].shape[0] == 4
    ch1, _ = sf.read(str(isolated(chime_tree, "isolated", f"et05_caf_simu/{batch['name'][0]}.wav")), dtype="float32")
    assert torch.equal(batch["noisy"][0, :ch1.size], torch.from_numpy(ch1))
    assert not torch.equal(batch["noisy"][0], batch["noisy"][1])  # CH1 and CH5 differ
    for channels in ([0], [7], [5, 5], []):
        with pytest.raises(ValueError, match="channels must be distinct microphones among 1..6"):
            Chime4(str(chime_tree), channels=channels)
    with pytest.raises(ValueError, match=r"environments must be a non-empty subset of \['bus', 'caf', 'ped', 'str'\]"):
        Chime4(str(chime_tree), environments=["bar"])


def test_other_sample_rates_are_resampled_once(chime_tree, tmp_path):
    data = module(chime_tree, tmp_path, sample_rate=8000, environments=["ped"])
    data.setup("test")
    example = data.examples["test"][0]
    source = sf.info(str(isolated(chime_tree, "isolated", "et05_ped_simu", example.name + ".wav")))
    assert example.frames == math.ceil(source.frames / 2) and sf.info(str(example.noisy)).samplerate == 8000
    assert len(list((tmp_path / "8000Hz").rglob("*.wav"))) == 3  # noisy, clean, noise
    batch = next(iter(data.test_dataloader()))
    assert batch["noisy"].shape == (1, example.frames)


# ---------------------------------------------------------------------------------------------
# Real data


def test_real_recordings_are_noisy_only_for_test_and_predict(chime_tree, tmp_path):
    data = module(chime_tree / "data", tmp_path, kind="real", test_split="dt05")  # root may be data/ itself
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    assert set(batch) == {"noisy", "lengths", "has_clean", "name", "speaker", "environment", "channel"}
    assert not bool(batch["has_clean"].any())  # real recordings: no clean speech
    assert batch["name"][0].startswith("M03_") and len(data.predict_dataloader()) == 4
    for stage in ("fit", "validate"):
        with pytest.raises(ValueError, match=rf"real recordings have no clean reference, so kind='real' cannot "
                                             rf"{stage}: train and validate on kind='simu'"):
            data.setup(stage)
    data.setup(None)  # everything that real data can do
    assert set(data.examples) == {"test"}


def test_a_failed_microphone_is_skipped_with_a_count(chime_copy, tmp_path):
    name = json.loads((chime_copy / "data/annotations/et05_real.json").read_text())[2]
    path = isolated(chime_copy, "isolated", f"et05_ped_real/{name['speaker']}_{name['wsj_name']}_PED.CH5.wav")
    sf.write(str(path), np.zeros(sf.info(str(path)).frames, np.float32), RATE, subtype="PCM_16")
    data = module(chime_copy, tmp_path, kind="real")
    with pytest.warns(UserWarning, match=rf"CHiME-4 et05_real: skipped 1 of 4 examples whose recording is silent "
                                         rf"\(RMS level below -70 dBFS\), e\.g\. {path.stem}"):
        data.setup("test")
    assert len(data.examples["test"]) == 3


# ---------------------------------------------------------------------------------------------
# Bad data


def test_missing_tree_folder_or_annotations_say_what_is_expected(chime_copy, tmp_path):
    with pytest.raises(DataLayoutError, match=r"no CHiME-4 data under .*nowhere.*Expected the official layout: "
                                              r"ROOT/data/annotations/\{tr05,dt05,et05\}_\{simu,real\}\.json"):
        module(tmp_path / "nowhere", tmp_path).setup("test")
    shutil.rmtree(isolated(chime_copy, "isolated_ext", "dt05_caf_simu"))
    with pytest.raises(DataLayoutError, match=r"CHiME-4 folder .*isolated_ext/dt05_caf_simu is missing, but "
                                              r"dt05_simu\.json lists caf utterances"):
        module(chime_copy, tmp_path).setup("validate")
    module(chime_copy, tmp_path, environments=["bus"]).setup("validate")  # caf not asked for: fine
    (chime_copy / "data/annotations/tr05_simu.json").unlink()
    with pytest.raises(DataLayoutError, match=r"annotation file .*annotations/tr05_simu\.json is missing; it lists "
                                              r"the utterances of the set"):
        module(chime_copy, tmp_path).setup("fit")


def test_recordings_without_their_parts_are_counted_with_an_example(chime_copy, tmp_path):
    ext = isolated(chime_copy, "isolated_ext", "tr05_str_simu")
    removed = sorted(ext.glob("*.CH5.Clean.wav"))[0]
    removed.unlink()
    with pytest.raises(DataLayoutError, match=rf"1 clean/noise parts of the 8 simulated recordings of tr05_simu "
                                              rf"are missing \(e\.g\. audio/16kHz/isolated_ext/tr05_str_simu/"
                                              rf"{removed.name}\)"):
        module(chime_copy, tmp_path).setup("fit")
    noisy = isolated(chime_copy, "isolated", "et05_bus_simu")
    for path in noisy.glob("*.CH5.wav"):
        path.unlink()
    with pytest.raises(DataLayoutError, match=r"1 of the 4 recordings listed in annotations/et05_simu\.json are "
                                              r"missing \(e\.g\. audio/16kHz/isolated/et05_bus_simu/"
                                              r"F05_.*_BUS\.CH5\.wav\)"):
        module(chime_copy, tmp_path).setup("test")


def test_parts_of_different_lengths_are_trimmed_and_silent_speech_skipped(chime_copy, tmp_path):
    ext = isolated(chime_copy, "isolated_ext", "et05_caf_simu")
    noise_path = next(ext.glob("*.CH5.Noise.wav"))
    noise, _ = sf.read(str(noise_path), dtype="float32")
    write(noise_path, noise[:-160])
    clean_path = next(isolated(chime_copy, "isolated_ext", "et05_str_simu").glob("*.CH5.Clean.wav"))
    write(clean_path, np.zeros(sf.info(str(clean_path)).frames, np.float32))
    data = module(chime_copy, tmp_path)
    with pytest.warns(UserWarning) as record:
        data.setup("test")
    messages = [str(w.message) for w in record]
    stem = noise_path.name.replace(".Noise.wav", "")
    seconds = noise.size / RATE
    assert (f"CHiME-4 et05_simu: 1 of 4 examples have files of different lengths (e.g. {stem}: noisy {seconds:.3f} s, "
            f"clean {seconds:.3f} s, noise {seconds - 0.01:.3f} s); each was trimmed to its shortest file") in messages
    assert any(m.startswith("CHiME-4 et05_simu: skipped 1 of 4 examples whose clean speech is silent")
               for m in messages)
    frames = {e.name: e.frames for e in data.examples["test"]}
    assert len(frames) == 3 and frames[stem] == noise.size - 160


def test_unreadable_file_and_bad_annotations_are_named(chime_copy, tmp_path):
    broken = next(isolated(chime_copy, "isolated", "et05_ped_simu").glob("*.CH5.wav"))
    broken.write_bytes(b"")
    with pytest.raises(AudioFileError, match=rf"{broken.name} is an empty file \(0 bytes\)"):
        module(chime_copy, tmp_path).setup("test")
    path = chime_copy / "data/annotations/dt05_simu.json"
    records = json.loads(path.read_text())
    del records[1]["wsj_name"]
    path.write_text(json.dumps(records))
    with pytest.raises(DataLayoutError, match=r"dt05_simu\.json: record 1 lacks wsj_name; each record needs speaker, "
                                              r"wsj_name and environment"):
        module(chime_copy, tmp_path).setup("validate")
    path.write_text("{not json")
    with pytest.raises(DataLayoutError, match=r"dt05_simu\.json is not valid JSON"):
        module(chime_copy, tmp_path).setup("validate")


def test_a_yaml_recipe_instantiates_it(chime_tree, tmp_path):
    """What LightningCLI does with ``data:`` in a recipe (``zoo fit``), without training."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    config = parser.parse_string(f"""
data:
  class_path: zoo.data.chime4.Chime4
  init_args:
    root: {chime_tree}
    kind: simu
    channels: [1, 5]
    environments: [bus, caf]
    test_split: dt05
    cache_dir: {tmp_path}
""")
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
    data = instantiate(config).data
    assert isinstance(data, Chime4) and tuple(data.hparams.channels) == (1, 5)
    data.setup("test")
    assert len(data.examples["test"]) == 4 and {e.meta["channel"] for e in data.examples["test"]} == {1, 5}
    with pytest.raises(Exception, match="kind"):
        parser.parse_string(f"data: {{class_path: zoo.data.chime4.Chime4, "
                            f"init_args: {{root: {chime_tree}, kind: live}}}}")


# ---------------------------------------------------------------------------------------------
# Stacked channels (for models that take several microphones at once)

ALL_BUT_CH2 = [1, 3, 4, 5, 6]


def test_stacked_channels_are_one_example_per_utterance(chime_tree, tmp_path):
    data = module(chime_tree, tmp_path, channels=ALL_BUT_CH2, stack_channels=True, test_batch_size=2)
    data.setup("test")
    assert [e.name for e in data.examples["test"]] == [
        f"{r['speaker']}_{r['wsj_name']}_{r['environment']}"
        for r in json.loads((chime_tree / "data/annotations/et05_simu.json").read_text())]
    batch = next(iter(data.test_dataloader()))
    check_batch(batch, "a stacked CHiME-4 batch")
    frames = batch["noisy"].shape[-1]
    assert batch["noisy"].shape == (2, 5, frames) and batch["clean"].shape == batch["noise"].shape == (2, frames)
    assert batch["channel"] == [ALL_BUT_CH2, ALL_BUT_CH2] and bool(batch["has_clean"].all())
    name, environment, length = batch["name"][0], batch["environment"][0], int(batch["lengths"][0])
    folder = f"et05_{environment}_simu"
    for row, channel in enumerate(ALL_BUT_CH2):  # each row is its microphone's file, in the order asked for
        wave, _ = sf.read(str(isolated(chime_tree, "isolated", folder, f"{name}.CH{channel}.wav")), dtype="float32")
        assert length == wave.size and torch.equal(batch["noisy"][0, row, :length], torch.from_numpy(wave))
    clean, _ = sf.read(str(isolated(chime_tree, "isolated_ext", folder, f"{name}.CH5.Clean.wav")), dtype="float32")
    assert torch.equal(batch["clean"][0, :length], torch.from_numpy(clean))  # the reference microphone's
    reference = batch["noisy"][:, ALL_BUT_CH2.index(5)]
    assert (reference - batch["clean"] - batch["noise"]).abs().max() <= 1.5 * QUANTUM
    assert not torch.equal(batch["noisy"][0, 0], batch["noisy"][0, 3])  # CH1 and CH5 differ


def test_stacked_training_crops_start_at_the_same_sample_in_every_microphone(chime_tree, tmp_path):
    data = module(chime_tree, tmp_path, channels=[5, 1], stack_channels=True, seed=2)
    data.setup("fit")
    crop = int(1.2 * RATE)
    for batch in data.train_dataloader():
        assert batch["noisy"].shape == (len(batch["name"]), 2, crop)
        assert (batch["noisy"][:, 0] - batch["clean"] - batch["noise"]).abs().max() <= 1.5 * QUANTUM
        for row, (name, environment) in enumerate(zip(batch["name"], batch["environment"])):
            length = int(batch["lengths"][row])
            files = [sf.read(str(isolated(chime_tree, "isolated", f"tr05_{environment}_simu", f"{name}.CH{c}.wav")),
                             dtype="float32")[0] for c in (5, 1)]
            starts = [s for s in range(files[0].size - length + 1)
                      if np.array_equal(files[0][s:s + length], batch["noisy"][row, 0, :length].numpy())]
            assert len(starts) == 1  # where CH5's crop lies in its file ...
            assert np.array_equal(files[1][starts[0]:starts[0] + length], batch["noisy"][row, 1, :length].numpy())


def test_stacked_real_recordings_and_a_failed_microphone(chime_copy, tmp_path):
    data = module(chime_copy, tmp_path, kind="real", channels=ALL_BUT_CH2, stack_channels=True)
    data.setup("test")
    batch = next(iter(data.test_dataloader()))
    assert set(batch) == {"noisy", "lengths", "has_clean", "name", "speaker", "environment", "channel"}
    assert batch["noisy"].shape[:2] == (1, 5) and not bool(batch["has_clean"].any())
    record = json.loads((chime_copy / "data/annotations/et05_real.json").read_text())[1]
    utterance = f"{record['speaker']}_{record['wsj_name']}_{record['environment']}"
    path = isolated(chime_copy, "isolated", f"et05_{record['environment'].lower()}_real/{utterance}.CH3.wav")
    sf.write(str(path), np.zeros(sf.info(str(path)).frames, np.float32), RATE, subtype="PCM_16")
    again = module(chime_copy, tmp_path, kind="real", channels=ALL_BUT_CH2, stack_channels=True)
    with pytest.warns(UserWarning) as record:
        again.setup("test")
    assert (f"CHiME-4 et05_real: skipped 1 of 4 utterances without every microphone of channels=[1, 3, 4, 5, 6] "
            f"(reference CH5) usable, e.g. {utterance}") in [str(w.message) for w in record]
    assert len(again.examples["test"]) == 3 and utterance not in again.microphones
    # CH2 was never read: a broken CH2 file does not matter when it is left out
    path.with_name(f"{utterance}.CH2.wav").write_bytes(b"")
    module(chime_copy, tmp_path, kind="real", channels=[1, 5], stack_channels=True).setup("test")


def test_stacking_needs_several_microphones_and_a_real_reference(chime_tree):
    with pytest.raises(ValueError, match=r"stack_channels stacks several microphones into one example, got "
                                         r"channels=\[5\]: give two or more"):
        Chime4(str(chime_tree), stack_channels=True)
    with pytest.raises(ValueError, match="reference_channel must be a microphone among 1..6"):
        Chime4(str(chime_tree), channels=[1, 5], stack_channels=True, reference_channel=0)
