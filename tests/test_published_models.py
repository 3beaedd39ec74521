"""The published CANs (hub_cards/): they load from their bundled card with nothing unpickled,
enhance real VoiceBank-DEMAND speech through the one waveform path, and are what their cards and
training records say they are. Only the committed cards are read: not the kept training state
(training/) nor the benchmark's output folders (benchmarks/results/)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.metrics import pesq_score, si_sdr
from zoo.registry import get_entry

from conftest import EXAMPLE_RATE, PROJECT_ROOT

TRAINED_CANS = ["feature-loss-can-cpu", "can-l1", "can-l2"]  # trained by the zoo; weights committed
#: where a model's recipes live, when not under its own name: the CPU-trained CAN kept the folders it
#: had as the flagship before the authors' released network took that name
RUN_FOLDER = {"feature-loss-can-cpu": "feature-loss-can"}
#: wide-band PESQ and SI-SDR (dB) of p232_013.wav (conftest.EXAMPLE_NOISY / EXAMPLE_CLEAN, a pair of the
#: VoiceBank-DEMAND subset) as benchmarks/quality.py scored it with the published weights, per system:
#: the row of that file behind the card's subset scores. Republishing weights means updating this table.
EXAMPLE_SCORES = {"noisy": (1.413298, 6.802161), "can-l1": (1.700910, 11.296625), "can-l2": (1.582635, 9.904800),
                  "feature-loss-can-cpu": (1.700084, 11.819329)}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module", params=TRAINED_CANS)
def published(request, monkeypatch_module):
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")  # the bundled copy, as CI sees it
    return request.param, zoo.load(request.param)


def test_published_weights_load_in_eval_mode_with_their_card_config(published):
    name, model = published
    config = json.loads((get_entry(name).card_path / "config.json").read_text())
    assert not model.training and model.sample_rate == EXAMPLE_RATE
    assert model.hparams.width == config["init_args"]["width"]
    assert model.network.receptive_field == 2**14 + 1  # the paper's dilations, whatever the width
    assert model.zoo_source.startswith("bundled")


def test_published_weights_reproduce_their_benchmark_scores(published, noisy_speech, clean_speech):
    """Enhancing the example through the one waveform path gives the scores the benchmark (and so
    the card) published for that file: the bundled weights are the ones that were scored."""
    name, model = published
    enhanced = model.enhance(noisy_speech, EXAMPLE_RATE)
    assert enhanced.shape == noisy_speech.shape and enhanced.dtype == noisy_speech.dtype
    clean, out = torch.from_numpy(clean_speech), torch.from_numpy(enhanced)
    pesq_wb, sdr = EXAMPLE_SCORES[name]
    assert pesq_score(out, clean, EXAMPLE_RATE) == pytest.approx(pesq_wb, abs=0.01), name
    assert si_sdr(out, clean) == pytest.approx(sdr, abs=0.01), name
    # and every published CAN removes noise from it: higher SI-SDR than the noisy input's
    noisy = si_sdr(torch.from_numpy(noisy_speech), clean)
    assert noisy == pytest.approx(EXAMPLE_SCORES["noisy"][1], abs=0.01)
    assert si_sdr(out, clean) > noisy + 1.0, name


def test_published_feature_loss_can_cpu_carries_its_switched_layer_weights():
    """Eq. 1's lambda_m: 1 during warm-up, then fixed to inverse relative layer losses; the
    published weights hold the fixed values, so fine-tuning keeps the run's weighting."""
    state = load_file(str(get_entry("feature-loss-can-cpu").card_path / "model.safetensors"))
    assert bool(state["feature_loss.weights_fixed"])
    weights = state["feature_loss.weights"]
    assert weights.shape == (6,) and not torch.allclose(weights, torch.ones(6))
    # inverse relative losses: their reciprocals average to one
    assert (1 / weights).mean().item() == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("name", TRAINED_CANS)
def test_training_records_state_what_the_card_says(name):
    folder = get_entry(name).card_path
    record = json.loads((folder / "training.json").read_text())
    card = (folder / "README.md").read_text()
    # the shared-data recipe is behind every published CAN, directly or in what its run started from
    recipes, link = [], record
    while link:
        recipes.append(link.get("recipe"))
        link = link.get("started_from")
    assert f"recipes/{RUN_FOLDER.get(name, name)}/shared-data.yaml" in recipes and all((PROJECT_ROOT / r).is_file() for r in recipes)
    assert f"Training time: {record['hours']:.2f} h" in card and f"Steps: {record['global_step']}" in card
    if record.get("started_from"):  # feature-loss-can-cpu: the W=32 run it was widened from
        started = record["started_from"]
        assert f"- Started from: `{started['model']}` (W={started['width']}, {started['global_step']} steps" in card
        assert f"{record['hours'] + started['hours']:.2f} h with the training it started from" in card
        for entry in started.get("data_changes", []):
            assert f"from step {entry['from_step']}, " in card
    assert record["global_step"] > 0 and record["hardware"] in card and "](training.png)" in card
    # a data setting changed by a resumed session is on the card, as its training record states it
    for entry in record.get("data_changes", []):
        assert 0 < entry["from_step"] < record["global_step"] and entry["changes"]
        assert f"from step {entry['from_step']}, " in card and "- Data (at the last step): " in card
