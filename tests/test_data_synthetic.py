"""The synthetic data sets: the prior-guided report's sparse signals and the thesis's detuned chord."""
from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from zoo.data.synthetic import (CHORD_FREQUENCIES_HZ, SSS_SIGMAS, DetunedChord, SparseSignals,
                                build_sparse_signals, split_sparse_signals)

# ---------------------------------------------------------------------------------------------
# SparseSignals
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sss() -> dict[str, torch.Tensor]:
    return build_sparse_signals(seed=0)


def test_sss_has_7000_sequences_of_100_samples(sss):
    for key in ("clean", "noisy", "noise"):
        assert sss[key].shape == (7000, 100) and sss[key].dtype == torch.float32, key
    assert sss["sigma"].shape == (7000,) and sss["sigma"].dtype == torch.float32
    assert sss["label"].shape == (7000,) and sss["label"].dtype == torch.int64


def test_sss_every_sequence_is_20_percent_integers_1_to_10(sss):
    nonzero = sss["clean"] != 0
    assert nonzero.sum(dim=1).eq(20).all()                       # 20 of 100, in every sequence
    assert nonzero.double().mean().item() == pytest.approx(0.20, abs=1e-12)
    values = sss["clean"][nonzero]
    assert values.eq(values.round()).all()
    assert sorted(values.unique().tolist()) == list(range(1, 11))  # every value 1..10 occurs
    counts = torch.bincount(values.long(), minlength=11)[1:].float()
    assert (counts / counts.mean() - 1).abs().max() < 0.05        # uniformly (14000 draws each)
    per_position = nonzero.float().mean(dim=0)                    # positions uniform over the sequence
    assert per_position.min() > 0.17 and per_position.max() < 0.23


def test_sss_uniform_values_lie_in_0_10():
    clean = build_sparse_signals(sigmas=(1.0,), per_sigma=500, value_type="uniform", seed=0)["clean"]
    values = clean[clean != 0]
    assert len(values) == 500 * 20
    assert values.min() > 0 and values.max() <= 10 and values.ne(values.round()).float().mean() > 0.99
    assert values.mean().item() == pytest.approx(5.0, abs=0.15)


def test_sss_noise_levels_have_1000_sequences_each_at_their_sigma(sss):
    assert torch.bincount(sss["label"]).tolist() == [1000] * 7
    assert torch.equal(sss["sigma"], torch.tensor(SSS_SIGMAS)[sss["label"]])
    assert torch.equal(sss["noisy"], sss["clean"] + sss["noise"])
    for index, sigma in enumerate(SSS_SIGMAS):
        noise = sss["noise"][sss["label"] == index].double()
        assert noise.std().item() == pytest.approx(sigma, rel=0.01), sigma   # 100000 samples: 0.2 % s.e.
        assert abs(noise.mean().item()) < 0.01 * sigma


def test_sss_split_is_70_30_and_a_validation_share_of_the_70(sss):
    splits = split_sparse_signals(sss["label"], seed=0)
    assert {name: len(rows) for name, rows in splits.items()} == {"train": 4410, "val": 490, "test": 2100}
    everything = torch.cat(list(splits.values()))
    assert torch.equal(everything.sort().values, torch.arange(7000))  # disjoint and complete
    # plain random split (the report's): the levels are not exactly balanced in the test set
    assert torch.bincount(sss["label"][splits["test"]]).tolist() != [300] * 7
    stratified = split_sparse_signals(sss["label"], stratify=True, seed=0)
    assert torch.bincount(sss["label"][stratified["test"]]).tolist() == [300] * 7
    assert torch.bincount(sss["label"][stratified["val"]]).tolist() == [70] * 7
    assert torch.bincount(sss["label"][stratified["train"]]).tolist() == [630] * 7


