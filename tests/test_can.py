import json


def test_widened_network_computes_the_same_output_and_breaks_symmetry():
    """Net2WiderNet (ContextAggregationNetwork.widened): same output in eval and training mode,
    and copies of a channel receive different gradients."""
    import torch
    from zoo.models.can import ContextAggregationNetwork

    torch.manual_seed(0)
    narrow = ContextAggregationNetwork(6, (1, 2, 4, 1))
    for _ in range(3):
        narrow(torch.randn(2, 2000) * 0.1)  # running statistics away from their start
    for module in narrow.modules():
        if hasattr(module, "beta") and isinstance(module.beta, torch.nn.Parameter):
            module.beta.data.fill_(0.5)
    wide = narrow.widened(11)
    assert wide.body[0].out_channels == 11 and wide.receptive_field == narrow.receptive_field
    x = torch.randn(3, 3000) * 0.1
    for mode in (True, False):
        narrow.train(mode), wide.train(mode)
        assert torch.allclose(narrow(x), wide(x), atol=1e-3 * narrow(x).abs().max().item())
    wide.train()
    wide(x).pow(2).mean().backward()
    grad = wide.body[0].weight.grad  # incoming weights of the first layer's channels
    first = wide.body[0].weight.detach()
    for j in range(6, 11):  # channel j copies the narrow channel whose incoming weights it equals
        origin = int(torch.nonzero((narrow.body[0].weight.detach() == first[j]).all(dim=(1, 2)))[0])
        assert not torch.allclose(grad[j], grad[origin])
    try:
        narrow.widened(4)
    except ValueError as error:
        assert "at least 6" in str(error)
    else:
        raise AssertionError("narrowing must be refused")


def test_starting_from_published_w32_weights_at_the_papers_width():
    """``StartFrom("can-l1", widen=True)`` into a W=64 recipe: the network the run starts from
    enhances real noisy speech as the published W=32 weights do (feature-loss-can went from W=32 to
    W=64 this way; can-l1 is still W=32)."""
    import numpy as np
    import pytest
    import soundfile as sf
    import torch

    import zoo
    from conftest import EXAMPLE_NOISY
    from zoo.models.can import ContextAggregationDenoiser
    from zoo.models.wiener import WienerFilter
    from zoo.train import StartFrom

    published = zoo.load("can-l1")
    assert published.hparams.width == 32
    wide = ContextAggregationDenoiser(**{**published.hparams, "width": 64})
    start = StartFrom("can-l1", widen=True)
    start.setup(None, wide, "fit")
    assert wide.network.body[0].out_channels == 64
    assert start.state_dict()["width"] == 32 and start.state_dict()["widened_to"] == 64
    assert start.state_dict()["global_step"] == json.loads((published.zoo_folder / "training.json").read_text())[
        "global_step"]  # what the run starts from, for the card of what it becomes
    noisy = torch.from_numpy(sf.read(str(EXAMPLE_NOISY), dtype="float32")[0][None, : 3 * 16000])
    wide.eval()
    with torch.no_grad():
        theirs, ours = published(noisy), wide(noisy)
    error = float((ours - theirs).pow(2).mean() / theirs.pow(2).mean())
    assert error < 1e-8, error  # the same output, to float rounding
    assert not np.allclose(wide.network.body[3].weight[:, 32:].detach(), 0)  # the new channels are used

    narrow = ContextAggregationDenoiser(**{**published.hparams, "width": 16})
    with pytest.raises(ValueError, match="width 16 is below the published 32"):
        StartFrom("can-l1", widen=True).setup(None, narrow, "fit")
    with pytest.raises(ValueError, match="WienerFilter cannot be widened .*drop widen"):
        StartFrom("wiener", widen=True).setup(None, WienerFilter(), "fit")
