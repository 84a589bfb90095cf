"""Which device trains: CUDA if present, else Apple MPS, else CPU; and how its memory is read."""

from __future__ import annotations

import gc

import torch


def select_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on; ``device`` overrides the automatic choice.

    >>> select_device("cpu")
    device(type='cpu')
    """
    if device is not None:
        try:
            chosen = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device={device!r} is not a torch device; use 'cpu', 'cuda', 'cuda:0' or 'mps'.") from exc
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} was asked for but CUDA is not available here; use 'cpu'.")
        if chosen.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"device={device!r} was asked for but MPS is not available here; use 'cpu'.")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so that wall-clock timings measure the work, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int | None:
    """The device's peak allocated bytes since the last reset; None where torch cannot tell."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA's OutOfMemoryError and the plain RuntimeError other backends raise."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def release_memory(device: torch.device) -> None:
    """Give cached blocks back after an out-of-memory trial so the next trial starts clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps":
        torch.mps.empty_cache()
