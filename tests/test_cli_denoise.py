"""``zoo denoise`` (and ``zoo list`` / ``zoo info``) as a user runs them: files, folders, messages, exit codes.

Runs ``zoo.cli.main(argv)`` in-process (the console script calls it with ``sys.exit``), plus one
run of the installed ``zoo`` executable. Inputs are real speech copied or converted into
``tmp_path``; every test checks that inputs are left byte-identical.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import EXAMPLE_CLEAN, EXAMPLE_NOISY, PROJECT_ROOT
from zoo.cli import main

RATE = 16000
SUMMARY = re.compile(r"(\d+) enhanced, (\d+) skipped, (\d+) failed, (\d+) ignored")


def zoo_cli(capsys, *argv) -> tuple[int, str, str]:
    """Run ``zoo ARGV...``; return the exit code, stdout and stderr."""
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def summary(err: str) -> tuple[int, int, int, int]:
    """(enhanced, skipped, failed, ignored) from the last summary line on stderr."""
    found = SUMMARY.findall(err)
    assert found, f"no summary line on stderr:\n{err}"
    return tuple(int(n) for n in found[-1])


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file under ``folder``: inputs must never change."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def assert_enhanced_copy(src: Path, dst: Path) -> None:
    """``dst`` is a finished, readable enhancement of ``src``: same rate, channels, length, format."""
    info_in, info_out = sf.info(str(src)), sf.info(str(dst))
    assert (info_out.samplerate, info_out.channels, info_out.frames, info_out.subtype) == (
        info_in.samplerate, info_in.channels, info_in.frames, info_in.subtype), (src, dst)
    noisy, _ = sf.read(src, dtype="float32")
    enhanced, _ = sf.read(dst, dtype="float32")
    assert np.abs(enhanced - noisy).max() > 0.01  # processed, not copied


@pytest.fixture
def speech_tree(tmp_path, monkeypatch) -> Path:
    """in/ with real speech (WAV and FLAC, nested), a text file and three unreadable .wav files."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    shutil.copyfile(EXAMPLE_NOISY, root / "a.wav")
    clean, rate = sf.read(EXAMPLE_CLEAN, dtype="int16")
    sf.write(root / "sub" / "b.flac", clean, rate, subtype="PCM_16")
    (root / "notes.txt").write_text("p232_013 noisy/clean pair from VoiceBank-DEMAND\n")
    (root / "garbage.wav").write_bytes(np.random.default_rng(1).bytes(4000))
    raw = EXAMPLE_NOISY.read_bytes()
    (root / "sub" / "truncated.wav").write_bytes(raw[: len(raw) // 2])
    noisy, _ = sf.read(EXAMPLE_NOISY, dtype="float32")
    noisy[1234] = np.nan
    sf.write(root / "nan.wav", noisy, RATE, subtype="FLOAT")
    return root


# ---- folders ----------------------------------------------------------------------------


def test_folder_is_enhanced_recursively_and_failures_are_reported(capsys, speech_tree, tmp_path):
    before = snapshot(speech_tree)
    out = tmp_path / "out"
    code, stdout, stderr = zoo_cli(capsys, "denoise", speech_tree, "-o", out, "--model", "wiener")
    said = stdout + stderr
    assert code == 1  # some files failed
    assert summary(stderr) == (2, 0, 3, 1)
    assert files_under(out) == ["in/a.wav", "in/sub/b.flac"]  # mirrors the input tree, nothing else
    assert_enhanced_copy(speech_tree / "a.wav", out / "in" / "a.wav")
    assert_enhanced_copy(speech_tree / "sub" / "b.flac", out / "in" / "sub" / "b.flac")
    assert sf.info(str(out / "in" / "sub" / "b.flac")).format == "FLAC"
    for name, reason in [("garbage.wav", "could not be read as audio"), ("sub/truncated.wav", "is truncated"),
                         ("nan.wav", "NaN or infinite")]:
        line = next((line for line in said.splitlines() if line.startswith(f"failed {speech_tree / name}")), None)
        assert line is not None and reason in line, (name, said)
    assert re.search(rf"ignored {re.escape(str(speech_tree / 'notes.txt'))}: not an audio file extension", stderr)
    assert snapshot(speech_tree) == before


def test_existing_outputs_are_skipped_unless_overwrite(capsys, speech_tree, tmp_path):
    for broken in ["garbage.wav", "nan.wav", "sub/truncated.wav"]:
        (speech_tree / broken).unlink()
    before = snapshot(speech_tree)
    out = tmp_path / "out"
    assert zoo_cli(capsys, "denoise", speech_tree, "-o", out)[0] == 0
    first = snapshot(out)

    code, stdout, stderr = zoo_cli(capsys, "denoise", speech_tree, "-o", out)
    assert code == 0 and summary(stderr) == (0, 2, 0, 1)
    assert (f"skipped {speech_tree / 'a.wav'}: {out / 'in' / 'a.wav'} exists, made by feature-loss-can "
            "(use --overwrite to redo it)") in stdout + stderr
    assert snapshot(out) == first  # untouched

    (out / "in" / "a.wav").write_bytes(b"stale")  # an output the user wants regenerated
    code, stdout, stderr = zoo_cli(capsys, "denoise", speech_tree, "-o", out, "--overwrite")
    assert code == 0 and summary(stderr) == (2, 0, 0, 1)
    assert (out / "in" / "a.wav").read_bytes() == first["in/a.wav"][0]  # same result as the first run
    assert files_under(out) == ["in/a.wav", "in/sub/b.flac"]
    assert snapshot(speech_tree) == before


def test_output_folder_inside_input_folder_is_refused(capsys, speech_tree):
    before = snapshot(speech_tree)
    code, stdout, stderr = zoo_cli(capsys, "denoise", speech_tree, "-o", speech_tree / "enhanced")
    assert code == 2
    assert "lies inside input folder" in stderr and "--allow-output-inside-input" in stderr
    assert not (speech_tree / "enhanced").exists()
    assert snapshot(speech_tree) == before


def test_output_inside_input_with_flag_never_reads_its_own_outputs(capsys, speech_tree):
    for broken in ["garbage.wav", "nan.wav", "sub/truncated.wav"]:
        (speech_tree / broken).unlink()
    inputs = snapshot(speech_tree)
    out = speech_tree / "enhanced"
    code, _, stderr = zoo_cli(capsys, "denoise", speech_tree, "-o", out, "--allow-output-inside-input")
    assert code == 0 and summary(stderr) == (2, 0, 0, 1)
    assert files_under(out) == ["in/a.wav", "in/sub/b.flac"]
    # a second run finds its earlier outputs under in/enhanced but must not enhance them again
    code, _, stderr = zoo_cli(capsys, "denoise", speech_tree, "-o", out, "--allow-output-inside-input")
    assert code == 0 and summary(stderr) == (0, 2, 0, 1)
    assert files_under(out) == ["in/a.wav", "in/sub/b.flac"]
    assert {k: v for k, v in snapshot(speech_tree).items() if not k.startswith("enhanced")} == inputs


def test_folder_without_audio_is_an_error(capsys, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "readme.txt").write_text("no audio here\n")
    code, _, stderr = zoo_cli(capsys, "denoise", folder, "-o", tmp_path / "out")
    assert code == 2 and "no audio files found" in stderr
    assert not (tmp_path / "out").exists()


def test_truncated_flac_is_reported_as_failed_and_other_files_are_written(capsys, tmp_path):
    """A FLAC cut off mid-stream must count as 'failed', not abort the run with a traceback."""
    folder = tmp_path / "takes"
    folder.mkdir()
    noisy, rate = sf.read(EXAMPLE_NOISY, dtype="int16")
    sf.write(folder / "full.flac", noisy, rate, subtype="PCM_16")
    raw = (folder / "full.flac").read_bytes()
    (folder / "cut.flac").write_bytes(raw[: len(raw) // 2])  # sorted first: processed before the good file
    shutil.copyfile(EXAMPLE_NOISY, folder / "z_good.wav")
    before = snapshot(folder)
    code, stdout, stderr = zoo_cli(capsys, "denoise", folder, "-o", tmp_path / "out")
    assert code == 1
    assert summary(stderr) == (2, 0, 1, 0)
    assert f"failed {folder / 'cut.flac'}" in stdout + stderr
    assert files_under(tmp_path / "out") == ["takes/full.flac", "takes/z_good.wav"]
    assert snapshot(folder) == before


# ---- single files -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["enhanced.wav", "enhanced.flac"])
def test_single_file_with_audio_output_name_writes_exactly_that_file(capsys, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "noisy.wav"
    shutil.copyfile(EXAMPLE_NOISY, src)
    before = snapshot(tmp_path)
    dst = tmp_path / "results" / name
    code, _, stderr = zoo_cli(capsys, "denoise", src, "-o", dst)
    assert code == 0 and summary(stderr) == (1, 0, 0, 0)
    assert files_under(tmp_path / "results") == [name]
    assert sf.info(str(dst)).format == ("WAV" if name.endswith(".wav") else "FLAC")
    assert_enhanced_copy(src, dst)
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("results")} == before


def test_files_into_output_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(EXAMPLE_NOISY, tmp_path / "noisy.wav")
    shutil.copyfile(EXAMPLE_CLEAN, tmp_path / "clean.wav")
    code, _, stderr = zoo_cli(capsys, "denoise", "noisy.wav", "clean.wav", "-o", "out")
    assert code == 0 and summary(stderr) == (2, 0, 0, 0)
    assert files_under(tmp_path / "out") == ["clean.wav", "noisy.wav"]
    assert_enhanced_copy(tmp_path / "noisy.wav", tmp_path / "out" / "noisy.wav")


def test_output_equal_to_input_is_refused_and_input_untouched(capsys, tmp_path):
    src = tmp_path / "noisy.wav"
    shutil.copyfile(EXAMPLE_NOISY, src)
    before = snapshot(tmp_path)
    code, _, stderr = zoo_cli(capsys, "denoise", src, "-o", src, "--overwrite")
    assert code == 2 and "would overwrite its input" in stderr
    assert snapshot(tmp_path) == before


def test_same_file_name_from_two_folders_is_not_lost(capsys, tmp_path):
    """day1/take.wav and day2/take.wav: both must be enhanced into distinct files, or the run refused."""
    for day, example in [("day1", EXAMPLE_NOISY), ("day2", EXAMPLE_CLEAN)]:
        (tmp_path / day).mkdir()
        shutil.copyfile(example, tmp_path / day / "take.wav")
    out = tmp_path / "out"
    code, stdout, stderr = zoo_cli(capsys, "denoise", tmp_path / "day1" / "take.wav", tmp_path / "day2" / "take.wav",
                                   "-o", out)
    written = files_under(out)
    if code == 2:  # refused up front, saying why
        assert "take.wav" in stderr and written == []
    else:
        assert code == 0 and summary(stderr) == (2, 0, 0, 0), stdout + stderr
        assert len(written) == 2, written


def test_multichannel_44k_file_keeps_rate_channels_and_length(capsys, tmp_path):
    import torch
    import torchaudio.functional as AF

    noisy, _ = sf.read(EXAMPLE_NOISY, dtype="float32")
    clean, _ = sf.read(EXAMPLE_CLEAN, dtype="float32")
    stereo = AF.resample(torch.from_numpy(np.stack([noisy, clean])), RATE, 44100).numpy()
    src = tmp_path / "stereo_44k.wav"
    sf.write(src, stereo.T, 44100, subtype="PCM_24")
    code, _, stderr = zoo_cli(capsys, "denoise", src, "-o", tmp_path / "out")
    assert code == 0 and summary(stderr) == (1, 0, 0, 0)
    assert_enhanced_copy(src, tmp_path / "out" / "stereo_44k.wav")


def test_chunk_seconds_gives_the_same_result(capsys, tmp_path):
    src = tmp_path / "noisy.wav"
    shutil.copyfile(EXAMPLE_NOISY, src)
    assert zoo_cli(capsys, "denoise", src, "-o", tmp_path / "whole.wav")[0] == 0
    code, _, stderr = zoo_cli(capsys, "denoise", src, "-o", tmp_path / "chunked.wav", "--chunk-seconds", "0.7")
    assert code == 0 and summary(stderr) == (1, 0, 0, 0)
    whole, _ = sf.read(tmp_path / "whole.wav", dtype="int16")
    chunked, _ = sf.read(tmp_path / "chunked.wav", dtype="int16")
    assert whole.shape == chunked.shape
    assert np.abs(whole.astype(np.int32) - chunked).max() <= 1


def test_clipped_file_is_enhanced_with_a_warning(capsys, tmp_path):
    noisy, _ = sf.read(EXAMPLE_NOISY, dtype="float32")
    src = tmp_path / "clipped.wav"
    sf.write(src, np.clip(noisy * 20, -1, 1), RATE, subtype="PCM_16")
    code, stdout, stderr = zoo_cli(capsys, "denoise", src, "-o", tmp_path / "out.wav")
    assert code == 0 and summary(stderr) == (1, 0, 0, 0)
    assert re.search(rf"warning {re.escape(str(src))}: .*looks clipped", stdout + stderr)
    assert_enhanced_copy(src, tmp_path / "out.wav")


# ---- user errors -------------------------------------------------------------------------


def test_unknown_model_lists_known_models_and_suggests_the_closest(capsys, tmp_path):
    src = tmp_path / "noisy.wav"
    shutil.copyfile(EXAMPLE_NOISY, src)
    code, _, stderr = zoo_cli(capsys, "denoise", src, "-o", tmp_path / "out", "--model", "wienr")
    assert code == 2
    assert "unknown model 'wienr'" in stderr and "Did you mean 'wiener'?" in stderr
    assert re.search(r"Known models: [^.]*\bwiener\b", stderr)
    assert "Traceback" not in stderr
    assert files_under(tmp_path / "out") == []


def test_missing_input_is_an_error(capsys, tmp_path):
    code, _, stderr = zoo_cli(capsys, "denoise", tmp_path / "nope.wav", "-o", tmp_path / "out")
    assert code == 2 and f"{tmp_path / 'nope.wav'}: no such file or folder" in stderr
    assert not (tmp_path / "out").exists()


# ---- list, info and the installed executable ----------------------------------------


def test_list_names_wiener(capsys):
    code, stdout, _ = zoo_cli(capsys, "list")
    assert code == 0 and re.search(r"^wiener\s", stdout, re.M)


def test_info_shows_architecture_and_sample_rate(capsys):
    code, stdout, _ = zoo_cli(capsys, "info", "wiener")
    assert code == 0
    assert "architecture: WienerFilter" in stdout and "sample rate: 16000 Hz" in stdout


def test_installed_zoo_command_reports_failures_in_its_exit_status(tmp_path):
    executable = Path(sys.executable).parent / "zoo"
    if not executable.exists():
        pytest.skip(f"no zoo console script beside {sys.executable}")
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(EXAMPLE_NOISY, folder / "noisy.wav")
    (folder / "broken.wav").write_text("not audio\n")
    before = snapshot(folder)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([str(executable), "denoise", str(folder), "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120, env=env, cwd=PROJECT_ROOT)
    assert result.returncode == 1, result.stderr
    assert summary(result.stderr) == (1, 0, 1, 0)
    assert "Traceback" not in result.stderr
    assert files_under(tmp_path / "out") == ["in/noisy.wav"]
    assert snapshot(folder) == before