def test_sss_is_reproducible_per_seed_and_differs_across_seeds(sss):
    again = build_sparse_signals(seed=0)
    for key in sss:
        assert torch.equal(again[key], sss[key]), key
    other = build_sparse_signals(seed=1)
    assert not torch.equal(other["clean"], sss["clean"]) and not torch.equal(other["noise"], sss["noise"])
    assert not torch.equal(split_sparse_signals(sss["label"], seed=1)["test"],
                           split_sparse_signals(sss["label"], seed=0)["test"])
    # a subset of noise levels holds the same sequences as the full set
    subset = build_sparse_signals(sigmas=(1.0, 1.5), seed=0)
    assert torch.equal(subset["noisy"][:1000], sss["noisy"][1000:2000])
    assert subset["label"].unique().tolist() == [0, 1] and subset["sigma"].unique().tolist() == [1.0, 1.5]
    # the cache hands out copies
    again["clean"][0, 0] = 123.0
    assert build_sparse_signals(seed=0)["clean"][0, 0] != 123.0


def test_sss_datamodule_serves_the_splits():
    dm = _setup(SparseSignals(batch_size=100))
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (4410, 490, 2100)
    assert len(dm.train_dataloader()) == 45 and len(dm.test_dataloader()) == 21
    first = next(iter(dm.train_dataloader()))
    assert torch.equal(first["noisy"], next(iter(dm.train_dataloader()))["noisy"])  # same order per seed
    other = _setup(SparseSignals(batch_size=100, seed=1))
    assert not torch.equal(first["noisy"], next(iter(other.train_dataloader()))["noisy"])
    # val_share=0: validation on the test set, as the report did
    dm = _setup(SparseSignals(val_share=0.0, batch_size=2100))
    assert len(dm.train_set) == 4900
    assert torch.equal(next(iter(dm.val_dataloader()))["noisy"], next(iter(dm.test_dataloader()))["noisy"])


def _setup(dm):
    dm.setup("fit")
    return dm


def test_sss_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="distinct positive"):
        SparseSignals(sigmas=(1.0, -1.0))
    with pytest.raises(ValueError, match="nonzero_share"):
        build_sparse_signals(nonzero_share=0.0)
    with pytest.raises(ValueError, match="test_share"):
        split_sparse_signals(torch.zeros(10, dtype=torch.long), test_share=1.0)


# ---------------------------------------------------------------------------------------------
# DetunedChord
# ---------------------------------------------------------------------------------------------


def _chord_dm(**kwargs) -> DetunedChord:
    dm = DetunedChord(**kwargs)
    dm.setup("fit")
    return dm


def _peaks(wave: np.ndarray, count: int = 4, sample_rate: int = 16000) -> list[int]:
    """The ``count`` strongest local maxima of the Hann-windowed spectrum on a 1 Hz grid."""
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.shape[-1]), sample_rate, axis=-1))
    if spectrum.ndim == 2:
        spectrum = (spectrum ** 2).mean(axis=0)
    interior = spectrum[1:-1]
    maxima = np.flatnonzero((interior > spectrum[:-2]) & (interior >= spectrum[2:])) + 1
    return sorted(maxima[np.argsort(spectrum[maxima])[-count:]].tolist())


def _fit_tones(clean: np.ndarray, sample_rate: int = 16000):
    """Least-squares fit of the four tones: amplitudes, phases and the largest residual."""
    n = np.arange(clean.shape[-1])
    basis = np.concatenate([np.stack([np.sin(2 * np.pi * f / sample_rate * n), np.cos(2 * np.pi * f / sample_rate * n)])
                            for f in CHORD_FREQUENCIES_HZ])                       # [8, T]
    coefficients, *_ = np.linalg.lstsq(basis.T, clean.T, rcond=None)           # [8, B]
    sin_part, cos_part = coefficients[0::2], coefficients[1::2]                # A cos(phi), A sin(phi)
    residual = np.abs(basis.T @ coefficients - clean.T).max()
    return np.hypot(sin_part, cos_part).T, np.mod(np.arctan2(cos_part, sin_part), 2 * np.pi).T, residual


def test_chord_spectrum_peaks_exactly_at_441_549_660_881_hz():
    batch = _chord_dm(noise_only_share=0.25).train_set[0]
    clean, noisy = batch["clean"].double().numpy(), batch["noisy"].double().numpy()
    for row in clean[32:]:
        assert _peaks(row) == [441, 549, 660, 881]
    assert _peaks(noisy[32:]) == [441, 549, 660, 881]  # the average noisy spectrum of the chords, at 0 dB


