"""The CAN and the deep feature loss as the feature-loss paper defines them (sec. II, appendix)."""
from __future__ import annotations

import pytest
import torch

from zoo.models.can import PAPER_DILATIONS, AdaptiveNorm, ContextAggregationDenoiser, ContextAggregationNetwork
from zoo.models.feature_loss import DeepFeatureLoss, FeatureLossCAN, FeatureLossNet


def test_can_layers_match_the_paper():
    network = ContextAggregationNetwork()
    convs = [m for m in network.body if isinstance(m, torch.nn.Conv1d)]
    assert len(convs) == 14  # Lambda^1 .. Lambda^14; with input and output: 16 layers
    assert [c.dilation[0] for c in convs] == [2**k for k in range(13)] + [1]
    assert all(c.bias is None and c.kernel_size == (3,) and c.out_channels == 64 for c in convs)
    assert network.output.kernel_size == (1,) and network.output.bias is not None
    norms = [m for m in network.body if isinstance(m, AdaptiveNorm)]
    assert len(norms) == 14 and all(float(n.alpha) == 1.0 and float(n.beta) == 0.0 for n in norms)
    slopes = {m.negative_slope for m in network.body if isinstance(m, torch.nn.LeakyReLU)}
    assert slopes == {0.2}
    assert network.receptive_field == 2**14 + 1
    x = torch.randn(2, 5000)
    assert network(x).shape == x.shape  # zero padding keeps length N


def test_adaptive_norm_is_alpha_x_plus_beta_bn():
    norm = AdaptiveNorm(4).train()
    x = torch.randn(3, 4, 50)
    assert torch.allclose(norm(x), x)  # alpha=1, beta=0 at init: identity
    norm.alpha.data.fill_(0.5)
    norm.beta.data.fill_(2.0)
    expected = 0.5 * x + 2.0 * torch.nn.functional.batch_norm(x, None, None, training=True)
    assert torch.allclose(norm(x), expected, atol=1e-5)


def test_width_and_depth_are_configuration():
    small = ContextAggregationDenoiser(width=16, dilations=[1, 2, 4, 1])
    assert small.context_samples == 8 and small.network.receptive_field == 17
    assert dict(small.hparams)["dilations"] == [1, 2, 4, 1]


