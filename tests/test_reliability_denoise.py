"""Issue 18, the enhance path and ``zoo denoise``: what a new user hit, re-run as tests.

Block lengths and sample rates that once hung, one-line errors instead of tracebacks (``--debug``
shows them), every file of a batch reported, interrupted runs (real SIGINT/SIGTERM sent to a real
``zoo denoise`` process) that leave no partial or temporary file, outputs that say which model made
them, one output layout, dtypes, and digital silence. Audio is real speech (p232_013) in ``tmp_path``.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import zoo
from conftest import EXAMPLE_NOISY, PROJECT_ROOT
from zoo.audio import AudioError, is_temporary_output, made_by
from zoo.cli import CliError, main
from zoo.data import Mixtures
from zoo.data.files import DataConfigError, DataPathError
from zoo.models.can import ContextAggregationDenoiser

RATE = 16000
ZOO = Path(sys.executable).with_name("zoo")
SUMMARY = re.compile(r"(\d+) enhanced, (\d+) skipped, (\d+) failed, (\d+) ignored")


def zoo_cli(capsys, *argv) -> tuple[int, str]:
    """``zoo ARGV`` in-process: exit code and stdout + stderr."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out + err


def one_line_error(text: str) -> str:
    """The single ``zoo: error:`` line; fails on a traceback."""
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("zoo: error:")]
    assert len(errors) == 1, text
    return errors[0]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") or "partial" in p.name]


@pytest.fixture
def noisy_file(tmp_path) -> Path:
    path = tmp_path / "a.wav"
    shutil.copyfile(EXAMPLE_NOISY, path)
    return path


@pytest.fixture(scope="module")
def small_can_folder(tmp_path_factory) -> Path:
    """A width-8 CAN with non-zero biases, saved as a card folder (``--model FOLDER``)."""
    torch.manual_seed(0)
    model = ContextAggregationDenoiser(width=8, dilations=(1, 2, 4, 8, 16, 32, 64, 1), wave_scale=1.0).eval()
    for module in model.modules():
        if hasattr(module, "beta") and isinstance(module.beta, torch.nn.Parameter):
            module.beta.data.fill_(0.5)
        if isinstance(module, torch.nn.Conv1d) and module.bias is not None:
            module.bias.data.fill_(0.01)
    return model.save_pretrained(tmp_path_factory.mktemp("cards") / "small-can")


# ---- item 2: block lengths and sample rates that hung -------------------------------------


@pytest.fixture
def short_file(noisy_speech, tmp_path) -> Path:
    """0.1 s of real speech: an old 1-sample-block run over it ends quickly (and the test fails)."""
    path = tmp_path / "short.wav"
    sf.write(path, noisy_speech[20000:21600], RATE, subtype="PCM_16")
    return path


@pytest.mark.parametrize("seconds", [0, -1.0, 0.001, float("nan"), float("inf")])
def test_chunk_seconds_zero_negative_or_tiny_is_refused(wiener_model, noisy_speech, short_file, tmp_path, seconds):
    with pytest.raises(AudioError, match=r"chunk_seconds must be a number of seconds of at least 0\.01"):
        wiener_model.enhance(noisy_speech[:1000], RATE, chunk_seconds=seconds)
    with pytest.raises(AudioError, match=r"at least 0\.01"):
        wiener_model.enhance_file(short_file, tmp_path / "out.wav", chunk_seconds=seconds)
    assert not (tmp_path / "out.wav").exists()


def test_cli_chunk_seconds_zero_is_one_line_error(capsys, short_file, tmp_path):
    code, text = zoo_cli(capsys, "denoise", short_file, "-o", tmp_path / "out.wav", "-m", "wiener",
                         "--chunk-seconds", "0")
    assert code == 2 and "--chunk-seconds 0.0: must be a number of seconds of at least 0.01" in one_line_error(text)
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("rate", [1, 999, 384001, 400000])
def test_implausible_sample_rate_is_refused_naming_the_range(wiener_model, noisy_speech, rate):
    started = time.monotonic()
    with pytest.raises(AudioError, match=rf"sample_rate {rate} Hz is outside the accepted range 1,000 to 384,000 Hz"):
        wiener_model.enhance(noisy_speech[:10], rate)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("rate", [1000, 8000, 384000])
def test_sample_rates_at_the_ends_of_the_range_are_enhanced(wiener_model, noisy_speech, rate):
    out = wiener_model.enhance(noisy_speech[:4000], rate)
    assert out.shape == (4000,) and np.isfinite(out).all()