def test_chord_is_four_tones_with_amplitudes_in_0_25_0_75_and_random_phases():
    clean = torch.cat([_chord_dm().train_set[i]["clean"] for i in range(2)]).double().numpy()
    amplitudes, phases, residual = _fit_tones(clean)
    assert residual < 1e-5                                  # nothing but the four tones
    assert amplitudes.min() >= 0.25 - 1e-6 and amplitudes.max() <= 0.75 + 1e-6
    assert amplitudes.min() < 0.26 and amplitudes.max() > 0.74   # uniform over the whole range
    assert amplitudes.mean() == pytest.approx(0.5, abs=0.02)
    assert np.histogram(phases, bins=4, range=(0, 2 * np.pi))[0].min() > 0.2 * phases.size  # U(0, 2 pi)


@pytest.mark.parametrize("snr_db", [-6.0, 0.0, 6.0])
@pytest.mark.parametrize("share", [0.0, 0.25])
def test_chord_minibatch_snr_is_the_target_by_eq_24(snr_db, share):
    dm = _chord_dm(snr_db=snr_db, noise_only_share=share, train_batches=3)
    for batch in dm.train_dataloader():
        chords = ~batch["noise_only"]
        clean, noise = batch["clean"][chords].double(), batch["noise"].double()
        expected_variance = clean.pow(2).mean() / 10 ** (snr_db / 10)     # Eq. 24 over the chords
        assert batch["sigma"].double().pow(2).mean().item() == pytest.approx(expected_variance.item(), rel=1e-5)
        assert batch["sigma"].unique().numel() == 1                       # one variance per minibatch
        measured = 10 * torch.log10(clean.pow(2).mean() / noise.pow(2).mean()).item()
        assert measured == pytest.approx(snr_db, abs=0.1)
        per_example = 10 * torch.log10(clean.pow(2).mean(1) / noise[chords].pow(2).mean(1))
        assert per_example.std() > 0.5        # the minibatch, not each example, is set to the target
        assert abs(noise.mean().item()) < 0.01 * batch["sigma"][0].item()


def test_chord_noise_only_share_is_exact_and_first_in_every_minibatch():
    dm = _chord_dm(noise_only_share=0.25, train_batches=4)
    for batch in dm.train_dataloader():
        flags = batch["noise_only"]
        assert flags.dtype == torch.bool and flags.shape == (128,)
        assert flags[:32].all() and not flags[32:].any()                 # 32 of 128, fixed order
        assert batch["clean"][flags].eq(0).all() and torch.equal(batch["noisy"][flags], batch["noise"][flags])
        assert batch["clean"][~flags].abs().amax(dim=1).gt(0.1).all()
    val = next(iter(dm.val_dataloader()))
    assert not val["noise_only"].any()
    assert _chord_dm(noise_only_share=0.3, batch_size=10).train_set[0]["noise_only"].sum() == 3


def test_chord_validation_is_one_held_chord_of_128_half_overlapping_frames_at_the_snr():
    dm = _chord_dm(snr_db=3.0, val_batches=2)
    batches = list(dm.val_dataloader())
    assert len(batches) == 2
    batch = batches[0]
    assert batch["noisy"].shape == (1, 127 * 512 + 1024)
    amplitudes, _, residual = _fit_tones(batch["clean"].double().numpy())
    assert residual < 1e-4 and ((amplitudes >= 0.25) & (amplitudes <= 0.75)).all()  # one chord, held
    measured = 10 * torch.log10(batch["clean"].double().pow(2).mean() / batch["noise"].double().pow(2).mean())
    assert measured.item() == pytest.approx(3.0, abs=0.1)
    assert torch.equal(batch["noisy"], next(iter(dm.val_dataloader()))["noisy"])   # the same every epoch
    clips = next(iter(_chord_dm(val_samples=None).val_dataloader()))
    assert clips["noisy"].shape == (128, 1024) and not clips["noise_only"].any()


def test_chord_is_reproducible_per_seed_and_differs_across_seeds_and_batches():
    first = _chord_dm(seed=5, noise_only_share=0.25).train_set
    again = _chord_dm(seed=5, noise_only_share=0.25).train_set
    other = _chord_dm(seed=6, noise_only_share=0.25).train_set
    for key in ("noisy", "clean", "noise", "sigma", "noise_only"):
        assert torch.equal(first[3][key], again[3][key]), key
    assert not torch.equal(first[3]["noisy"], other[3]["noisy"])
    assert not torch.equal(first[3]["clean"][32:], first[4]["clean"][32:])
    with pytest.raises(IndexError):
        first[2000]


