"""zoo interpolate: WiSE-FT weight-space interpolation of a model and its fine-tune."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.hub import save_pretrained
from zoo.interpolate import InterpolationError, interpolate_models, interpolate_states
from zoo.models.can import ContextAggregationDenoiser


def _card(folder, seed: int, width: int = 8):
    torch.manual_seed(seed)
    model = ContextAggregationDenoiser(width=width, dilations=(1, 2, 4, 1)).eval()
    with torch.no_grad():  # make the normalisation parameters differ too, not only the convolutions
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return save_pretrained(model, folder, name=folder.name)


def test_states_endpoints_are_exact_and_the_midpoint_is_the_mean():
    torch.manual_seed(0)
    a = {"w": torch.randn(4, 3), "n": torch.tensor(3)}
    b = {"w": torch.randn(4, 3), "n": torch.tensor(1000)}
    assert torch.equal(interpolate_states(a, b, 0.0)["w"], a["w"])
    assert torch.equal(interpolate_states(a, b, 1.0)["w"], b["w"])
    mid = interpolate_states(a, b, 0.5)
    assert torch.allclose(mid["w"], (a["w"] + b["w"]) / 2, atol=1e-7)
    assert int(mid["n"]) == 1000  # counters are the fine-tune's, never averaged
    assert torch.allclose(interpolate_states(a, b, 0.3)["w"], 0.7 * a["w"] + 0.3 * b["w"], atol=1e-6)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_alpha_outside_the_segment_is_refused(alpha):
    with pytest.raises(InterpolationError, match=r"alpha must lie in \[0, 1\]"):
        interpolate_states({"w": torch.ones(2)}, {"w": torch.zeros(2)}, alpha)


def test_models_of_different_shapes_are_refused_and_nothing_is_left(tmp_path):
    _card(tmp_path / "narrow", 0, width=8)
    _card(tmp_path / "wide", 1, width=16)
    with pytest.raises(InterpolationError, match="shape"):
        interpolate_models(str(tmp_path / "narrow"), str(tmp_path / "wide"), 0.5, tmp_path / "mixed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["narrow", "wide"]  # no partial folder


def test_the_written_card_loads_and_enhances_with_the_interpolated_weights(tmp_path, noisy_speech):
    start, tuned = _card(tmp_path / "start", 0), _card(tmp_path / "tuned", 1)
    out = interpolate_models(str(start), str(tuned), 0.25, tmp_path / "wise")
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "training.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["interpolated"]["alpha"] == 0.25
    assert config["interpolated"]["fine_tuned"]["weights_sha256"] == json.loads(
        (tuned / "config.json").read_text())["weights_sha256"]
    a, b, mixed = (load_file(f / "model.safetensors") for f in (start, tuned, out))
    for key in a:
        if a[key].is_floating_point():
            assert torch.allclose(mixed[key], 0.75 * a[key] + 0.25 * b[key], atol=1e-6), key
    assert "WiSE-FT" in (out / "README.md").read_text()
    model = zoo.load(str(out) + "/")
    enhanced = model.enhance(noisy_speech, 16000)
    assert enhanced.shape == noisy_speech.shape and np.isfinite(enhanced).all()
    # the model in the middle is neither end: its output differs from both
    ends = [zoo.load(str(f) + "/").enhance(noisy_speech, 16000) for f in (start, tuned)]
    assert all(np.abs(enhanced - e).max() > 1e-4 for e in ends)
    with pytest.raises(InterpolationError, match="exists"):
        interpolate_models(str(start), str(tuned), 0.5, out)


def test_cli_writes_a_new_folder_and_never_into_hub_cards(tmp_path):
    start, tuned = _card(tmp_path / "start", 0), _card(tmp_path / "tuned", 1)
    run = lambda *args: subprocess.run([sys.executable, "-m", "zoo.cli", "interpolate", *args],
                                       capture_output=True, text=True)
    done = run(str(start), str(tuned), "--alpha", "0.5", "--out", str(tmp_path / "mix"))
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'mix'}/" in done.stdout and (tmp_path / "mix" / "model.safetensors").is_file()
    refused = run(str(start), str(tuned), "--out", "hub_cards/mixed-up")
    assert refused.returncode == 2 and "hub_cards/" in refused.stderr and "Traceback" not in refused.stderr
    from zoo.paths import PROJECT_ROOT

    with pytest.raises(InterpolationError, match="published card"):  # the API refuses it too
        interpolate_models(str(start), str(tuned), 0.5, PROJECT_ROOT / "hub_cards" / "mixed-up")
    assert not (PROJECT_ROOT / "hub_cards" / "mixed-up").exists()
    wrong = run(str(start), "wiener", "--out", str(tmp_path / "other"))
    assert wrong.returncode == 2 and "only a model and a fine-tune of it interpolate" in wrong.stderr
