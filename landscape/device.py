"""Device and dtype resolution shared by the library and the CLI."""

from __future__ import annotations

import torch

from landscape.errors import ConfigError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|cuda:N|mps`` into a ``torch.device``.

    ``auto`` picks CUDA when available, then MPS, then the CPU. Asking for a device that is not
    present is an error, not a silent fallback, so a benchmark never runs on the wrong hardware.
    """
    if isinstance(spec, torch.device):
        return spec
    if spec is None or spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device={spec!r} is not valid; choose auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={spec!r} asked for CUDA but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            raise ConfigError(f"device={spec!r}: only {n} CUDA device(s) are present")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"device={spec!r} asked for MPS but it is not available")
    elif device.type != "cpu":
        raise ConfigError(f"device={spec!r} is not valid; choose auto, cpu, cuda, cuda:N or mps")
    return device


def resolve_dtype(spec: str | torch.dtype) -> torch.dtype:
    """Turn ``float32|float64`` into a ``torch.dtype``."""
    if isinstance(spec, torch.dtype):
        if spec not in DTYPES.values():
            raise ConfigError(f"dtype={spec} is not supported; choose float32 or float64")
        return spec
    if spec not in DTYPES:
        raise ConfigError(f"dtype={spec!r} is not valid; choose one of {', '.join(DTYPES)}")
    return DTYPES[spec]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``'float32'``."""
    return str(dtype).replace("torch.", "")
