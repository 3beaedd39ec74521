"""Loading a model with other init arguments (``zoo.load(name, **options)``, ``NAME:key=value``),
and the calibrated statistics that travel beside converted weights."""
import shutil

import numpy as np
import pytest
import torch

import zoo
from zoo.hub import CorruptWeightsError, ModelLoadError, parse_model_spec
from zoo.registry import get_entry

CARD = get_entry("feature-loss-can").card_path
needs_weights = pytest.mark.skipif(not (CARD / "model.safetensors").is_file(),
                                   reason="the released weights are converted on set-up (make weights)")


def test_model_specs_parse_options():
    assert parse_model_spec("wiener") == ("wiener", {})
    assert parse_model_spec("feature-loss-can:normalization=calibrated,width=64") == (
        "feature-loss-can", {"normalization": "calibrated", "width": 64})
    with pytest.raises(ModelLoadError, match="key=value"):
        parse_model_spec("feature-loss-can:calibrated")


@needs_weights
def test_calibrated_mode_loads_the_committed_statistics_and_streams(noisy_speech):
    from safetensors.torch import load_file

    calibrated = zoo.load("feature-loss-can:normalization=calibrated")
    same = zoo.load("feature-loss-can", normalization="calibrated")
    default = zoo.load("feature-loss-can")
    assert calibrated.network.normalization == same.network.normalization == "calibrated"
    assert default.network.normalization == "input"
    stored = load_file(str(CARD / "calibration.safetensors"))
    state = calibrated.state_dict()
    assert len(stored) == 28 and all(torch.equal(state[k], v) for k, v in stored.items())
    # laid over on every load; "input" normalisation simply does not use them
    x = noisy_speech[:24000]
    whole = calibrated.enhance(x, 16000)
    chunked = calibrated.enhance(x, 16000, chunk_seconds=0.4)
    assert np.abs(whole - chunked).max() < 1e-5
    assert np.abs(whole - default.enhance(x, 16000)).max() > 1e-3  # a different mode, not a no-op


@needs_weights
def test_unknown_option_and_tampered_calibration_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no option colour.*normalization"):
        zoo.load("feature-loss-can", colour="red")
    folder = tmp_path / "card"
    shutil.copytree(CARD, folder)
    data = bytearray((folder / "calibration.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (folder / "calibration.safetensors").write_bytes(bytes(data))
    with pytest.raises(CorruptWeightsError, match="calibration.safetensors"):
        zoo.load(str(folder))


def test_a_converted_card_keeps_its_source_and_license_when_scores_are_rendered():
    from zoo.cards import render_card

    text = render_card(get_entry("feature-loss-can"), CARD, [])
    assert "license: mit" in text and "François G. Germain" in text
    assert "26a265e01e8de5d2b7452ce53628f1eb42efde63f78cfe0de3b8d8bdc60dfba7" in text  # the source's sha256
    assert "The layout only" in text and "normalization: calibrated" in text
