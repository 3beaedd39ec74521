"""The authors' released networks (Germain, Chen & Koltun 2019) as the zoo runs them.

- parity of the converted senet (``zoo.load("feature-loss-can")``) and of the converted loss
  network (``FeatureLossNet``) with the independent NumPy re-implementation of the authors'
  TensorFlow graphs (``tests/reference_germain2019.py``) on real VoiceBank-DEMAND speech;
- exactness of the long-input path (whole-input statistics measured in passes over blocks,
  then streaming) against whole-signal processing, in memory, from a float WAV file and at
  another sample rate;
- ``ContextAggregationNetwork.measure_statistics`` against a layer-by-layer reference;
- the ``"calibrated"`` normalisation (trains like ``"input"``, infers and streams like ``"batch"``);
- bounded memory on a 10-minute input (slow).
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import reference_germain2019 as reference
from zoo.convert.germain2019 import can_state_dict, loss_network_state_dict
from zoo.convert.tf_bundle import TensorBundle
from zoo.inference import OverlapStream, WholeSignalStream, split_blocks
from zoo.models.can import ContextAggregationNetwork
from zoo.models.feature_loss import FeatureLossCAN, FeatureLossNet

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
SENET = SHARED / "weights" / "germain2019"
LOSSNET = SHARED / "weights" / "germain2019-lossnet"
NOISY = SHARED / "data" / "voicebank-demand-subset" / "noisy_testset_wav"
CARD_WEIGHTS = PROJECT_ROOT / "hub_cards" / "feature-loss-can" / "model.safetensors"

needs_senet = pytest.mark.skipif(not (SENET / "se_model.ckpt.index").is_file(), reason=f"no released senet in {SENET}")
needs_lossnet = pytest.mark.skipif(not (LOSSNET / "my_test_model.index").is_file(),
                                   reason=f"no released loss network in {LOSSNET}")
needs_data = pytest.mark.skipif(not NOISY.is_dir(), reason=f"no VoiceBank-DEMAND subset in {NOISY}")


def read_noisy(name: str) -> np.ndarray:
    wave, rate = sf.read(str(NOISY / name), dtype="float32")
    assert rate == 16000 and wave.ndim == 1
    return wave


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: on this 2-core machine, shared with training runs, two OpenMP threads
    spin at every barrier and small convolutions run 30x slower (measured); results are the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: released layers kept by the reduced network: se_conv_0 (dilation 1), se_conv_12 (4096), se_conv_last (1)
REDUCED_LAYERS = {0: 0, 1: 12, 2: 13}


def reduced_release(senet_folder=SENET, layers=REDUCED_LAYERS) -> FeatureLossCAN:
    """The released network cut to a few of its layers (W=64, input normalisation, the released
    values): the same long-input machinery (passes for the statistics, then streaming, a dilation
    of 4096 with its padding positions) at a fraction of the cost of all 14 layers."""
    state, init_args = can_state_dict(TensorBundle(senet_folder))
    dilations = [init_args["dilations"][old] for old in layers.values()]
    model = FeatureLossCAN(**{**init_args, "dilations": dilations})
    kept = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[1] == "body":
            old_layer, sub = divmod(int(parts[2]), 3)
            for new_layer, old in layers.items():
                if old == old_layer:
                    kept[".".join(parts[:2] + [str(3 * new_layer + sub)] + parts[3:])] = value
        else:
            kept[key] = value
    model.load_state_dict({**model.state_dict(), **kept}, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def reduced():
    if not (SENET / "se_model.ckpt.index").is_file():
        pytest.skip(f"no released senet in {SENET}")
    return reduced_release()


@pytest.fixture(params=["reduced", pytest.param("released", marks=pytest.mark.slow)])
def long_input_model(request):
    """The reduced release (default run) or the whole released network (slow: measuring the 14
    layers' statistics costs about 8 forward passes, each recomputing the 0.5 s context)."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def released():
    """The converted release, as users load it."""
    if not CARD_WEIGHTS.is_file():
        pytest.skip(f"{CARD_WEIGHTS} is absent: it is produced on set-up by `zoo convert` from "
                    f"{SENET} (run `make test` / `make demo`, or zoo convert)")
    import zoo

    model = zoo.load("feature-loss-can")
    assert not model.training and model.needs_input_statistics
    assert model.network.normalization == "input" and model.network.wave_scale == 1.0
    return model


@pytest.fixture(scope="module")
def senet_variables():
    if not (SENET / "se_model.ckpt.index").is_file():
        pytest.skip(f"no released senet in {SENET}")
    return TensorBundle(SENET).read()


def reference_statistics(network: ContextAggregationNetwork, wave: torch.Tensor, padding_positions: bool = True):
    """Per-layer (mean, var) [B, W] of ``"input"`` normalisation on the whole of ``wave`` [B, T],
    layer by layer in float64: ``layer_output`` (the authors' padded reshape) then var_mean over
    everything it returns; ``padding_positions=False`` takes them over the T real positions only
    (what the authors' graph does *not* do)."""
    net = copy.deepcopy(network).double()
    x = wave.double().unsqueeze(1) * net.wave_scale
    length = x.shape[-1]
    statistics = []
    with torch.no_grad():
        for conv, norm, act in net.layers():
            y = net.layer_output(conv, x) if padding_positions else conv(x)
            var, mean = torch.var_mean(y, dim=-1, correction=0)
            statistics.append((mean, var))
            scale, shift = norm.affine_for(mean, var)
            x = act(y[..., :length] * scale.unsqueeze(-1) + shift.unsqueeze(-1))
    return statistics


def assert_statistics_close(measured, expected, rtol=1e-5):
    assert len(measured) == len(expected)
    for k, ((mean, var), (mean_ref, var_ref)) in enumerate(zip(measured, expected)):
        assert mean.shape == mean_ref.shape and var.shape == var_ref.shape, k
        std = var_ref.sqrt()
        mean_error = ((mean.double() - mean_ref).abs() / (std + 1e-12)).max().item()
        var_error = ((var.double() - var_ref).abs() / (var_ref + 1e-20)).max().item()
        assert mean_error < rtol and var_error < 10 * rtol, (k, mean_error, var_error)


# ---- parity with the authors' graphs ------------------------------------------------------------

@needs_senet
@needs_data
@pytest.mark.parametrize("name,start,length", [
    ("p232_414.wav", 0, None),      # a whole file, even length (27832)
    ("p257_152.wav", 0, None),      # a whole file, odd length (25117)
    ("p232_414.wav", 12000, 3001),  # shorter than the largest dilation: padding positions weigh most
])
def test_converted_senet_equals_the_authors_graph(released, senet_variables, name, start, length):
    wave = read_noisy(name)
    wave = wave[start:] if length is None else wave[start:start + length]
    expected = reference.senet(wave, senet_variables)
    with torch.inference_mode():
        out = released(torch.from_numpy(wave)[None])[0].numpy()
    assert out.shape == wave.shape and out.dtype == np.float32
    assert np.abs(out - expected).max() < 1e-5, np.abs(out - expected).max()
    assert np.abs(expected - wave).max() > 0.01  # it does something: the comparison is not vacuous
    if length is not None and length < 4096:
        # the padding positions of the authors' reshape matter: leaving them out of the
        # statistics gives a measurably different output
        statistics = [(m.float(), v.float()) for m, v in
                      reference_statistics(released.network, torch.from_numpy(wave)[None], padding_positions=False)]
        with torch.inference_mode():
            without = released.network(torch.from_numpy(wave)[None], statistics)[0].numpy()
        assert np.abs(without - expected).max() > 1e-3


@needs_lossnet
@needs_data
@pytest.mark.parametrize("length", [16000, 12345])
def test_converted_loss_network_equals_the_authors_graph(length):
    """``FeatureLossNet(padding="tf_same")`` with the converted weights, batch of 2 real signals:
    every one of the 14 layers equals the NumPy graph (batch statistics as in the authors'
    training; the moving averages too)."""
    bundle = TensorBundle(LOSSNET)
    variables = bundle.read([n for n in bundle.names() if n.startswith("loss_conv_")])
    state, init_args = loss_network_state_dict(bundle)
    wave = np.stack([read_noisy("p232_414.wav")[:length], read_noisy("p257_152.wav")[2000:2000 + length]])
    for normalization, batch_statistics in [("batch", True), ("running", False)]:
        net = FeatureLossNet(**{**init_args, "normalization": normalization})
        net.load_state_dict(state)
        net.eval()
        with torch.no_grad():
            features = net.features(torch.from_numpy(wave))
        expected = reference.lossnet(wave, variables, batch_statistics=batch_statistics)
        assert len(features) == len(expected) == 14
        for m, (ours, theirs) in enumerate(zip(features, expected)):
            theirs = theirs[:, 0].transpose(0, 2, 1)  # [B, 1, T_m, C] -> [B, C, T_m]
            assert ours.shape == theirs.shape, (m, ours.shape, theirs.shape)
            error = np.abs(ours.numpy() - theirs).max() / np.abs(theirs).max()
            assert error < 1e-5, (normalization, m, error)


@needs_lossnet
def test_loss_network_card_holds_the_conversion():
    folder = PROJECT_ROOT / "hub_cards" / "feature-loss-net-germain2019"
    if not (folder / "model.safetensors").is_file():
        pytest.skip(f"{folder}/model.safetensors is produced on set-up by `zoo convert`")
    from zoo.models.feature_loss import load_feature_loss_net

    net = load_feature_loss_net(str(folder))
    state, _ = loss_network_state_dict(TensorBundle(LOSSNET))
    ours = net.state_dict()
    assert set(state) <= set(ours)
    for key, value in state.items():
        assert torch.equal(ours[key], value), key


# ---- the long-input path ------------------------------------------------------------------------

class _CountingStatistics:
    """Wraps ``measure_input_statistics`` to count the passes and calls."""

    def __init__(self, model, monkeypatch):
        self.calls = 0
        original = model.measure_input_statistics

        def counted(blocks):
            self.calls += 1
            return original(blocks)

        monkeypatch.setattr(model, "measure_input_statistics", counted)


@needs_data
@pytest.mark.parametrize("long_input_model", ["released", "reduced"], indirect=True)
def test_chunked_enhance_equals_whole_signal(long_input_model, monkeypatch):
    """3.1 s of real speech in 0.5 s chunks (statistics measured in passes, then streamed)
    equals the whole-signal output (one block at the default 30 s chunk)."""
    released = long_input_model
    wave = read_noisy("p257_013.wav")  # 50211 samples
    whole = released.enhance(wave, 16000)
    with torch.inference_mode():
        direct = released(torch.from_numpy(wave)[None])[0].numpy()
    assert np.abs(whole - direct).max() < 1e-6
    counter = _CountingStatistics(released, monkeypatch)
    chunked = released.enhance(wave, 16000, chunk_seconds=0.5)
    assert counter.calls == 1  # the long-input path was taken
    assert chunked.shape == wave.shape and chunked.dtype == wave.dtype
    assert np.abs(chunked - whole).max() < 1e-5, np.abs(chunked - whole).max()
    assert isinstance(released.stream(), WholeSignalStream)


@needs_data
def test_chunked_enhance_file_on_a_float_wav_equals_whole_signal(long_input_model, monkeypatch, tmp_path):
    """A float32 WAV through enhance_file in 0.4 s chunks (the file re-read for each statistics
    pass) equals in-memory whole-signal processing, and stays float32."""
    released = long_input_model
    wave = read_noisy("p232_414.wav")  # 27832 samples, 1.7 s
    src, dst = tmp_path / "noisy.wav", tmp_path / "enhanced.wav"
    sf.write(str(src), wave, 16000, subtype="FLOAT")
    counter = _CountingStatistics(released, monkeypatch)
    released.enhance_file(src, dst, chunk_seconds=0.4)
    assert counter.calls == 1
    assert sf.info(str(dst)).subtype == "FLOAT"
    out, rate = sf.read(str(dst), dtype="float32")
    assert rate == 16000 and out.shape == wave.shape
    whole = released.enhance(wave, 16000)
    assert np.abs(out - whole).max() < 1e-5, np.abs(out - whole).max()


@needs_data
def test_chunked_enhance_at_22050_hz_equals_whole_signal(long_input_model, monkeypatch):
    """At 22.05 kHz (resampled to 16 kHz and back around the network, statistics measured on the
    resampled stream) chunked equals whole."""
    released = long_input_model
    from zoo.audio import resample

    wave16 = read_noisy("p232_414.wav")
    wave = resample(torch.from_numpy(wave16)[None], 16000, 22050)[0].numpy()  # 38353 samples at 22.05 kHz
    whole = released.enhance(wave, 22050)
    counter = _CountingStatistics(released, monkeypatch)
    chunked = released.enhance(wave, 22050, chunk_seconds=0.5)
    assert counter.calls == 1
    assert chunked.shape == wave.shape
    assert np.abs(chunked - whole).max() < 1e-4, np.abs(chunked - whole).max()
    assert np.abs(whole - wave).max() > 0.01


# ---- measure_statistics -------------------------------------------------------------------------

@needs_data
@pytest.mark.parametrize("start,length,block", [
    (9000, 3001, 1000),  # the whole signal shorter than the largest dilation (4096)
    (5000, 5000, 977),  # blocks smaller than the largest dilation
    pytest.param(5000, 5000, 1500, marks=pytest.mark.slow),
])
def test_measure_statistics_of_the_released_network(released, start, length, block):
    """All 14 released layers; blocks smaller than the largest dilation."""
    wave = torch.from_numpy(read_noisy("p232_414.wav")[start:start + length])[None]
    measured = released.network.measure_statistics(lambda: split_blocks(wave, block))
    assert_statistics_close(measured, reference_statistics(released.network, wave))
    with torch.inference_mode():  # and the output with them is the whole-signal output
        assert torch.allclose(released.network(wave, measured), released.network(wave), atol=1e-5, rtol=0)


@needs_data
@pytest.mark.parametrize("length,block", [(1001, 3), (1001, 20), (777, 50), (40, 7)])
def test_measure_statistics_small_network(length, block):
    """A narrower input-normalised CAN (dilations up to 64, trained-looking normalisation
    parameters) on a batch of 2 real signals: blocks much smaller than the dilations, lengths
    with padding positions at every layer, a signal shorter than most dilations."""
    torch.manual_seed(0)
    net = ContextAggregationNetwork(8, (1, 2, 4, 8, 16, 32, 64, 1), normalization="input", norm_eps=1e-3)
    _randomise_normalisation(net)
    net.eval()
    wave = torch.from_numpy(np.stack([read_noisy("p232_414.wav")[8000:8000 + length],
                                      read_noisy("p257_152.wav")[5000:5000 + length]]))
    measured = net.measure_statistics(lambda: split_blocks(wave, block))
    assert measured[0][0].shape == (2, 8)
    expected = reference_statistics(net, wave)
    assert_statistics_close(measured, expected, rtol=1e-4)
    # the rows are kept apart
    assert not torch.allclose(expected[3][1][0], expected[3][1][1], rtol=1e-2)


def _randomise_normalisation(net: ContextAggregationNetwork, seed: int = 1) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, norm, _ in net.layers():
            norm.alpha.fill_(0.5 + torch.rand((), generator=generator).item())
            norm.beta.fill_(0.5 + torch.rand((), generator=generator).item())
            norm.bn.bias.copy_(torch.randn(norm.bn.bias.shape, generator=generator) * 0.3)
            norm.bn.weight.copy_(1 + torch.randn(norm.bn.weight.shape, generator=generator) * 0.1)


# ---- normalization="calibrated" -----------------------------------------------------------------

@needs_data
def test_calibrated_normalisation_trains_like_input_and_infers_like_batch():
    torch.manual_seed(0)
    dilations = (1, 2, 4, 8, 1)
    model = FeatureLossCAN(width=8, dilations=dilations, normalization="calibrated", norm_eps=1e-3)
    net = model.network
    _randomise_normalisation(net)
    wave = torch.from_numpy(np.stack([read_noisy("p232_414.wav")[8000:10001], read_noisy("p257_152.wav")[4000:6001],
                                      read_noisy("p257_013.wav")[20000:22001]]))

    # training: each row normalised with its own statistics, like "input"
    as_input = ContextAggregationNetwork(8, dilations, normalization="input", norm_eps=1e-3)
    as_input.load_state_dict(net.state_dict())
    model.train()
    with torch.no_grad():
        trained = net(wave)
        for row in range(3):
            alone = as_input(wave[row:row + 1])[0]
            assert torch.allclose(trained[row], alone, atol=1e-5 * alone.abs().max().item(), rtol=0), row
    # ... and the running statistics move towards the mean of the per-row statistics
    statistics = reference_statistics(net, wave)
    for (conv, norm, _), (mean, var) in zip(net.layers(), statistics):
        assert int(norm.bn.num_batches_tracked) == 1
        assert torch.allclose(norm.bn.running_mean.double(), 0.1 * mean.mean(0), rtol=1e-4, atol=1e-6)
        assert torch.allclose(norm.bn.running_var.double(), 0.9 + 0.1 * var.mean(0), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        for _ in range(30):  # 30 more steps on the same batch: exponential averages with momentum 0.1
            net(wave)
    kept = 0.9**31
    for (_, norm, _), (mean, var) in zip(net.layers(), statistics):
        assert torch.allclose(norm.bn.running_mean.double(), (1 - kept) * mean.mean(0), rtol=1e-4, atol=1e-6)
        assert torch.allclose(norm.bn.running_var.double(), kept + (1 - kept) * var.mean(0), rtol=1e-4, atol=1e-6)

    # inference: the running statistics, as the "batch" network's eval path with the same buffers
    model.eval()
    as_batch = ContextAggregationNetwork(8, dilations, normalization="batch", norm_eps=1e-3).eval()
    as_batch.load_state_dict(net.state_dict())
    with torch.no_grad():
        inferred = net(wave)
        assert torch.allclose(inferred, as_batch(wave), atol=1e-6 * inferred.abs().max().item(), rtol=0)
        running = [(n.bn.running_mean.expand(3, -1), n.bn.running_var.expand(3, -1)) for _, n, _ in net.layers()]
        assert torch.allclose(inferred, as_input(wave, running), atol=1e-5 * inferred.abs().max().item(), rtol=0)
        per_row = net.forward_with_input_statistics(wave)  # leaves the running statistics alone
        assert (inferred - per_row).abs().max() > 1e-3 * inferred.abs().max()  # not the per-row path
    assert [int(n.bn.num_batches_tracked) for _, n, _ in net.layers()] == [31] * len(dilations)  # eval: no update

    # ... and it streams (OverlapStream), chunked equal to whole
    assert not model.needs_input_statistics and isinstance(model.stream(), OverlapStream)
    long_wave = read_noisy("p257_013.wav")[:20000]
    whole = model.enhance(long_wave, 16000)
    chunked = model.enhance(long_wave, 16000, chunk_seconds=0.01)  # 160-sample chunks, context 16
    assert np.abs(chunked - whole).max() < 1e-5 * max(np.abs(whole).max(), 1e-3)
    with torch.no_grad():
        direct = net(torch.from_numpy(long_wave)[None])[0].numpy()
    assert np.abs(whole - direct).max() < 1e-5 * max(np.abs(whole).max(), 1e-3)


# ---- bounded memory -----------------------------------------------------------------------------

_MEMORY_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, "tests")
    import torch
    from test_released_can import reduced_release

    torch.set_num_threads(1)  # as in the test module (2 contended cores)

    short, src, dst, senet = sys.argv[1:5]
    model = reduced_release(Path(senet))  # W=64, input-normalised, dilations 1, 4096, 1
    model.enhance(np.zeros(40000, np.float32), 16000, chunk_seconds=1.0)  # warm-up: thread pools, allocator
    # VmHWM, not ru_maxrss: across fork+exec ru_maxrss keeps the parent's (pytest's) peak
    peak = lambda: int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024
    before = peak()
    model.enhance_file(short, dst, chunk_seconds=10)  # 1 minute
    after_short = peak()
    model.enhance_file(src, dst, chunk_seconds=10, overwrite=True)  # 10 minutes, over the 1-minute output
    print(json.dumps({"before": before, "after_short": after_short, "after": peak(),
                      "width": model.network.body[0].out_channels}))
""")


@pytest.mark.slow
@needs_senet
@needs_data
def test_ten_minute_file_streams_in_bounded_memory(tmp_path):
    """A 10-minute file (real speech, tiled) through enhance_file with 10 s chunks: the input's
    statistics are measured in passes that re-read the file and the output streams. The peak RSS
    grows by far less than one W=64 activation of the whole file would take (measured: 333 MB
    against 2.46 GB; the passes' float64 sums and the block buffers make it about 8 block-sized
    activations), and by nothing more than after a 1-minute file: it does not grow with the length."""
    rate, seconds = 16000, 600
    pieces, total = [], 0
    names = sorted(p.name for p in NOISY.glob("*.wav"))
    while total < rate * seconds:
        for name in names:
            pieces.append(read_noisy(name))
            total += len(pieces[-1])
    wave = np.concatenate(pieces)[:rate * seconds]
    short, src, dst = tmp_path / "minute.wav", tmp_path / "long.wav", tmp_path / "long-enhanced.wav"
    sf.write(str(short), wave[:rate * 60], rate, subtype="FLOAT")
    sf.write(str(src), wave, rate, subtype="FLOAT")
    del pieces, wave
    result = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(short), str(src), str(dst), str(SENET)],
                            capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    whole_activations = report["width"] * rate * seconds * 4  # one W=64 float32 activation of the whole file
    growth = report["after"] - report["before"]
    assert growth < whole_activations / 4, (report, whole_activations)
    assert report["after"] - report["after_short"] < 64 * 2**20, report  # ten times longer, no higher peak
    out, out_rate = sf.read(str(dst), dtype="float32")
    assert out_rate == rate and out.shape == (rate * seconds,)
    assert np.isfinite(out).all() and np.abs(out).max() > 1e-3
