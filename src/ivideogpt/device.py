"""The one reading of a `device` option ("auto", "cpu", "cuda", "cuda:N") shared by every command."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`torch.device` of a device option: "auto" is CUDA when available, else the CPU.

    Raises:
        ValueError: a CUDA device is asked for but CUDA is not available.
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for but CUDA is not available")
    return dev
