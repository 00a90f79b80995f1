"""The text tower in numpy, for the few texts of a query: no runtime to import, nothing to compile.

A new question costs a search its whole start: importing OpenVINO and compiling the text tower from its
cache take about 0.2 s on two cores, the question's own arithmetic a few milliseconds. CLIP's text
transformer is causal and reads its answer at the end-of-text token, so the padding after that token
never matters: run only up to it (a short query is 5 to 15 tokens of 77) and a numpy forward pass over
the same weights costs less than loading a runtime. Batches of more than ``NUMPY_TEXT_ROWS`` token rows
go to OpenVINO, which wins once its start is paid.

``export`` writes the weights (float32, one file plus a JSON table) beside the converted model; it
needs torch and runs once, at conversion, where the result is checked against torch. Only open_clip's
standard ``CLIP`` text tower is exported (pre-norm residual attention blocks, GELU or QuickGELU, a causal
mask, pooling at the end-of-text token); any other returns the reason and the runtime keeps OpenVINO.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:
    import torch

WEIGHTS_FILE = "text-numpy.bin"
TABLE_FILE = "text-numpy.json"
# Token rows (texts x their padded length) answered in numpy: about 0.1 s of arithmetic for ViT-B-32 on
# two cores, the cost of starting OpenVINO; larger batches go to the compiled runtime.
NUMPY_TEXT_ROWS = 128


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * weight + bias


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function to a relative 1.2e-7 (a Chebyshev fit of erfc), without scipy."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    return np.sign(x) * (1.0 - t * np.exp(poly))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))


def _quick_gelu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-1.702 * x))


class NumpyTextTower:
    """Loaded text weights (memory-mapped: only the rows and layers a query touches are read)."""

    def __init__(self, folder: Path) -> None:
        table = json.loads((folder / TABLE_FILE).read_text(encoding="utf-8"))
        flat = np.memmap(folder / WEIGHTS_FILE, dtype=np.float32, mode="r")
        self._arrays = {name: flat[start:start + int(np.prod(shape))].reshape(shape)
                        for name, (start, shape) in table["arrays"].items()}
        self.layers = int(table["layers"])
        self.heads = int(table["heads"])
        self.eps = float(table["eps"])
        self.activation = _quick_gelu if table["activation"] == "quick_gelu" else _gelu
        self.pool = table["pool"]
        self.eos_id = table.get("eos_id")

    @classmethod
    def load(cls, folder: Path) -> Optional["NumpyTextTower"]:
        """The tower exported into ``folder``, or None when there is none (or it cannot be read)."""
        try:
            return cls(folder) if (folder / TABLE_FILE).is_file() else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _ends(self, tokens: np.ndarray) -> np.ndarray:
        """Where each row is read: its end-of-text position, as open_clip's pooling finds it."""
        if self.pool == "argmax":
            return tokens.argmax(axis=1)
        return (tokens == self.eos_id).argmax(axis=1)

    def rows(self, tokens: np.ndarray) -> int:
        """The token rows a call on ``tokens`` computes: texts times the longest one's length."""
        return len(tokens) * (int(self._ends(np.asarray(tokens)).max()) + 1) if len(tokens) else 0

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        """Normalised embeddings ``(n, dim)`` of token rows ``(n, context_length)`` (the tokenizer's)."""
        from threadpoolctl import threadpool_limits

        # One BLAS thread: these products are too small to share out, and a BLAS pool on busy cores spins
        # (measured on 2 loaded cores: 36 ms on one thread, 0.06 to 2.1 s on two).
        with threadpool_limits(1, user_api="blas"):
            return self._forward(np.asarray(tokens))

    def _forward(self, tokens: np.ndarray) -> np.ndarray:
        ends = self._ends(tokens)
        length = int(ends.max()) + 1 if len(tokens) else 1
        a = self._arrays
        x = a["token_embedding"][tokens[:, :length]] + a["positional_embedding"][:length]
        n, width = x.shape[0], x.shape[2]
        head_width = width // self.heads
        mask = np.triu(np.full((length, length), -np.inf, dtype=np.float32), 1)
        scale = np.float32(head_width ** -0.5)
        for i in range(self.layers):
            p = f"layer{i}."
            h = _layer_norm(x, a[p + "ln_1.weight"], a[p + "ln_1.bias"], self.eps)
            qkv = h @ a[p + "in_proj"] + a[p + "in_proj_bias"]  # (n, L, 3 width)
            qkv = qkv.reshape(n, length, 3, self.heads, head_width).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0] * scale, qkv[1], qkv[2]  # (n, heads, L, head_width)
            scores = q @ k.transpose(0, 1, 3, 2) + mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            attended = (scores @ v).transpose(0, 2, 1, 3).reshape(n, length, width)
            x = x + (attended @ a[p + "out_proj"] + a[p + "out_proj_bias"]) * a[p + "ls_1"]
            h = _layer_norm(x, a[p + "ln_2.weight"], a[p + "ln_2.bias"], self.eps)
            h = self.activation(h @ a[p + "c_fc"] + a[p + "c_fc_bias"])
            x = x + (h @ a[p + "c_proj"] + a[p + "c_proj_bias"]) * a[p + "ls_2"]
        pooled = _layer_norm(x[np.arange(n), ends], a["ln_final.weight"], a["ln_final.bias"], self.eps)
        out = pooled @ a["text_projection"]
        if "text_projection_bias" in a:
            out = out + a["text_projection_bias"]
        out = out.astype(np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))