def test_chord_bad_arguments_name_the_fix():
    with pytest.raises(ValueError, match="leaves no chord"):
        DetunedChord(noise_only_share=1.0)
    with pytest.raises(ValueError, match="Nyquist"):
        DetunedChord(sample_rate=1000)


# ---------------------------------------------------------------------------------------------
# The zoo's batch contract, Lightning and LightningCLI
# ---------------------------------------------------------------------------------------------

FLOAT_KEYS = ("noisy", "clean", "noise", "sigma")


@pytest.mark.parametrize("make, shape, extra", [
    (lambda: SparseSignals(batch_size=16), (16, 100), {"label": torch.int64, "has_clean": torch.bool}),
    (lambda: DetunedChord(batch_size=16, noise_only_share=0.25), (16, 1024),
     {"noise_only": torch.bool, "has_clean": torch.bool}),
])
def test_train_dataloader_yields_the_contract_batches(make, shape, extra):
    dm = make()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, dict) and {"noisy", "clean"} <= set(batch)
    assert set(batch) == set(FLOAT_KEYS) | set(extra)
    for key in ("noisy", "clean", "noise"):
        assert batch[key].shape == shape and batch[key].dtype == torch.float32, key
    assert batch["sigma"].shape == (shape[0],) and batch["sigma"].dtype == torch.float32
    for key, dtype in extra.items():
        assert batch[key].shape == (shape[0],) and batch[key].dtype == dtype, key
    assert torch.isfinite(batch["noisy"]).all()


class _Gain(L.LightningModule):
    """The smallest denoiser: one learned gain."""

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))

    def forward(self, wave):
        return self.gain * wave

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.mse_loss(self(batch["noisy"]), batch["clean"])

    def validation_step(self, batch, batch_idx):
        self.log("val/mse", torch.nn.functional.mse_loss(self(batch["noisy"]), batch["clean"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)


@pytest.mark.parametrize("data", [
    {"class_path": "zoo.data.synthetic.SparseSignals",
     "init_args": {"sigmas": [1.0, 1.5], "stratify": True, "value_type": "uniform", "batch_size": 8}},
    {"class_path": "zoo.data.synthetic.DetunedChord",
     "init_args": {"snr_db": -3, "noise_only_share": 0.25, "batch_size": 8, "amplitude_range": [0.25, 0.75]}},
])
def test_recipes_select_the_data_modules_by_class_path_and_lightning_trains_on_them(data, monkeypatch):
    from lightning.pytorch.cli import LightningCLI

    monkeypatch.setattr("sys.argv", ["zoo"])  # the recipe alone, not pytest's arguments
    cli = LightningCLI(_Gain, L.LightningDataModule, subclass_mode_data=True, run=False,
                       args={"seed_everything": 0, "data": data, "trainer": {"fast_dev_run": 2, "accelerator": "cpu", "logger": False,
                                                       "enable_progress_bar": False, "enable_model_summary": False}})
    for key, value in data["init_args"].items():
        stored = cli.datamodule.hparams[key]
        assert (list(stored) if isinstance(stored, tuple) else stored) == value, key
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 2 and torch.isfinite(cli.model.gain)


def test_one_rule_for_the_noise_only_share_in_every_batch_kind():
    """DetunedChord and SemiSupervisedMixtures take the same rule (zoo.data.batch.noise_only_rows):
    a share that is not a whole number of rows is refused, naming the shares that fit, where the
    chords used to floor it (0.3 of 16 became 4 rows, a share of 0.25)."""
    from zoo.data.batch import noise_only_rows

    assert noise_only_rows(16, 0.25) == 4 and noise_only_rows(10, 0.3) == 3
    with pytest.raises(ValueError, match="the share must be exact in every batch: use one of 0, 0.0625"):
        DetunedChord(batch_size=16, noise_only_share=0.3)
    assert int(_chord_dm(batch_size=4, noise_only_share=0.75).train_set[0]["noise_only"].sum()) == 3
