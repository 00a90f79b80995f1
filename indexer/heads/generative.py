"""The generative head: learn to *generate* image embeddings from a class description on the seen classes,
synthesise embeddings of the unseen classes, and fit one softmax classifier over all classes on real
seen plus synthetic unseen embeddings (the recipe of f-CLSWGAN, Xian et al. 2018).

``generator="gaussian"`` (the default) replaces the GAN by a conditional Gaussian: class means
ridge-regressed from descriptions, the seen classes' pooled within-class covariance. ``generator="wgan"``
is f-CLSWGAN's conditional WGAN-GP with a classification loss: slower, and worse on every benchmark
here (docs/figures.md, "Trained zero-shot heads"), kept for comparison.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HeadError
from .fit import Linear, balanced_weights, check_inputs, check_unlabelled, fit_softmax, generator, single_threaded
from ..query.head import normalise
from .transductive import Refined, pooled_covariance, refine_means, regress_means, start_means

GENERATORS: tuple[str, ...] = ("gaussian", "wgan")


def _gaussian_features(x: np.ndarray, y: np.ndarray, a: np.ndarray, seen: np.ndarray, per_class: int, ridge: float,
                       shrink: float, widen: float, rng: np.random.Generator, unlabelled: Optional[np.ndarray],
                       em_iters: int, em_prior: float, found: Optional[np.ndarray] = None
                       ) -> tuple[np.ndarray, np.ndarray, Optional[Refined]]:
    means = regress_means(x, y, a, seen, ridge)
    covariance = pooled_covariance(x, y, means, seen, shrink)
    refined = None
    if unlabelled is not None:
        refined = refine_means(x, y, start_means(x, y, a, seen, ridge, found), covariance, seen, unlabelled,
                               iterations=em_iters, prior=em_prior, shrink=shrink)
        means = refined.means
    # Unseen classes' means are only predicted (or estimated from unlabelled items): widening their spread
    # makes the classifier leave the seen classes their observed (tight) clusters and give the unseen
    # classes the space around them.
    d = x.shape[1]
    root = widen * np.linalg.cholesky(covariance + 1e-9 * np.eye(d))
    labels = np.repeat(np.flatnonzero(~seen), per_class)
    samples = means[labels] + rng.standard_normal((len(labels), d)) @ root.T
    return normalise(samples).astype(np.float32), labels, refined


class _Generator(nn.Module):
    def __init__(self, noise: int, k: int, hidden: int, d: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(noise + k, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, d))

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        # Real embeddings are unit vectors; generating on the sphere spares the critic an easy giveaway.
        return F.normalize(self.net(torch.cat([z, a], dim=1)), dim=1)


class _Critic(nn.Module):
    def __init__(self, d: int, k: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d + k, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, a], dim=1))


def _wgan_features(x: np.ndarray, y: np.ndarray, a: np.ndarray, seen: np.ndarray, per_class: int, *, noise: int,
                   hidden: int, gan_steps: int, critic_steps: int, gp: float, cls_weight: float, gan_lr: float,
                   batch: int, widen: float, seed: int, unlabelled: Optional[np.ndarray], ridge: float, shrink: float,
                   em_iters: int, em_prior: float, found: Optional[np.ndarray] = None
                   ) -> tuple[np.ndarray, np.ndarray, Optional[Refined]]:
    """f-CLSWGAN: a conditional WGAN-GP on seen embeddings plus a classification loss from a softmax
    classifier fitted on the real seen embeddings (so generated ones stay class-discriminative). With
    ``unlabelled``, each unseen class's samples keep their shape and move to the mean EM finds (started,
    as the Gaussian's, from the ridge-regressed means)."""
    g = generator(seed)
    torch.manual_seed(seed)  # nn.Linear's default initialisation draws from the global generator
    d, k = x.shape[1], a.shape[1]
    xt, yt, at = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(a)
    seen_ids = np.flatnonzero(seen)
    position = np.full(len(seen), -1)
    position[seen_ids] = np.arange(len(seen_ids))
    w_cls, b_cls = fit_softmax(x, position[y], len(seen_ids), steps=300, lr=1e-2, weight_decay=1e-4,
                               batch=min(512, len(x)), seed=seed)
    w_cls_t, b_cls_t, pos_t = torch.from_numpy(w_cls), torch.from_numpy(b_cls), torch.from_numpy(position)
    gen, critic = _Generator(noise, k, hidden, d), _Critic(d, k, hidden)
    opt_g = torch.optim.Adam(gen.parameters(), lr=gan_lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=gan_lr, betas=(0.5, 0.999))
    weights = balanced_weights(y)
    batch = min(batch, len(x))
    for _ in range(gan_steps):
        for _ in range(critic_steps):
            idx = torch.multinomial(weights, batch, replacement=True, generator=g)
            real, cond = xt[idx], at[yt[idx]]
            with torch.no_grad():
                fake = gen(torch.randn(batch, noise, generator=g), cond)
            mix = torch.rand(batch, 1, generator=g)
            between = (mix * real + (1 - mix) * fake).requires_grad_(True)
            grad, = torch.autograd.grad(critic(between, cond).sum(), between, create_graph=True)
            penalty = ((grad.norm(dim=1) - 1) ** 2).mean()
            loss_d = critic(fake, cond).mean() - critic(real, cond).mean() + gp * penalty
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
        idx = torch.multinomial(weights, batch, replacement=True, generator=g)
        cond = at[yt[idx]]
        fake = gen(torch.randn(batch, noise, generator=g), cond)
        loss_g = -critic(fake, cond).mean()
        if cls_weight > 0:
            loss_g = loss_g + cls_weight * F.cross_entropy(fake @ w_cls_t.T + b_cls_t, pos_t[yt[idx]])
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
    unseen_ids = np.flatnonzero(~seen)
    labels = np.repeat(unseen_ids, per_class)
    with torch.no_grad():
        samples = gen(torch.randn(len(labels), noise, generator=g), at[torch.from_numpy(labels)]).numpy()
    centres = np.zeros((len(seen), d))
    for c in np.flatnonzero(seen):
        centres[c] = x[y == c].mean(axis=0)
    for c in unseen_ids:
        centres[c] = samples[labels == c].mean(axis=0)
    moved, refined = centres, None
    if unlabelled is not None:  # EM from the same start as the Gaussian's, whatever the GAN learnt
        start = start_means(x, y, a, seen, ridge, found)
        refined = refine_means(x, y, start, pooled_covariance(x, y, start, seen, shrink), seen, unlabelled,
                               iterations=em_iters, prior=em_prior, shrink=shrink)
        moved = refined.means
    for c in unseen_ids:  # the same widening as the Gaussian's, around each class's sample mean
        mine = labels == c
        samples[mine] = moved[c] + widen * (samples[mine] - centres[c])
    return normalise(samples).astype(np.float32), labels, refined


