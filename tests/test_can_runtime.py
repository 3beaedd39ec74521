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


# ---- the released network's per-input statistics, whole signal (forward_with_input_statistics) ----


def _input_normalised_can(width: int = 16, seed: int = 0):
    """A CAN with ``normalization: input`` and non-trivial adaptive normalisations (random, so
    that every layer's statistics matter)."""
    from zoo.models.feature_loss import FeatureLossCAN

    torch.manual_seed(seed)
    model = FeatureLossCAN(width=width, dilations=(1, 2, 4, 8, 16, 1), normalization="input", norm_eps=1e-3,
                           wave_scale=1.0, loss_network="feature-loss-net").eval()
    with torch.no_grad():
        for _, norm, _ in model.network.layers():
            norm.alpha.fill_(0.7)
            norm.beta.fill_(0.5)
            norm.bn.bias.normal_(0, 0.2)
    return model


@pytest.mark.parametrize("length", [12345, 20000, 16 * 1000 + 3])
def test_input_statistics_runtime_equals_the_network_forward(speech, length):
    """fp32 to float rounding and bf16 within 40 dB, for lengths that are not multiples of any
    dilation (the padding positions of the authors' reshape count in the statistics), with two
    rows of different signals (each row its own statistics) and two workers."""
    from zoo.models.can_runtime import forward_with_input_statistics

    model = _input_normalised_can()
    wave = torch.stack([speech[:length], speech[-length:] * 0.3])
    with torch.inference_mode():
        reference = model.network(wave)
        fp32 = forward_with_input_statistics(model.network, wave, mode="fp32", workers=2, rows=1000)
        bf16 = forward_with_input_statistics(model.network, wave, mode="bf16", workers=2, rows=1000)
    assert (fp32 - reference).abs().max() < 1e-5 * reference.abs().max()
    assert snr_db(reference, bf16) > 40
    # rows of their own: the second row alone gives the same as in the pair
    with torch.inference_mode():
        alone = forward_with_input_statistics(model.network, wave[1:], mode="fp32")
    assert (alone[0] - fp32[1]).abs().max() < 1e-5 * fp32[1].abs().max()


def test_runtime_option_chooses_the_path_and_keeps_the_output(speech):
    """``runtime``: auto takes the fast path for inference on the CPU with per-input statistics,
    never under autograd; torch never; bf16 within 40 dB. ``enhance`` gives the same either way."""
    model = _input_normalised_can()
    wave = speech[None, :20000]
    with torch.inference_mode():
        assert model._runtime_mode(wave, None) == "fp32"
        assert model._runtime_mode(wave, [(torch.zeros(16), torch.ones(16))] * 6) is None  # blocks of a long input
    assert model._runtime_mode(wave, None) is None  # autograd on: the network's forward (training)
    model.runtime = "torch"
    torch_path = model.enhance(speech[:20000].numpy(), 16000)
    model.runtime = "auto"
    auto = model.enhance(speech[:20000].numpy(), 16000)
    model.runtime = "bf16"
    bf16 = model.enhance(speech[:20000].numpy(), 16000)
    assert abs(auto - torch_path).max() < 1e-5 * abs(torch_path).max()
    assert snr_db(torch.from_numpy(torch_path), torch.from_numpy(bf16)) > 40
    with pytest.raises(ValueError, match="runtime must be one of auto, torch, fp32, bf16"):
        type(model)(width=8, runtime="fast")


def test_runtime_is_a_load_option_of_cards_written_before_it(tmp_path):
    """Configs written before the option existed (every published card) still take it."""
    import json

    import zoo
    from zoo.hub import ModelLoadError, save_pretrained

    folder = save_pretrained(_input_normalised_can(width=8), tmp_path / "card")
    config = json.loads((folder / "config.json").read_text())
    del config["init_args"]["runtime"]
    (folder / "config.json").write_text(json.dumps(config))
    assert zoo.load(f"{folder}/", runtime="bf16").runtime == "bf16"
    assert zoo.load(f"{folder}/").runtime == "auto"
    with pytest.raises(ModelLoadError, match="has no option colour"):
        zoo.load(f"{folder}/", colour="red")
