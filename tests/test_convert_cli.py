"""``zoo convert``: the authors' released TensorFlow checkpoints -> zoo card folders.

The releases are read from ``$ZOO_WEIGHTS`` (default ``../shared/weights``) and never copied into
the repository; every test writes into ``tmp_path`` (a copy of the card folder stands in for
``hub_cards/``), so the real card folders are never touched.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from zoo import cli
from zoo.convert import ConvertError, install_converted
from zoo.convert.tf_bundle import TensorBundle

WEIGHTS = Path(os.environ.get("ZOO_WEIGHTS", PROJECT_ROOT.parent / "shared" / "weights"))
CAN_RELEASE = WEIGHTS / "germain2019"
LOSS_RELEASE = WEIGHTS / "germain2019-lossnet"
CARDS = PROJECT_ROOT / "hub_cards"

pytestmark = pytest.mark.skipif(not CAN_RELEASE.is_dir() or not LOSS_RELEASE.is_dir(),
                                reason=f"the authors' releases are not in {WEIGHTS} (set ZOO_WEIGHTS)")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def committed_sha(name: str) -> str:
    return json.loads((CARDS / name / "config.json").read_text())["weights_sha256"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main(["convert", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def cards(tmp_path) -> Path:
    """A copy of the committed card folders (config.json + README.md, no weights)."""
    root = tmp_path / "hub_cards"
    for name in ("feature-loss-can", "feature-loss-net-germain2019"):
        (root / name).mkdir(parents=True)
        for file in ("config.json", "README.md"):
            shutil.copyfile(CARDS / name / file, root / name / file)
    return root


@pytest.fixture
def release_copy(tmp_path) -> Path:
    """A copy of the CAN's release, to damage."""
    copy = tmp_path / "release"
    shutil.copytree(CAN_RELEASE, copy)
    return copy


