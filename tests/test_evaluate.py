"""`zoo eval`: data specs, per-file CSV, summaries, BAK tranches; cards from results."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from zoo.cli import main
from zoo.data.pairs import DataSpecError, paired_files
from zoo.evaluate import N_TRANCHES, Evaluation, evaluate, write_reports

SUBSET = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "voicebank-demand-subset"
VB = f"voicebank-demand:{SUBSET}"


def test_voicebank_spec_pairs_the_official_layout():
    pairs = paired_files(VB)
    assert len(pairs) == 69
    assert all(p.noisy.name == p.clean.name for p in pairs)
    assert pairs[0].noisy.parent.name == "noisy_testset_wav" and pairs[0].clean.parent.name == "clean_testset_wav"


def test_folder_and_manifest_specs(tmp_path):
    noisy, clean = tmp_path / "n", tmp_path / "c"
    noisy.mkdir(), clean.mkdir()
    for name in ("a.wav", "b.wav"):
        shutil.copy(SUBSET / "noisy_testset_wav" / "p232_001.wav", noisy / name)
        shutil.copy(SUBSET / "clean_testset_wav" / "p232_001.wav", clean / name)
    assert [p.name for p in paired_files(f"folders:{noisy}:{clean}")] == ["a.wav", "b.wav"]
    manifest = tmp_path / "m.csv"
    manifest.write_text("noisy,clean\nn/a.wav,c/a.wav\n")
    assert paired_files(f"manifest:{manifest}")[0].clean == clean / "a.wav"
    (tmp_path / "m.json").write_text(json.dumps([{"noisy": "n/b.wav", "clean": "c/b.wav", "name": "bee"}]))
    assert paired_files(f"manifest:{tmp_path / 'm.json'}")[0].name == "bee"


@pytest.mark.parametrize("spec, message", [
    ("voicebank-demand", "has no path"),
    ("nonsense:/x", "unknown data spec kind"),
    ("voicebank-demand:/no/such/dir", "is not a folder"),
    ("folders:/tmp", "folders:NOISY_DIR:CLEAN_DIR"),
    ("manifest:/no/such.csv", "does not exist"),
])
def test_bad_specs_say_what_is_expected(spec, message):
    with pytest.raises(DataSpecError, match=message):
        paired_files(spec)


def test_unmatched_folders_are_refused(tmp_path):
    noisy, clean = tmp_path / "n", tmp_path / "c"
    noisy.mkdir(), clean.mkdir()
    shutil.copy(SUBSET / "noisy_testset_wav" / "p232_001.wav", noisy / "a.wav")
    with pytest.raises(DataSpecError, match="no partner"):
        paired_files(f"folders:{noisy}:{clean}")


@pytest.fixture(scope="module")
def small_eval():
    return evaluate(["wiener"], VB, workers=2, limit=16, progress=False)


def test_evaluation_scores_every_system_on_every_file(small_eval):
    assert small_eval.systems == ["noisy", "wiener"]
    assert len(small_eval.rows) == 32
    means = small_eval.means()
    for measure in ("pesq_wb", "stoi", "si_sdr", "snr", "csig", "cbak", "covl"):
        assert measure in means["noisy"]
    assert means["wiener"]["si_sdr"] > means["noisy"]["si_sdr"]  # the filter removes noise
    assert means["wiener"]["cbak"] > means["noisy"]["cbak"]


def test_tranches_are_equal_sized_octiles_of_noisy_bak(small_eval):
    noisy = [r for r in small_eval.rows if r["system"] == "noisy"]
    counts = [sum(r["tranche"] == t for r in noisy) for t in range(1, N_TRANCHES + 1)]
    assert counts == [2] * 8
    worst = min(noisy, key=lambda r: r["cbak"])
    best = max(noisy, key=lambda r: r["cbak"])
    assert worst["tranche"] == 1 and best["tranche"] == 8
    by_file = {r["file"]: r["tranche"] for r in noisy}
    assert all(r["tranche"] == by_file[r["file"]] for r in small_eval.rows)  # a file's tranche is its input's


def test_reports_are_written(small_eval, tmp_path):
    paths = write_reports(small_eval, tmp_path)
    rows = list(csv.DictReader(paths["per_file"].open()))
    assert len(rows) == 32 and {"file", "system", "tranche", "pesq_wb", "covl"} <= set(rows[0])
    summary = json.loads(paths["json"].read_text())
    assert summary["files"] == 16 and len(summary["tranches"]["edges"]) == 7
    assert summary["systems"]["wiener"]["pesq_wb"] == pytest.approx(small_eval.means()["wiener"]["pesq_wb"])
    markdown = paths["markdown"].read_text()
    assert "| wiener |" in markdown and "CBAK" in markdown
    # a PESQ-wb table per tranche, its cells the tranche means of the json
    table = markdown.split("PESQ-wb:\n", 1)[1].split("\n\n", 1)[0]
    wiener_row = next(line for line in table.splitlines() if line.startswith("| wiener |"))
    cells = [float(c) for c in wiener_row.strip("| \n").split(" | ")[1:]]
    assert cells == pytest.approx(summary["tranches"]["means"]["wiener"]["pesq_wb"], abs=0.006)
    for key in ("tranches", "bak_distribution"):
        assert paths[key].read_bytes()[:4] == b"\x89PNG"


def test_eval_command(tmp_path, capsys):
    code = main(["eval", "--model", "noisy", "--model", "wiener", "--data", VB, "--limit", "8",
                 "--workers", "2", "--out", str(tmp_path)])
    assert code == 0
    assert "| wiener |" in capsys.readouterr().out
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "tranches.png").is_file()


def test_eval_command_rejects_unknown_model_and_bad_data(tmp_path, capsys):
    assert main(["eval", "--model", "wienr", "--data", VB, "--out", str(tmp_path)]) == 2
    assert "Did you mean 'wiener'?" in capsys.readouterr().err
    assert main(["eval", "--model", "wiener", "--data", "folders:/nope:/nada", "--out", str(tmp_path)]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_different_lengths_are_trimmed_and_reported(tmp_path):
    noisy, clean = tmp_path / "n", tmp_path / "c"
    noisy.mkdir(), clean.mkdir()
    wave, rate = sf.read(SUBSET / "noisy_testset_wav" / "p232_001.wav")
    ref, _ = sf.read(SUBSET / "clean_testset_wav" / "p232_001.wav")
    sf.write(noisy / "a.wav", wave, rate)
    sf.write(clean / "a.wav", ref[:-800], rate)
    evaluation = evaluate(["noisy"], f"folders:{noisy}:{clean}", workers=1, progress=False)
    assert any("trim" in note for note in evaluation.summary()["notes"])


def test_card_command_writes_model_index_from_results(tmp_path, monkeypatch, capsys):
    from zoo.registry import get_entry

    entry = get_entry("wiener")
    card_copy = tmp_path / "wiener"
    shutil.copytree(entry.card_path, card_copy)
    monkeypatch.setattr(type(entry), "card_path", property(lambda self: card_copy))
    results = {"datasets": [{"dataset": "Test set", "dataset_type": "test-set", "split": "test", "means": {
        "noisy": dict(pesq_wb=1.5, stoi=0.8, si_sdr=5.0, snr=4.0, csig=2.5, cbak=2.0, covl=2.1),
        "wiener": dict(pesq_wb=1.75, stoi=0.81, si_sdr=9.0, snr=8.0, csig=2.75, cbak=2.5, covl=2.25)}}]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert main(["card", "wiener", "--from", str(path)]) == 0
    from huggingface_hub import ModelCard

    data = ModelCard.load(card_copy / "README.md").data.to_dict()
    metrics = {m["type"]: m["value"] for m in data["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"pesq": 1.75, "stoi": 0.81, "si-sdr": 9.0, "snr": 8.0, "csig": 2.75, "cbak": 2.5, "covl": 2.25}
    assert main(["card", "wiener", "--from", str(tmp_path / "missing.json")]) == 2
