"""The torch-int8 variant: dynamic int8 quantization of every nn.Linear (CPU only).

torch.ao's eager dynamic quantization still runs in torch 2.13 but announces its deprecation on
every call; torchao, its successor, is partly broken on this CPU (STACK.md). The warnings are
silenced here and nowhere else, so a change in behaviour still shows up everywhere else.
"""
from __future__ import annotations

import warnings


def quantize_torch_int8(model):
    """Replace the model's Linear layers with dynamically quantized int8 ones (weights int8, per tensor).

    Returns the quantized model (a new module tree; `model` may share its non-Linear parts).
    """
    import torch

    with warnings.catch_warnings():
        # "torch.ao.quantization is deprecated" and "quantized tensor creation functions ..."
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\..*")
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r".*quantized tensor creation functions.*")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