# ---- item 5: dtypes, scale, silence ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_tensors_come_back_in_their_dtype(wiener_model, noisy_speech, dtype):
    stereo = torch.from_numpy(np.stack([noisy_speech, noisy_speech[::-1].copy()]))
    out = wiener_model.enhance(stereo.to(dtype), 48000)
    reference = wiener_model.enhance(stereo.to(dtype).float(), 48000)
    assert out.dtype == dtype and out.shape == stereo.shape
    assert (out.float() - reference).abs().max() < 0.02  # half precision of the float32 result


def test_int8_is_accepted_and_the_uint8_message_names_what_is_accepted(wiener_model, noisy_speech):
    int8 = np.round(noisy_speech * 127).astype(np.int8)
    out = wiener_model.enhance(int8, RATE)
    assert out.dtype == np.int8 and out.shape == int8.shape
    uint8 = (int8.astype(np.int16) + 128).astype(np.uint8)  # 8-bit WAV data
    with pytest.raises(AudioError) as info:
        wiener_model.enhance(uint8, RATE)
    message = str(info.value)
    assert "signed integer PCM (int8, int16 or int32)" in message and "int8" in message
    converted = eval(re.search(r"as (\(x\.astype.*?\) / 128)", message).group(1), {"x": uint8})  # the advice works
    np.testing.assert_allclose(converted, int8 / 128, atol=1e-6)
    assert wiener_model.enhance(converted, RATE).dtype == np.float32


def test_float_input_scaled_x100_is_not_called_clipped(wiener_model, noisy_speech):
    with pytest.warns(UserWarning) as record:
        out = wiener_model.enhance(noisy_speech * 100, RATE)
    messages = [str(w.message) for w in record]
    assert not any("clipped" in m and "looks clipped" in m for m in messages), messages
    peak = float(np.abs(noisy_speech * 100).max())
    assert any(f"exceeds full scale: peak {peak:.4g}" in m and "expected within [-1, 1]" in m for m in messages)
    assert np.abs(out).max() > 1.0  # enhanced as given, not clipped
    with pytest.warns(UserWarning, match="integer PCM values in a float array: divide by 32768"):
        wiener_model.enhance(np.round(noisy_speech * 32767), RATE)


def test_digital_silence_comes_back_as_exact_zeros_from_a_can(small_can_folder, noisy_speech, tmp_path):
    model = zoo.load(str(small_can_folder))
    silence = np.zeros((2, RATE), np.float32)
    with torch.no_grad():  # the network itself adds its biases to silence
        assert model(torch.zeros(1, RATE)).abs().max() > 1e-3
    assert np.all(model.enhance(silence, RATE) == 0)
    assert np.all(model.enhance(silence[0].astype(np.int16), 44100) == 0)
    mixed = np.stack([noisy_speech[:RATE], np.zeros(RATE, np.float32)])  # one silent channel
    out = model.enhance(mixed, RATE)
    assert np.all(out[1] == 0) and np.abs(out[0]).max() > 0.01
    for name, data in (("silence.wav", silence.T), ("half.wav", mixed.T)):
        sf.write(tmp_path / name, data, RATE, subtype="PCM_16")
        model.enhance_file(tmp_path / name, tmp_path / f"out-{name}", chunk_seconds=0.3)
        written, _ = sf.read(tmp_path / f"out-{name}", dtype="int16", always_2d=True)
        assert np.all(written[:, 1] == 0) and (name == "half.wav") == bool(np.any(written[:, 0]))


# ---- item 5: enhance_file and the CLI agree; outputs say which model made them --------------


def test_enhance_file_refuses_an_existing_output_unless_overwrite(wiener_model, noisy_file, tmp_path):
    dst = tmp_path / "out.wav"
    dst.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match=r"out\.wav already exists; pass overwrite=True to replace it"):
        wiener_model.enhance_file(noisy_file, dst)
    assert dst.read_bytes() == b"keep me"
    wiener_model.enhance_file(noisy_file, dst, overwrite=True)
    assert sf.info(str(dst)).frames == sf.info(str(noisy_file)).frames
    assert made_by(dst) == "wiener"
    with pytest.raises(FileExistsError, match=r"\(made by wiener\)"):
        wiener_model.enhance_file(noisy_file, dst)