def test_feature_loss_net_widths_decimation_and_receptive_field():
    net = FeatureLossNet().eval()
    convs = [layer[0] for layer in net.layers]
    assert len(convs) == 14
    assert [c.out_channels for c in convs] == [32] * 5 + [64] * 5 + [128] * 4
    assert all(c.bias is None for c in convs)
    x = torch.randn(1, 2**16)
    features = net.features(x)
    assert [f.shape[-1] for f in features] == [2**16 // 2**m for m in range(1, 15)]
    logits = net(x)
    assert [l.shape for l in logits] == [torch.Size([1, 18]), torch.Size([1, 5])]
    # Receptive field of the last layer before decimation: 2^15 - 1 samples.
    x = torch.zeros(1, 2**17, requires_grad=True)
    h = x.unsqueeze(1)
    for i, layer in enumerate(net.layers):
        h = layer(h)
        if i < 13:
            h = h[..., ::2]
    h[0, :, h.shape[-1] // 2].sum().backward()
    support = (x.grad[0] != 0).nonzero()
    assert int(support.max() - support.min() + 1) == 2**15 - 1


def test_feature_loss_weights_are_one_then_inverse_relative_losses():
    torch.manual_seed(0)
    net = FeatureLossNet(n_layers=6).eval()
    loss = DeepFeatureLoss(net, n_layers=6, warmup_epochs=3)
    clean, enhanced = torch.randn(2, 4096), torch.randn(2, 4096)
    assert torch.equal(loss.weights, torch.ones(6))
    first = loss(enhanced, clean, epoch=0, training=True)
    assert torch.allclose(first, loss.layer_distances(enhanced, clean).sum())
    loss.end_epoch(0)
    assert torch.equal(loss.weights, torch.ones(6))  # still warming up
    distances = []
    for _ in range(2):  # the last warm-up epoch (index 2) is measured
        loss(enhanced, clean, epoch=2, training=True)
        distances.append(loss.layer_distances(enhanced, clean))
    loss.end_epoch(2)
    means = torch.stack(distances).mean(0)
    assert bool(loss.weights_fixed)
    assert torch.allclose(loss.weights, means.mean() / means, rtol=1e-5)
    # After the switch every layer contributes equally at the measured operating point.
    assert torch.allclose(loss.weights * means, means.mean().expand(6), rtol=1e-5)
    fixed = loss.weights.clone()
    loss(enhanced, clean, epoch=5, training=True)
    loss.end_epoch(5)
    assert torch.equal(loss.weights, fixed)


def test_feature_loss_schedule_survives_a_checkpoint():
    model = FeatureLossCAN(width=4, dilations=[1, 2, 1])
    model.feature_loss.weights.copy_(torch.arange(1.0, 7.0))
    model.feature_loss.weights_fixed.fill_(True)
    state = model.state_dict()
    assert "feature_loss.weights" in state and "feature_loss.weights_fixed" in state
    assert not any(k.startswith("feature_loss.net") for k in state)  # the loss net is not the model
    fresh = FeatureLossCAN(width=4, dilations=[1, 2, 1])
    fresh.load_state_dict(state)
    assert torch.equal(fresh.feature_loss.weights, torch.arange(1.0, 7.0)) and bool(fresh.feature_loss.weights_fixed)


@pytest.mark.parametrize("loss_type", ["l1", "l2"])
def test_a_short_real_training_run_lowers_the_loss(loss_type):
    """Real speech + real noise from ../shared/data, a real Lightning Trainer, a small CAN."""
    import lightning as L

    from zoo.data import Mixtures

    torch.manual_seed(0)
    data = Mixtures(speech=["speech/ljspeech"], noise=["noise/noisex/white.flac"], val_speech=["speech/ljspeech"],
                    val_noise=["noise/noisex/white.flac"], crop_seconds=0.5, batch_size=4, train_size=4 * 30,
                    val_size=8, snr_db=(0.0, 5.0), max_files=8)
    model = ContextAggregationDenoiser(width=16, dilations=[1, 2, 4, 8, 16, 1], loss_type=loss_type, lr=3e-3)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    with torch.no_grad():
        before = float(model.loss(model.step(batch), batch))
        identity = float(model.loss({"enhanced": batch["noisy"]}, batch))  # passing the noisy input through
    trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(model, data)
    model.eval()
    with torch.no_grad():
        after = float(model.loss(model.step(batch), batch))
    assert after < 0.8 * before, (before, after)
    # Better than doing nothing: a network whose output collapses to its bias also lowers the
    # loss from its random start, but never below the noisy input's.
    assert after < identity, (identity, after)


def test_inference_folds_the_adaptive_normalisation_into_the_convolutions():
    """Eval mode runs conv+bias+LReLU per layer (NOTES: the per-channel affine map folds into the
    convolution); the output equals the unfolded body with frozen batch statistics."""
    torch.manual_seed(0)
    network = ContextAggregationNetwork(width=8, dilations=[1, 2, 4, 1])
    for norm in (m for m in network.modules() if isinstance(m, AdaptiveNorm)):
        norm.alpha.data.uniform_(0.5, 1.5)
        norm.beta.data.uniform_(-1, 1)
        norm.bn.running_mean.uniform_(-50, 50)
        norm.bn.running_var.uniform_(10, 500)
        norm.bn.weight.data.uniform_(0.5, 2)
        norm.bn.bias.data.uniform_(-1, 1)
    network.eval()
    x = 0.1 * torch.randn(2, 3000)
    with torch.no_grad():
        unfolded = network.output(network.body(x.unsqueeze(1) * network.wave_scale)).squeeze(1) / network.wave_scale
        folded = network(x)
    assert torch.allclose(folded, unfolded, atol=1e-6 * float(unfolded.abs().max()))
    assert not torch.allclose(network.train()(x), folded)  # training uses batch statistics


def test_input_statistics_path_normalises_like_training_and_keeps_running_statistics():
    """forward_with_input_statistics is the authors' inference (slim.batch_norm left in training
    mode): the same output as the training path on that input, running statistics unchanged, and
    unlike the folded eval path when the running statistics differ from the input's."""
    torch.manual_seed(0)
    network = ContextAggregationNetwork(width=8, dilations=[1, 2, 4, 1])
    for norm in (m for m in network.modules() if isinstance(m, AdaptiveNorm)):
        norm.beta.data.fill_(0.5)
        norm.bn.running_var.fill_(1e4)
    network.eval()
    before = [m.bn.running_var.clone() for m in network.modules() if isinstance(m, AdaptiveNorm)]
    x = 0.1 * torch.randn(1, 3000)
    with torch.no_grad():
        per_input = network.forward_with_input_statistics(x)
        after = [m.bn.running_var.clone() for m in network.modules() if isinstance(m, AdaptiveNorm)]
        folded = network(x)
        training = network.train()(x)  # (this one updates the running statistics)
    assert torch.allclose(per_input, training, atol=1e-6 * float(training.abs().max()))
    assert all(torch.equal(b, a) for b, a in zip(before, after))
    assert not torch.allclose(per_input, folded, atol=1e-3 * float(folded.abs().max()))


def test_the_network_works_in_16_bit_sample_units_like_the_authors_code():
    """The authors fed int16-valued floats (scipy.io.wavfile without rescaling); zoo's API stays
    in [-1, 1] and scales inside, so the losses and Adam's eps see the same magnitudes."""
    model = ContextAggregationDenoiser(width=4, dilations=[1, 2, 1])
    assert model.network.wave_scale == 2**15
    clean, noisy = torch.zeros(1, 100), torch.full((1, 100), 0.5)
    assert float(model.loss({"enhanced": noisy}, {"clean": clean})) == pytest.approx(0.5 * 2**15)
    inside = {}
    model.network.body[0].register_forward_hook(lambda m, i, o: inside.update(input=i[0]))
    model(torch.full((1, 50), 0.25))
    assert float(inside["input"].max()) == pytest.approx(0.25 * 2**15)
