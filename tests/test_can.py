

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