def test_rerun_with_another_model_says_the_outputs_were_made_by_the_first(capsys, noisy_file, tmp_path,
                                                                         small_can_folder):
    out = tmp_path / "out"
    assert zoo_cli(capsys, "denoise", noisy_file, "-o", out / "a.wav", "-m", "wiener")[0] == 0
    first = (out / "a.wav").read_bytes()
    assert made_by(out / "a.wav") == "wiener"
    code, text = zoo_cli(capsys, "denoise", noisy_file, "-o", out / "a.wav", "-m", small_can_folder)
    assert code == 0 and SUMMARY.findall(text)[-1] == ("0", "1", "0", "0")
    assert (f"{out / 'a.wav'} exists, made by wiener, not by {small_can_folder}: it was NOT enhanced with "
            f"{small_can_folder}; use --overwrite") in text
    assert (out / "a.wav").read_bytes() == first
    code, text = zoo_cli(capsys, "denoise", noisy_file, "-o", out / "a.wav", "-m", small_can_folder, "--overwrite")
    assert code == 0 and made_by(out / "a.wav") == str(small_can_folder)
    assert (out / "a.wav").read_bytes() != first


# ---- item 5: output names and layout --------------------------------------------------------


@pytest.mark.parametrize("name", ["out.mp3", "out.txt"])
def test_unsupported_output_extension_for_one_file_is_an_error(capsys, noisy_file, tmp_path, name):
    code, text = zoo_cli(capsys, "denoise", noisy_file, "-o", tmp_path / name, "-m", "wiener")
    line = one_line_error(text)
    assert code == 2 and f"zoo cannot write '{Path(name).suffix}' files; use one of .aif, .aiff, .flac, .ogg, .wav" in line
    assert not (tmp_path / name).exists()


def test_output_name_without_extension_is_a_folder_and_the_run_says_so(capsys, noisy_file, tmp_path):
    code, text = zoo_cli(capsys, "denoise", noisy_file, "-o", tmp_path / "outnoext", "-m", "wiener")
    assert code == 0 and f"has no audio extension: writing into the folder {tmp_path / 'outnoext' / 'a.wav'}" in text
    assert files_under(tmp_path / "outnoext") == ["a.wav"]


@pytest.mark.parametrize("output", ["/dev/null", "a.wav/x.wav", "a.wav/sub/"],
                         ids=["dev-null", "under-a-file", "folder-under-a-file"])
def test_output_that_cannot_be_written_is_one_line_error(capsys, noisy_file, tmp_path, monkeypatch, output):
    monkeypatch.chdir(tmp_path)
    before = noisy_file.read_bytes()
    code, text = zoo_cli(capsys, "denoise", noisy_file, "-o", output, "-m", "wiener")
    line = one_line_error(text)
    assert code == 2
    assert ("not a regular file or folder" in line) if output == "/dev/null" else ("a.wav is a file, not a folder" in line)
    assert noisy_file.read_bytes() == before and files_under(tmp_path) == ["a.wav"]


def test_folder_input_with_an_audio_file_output_name_is_an_error(capsys, noisy_file, tmp_path):
    code, text = zoo_cli(capsys, "denoise", tmp_path, "-o", tmp_path.parent / f"{tmp_path.name}-out.wav", "-m", "wiener")
    assert code == 2 and "names an audio file, but the inputs" in one_line_error(text)


def test_dot_and_named_folder_give_the_same_layout(capsys, tmp_path, monkeypatch):
    recs = tmp_path / "recs"
    (recs / "day1").mkdir(parents=True)
    shutil.copyfile(EXAMPLE_NOISY, recs / "day1" / "a.wav")
    monkeypatch.chdir(tmp_path)
    assert zoo_cli(capsys, "denoise", "recs", "-o", tmp_path / "by-name", "-m", "wiener")[0] == 0
    monkeypatch.chdir(recs)
    assert zoo_cli(capsys, "denoise", ".", "-o", tmp_path / "by-dot", "-m", "wiener")[0] == 0
    assert files_under(tmp_path / "by-name") == files_under(tmp_path / "by-dot") == ["recs/day1/a.wav"]


# ---- item 3: one-line errors, every file reported, --debug --------------------------------


@pytest.mark.parametrize("device", ["gpu0", "cuda", "cuda:7", "meta"])
def test_bad_or_missing_device_is_one_line_error(capsys, noisy_file, tmp_path, device):
    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has the GPU")
    code, text = zoo_cli(capsys, "denoise", noisy_file, "-o", tmp_path / "out.wav", "-m", "wiener", "--device", device)
    line = one_line_error(text)
    assert code == 2 and f"--device {device}:" in line
    assert ("not a device name" in line) if device == "gpu0" else ("use --device cpu" in line or "GPU(s)" in line
                                                                   or "zoo runs on cpu" in line)
    assert not (tmp_path / "out.wav").exists()


