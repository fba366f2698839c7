"""Reading weights into a built model: safetensors or torch files, a folder or a file, common prefixes
(``module.``, ``model.``) aligned, strict by default with a message naming missing and unexpected keys.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

__all__ = ["load_weights"]


# ----------------------------------------------------------------------------------------------- weights
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_STRIP_PREFIXES = ("module.", "model.", "_orig_mod.")


def _find_weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        for fname in _WEIGHT_FILES:
            if (path / fname).is_file():
                return path / fname
        found = sorted(p for p in path.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
        if len(found) == 1:
            return found[0]
        raise FileNotFoundError(f"{path}: expected one weights file ({', '.join(_WEIGHT_FILES)} or a single "
                                f"*{'/*'.join(_WEIGHT_SUFFIXES)}), found {[p.name for p in found] or 'none'}")
    raise FileNotFoundError(f"{path}: weights file or folder not found")


def _read_state_dict(file: Path) -> dict[str, torch.Tensor]:
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(file), device="cpu")
        else:
            sd = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign files: say which file and why
        raise ValueError(f"{file}: cannot read weights ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{file}: expected a state_dict (name -> tensor), got {type(sd).__name__}")
    return sd


def _align_prefixes(sd: dict, expected: set[str]) -> dict:
    """Strip wrapper prefixes (``module.``, ``_orig_mod.``) or add the model's own (``net.``) when that makes
    more keys match."""
    candidates = [sd]
    for pre in _STRIP_PREFIXES:
        if any(k.startswith(pre) for k in sd):
            candidates.append({k[len(pre):] if k.startswith(pre) else k: v for k, v in sd.items()})
    own = {k.split(".", 1)[0] + "." for k in expected if "." in k}
    for pre in own:
        candidates.append({pre + k: v for k, v in sd.items()})
    return max(candidates, key=lambda c: len(expected & set(c)))


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> dict:
    """Load local weights (safetensors or torch file, or a folder holding one) into ``model``. Never downloads.

    Args:
        model: the network built by :func:`endolib.models.factory.create_model`.
        path: a ``.safetensors``/``.pt``/``.pth``/``.bin`` file or a folder with ``model.safetensors`` etc.
        strict: raise on any missing, unexpected or shape-mismatched key (True); else load what matches and
            warn with the lists (e.g. ImageNet weights into a one-logit classifier).

    Returns:
        ``{"file", "missing", "unexpected", "mismatched"}`` (the key lists).

    Example:
        >>> import tempfile, os; from safetensors.torch import save_file
        >>> from endolib.models.factory import create_model
        >>> net = create_model("unet", width_mult=0.125); f = os.path.join(tempfile.mkdtemp(), "w.safetensors")
        >>> save_file(net.state_dict(), f); load_weights(net, f)["missing"]
        []
    """
    file = _find_weights_file(Path(path))
    own = model.state_dict()
    sd = _align_prefixes(_read_state_dict(file), set(own))
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    mismatched = sorted(f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                        for k in set(sd) & set(own) if sd[k].shape != own[k].shape)
    report = {"file": str(file), "missing": missing, "unexpected": unexpected, "mismatched": mismatched}
    if missing or unexpected or mismatched:
        msg = (f"{file}: weights do not match {type(model).__name__} ({len(own)} tensors expected): "
               f"missing {len(missing)} {missing[:10]}, unexpected {len(unexpected)} {unexpected[:10]}, "
               f"shape-mismatched {len(mismatched)} {mismatched[:10]}")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg + "; loading the matching tensors only", stacklevel=2)
    bad = {m.split(":", 1)[0] for m in mismatched}
    model.load_state_dict({k: v for k, v in sd.items() if k in own and k not in bad}, strict=False)
    return report