def _unsupported(model: "torch.nn.Module") -> Optional[str]:
    """Why ``model``'s text tower is not the standard one this module computes, or None."""
    from open_clip.model import CLIP
    from open_clip.transformer import LayerScale, QuickGELU, ResidualAttentionBlock
    from torch import nn

    if type(model) is not CLIP:
        return f"{type(model).__name__} keeps its text tower in another form"
    if getattr(model, "attn_mask", None) is None:
        return "its text transformer has no causal mask"
    if model.text_pool_type not in ("argmax", "eos"):
        return f"its text pooling is {model.text_pool_type!r}"
    if not isinstance(model.ln_final, nn.LayerNorm):
        return "its final norm is not a LayerNorm"
    eps = model.ln_final.eps
    for block in model.transformer.resblocks:
        if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
            return f"its text blocks are {type(block).__name__}"
        attention = block.attn
        if not isinstance(attention, nn.MultiheadAttention) or attention.in_proj_weight is None \
                or attention.in_proj_bias is None or attention.bias_k is not None:
            return "its attention is not a standard multi-head attention with biases"
        if not all(isinstance(norm, nn.LayerNorm) and norm.elementwise_affine and norm.eps == eps
                   for norm in (block.ln_1, block.ln_2)):
            return "its blocks' norms are not affine LayerNorms of one epsilon"
        if not all(isinstance(scale, (nn.Identity, LayerScale)) for scale in (block.ls_1, block.ls_2)):
            return "its layer scales are not standard"
        activation = block.mlp.gelu
        if not (isinstance(activation, QuickGELU) or (isinstance(activation, nn.GELU)
                                                       and activation.approximate == "none")):
            return f"its activation is {type(activation).__name__}"
        if list(dict(block.mlp.named_children())) != ["c_fc", "gelu", "c_proj"]:
            return "its MLP is not Linear, GELU, Linear"
    return None


def export(model: "torch.nn.Module", folder: Path) -> Optional[str]:
    """Writes ``model``'s text weights into ``folder`` for :class:`NumpyTextTower`; returns None when
    written, else why this model's text tower is not exported (the runtime then keeps OpenVINO)."""
    import torch
    from open_clip.transformer import LayerScale

    reason = _unsupported(model)
    if reason is not None:
        return reason
    arrays: dict[str, np.ndarray] = {}

    def put(name: str, tensor: Any) -> None:
        arrays[name] = np.ascontiguousarray(tensor.detach().float().cpu().numpy())

    def scale_of(module: torch.nn.Module, width: int) -> torch.Tensor:
        return module.gamma if isinstance(module, LayerScale) else torch.ones(width)

    with torch.no_grad():
        put("token_embedding", model.token_embedding.weight)
        put("positional_embedding", model.positional_embedding)
        blocks = list(model.transformer.resblocks)
        width = int(model.positional_embedding.shape[-1])
        for i, block in enumerate(blocks):
            p = f"layer{i}."
            put(p + "ln_1.weight", block.ln_1.weight)
            put(p + "ln_1.bias", block.ln_1.bias)
            put(p + "in_proj", block.attn.in_proj_weight.T)
            put(p + "in_proj_bias", block.attn.in_proj_bias)
            put(p + "out_proj", block.attn.out_proj.weight.T)
            put(p + "out_proj_bias", block.attn.out_proj.bias)
            put(p + "ls_1", scale_of(block.ls_1, width))
            put(p + "ln_2.weight", block.ln_2.weight)
            put(p + "ln_2.bias", block.ln_2.bias)
            put(p + "c_fc", block.mlp.c_fc.weight.T)
            put(p + "c_fc_bias", block.mlp.c_fc.bias)
            put(p + "c_proj", block.mlp.c_proj.weight.T)
            put(p + "c_proj_bias", block.mlp.c_proj.bias)
            put(p + "ls_2", scale_of(block.ls_2, width))
        put("ln_final.weight", model.ln_final.weight)
        put("ln_final.bias", model.ln_final.bias)
        projection = model.text_projection
        if isinstance(projection, torch.nn.Linear):
            put("text_projection", projection.weight.T)
            if projection.bias is not None:
                put("text_projection_bias", projection.bias)
        else:
            put("text_projection", projection)
    from open_clip.transformer import QuickGELU

    table: dict[str, Any] = {
        "layers": len(blocks), "heads": int(blocks[0].attn.num_heads), "eps": float(model.ln_final.eps),
        "activation": "quick_gelu" if isinstance(blocks[0].mlp.gelu, QuickGELU) else "gelu",
        "pool": model.text_pool_type, "eos_id": getattr(model, "text_eos_id", None), "arrays": {},
    }
    from ..fileio import atomic_write  # here, with torch: a query that loads the tower never needs it

    def write_weights(staging: Path) -> None:
        offset = 0
        with staging.open("wb") as handle:
            for name, array in arrays.items():
                table["arrays"][name] = [offset, list(array.shape)]
                handle.write(array.astype(np.float32).tobytes())
                offset += array.size

    # The weights first, the table last: a tower is loaded only once its table is there (``load``).
    atomic_write(folder / WEIGHTS_FILE, write_weights)
    atomic_write(folder / TABLE_FILE, lambda staging: staging.write_text(json.dumps(table), encoding="utf-8"))
    return None


def remove(folder: Path) -> None:
    """Deletes an exported tower (its table first: a half-removed tower is never loaded)."""
    for name in (TABLE_FILE, WEIGHTS_FILE):
        try:
            (folder / name).unlink()
        except FileNotFoundError:
            pass
