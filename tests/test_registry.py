"""Registry, model folders (config + safetensors), checksums and load errors."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from huggingface_hub import ModelCard

import zoo
from zoo.hub import CorruptWeightsError, ModelLoadError, load_folder, sha256_of
from zoo.models.can import ContextAggregationDenoiser
from zoo.registry import PROJECT_ROOT, get_entry


def test_list_models_has_the_wiener_baseline():
    assert "wiener" in zoo.list_models()
    assert zoo.list_models() == sorted(zoo.list_models())


def test_load_returns_eval_mode_denoiser_and_says_where_from():
    model = zoo.load("wiener")
    assert isinstance(model, zoo.DenoiserModule)
    assert not model.training
    assert model.sample_rate == 16000
    assert model.zoo_source  # e.g. "bundled copy hub_cards/wiener (Hub not used: ...)"
    assert str(model.zoo_folder).endswith("wiener")


def test_unknown_name_lists_known_and_closest():
    with pytest.raises(zoo.UnknownModelError) as info:
        zoo.load("wienr")
    message = str(info.value)
    assert "unknown model 'wienr'" in message
    assert "Did you mean 'wiener'?" in message
    assert "Known models: " in message and "wiener" in message


def test_unknown_name_without_close_match_has_no_guess():
    with pytest.raises(zoo.UnknownModelError) as info:
        zoo.load("completely-different")
    assert "Did you mean" not in str(info.value)


def test_local_folder_round_trip(tmp_path):
    torch.manual_seed(0)
    model = ContextAggregationDenoiser(width=4, dilations=[1, 2, 1]).eval()
    model.save_pretrained(tmp_path / "tiny")
    config = json.loads((tmp_path / "tiny" / "config.json").read_text())
    assert config["architecture"] == "ContextAggregationDenoiser"
    assert config["init_args"]["width"] == 4 and config["sample_rate"] == 16000
    assert config["weights_sha256"] == sha256_of(tmp_path / "tiny" / "model.safetensors")
    loaded = zoo.load(str(tmp_path / "tiny"))
    assert loaded.zoo_source.startswith("local folder")
    x = torch.randn(1, 4000)
    assert torch.equal(loaded(x), model(x))


def _copy_card(tmp_path):
    folder = tmp_path / "card"
    shutil.copytree(get_entry("wiener").card_path, folder)
    return folder


def _tiny_folder(tmp_path):
    torch.manual_seed(0)
    return ContextAggregationDenoiser(width=4, dilations=[1, 2, 1]).save_pretrained(tmp_path / "tiny")


def test_weights_not_matching_checksum_are_refused(tmp_path):
    folder = _tiny_folder(tmp_path)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(CorruptWeightsError, match="sha256"):
        zoo.load(str(folder))


def test_corrupt_safetensors_without_checksum_is_refused_clearly(tmp_path):
    folder = _tiny_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["weights_sha256"]
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    with pytest.raises(CorruptWeightsError, match="not a valid safetensors file"):
        zoo.load(str(folder))


def test_truncated_safetensors_is_refused(tmp_path):
    folder = _tiny_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    del config["weights_sha256"]
    (folder / "config.json").write_text(json.dumps(config))
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CorruptWeightsError):
        zoo.load(str(folder))


def test_config_naming_unknown_architecture(tmp_path):
    folder = _copy_card(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["architecture"] = "TransformerDenoiserXL"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as info:
        zoo.load(str(folder))
    assert "TransformerDenoiserXL" in str(info.value) and "WienerFilter" in str(info.value)


def test_config_with_bad_init_args_and_bad_json(tmp_path):
    folder = _copy_card(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["init_args"]["no_such_argument"] = 1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="init_args"):
        load_folder(folder)
    (folder / "config.json").write_text("{ truncated")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_folder(folder)


def test_folder_without_config_or_weights(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_folder(tmp_path)
    folder = _copy_card(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no model.safetensors"):
        load_folder(folder)


def test_weights_of_the_wrong_shape_are_refused(tmp_path):
    folder = _tiny_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["init_args"]["width"] = 8  # weights were saved for width 4
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CorruptWeightsError, match="does not fit"):
        load_folder(folder)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled while loading")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    folder = _tiny_folder(tmp_path)
    assert isinstance(zoo.load(str(folder)), zoo.DenoiserModule)


def test_register_decorator_adds_a_model_and_refuses_non_models():
    class Tiny(zoo.DenoiserModule):
        context_samples = 0

        def forward(self, wave):
            return wave

    zoo.register("test-tiny-identity", card="hub_cards/none", hub_repo="x/y")(Tiny)
    try:
        assert "test-tiny-identity" in zoo.list_models()
        assert get_entry("test-tiny-identity").cls is Tiny
        with pytest.raises(ValueError, match="already registered"):
            zoo.register("test-tiny-identity", card="c", hub_repo="x/y")(ContextAggregationDenoiser)
    finally:
        from zoo import registry

        registry._REGISTRY.pop("test-tiny-identity")
    with pytest.raises(TypeError, match="DenoiserModule"):
        zoo.register("not-a-model", card="c", hub_repo="x/y")(dict)


def test_bundled_cards_are_complete():
    """Every registered model ships config, weights (matching sha256) and a card whose model-index
    names the model and holds every headline measure for each data set it was scored on. (That the
    scores are the benchmark's own is ``benchmarks/quality.py --update``'s job: it writes every
    card's model-index and README's table from one results file.)"""
    hub_types = {"pesq_wb": "pesq", "stoi": "stoi", "si_sdr": "si-sdr", "csig": "csig", "cbak": "cbak", "covl": "covl"}
    for name in zoo.list_models():
        folder = get_entry(name).card_path
        config = json.loads((folder / "config.json").read_text())
        card = ModelCard.load(folder / "README.md")
        data = card.data.to_dict()
        if config.get("converted_from"):
            # someone else's release: the weights are produced on set-up (zoo convert), not
            # committed; where they are, they are the ones the card promises
            if (folder / "model.safetensors").is_file():
                assert config["weights_sha256"] == sha256_of(folder / "model.safetensors"), name
            assert data["library_name"] == "zoo" and data["license"] == "mit" and "converted" in data["tags"]
            for file, sha in config["converted_from"]["files_sha256"].items():
                assert f"`{file}`: sha256 `{sha}`" in card.text, (name, file)
            assert not (folder / "training.json").exists(), name
            if "model-index" not in data:  # scores not measured yet
                continue
        else:
            assert config["weights_sha256"] == sha256_of(folder / "model.safetensors"), name
        assert data["library_name"] == "zoo" and data["license"] and "datasets" in data
        index = {r["dataset"]["name"]: {m["type"]: m["value"] for m in r["metrics"]}
                 for r in data["model-index"][0]["results"]}
        assert data["model-index"][0]["name"] == name
        assert index, name
        for dataset, scores in index.items():
            assert set(hub_types.values()) <= set(scores), (name, dataset)
            assert all(isinstance(value, (int, float)) for value in scores.values()), (name, dataset)
        assert yaml.safe_load(card.content.split("---")[1])["model-index"][0]["name"] == name
        if config["architecture"] != "WienerFilter" and not config.get("converted_from"):  # trained by the zoo
            record = json.loads((folder / "training.json").read_text())
            assert record["global_step"] > 0 and record["hours"] > 0 and record["data"], name
            for line in ("- Training time: ", "- Hardware: ", "](training.png)"):
                assert line in card.text, (name, line)
            # "at the last step" where a resumed session changed the data (a "Data changes" line follows)
            assert "- Data: " in card.text or "- Data (at the last step): " in card.text, name
            assert (folder / "training.png").is_file()


def test_registered_name_wins_over_a_folder_of_the_same_name(tmp_path, monkeypatch):
    folder = _tiny_folder(tmp_path)
    folder.rename(tmp_path / "wiener")
    monkeypatch.chdir(tmp_path)
    assert type(zoo.load("wiener")).__name__ == "WienerFilter"
    assert type(zoo.load("./wiener")).__name__ == "ContextAggregationDenoiser"


def test_the_data_layer_imports_nothing_from_models_hub_or_registry():
    """DESIGN.md's one-way flow: data -> a model's step -> its loss -> evaluation; no dataset knows
    a model or the registry (read from the sources: a lazy import inside a function counts too)."""
    import ast

    from zoo.paths import PROJECT_ROOT

    offenders = []
    for path in sorted((PROJECT_ROOT / "zoo" / "data").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                names = [module] + [f"{module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if any(part in ("models", "hub", "registry", "cards", "export") for part in name.replace(".", " ").split()[:2]):
                    offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders
