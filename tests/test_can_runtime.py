"""The fast CAN runtime (zoo.models.can_runtime) against the network's own eval forward, on real
speech through the published W=64 weights: fp32 to float rounding, bf16 within 40 dB SNR."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo.data.files import DATA_ROOT
from zoo.models.can_runtime import CANRuntime, fast_can

SPEECH = DATA_ROOT / "voicebank-demand-subset" / "noisy_testset_wav"


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    return float(10 * torch.log10(reference.pow(2).sum() / (reference - estimate).pow(2).sum()))


@pytest.fixture(scope="module")
def network():
    """The published W=64 CAN with batch normalisation (``feature-loss-can-cpu``; earlier
    checkouts publish it as ``feature-loss-can``), eval mode."""
    import zoo

    for name in ("feature-loss-can-cpu", "feature-loss-can"):
        try:
            net = zoo.load(name).network.eval()
        except Exception:  # noqa: BLE001 - a name the registry does not have in this checkout
            continue
        if getattr(net, "normalization", "batch") != "input" and net.body[0].out_channels == 64:
            return net
    pytest.skip("no published W=64 batch-normalised CAN in this checkout")


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """Real noisy speech, 16 kHz: VoiceBank-DEMAND test files joined to 5.5 s, [T]."""
    from zoo.audio import read_audio

    pieces, total = [], 0
    for path in sorted(SPEECH.glob("*.wav"))[:6]:
        wave, rate = read_audio(path)
        assert rate == 16000
        pieces.append(wave[0])
        total += wave.shape[-1]
        if total >= 88000:
            break
    return torch.cat(pieces)[:88000]


def reference(network, wave: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return network(wave)


@pytest.fixture(scope="module")
def long_case(network, speech):
    """4.1 s, an odd length just over 4 receptive fields: ``workers=2`` splits it in two pieces."""
    wave = speech[None, :65541]
    return wave, reference(network, wave)


def test_fp32_equals_the_eval_forward_on_speech(network, long_case):
    """One piece and two pieces in parallel (time split with the receptive field's context)."""
    wave, expected = long_case
    for workers in (1, 2):
        out = CANRuntime.from_network(network, mode="fp32", workers=workers)(wave)
        assert out.shape == wave.shape and out.dtype == wave.dtype
        assert (out - expected).abs().max() < 1e-4 * expected.abs().max(), workers
    with torch.inference_mode():  # as DenoiserModule.enhance calls it (thread-local in the workers)
        out = CANRuntime.from_network(network, mode="fp32", workers=2)(wave)
    assert (out - expected).abs().max() < 1e-4 * expected.abs().max()


def test_bf16_within_40_db_of_the_eval_forward(network, long_case):
    wave, expected = long_case
    out = CANRuntime.from_network(network, mode="bf16", workers=2)(wave)
    assert snr_db(expected, out) >= 40


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
def test_short_odd_lengths_and_batches(network, speech, mode):
    """Inputs shorter than the receptive field (2^14 + 1) and than one block, odd lengths, a batch
    of 2 rows of different speech, and blocks small enough that every ring wraps many times."""
    two = torch.stack([speech[:17000], speech[30000:47000]])
    cases = [(speech[None, 5000:5001], 1024), (speech[None, :7], 64), (speech[None, 1000:2023], 256),
             (two[:, :16385], 512), (two[:, :3001], 128)]
    for wave, block in cases:
        expected = reference(network, wave)
        for workers in (1, None) if wave.shape[0] > 1 else (None,):  # 1: the batch as rows of one pipeline
            out = CANRuntime.from_network(network, mode=mode, block=block, workers=workers)(wave)
            assert out.shape == wave.shape
            if mode == "fp32":
                assert (out - expected).abs().max() <= 1e-4 * expected.abs().max() + 1e-9, (wave.shape, block)
            elif wave.shape[-1] >= 1000:
                assert snr_db(expected, out) >= 40, (wave.shape, block)
            else:  # a few samples: no meaningful SNR; bf16 keeps them within a few percent
                assert (out - expected).abs().max() <= 0.05 * expected.abs().max(), (wave.shape, block)


def test_scales_and_shifts_come_from_outside_one_per_row(network, speech):
    """Per-layer folded (scale, shift) passed in, [W] for all rows or [B, W] per row (input
    statistics), against the same affine maps applied by hand after each convolution."""
    torch.manual_seed(0)
    layers = list(network.body)
    convs = layers[0::3]
    width = convs[0].out_channels
    wave = torch.stack([speech[:20001], speech[40000:60001]])
    scales = [1 + 0.1 * torch.randn(2, width) for _ in convs]
    shifts = [10 * torch.randn(2, width) for _ in convs]
    with torch.no_grad():
        x = wave.unsqueeze(1) * network.wave_scale
        for conv, scale, shift in zip(convs, scales, shifts):
            x = F.conv1d(x, conv.weight, None, dilation=conv.dilation, padding=conv.padding)
            x = F.leaky_relu(x * scale[:, :, None] + shift[:, :, None], 0.2)
        expected = network.output(x).squeeze(1) / network.wave_scale
    args = ([c.weight for c in convs], [c.dilation[0] for c in convs])
    tail = (network.output.weight, network.output.bias, network.wave_scale)
    out = fast_can(*args, scales, shifts, *tail, block=512, workers=2)(wave)
    assert (out - expected).abs().max() < 1e-4 * expected.abs().max()
    shared = fast_can(*args, [s[1] for s in scales], [s[1] for s in shifts], *tail)(wave[1:])
    assert (shared - expected[1:]).abs().max() < 1e-4 * expected.abs().max()
    with pytest.raises(ValueError, match="rows"):
        fast_can(*args, scales, shifts, *tail)(wave[:1])


def test_statistics_of_an_input_normalised_network():
    """``from_network(network, statistics)`` folds (mean, var) per row as the network's own
    ``forward(wave, statistics)`` does; without them such a network is refused."""
    import inspect

    from zoo.models.can import ContextAggregationNetwork

    if "normalization" not in inspect.signature(ContextAggregationNetwork).parameters:
        pytest.skip("this checkout's CAN has no input normalisation")
    torch.manual_seed(0)
    net = ContextAggregationNetwork(16, (1, 2, 4, 8, 1), normalization="input", wave_scale=1.0).eval()
    with torch.no_grad():
        for module in net.modules():
            if hasattr(module, "beta") and isinstance(module.beta, torch.nn.Parameter):
                module.beta.fill_(0.7)
    wave = torch.randn(2, 3001) * 0.1
    statistics = [(torch.randn(2, 16), torch.rand(2, 16) + 0.5) for _ in range(5)]
    with torch.no_grad():
        expected = net(wave, statistics)
    out = CANRuntime.from_network(net, statistics=statistics, block=64)(wave)
    assert (out - expected).abs().max() < 1e-4 * expected.abs().max()
    with pytest.raises(ValueError, match="statistics"):
        CANRuntime.from_network(net)


def test_bad_arguments():
    weight = torch.randn(4, 1, 2)
    with pytest.raises(ValueError, match="odd"):
        fast_can([weight], [1], None, None, torch.randn(1, 4, 1), torch.zeros(1))
    with pytest.raises(ValueError, match="mode"):
        fast_can([torch.randn(4, 1, 3)], [1], None, None, torch.randn(1, 4, 1), torch.zeros(1), mode="int4")
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        fast_can([torch.randn(4, 1, 3)], [1], None, None, torch.randn(1, 4, 1), torch.zeros(1))(torch.zeros(5))


def test_onnxruntime_export_of_the_folded_network(network, speech):
    """The folded network through torch.onnx.export and ONNX Runtime's CPU provider equals the
    eval forward (``zoo[onnx]``); the int8 path's accuracy is measured in benchmarks/speed.py."""
    pytest.importorskip("onnxruntime")
    from zoo.models.can_runtime import ONNXRuntimeCAN

    wave = speech[None, :20001]
    expected = reference(network, wave)
    out = ONNXRuntimeCAN(CANRuntime.from_network(network), threads=2)(wave)
    assert out.shape == wave.shape
    assert (out - expected).abs().max() < 1e-4 * expected.abs().max()
