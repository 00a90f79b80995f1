"""The projection head: a bilinear compatibility ``scale * cos(x W, a_c)`` between an image embedding and
a class description (ALE / DeViSE style, with cosines and a softmax cross-entropy over the seen classes'
descriptions), applied after training to every class's description, unseen ones included."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HeadError
from .fit import Linear, balanced_weights, check_inputs, check_unlabelled, generator, single_threaded
from .transductive import pseudo_labelled

_NORM_CHUNK = 16384  # items per chunk when measuring the mean projected norm


@single_threaded
def train_projection(features: np.ndarray, labels: np.ndarray, descriptions: np.ndarray, seen_mask: np.ndarray,
                     seed: int = 0, *, scale: float = 25.0, reg: float = 1e-2, steps: int = 1000, lr: float = 5e-3,
                     batch: int = 512, identity_prior: bool = True, unlabelled: Optional[np.ndarray] = None,
                     em_iters: int = 10, pseudo_threshold: float = 0.9,
                     found_means: Optional[np.ndarray] = None) -> Linear:
    """Trains ``W`` on the seen classes' items. With ``identity_prior`` (descriptions are text embeddings of
    the same CLIP, so already in the image space) W starts at, and is pulled towards, the identity by
    ``reg * ||W - I||^2``: a large ``reg`` gives plain CLIP back, and the head moves only as far from
    CLIP's alignment as the seen data justify. Otherwise (attribute vectors) W starts small and random
    and ``reg`` is plain weight decay. Cosines on both sides keep unseen classes on the seen ones' scale.

    ``unlabelled`` (embeddings of items of any class, none labelled) self-trains the head: the unlabelled
    items that the generative head's EM (``transductive``, ``em_iters`` iterations) gives to an unseen class
    with a posterior of at least ``pseudo_threshold`` join the training items with that label, and their
    classes join the softmax."""
    x, y, a, seen = check_inputs(features, labels, descriptions, seen_mask)
    d, k = x.shape[1], a.shape[1]
    hp: dict[str, Any] = {}
    trained = seen
    if unlabelled is not None:
        extra, extra_y, _ = pseudo_labelled(x, y, a, seen, check_unlabelled(unlabelled, d), iterations=em_iters,
                                            threshold=pseudo_threshold, found=found_means)
        x, y = np.concatenate([x, extra.astype(np.float32)]), np.concatenate([y, extra_y])
        trained = seen | np.isin(np.arange(len(seen)), extra_y)
        hp = {"em_iters": em_iters, "pseudo_threshold": pseudo_threshold, "pseudo_labelled_items": int(len(extra_y))}
    if identity_prior and d != k:
        raise HeadError(f"identity_prior needs descriptions of the embeddings' size {d}, not {k}")
    g = generator(seed)
    seen_ids = np.flatnonzero(trained)
    position = np.full(len(seen), -1)
    position[seen_ids] = np.arange(len(seen_ids))
    xt, yt, a_seen = torch.from_numpy(x), torch.from_numpy(position[y]), torch.from_numpy(a[seen_ids])
    prior = torch.eye(d) if identity_prior else torch.zeros(d, k)
    w = nn.Parameter(prior.clone() if identity_prior else torch.randn(d, k, generator=g) / np.sqrt(d))
    optimiser = torch.optim.Adam([w], lr=lr)
    weights = balanced_weights(y)
    for _ in range(steps):
        idx = torch.multinomial(weights, min(batch, len(x)), replacement=True, generator=g)
        projected = F.normalize(xt[idx] @ w, dim=1)
        loss = F.cross_entropy(scale * projected @ a_seen.T, yt[idx]) + reg * ((w - prior) ** 2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    # Training scores cos(x W, a_c) = x W a_c / (|x W| |a_c|). To stay one linear layer the head keeps
    # x W a_c and replaces the per-item 1/|x W| (which cannot change a row's arg-max) by its mean over the
    # training items, so logits keep the trained scale and one calibration constant fits every row.
    wn = w.detach().numpy().astype(np.float64)
    total = sum(float(np.linalg.norm(x[i:i + _NORM_CHUNK] @ wn, axis=1).sum()) for i in range(0, len(x), _NORM_CHUNK))
    mean_norm = max(total / len(x), 1e-12)
    weight = (scale * (wn @ a.T.astype(np.float64)).T / mean_norm).astype(np.float32)
    return Linear(weight, np.zeros(len(a), np.float32),
                  {"scale": scale, "reg": reg, "steps": steps, "lr": lr, "batch": batch,
                   "identity_prior": identity_prior, **hp})