@single_threaded
def train_generative(features: np.ndarray, labels: np.ndarray, descriptions: np.ndarray, seen_mask: np.ndarray,
                     seed: int = 0, *, generator: str = "gaussian", synth_per_class: int = 300, ridge: float = 0.1,
                     shrink: float = 0.2, widen: float = 3.0, noise: int = 32, hidden: int = 256, gan_steps: int = 600,
                     critic_steps: int = 5, gp: float = 10.0, cls_weight: float = 0.1, gan_lr: float = 1e-3,
                     gan_batch: int = 128, clf_steps: int = 400, clf_lr: float = 1e-2, clf_decay: float = 1e-4,
                     clf_batch: int = 512, clf_scale: Optional[float] = 50.0, unlabelled: Optional[np.ndarray] = None,
                     em_iters: int = 10, em_prior: float = 1.0, found_means: Optional[np.ndarray] = None) -> Linear:
    """Synthesises ``synth_per_class`` embeddings per unseen class, spread ``widen`` times the seen classes'
    within-class spread (unseen classes' places are only predicted, and the backbone embeds truly unseen
    pictures off them, towards seen neighbours), then fits one classifier over all classes: a cosine
    classifier of scale ``clf_scale`` (a biased linear one with ``None``), on class-balanced batches for a
    fixed number of steps, so no class dominates by its number of items.

    ``unlabelled`` (embeddings of items of any class, none labelled) refines the unseen classes' means by
    ``em_iters`` iterations of EM before sampling (``transductive.refine_means``)."""
    x, y, a, seen = check_inputs(features, labels, descriptions, seen_mask)
    u = None if unlabelled is None else check_unlabelled(unlabelled, x.shape[1])
    rng = np.random.default_rng(seed)
    hp: dict[str, Any] = {"generator": generator, "widen": widen}
    if u is not None:
        hp |= {"em_iters": em_iters, "em_prior": em_prior}
    if generator == "gaussian":
        synthetic, synthetic_y, refined = _gaussian_features(x, y, a, seen, synth_per_class, ridge, shrink, widen,
                                                             rng, u, em_iters, em_prior, found_means)
        hp |= {"ridge": ridge, "shrink": shrink}
    elif generator == "wgan":
        synthetic, synthetic_y, refined = _wgan_features(
            x, y, a, seen, synth_per_class, noise=noise, hidden=hidden, gan_steps=gan_steps,
            critic_steps=critic_steps, gp=gp, cls_weight=cls_weight, gan_lr=gan_lr, batch=gan_batch, widen=widen,
            seed=seed, unlabelled=u, ridge=ridge, shrink=shrink, em_iters=em_iters, em_prior=em_prior,
            found=found_means)
        hp |= {"ridge": ridge, "shrink": shrink} if u is not None else {}
        hp |= {"noise": noise, "hidden": hidden, "gan_steps": gan_steps, "critic_steps": critic_steps, "gp": gp,
               "cls_weight": cls_weight, "gan_lr": gan_lr, "gan_batch": gan_batch}
    else:
        raise HeadError(f"unknown generator {generator!r}: one of {', '.join(GENERATORS)}")
    if refined is not None:  # what EM found, for `heads show`
        hp |= {"em_unseen_spread": round(refined.unseen_spread, 4),
               "em_background_share": round(refined.background_share, 4)}
    weight, bias = fit_softmax(np.concatenate([x, synthetic]), np.concatenate([y, synthetic_y]), len(a),
                               steps=clf_steps, lr=clf_lr, weight_decay=clf_decay, batch=clf_batch, seed=seed + 1,
                               scale=clf_scale)
    hp |= {"synth_per_class": synth_per_class, "clf_scale": clf_scale, "clf_steps": clf_steps, "clf_lr": clf_lr,
           "clf_decay": clf_decay, "clf_batch": clf_batch}
    return Linear(weight, bias, hp)
