"""The model contract (zoo.module.DenoiserModule) and the batch schema (zoo.data.batch), as a
contributor meets them: step -> loss (a tensor or named terms, logged by name), forward with
conditions estimated when absent, batch keys checked when a fit starts, every data module's
batches following the one schema. Real audio from ../shared/data, real Lightning fits."""
from __future__ import annotations

import csv

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch

from zoo.data import DetunedChord, Mixtures, SparseSignals
from zoo.data.batch import BATCH_SCHEMA, BatchSchemaError, check_batch
from zoo.data.files import DATA_ROOT
from zoo.data.semisupervised import SemiSupervisedMixtures
from zoo.module import BatchKeysError, DenoiserModule

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def _mixtures(**kwargs):
    args = dict(speech=["speech/ljspeech"], noise=["noise/noisex/white.flac"], val_speech=["speech/ljspeech"],
                val_noise=["noise/noisex/pink.flac"], crop_seconds=0.25, batch_size=4, train_size=8, val_size=4,
                max_files=4)
    return Mixtures(**{**args, **kwargs})


def _semi(tmp_path):
    speech = sorted((DATA_ROOT / "speech" / "ljspeech").rglob("*.flac"))[0]
    wave, rate = sf.read(speech)
    noise, _ = sf.read(DATA_ROOT / "noise/noisex/factory1.flac", frames=len(wave))
    sf.write(tmp_path / "recording.flac", 0.5 * wave + 0.05 * noise, rate)
    return SemiSupervisedMixtures(noise_only=["noise/noisex/volvo.flac"], noisy=[str(tmp_path)], crop_seconds=0.25,
                                  noise_only_share=0.5, batch_size=4, train_size=8, val_size=4)


def _voicebank(tmp_path):
    from test_data_voicebank import RATE, build_tree, module

    return module(build_tree(tmp_path / "vb", RATE, per_speaker=2), tmp_path / "cache")


def _chime4(tmp_path):
    from test_data_chime4 import build_chime4

    from zoo.data.chime4 import Chime4

    return Chime4(str(build_chime4(tmp_path / "chime4")), cache_dir=str(tmp_path / "cache"), crop_seconds=0.5,
                  batch_size=4)


DATA_MODULES = {
    "Mixtures": lambda tmp_path: _mixtures(),
    "SemiSupervisedMixtures": _semi,
    "DetunedChord": lambda tmp_path: DetunedChord(batch_size=8, train_batches=2, val_batches=1),
    "SparseSignals": lambda tmp_path: SparseSignals(per_sigma=20, batch_size=8),
    "VoiceBankDemand": _voicebank,
    "Chime4": _chime4,
}


@pytest.mark.parametrize("name", sorted(DATA_MODULES))
def test_every_data_module_yields_the_one_batch_schema_with_the_keys_it_declares(name, tmp_path):
    data = DATA_MODULES[name](tmp_path)
    data.setup("fit")
    for loader in (data.train_dataloader(), data.val_dataloader()):
        batch = next(iter(loader))
        check_batch(batch, name)
        assert batch["has_clean"].dtype == torch.bool
        schema_keys = [key for key in batch if key in BATCH_SCHEMA]
        # every row whose has_clean is False holds a finite placeholder, never NaN
        assert all(torch.isfinite(batch[key]).all() for key in ("clean", "noise") if key in batch)
    declared = data.batch_keys
    assert set(declared) <= set(next(iter(data.train_dataloader()))), (declared, schema_keys)
    assert set(declared) <= set(BATCH_SCHEMA)


def test_a_batch_that_breaks_the_schema_is_refused_naming_the_key():
    good = {"noisy": torch.zeros(2, 100), "clean": torch.zeros(2, 100), "has_clean": torch.tensor([True, False])}
    check_batch(good)
    with pytest.raises(BatchSchemaError, match="'has_clean' must be a bool tensor \\[2\\]"):
        check_batch({**good, "has_clean": torch.ones(2)})
    with pytest.raises(BatchSchemaError, match="'clean' must be a float tensor of 2 rows of 100 samples"):
        check_batch({**good, "clean": torch.zeros(2, 99)})
    with pytest.raises(BatchSchemaError, match="at least 'noisy'"):
        check_batch({"clean": torch.zeros(2, 100)})


