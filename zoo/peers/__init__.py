"""Peers: published denoisers the zoo compares itself with, not zoo models.

A peer is a :class:`~zoo.DenoiserModule` so that it goes through the same waveform path as
every zoo model (``enhance``, ``enhance_file``, ``zoo eval``, the benchmarks), but it is not in
the registry: ``zoo.load`` and ``zoo list`` do not know it, it has no card and nothing of it is
published. Its runtime is an optional dependency, imported only when the peer is built.
"""
from __future__ import annotations

import difflib

#: peer name -> ``"module:Class"`` under ``zoo.peers`` (imported lazily: runtimes are optional).
PEERS: dict[str, str] = {
    "deepfilternet3": "deepfilternet:DeepFilterNet3",
}


class UnknownPeerError(KeyError):
    """A peer name that is not in :data:`PEERS`."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


def load_peer(name: str, **kwargs):
    """The peer called ``name``, ready for inference (eval mode, CPU); ``kwargs`` go to its class.

    >>> model = load_peer("deepfilternet3")
    >>> clean = model.enhance(noisy, sample_rate=16000)
    """
    if name not in PEERS:
        close = difflib.get_close_matches(name, sorted(PEERS), n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UnknownPeerError(f"unknown peer '{name}'.{hint} Known peers: {', '.join(sorted(PEERS))}")
    import importlib

    module_name, class_name = PEERS[name].split(":")
    cls = getattr(importlib.import_module(f"{__name__}.{module_name}"), class_name)
    return cls(**kwargs).eval()


__all__ = ["PEERS", "UnknownPeerError", "load_peer"]
