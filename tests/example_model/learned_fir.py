"""An example of a new model family: this file, ``recipe.yaml`` beside it and the card folder that
``zoo.card_from_checkpoint`` writes after a run are all it takes (README, "Adding a model";
tests/test_example_model.py runs it end to end).

``ExampleFIR`` is a learned linear-phase-free FIR filter on the waveform: deliberately small, so
that what is shown is the contract, not a network:

- hyper-parameters are ``__init__`` arguments saved with ``save_hyperparameters()``: a
  ``config.json`` alone rebuilds the model;
- ``forward(wave)`` maps [B, T] to [B, T] at ``sample_rate``;
- ``context_samples`` (and ``hop_samples``, 1 for a sample-wise model) tell the streams how much
  context each output needs, so ``enhance`` and ``enhance_file`` are exact in blocks of any size;
- ``step`` returns what the loss needs beside ``"enhanced"`` (here the filter's own taps);
- ``loss`` returns named terms that are summed and logged as ``train/loss/NAME``;
- ``batch_keys`` names the batch keys it reads (checked against the data when a fit starts).
"""
from __future__ import annotations

import torch

import zoo
from zoo.module import DenoiserModule


@zoo.register("example-fir", card="tests/example_model/card", hub_repo="zoo-denoise/example-fir",
              summary="An example: a learned FIR filter (tests/example_model)", paper="none (an example)",
              trained_on="what its recipe says")
class ExampleFIR(DenoiserModule):
    """A learned FIR filter, identity at the start, trained with an L1 loss and a small penalty on
    the taps' energy away from the centre (a named term, to show how terms are logged)."""

    batch_keys = ("noisy", "clean")

    def __init__(self, taps: int = 31, lr: float = 1e-3, smoothness: float = 1e-3, sample_rate: int = 16000):
        super().__init__()
        if taps < 1 or taps % 2 == 0:
            raise ValueError(f"taps must be a positive odd number (a centred filter), got {taps}")
        self.save_hyperparameters()
        self.sample_rate = sample_rate
        self.filter = torch.nn.Conv1d(1, 1, taps, padding=taps // 2, bias=False)
        with torch.no_grad():  # start as the identity: a model that does no harm before training
            self.filter.weight.zero_()
            self.filter.weight[0, 0, taps // 2] = 1.0
        self.context_samples = taps // 2  # each output sample depends on taps // 2 inputs each side

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.filter(wave.unsqueeze(1)).squeeze(1)

    def step(self, batch: dict) -> dict:
        return {"enhanced": self(batch["noisy"]), "taps": self.filter.weight.flatten()}

    def loss(self, outputs: dict, batch: dict) -> dict:
        taps = outputs["taps"]
        distance = torch.arange(taps.numel(), device=taps.device) - taps.numel() // 2
        return {"l1": (outputs["enhanced"] - batch["clean"]).abs().mean(),
                "spread": self.hparams.smoothness * (taps * distance).pow(2).mean()}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
