"""The one device picker: `auto` is CUDA, then MPS, then CPU; an explicit choice that this
machine lacks is one clear error naming the setting that asked for it."""

from __future__ import annotations

import torch

from tfcli.errors import TfcliError
from tfcli.recipe.schema import Device


def pick_device(
    pref: Device | str,
    local_rank: int = 0,
    *,
    setting: str = "train.device",
    error: type[TfcliError] = TfcliError,
) -> torch.device:
    """The torch device for `pref` ("auto", "cpu", "cuda", "mps"); `setting` names the recipe
    key or flag that asked for it in the error (e.g. "--device")."""
    pref = Device(pref)
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if pref is Device.CUDA and not cuda:
        raise error(
            f"{setting} is cuda but PyTorch sees no CUDA GPU (torch {torch.__version__}); "
            "install a CUDA build of torch or use --device cpu"
        )
    if pref is Device.MPS and not mps:
        raise error(f"{setting} is mps but MPS is not available here; use --device cpu")
    if pref is Device.CUDA or (pref is Device.AUTO and cuda):
        return torch.device("cuda", local_rank)
    if pref is Device.MPS or (pref is Device.AUTO and mps):
        return torch.device("mps")
    return torch.device("cpu")