class _Gain(DenoiserModule):
    """A one-parameter model: enough to exercise the contract with a real Trainer."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(0.5))

    def forward(self, wave, **conditions):
        return self.gain * wave

    def loss(self, outputs, batch):
        return (outputs["enhanced"] - batch["clean"]).abs().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


class _NeedsNoiseOnly(_Gain):
    batch_keys = ("noisy", "noise_only")


def test_a_model_whose_keys_the_data_lacks_fails_when_the_fit_starts_naming_both(tmp_path):
    data = _mixtures()
    trainer = L.Trainer(max_steps=1, logger=False, **QUIET)
    with pytest.raises(BatchKeysError, match="_NeedsNoiseOnly needs batch keys 'noise_only' that Mixtures does not "
                                             "provide \\(it provides 'noisy', 'clean'"):
        trainer.fit(_NeedsNoiseOnly(), data)
    assert trainer.global_step == 0
    # a data loader without a declaration is checked on its first batch
    loader = torch.utils.data.DataLoader([{"noisy": torch.zeros(8), "clean": torch.zeros(8)}] * 2, batch_size=2)
    with pytest.raises(BatchKeysError, match="needs batch keys 'noise_only' that the training data loader"):
        L.Trainer(max_steps=1, logger=False, **QUIET).fit(_NeedsNoiseOnly(), loader)


class _TwoTerms(_Gain):
    """A loss of named terms (as the partitioned autoencoders' reconstruction + latent energy)."""

    def step(self, batch):
        enhanced = self(batch["noisy"])
        return {"enhanced": enhanced, "residual": batch["noisy"] - enhanced}

    def loss(self, outputs, batch):
        return {"reconstruction": (outputs["enhanced"] - batch["clean"]).pow(2).mean(),
                "residual_energy": 0.1 * outputs["residual"].pow(2).mean()}


def test_named_loss_terms_are_logged_by_name_and_summed(tmp_path):
    trainer = L.Trainer(max_steps=4, log_every_n_steps=1, logger=L.pytorch.loggers.CSVLogger(tmp_path, name="run"),
                        limit_val_batches=1, **QUIET)
    trainer.fit(_TwoTerms(), _mixtures())
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    steps = [row for row in rows if row.get("train/loss")]
    assert len(steps) == 4
    for row in steps:
        total = float(row["train/loss/reconstruction"]) + float(row["train/loss/residual_energy"])
        assert float(row["train/loss"]) == pytest.approx(total, rel=1e-5)
    validation = [row for row in rows if row.get("val/loss")]
    assert validation and validation[-1]["val/loss/reconstruction"] and validation[-1]["val/si_sdr"]


class _NoiseLevel(DenoiserModule):
    """A condition (the noise level) the model estimates when it is not given."""

    batch_keys = ("noisy", "clean")
    whole_signal_max_seconds = 60.0  # the estimate is over the whole input: streamed as one piece

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, wave, noise_level=None):
        if noise_level is None:  # estimated: the median absolute deviation of the input
            noise_level = wave.abs().median(dim=-1).values / 0.6745
        return wave * torch.sigmoid(self.scale * (wave.abs() - noise_level[:, None]))

    def loss(self, outputs, batch):
        return (outputs["enhanced"] - batch["clean"]).pow(2).mean()


def test_conditions_come_from_the_batch_and_are_estimated_when_absent():
    model = _NoiseLevel()
    rng = np.random.default_rng(0)
    wave = torch.from_numpy(0.2 * rng.normal(size=(2, 400)).astype(np.float32))
    given = model.step({"noisy": wave, "conditions": {"noise_level": torch.tensor([0.0, 10.0])}})["enhanced"]
    assert torch.allclose(given[0], wave[0] * torch.sigmoid(wave[0].abs()))
    assert given[1].abs().max() < 0.01 * wave[1].abs().max()  # a high level given: nearly everything removed
    with torch.no_grad():
        estimated = model.step({"noisy": wave})["enhanced"]  # no conditions in the batch: the model estimates them
    assert torch.isfinite(estimated).all()
    assert not torch.allclose(estimated[0], given[0]) and not torch.allclose(estimated[1], given[1])
    enhanced = model.enhance(wave[0].numpy(), 16000)  # enhance passes no conditions: the model estimates them
    assert np.abs(enhanced - estimated[0].numpy()).max() < 1e-6