def test_a_file_that_cannot_be_written_is_reported_and_the_batch_goes_on(capsys, tmp_path):
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    for name in ("a.wav", "sub/b.wav", "z.wav"):
        shutil.copyfile(EXAMPLE_NOISY, inputs / name)
    out = tmp_path / "out"
    (out / "in").mkdir(parents=True)
    (out / "in" / "sub").write_text("a file where the output folder in/sub should go\n")
    code, text = zoo_cli(capsys, "denoise", inputs, "-o", out, "-m", "wiener")
    assert "Traceback" not in text and code == 1
    assert (f"failed {inputs / 'sub' / 'b.wav'}: cannot write {out / 'in' / 'sub' / 'b.wav'}: "
            f"{out / 'in' / 'sub'} is a file, not a folder") in text
    assert SUMMARY.findall(text)[-1] == ("2", "0", "1", "0")  # the summary comes, after every file
    assert files_under(out) == ["in/a.wav", "in/sub", "in/z.wav"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_unwritable_output_folder_reports_every_file(capsys, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.wav", "b.wav"):
        shutil.copyfile(EXAMPLE_NOISY, inputs / name)
    out = tmp_path / "out"
    (out / "in").mkdir(parents=True)
    (out / "in").chmod(0o555)
    try:
        code, text = zoo_cli(capsys, "denoise", inputs, "-o", out, "-m", "wiener")
    finally:
        (out / "in").chmod(0o755)
    assert code == 1 and "Traceback" not in text and text.count("Permission denied") == 2
    assert SUMMARY.findall(text)[-1] == ("0", "0", "2", "0")


def test_debug_flag_shows_the_traceback(capsys, noisy_file, tmp_path):
    assert zoo_cli(capsys, "denoise", noisy_file, "-o", tmp_path / "out.mp3", "-m", "wiener")[0] == 2
    with pytest.raises(CliError, match="zoo cannot write '.mp3' files"):
        main(["--debug", "denoise", str(noisy_file), "-o", str(tmp_path / "out.mp3"), "-m", "wiener"])
    result = subprocess.run([str(ZOO), "--debug", "denoise", str(noisy_file), "-o", str(tmp_path / "out.mp3"),
                             "-m", "wiener"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback (most recent call last)" in result.stderr
    assert "zoo.cli.CliError: -o" in result.stderr


# ---- item 3: fine-tune data errors ---------------------------------------------------------


def test_recipe_placeholder_left_in_is_a_clear_error():
    with pytest.raises(DataConfigError, match=r"Mixtures noise: 'REPLACE_WITH_YOUR_NOISE_FOLDER' is the recipe's "
                                              r"placeholder; .* --data\.init_args\.noise /path/to/my_noise"):
        Mixtures(speech=["speech/ljspeech"], noise=["REPLACE_WITH_YOUR_NOISE_FOLDER"])


def test_a_plain_noise_folder_counts_as_a_list_and_a_missing_one_is_named(tmp_path):
    noise = tmp_path / "my noise"
    noise.mkdir()
    shutil.copyfile(EXAMPLE_NOISY, noise / "n.wav")
    data = Mixtures(speech=[str(noise)], noise=str(noise), val_speech=str(noise), val_noise=str(noise))
    assert data.hparams.noise == [str(noise)]
    assert data.file_lists()["noise"] == [(noise / "n.wav").resolve()]
    with pytest.raises(DataPathError, match=r"Mixtures noise: data path /nonexistent/noise does not exist; check the path"):
        Mixtures(speech=[str(noise)], noise="/nonexistent/noise", val_speech=[str(noise)],
                 val_noise=[str(noise)]).file_lists()


@pytest.mark.parametrize("override", [[], ["--data.init_args.noise", "/nonexistent/noise"]],
                         ids=["placeholder", "plain-missing-folder"])
def test_zoo_fit_data_errors_are_one_line(capsys, tmp_path, monkeypatch, override):
    monkeypatch.chdir(tmp_path)
    code, text = zoo_cli(capsys, "fit", "--config", PROJECT_ROOT / "recipes" / "data" / "finetune-noise.yaml",
                         "--config", PROJECT_ROOT / "recipes" / "can-l1" / "finetune-noise.yaml",
                         "--trainer.max_epochs", "1", *override)
    line = one_line_error(text)
    assert code == 2
    if override:
        assert "Mixtures noise: data path /nonexistent/noise does not exist" in line
    else:
        assert "'REPLACE_WITH_YOUR_NOISE_FOLDER' is the recipe's placeholder" in line


# ---- item 4: interrupted runs and leftovers (real signals to a real process) ----------------


def long_inputs(folder: Path, count: int = 4, repeats: int = 6) -> list[Path]:
    """``count`` files of ``repeats`` x p232_013 (about 24 s each) of real speech."""
    folder.mkdir(parents=True, exist_ok=True)
    noisy, _ = sf.read(EXAMPLE_NOISY, dtype="int16")
    paths = []
    for i in range(count):
        path = folder / f"take{i}.wav"
        sf.write(path, np.tile(np.roll(noisy, 997 * i), repeats), RATE, subtype="PCM_16")
        paths.append(path)
    return paths


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_only_complete_files_and_says_what_it_finished(tmp_path, small_can_folder, signum,
                                                                              status):
    inputs = long_inputs(tmp_path / "in")
    out = tmp_path / "out"
    # a terminal's Ctrl-C: SIGINT at its default (a background job inherits it ignored)
    process = subprocess.Popen([str(ZOO), "denoise", str(tmp_path / "in"), "-o", str(out), "-m", str(small_can_folder),
                                "--chunk-seconds", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        finished = lambda: [p for p in out.rglob("*.wav") if not p.name.startswith(".")]  # noqa: E731
        wait_for(lambda: finished() and temporaries(out) or process.poll() is not None, 90,
                 "a finished output and the next one being written")
        assert process.poll() is None, process.communicate()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill() if process.poll() is None else None
    assert process.returncode == status, stderr
    assert "Traceback" not in stderr
    assert temporaries(out) == [] and temporaries(tmp_path / "in") == []
    done = sorted(finished())
    assert 1 <= len(done) < len(inputs)
    for dst in done:  # complete: same length as its input, and reported as finished
        assert sf.info(str(dst)).frames == sf.info(str(tmp_path / "in" / dst.name)).frames
        assert f"finished {dst}" in stderr
    match = re.search(r"interrupted: (\d+) enhanced, 0 skipped, 0 failed, 0 ignored, (\d+) not done", stderr)
    assert match and (int(match[1]), int(match[2])) == (len(done), len(inputs) - len(done)), stderr
    assert "nothing written for it (no partial file left)" in stderr

    rerun = subprocess.run([str(ZOO), "denoise", str(tmp_path / "in"), "-o", str(out), "-m", str(small_can_folder)],
                           capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0 and SUMMARY.findall(rerun.stderr)[-1] == (
        str(len(inputs) - len(done)), str(len(done)), "0", "0")
    assert files_under(out) == [f"in/{p.name}" for p in inputs]


def test_leftover_temporaries_are_never_inputs_and_are_removed_on_rerun(capsys, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copyfile(EXAMPLE_NOISY, inputs / "a.wav")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)  # a process that has ended: its temporaries are leftovers
    leftovers = [f".a.zoo-{dead_pid}-k2x9q1ab.partial.wav", ".a.u3cj_0x1.partial.wav", ".hidden.wav"]
    for name in leftovers:  # as a killed run leaves them (here in the input folder, as a user may)
        shutil.copyfile(EXAMPLE_NOISY, inputs / name)
    out = tmp_path / "out"
    (out / "in").mkdir(parents=True)
    stale = out / "in" / f".a.zoo-{dead_pid}-z8y7x6wv.partial.wav"
    stale.write_bytes(b"half a file")
    live = out / "in" / f".a.zoo-{os.getpid()}-live0000.partial.wav"  # a live process's: not touched
    live.write_bytes(b"being written")
    assert all(is_temporary_output(name) for name in leftovers[:2]) and not is_temporary_output("a.wav")

    code, text = zoo_cli(capsys, "denoise", inputs, "-o", out, "-m", "wiener")
    assert code == 0 and SUMMARY.findall(text)[-1] == ("1", "0", "0", "0")  # neither enhanced nor listed as ignored
    assert "partial" not in text.replace(str(stale), "")
    assert not stale.exists() and live.exists()
    assert "removed 1 temporary files left by an interrupted earlier run" in text
    assert sorted(p.name for p in (out / "in").iterdir()) == [live.name, "a.wav"]