def test_convert_into_a_folder_writes_a_complete_card(tmp_path, capsys):
    out = tmp_path / "card"
    code, stdout, err = run(capsys, CAN_RELEASE, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    digest = sha256(out / "model.safetensors")
    assert digest == committed_sha("feature-loss-can")  # the conversion is deterministic
    assert f"feature-loss-can: model.safetensors sha256 {digest}" in stdout
    assert f"wrote {out / 'model.safetensors'}" in stdout and f"wrote {out / 'README.md'}" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["name"] == "feature-loss-can" and config["architecture"] == "FeatureLossCAN"
    assert config["weights_sha256"] == digest
    assert config["init_args"]["normalization"] == "input" and config["init_args"]["wave_scale"] == 1.0
    card = (out / "README.md").read_text()
    assert "Germain, Chen & Koltun" in card and "se_model.ckpt" in card
    assert "license: mit" in card and "MIT license" in card and "copyright (c) 2018 François G. Germain" in card
    for file in ("se_model.ckpt.index", "se_model.ckpt.data-00000-of-00001"):
        assert f"`{file}`: sha256 `{sha256(CAN_RELEASE / file)}`" in card
        assert config["converted_from"]["files_sha256"][file] == sha256(CAN_RELEASE / file)
    assert "The layout only, no value" in card


def test_the_loss_network_converts_from_its_index_file(tmp_path, capsys):
    out = tmp_path / "lossnet"
    code, stdout, err = run(capsys, LOSS_RELEASE / "my_test_model.index", "--out", out)
    assert code == 0, err
    assert sha256(out / "model.safetensors") == committed_sha("feature-loss-net-germain2019")
    assert json.loads((out / "config.json").read_text())["name"] == "feature-loss-net-germain2019"


def test_out_folder_that_is_not_empty_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "card"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    code, stdout, err = run(capsys, CAN_RELEASE, "--out", out)
    assert code == 2 and stdout == ""
    assert err == f"zoo: error: {out} is not empty (notes.txt): choose another --out folder, or pass --overwrite " \
                  "to replace the card's files\n"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    code, stdout, err = run(capsys, CAN_RELEASE, "--out", out, "--overwrite")
    assert code == 0, err
    assert (out / "notes.txt").read_text() == "mine\n" and (out / "model.safetensors").is_file()


def test_out_folder_of_another_model_is_refused_even_with_overwrite(tmp_path, capsys):
    out = tmp_path / "card"
    out.mkdir()
    shutil.copyfile(PROJECT_ROOT / "hub_cards/wiener/config.json", out / "config.json")
    before = (out / "config.json").read_bytes()
    code, _, err = run(capsys, CAN_RELEASE, "--out", out, "--overwrite")
    assert code == 2 and "holds the config.json of wiener, not feature-loss-can" in err
    assert (out / "config.json").read_bytes() == before and not (out / "model.safetensors").exists()


def test_install_fills_the_card_folder_after_checking_the_committed_sha256(cards, capsys, monkeypatch):
    card = cards / "feature-loss-can"
    committed = {f: (card / f).read_bytes() for f in ("config.json", "README.md")}
    done = install_converted(CAN_RELEASE, cards_root=cards)
    assert (done.name, done.status, done.folder) == ("feature-loss-can", "installed", card)
    assert sha256(card / "model.safetensors") == done.sha256 == committed_sha("feature-loss-can")
    assert {f: (card / f).read_bytes() for f in committed} == committed  # never rewritten
    assert sorted(p.name for p in cards.iterdir()) == ["feature-loss-can", "feature-loss-net-germain2019"]
    assert sorted(p.name for p in card.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    # the CLI, twice: the second time nothing is converted
    monkeypatch.setattr("zoo.convert.CARDS_ROOT", cards)
    code, stdout, err = run(capsys, CAN_RELEASE, LOSS_RELEASE)
    assert code == 0, err
    lossnet = cards / "feature-loss-net-germain2019"
    assert stdout.splitlines() == [
        f"feature-loss-can: already converted, sha256 verified ({done.sha256}) in {card}",
        f"wrote {lossnet / 'model.safetensors'}",
        f"feature-loss-net-germain2019: model.safetensors sha256 {committed_sha('feature-loss-net-germain2019')} "
        "(matches the card's config.json)",
    ]


def test_install_refuses_weights_that_differ_from_the_committed_sha256(cards, capsys, monkeypatch):
    config_path = cards / "feature-loss-can" / "config.json"
    config = json.loads(config_path.read_text())
    config["weights_sha256"] = "0" * 64
    config_path.write_text(json.dumps(config))
    before = config_path.read_bytes()
    monkeypatch.setattr("zoo.convert.CARDS_ROOT", cards)
    code, stdout, err = run(capsys, CAN_RELEASE)
    assert code == 2 and stdout == ""
    assert err.startswith("zoo: error: converting ") and err.count("\n") == 1
    assert f"gives weights with sha256 {committed_sha('feature-loss-can')[:16]}... but {config_path} expects " \
           f"0000000000000000..." in err
    assert f"{cards / 'feature-loss-can'} is left as it was" in err
    assert config_path.read_bytes() == before
    assert sorted(p.name for p in (cards / "feature-loss-can").iterdir()) == ["README.md", "config.json"]
    assert sorted(p.name for p in cards.iterdir()) == ["feature-loss-can", "feature-loss-net-germain2019"]
    with pytest.raises(ConvertError, match="expects 0000000000000000"):
        install_converted(CAN_RELEASE, cards_root=cards)


def test_install_names_the_source_files_that_differ_from_the_card(cards, release_copy):
    """A different release (here: one corrupted variable's bytes with a matching crc32c is not
    possible, so an index with the card's recorded sha256 altered stands in) is named."""
    config_path = cards / "feature-loss-can" / "config.json"
    config = json.loads(config_path.read_text())
    config["converted_from"]["files_sha256"]["se_model.ckpt.index"] = "f" * 64
    config["weights_sha256"] = "0" * 64
    config_path.write_text(json.dumps(config))
    with pytest.raises(ConvertError, match=r"se_model.ckpt.index has sha256 077a3c5cc1d12b28\.\.\., the card "
                                           r"expects ffffffffffffffff\.\.\."):
        install_converted(release_copy, cards_root=cards)


def test_a_corrupt_data_shard_is_refused_naming_the_variable(cards, release_copy, capsys, monkeypatch):
    shard = release_copy / "se_model.ckpt.data-00000-of-00001"
    entry = TensorBundle(release_copy).entries["se_conv_5/weights"]
    data = bytearray(shard.read_bytes())
    data[entry.offset + entry.size // 2] ^= 0x01  # one bit of one float
    shard.write_bytes(bytes(data))
    monkeypatch.setattr("zoo.convert.CARDS_ROOT", cards)
    code, stdout, err = run(capsys, release_copy)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert err == (f"zoo: error: se_conv_5/weights: checksum mismatch in {shard} (the data file is corrupt or "
                   "belongs to another checkpoint)\n")
    assert not (cards / "feature-loss-can" / "model.safetensors").exists()
    code, _, err = run(capsys, release_copy, "--out", release_copy.parent / "out")
    assert code == 2 and "se_conv_5/weights: checksum mismatch" in err
    assert not (release_copy.parent / "out").exists()


def test_a_missing_data_shard_is_refused(cards, release_copy, capsys, monkeypatch):
    shard = release_copy / "se_model.ckpt.data-00000-of-00001"
    shard.unlink()
    monkeypatch.setattr("zoo.convert.CARDS_ROOT", cards)
    code, stdout, err = run(capsys, release_copy / "se_model.ckpt")
    assert code == 2 and stdout == ""
    assert err == f"zoo: error: the checkpoint's data shard {shard} is missing: copy it beside " \
                  f"{release_copy / 'se_model.ckpt.index'}\n"


def test_a_missing_index_is_refused(tmp_path, capsys):
    code, stdout, err = run(capsys, tmp_path / "se_model.ckpt")
    assert code == 2 and stdout == ""
    assert err == f"zoo: error: no checkpoint index {tmp_path / 'se_model.ckpt.index'}: pass the bundle's prefix, " \
                  "its .index file or the folder that holds it\n"
    code, _, err = run(capsys, tmp_path)  # a folder without a bundle
    assert code == 2 and err.startswith(f"zoo: error: {tmp_path} should hold exactly one TensorFlow checkpoint "
                                        "(*.index); found none.")


def test_a_file_that_is_not_a_bundle_is_refused(tmp_path, capsys):
    fake = tmp_path / "model.index"
    fake.write_bytes(b"not a checkpoint at all, but long enough to have a footer" * 4)
    code, stdout, err = run(capsys, fake)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert err.startswith(f"zoo: error: {fake} is not a TensorFlow checkpoint index (no SSTable magic number")


def test_several_sources_with_one_out_folder_are_refused(tmp_path, capsys):
    code, _, err = run(capsys, CAN_RELEASE, LOSS_RELEASE, "--out", tmp_path / "x")
    assert code == 2 and "--out names one card folder, but 2 sources were given" in err
    assert not (tmp_path / "x").exists()


def test_a_card_without_its_converted_weights_says_how_to_produce_them(cards):
    from zoo.hub import ModelLoadError, load_folder

    with pytest.raises(ModelLoadError) as caught:
        load_folder(cards / "feature-loss-can")
    message = str(caught.value)
    assert "converted from the authors' release" in message and "zoo convert PATH_TO/germain2019" in message
    assert "make weights" in message and "zoo.load('zoo-denoise/feature-loss-can')" in message
    from zoo.models.feature_loss import load_feature_loss_net

    with pytest.raises(ModelLoadError, match="zoo convert PATH_TO/germain2019-lossnet"):
        load_feature_loss_net(str(cards / "feature-loss-net-germain2019"))


def test_python_m_zoo_convert_is_the_same_command(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "zoo.convert", str(tmp_path / "nothing")], capture_output=True,
                            text=True, cwd=PROJECT_ROOT, timeout=300)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == f"zoo: error: no checkpoint index {tmp_path / 'nothing.index'}: pass the bundle's " \
                            "prefix, its .index file or the folder that holds it\n"
