"""The generative head: learn to *generate* image embeddings from a class description on the seen classes,
synthesise embeddings of the unseen classes, and fit one softmax classifier over all classes on real
seen plus synthetic unseen embeddings (the recipe of f-CLSWGAN, Xian et al. 2018).

``generator="gaussian"`` (the default) replaces the GAN by a conditional Gaussian: class means
ridge-regressed from descriptions, the seen classes' pooled within-class covariance. ``generator="wgan"``
is f-CLSWGAN's conditional WGAN-GP with a classification loss: slower, and worse on every benchmark
here (README, "Trained heads"), kept for comparison.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HeadError
from .fit import Linear, balanced_weights, check_inputs, fit_softmax, generator, single_threaded
from .head import normalise

GENERATORS: tuple[str, ...] = ("gaussian", "wgan")


def _regress_means(x: np.ndarray, y: np.ndarray, a: np.ndarray, seen: np.ndarray, ridge: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(every class's mean, within-class residuals of the items): unseen classes' means predicted from their
    descriptions by a ridge regression fitted on the seen classes' means, both sides centred so that the
    ridge shrinks towards the average class and not towards the origin."""
    seen_ids = np.flatnonzero(seen)
    means = np.zeros((len(a), x.shape[1]))
    for c in seen_ids:
        means[c] = x[y == c].mean(axis=0)
    mu_bar, a_bar = means[seen_ids].mean(axis=0), a[seen_ids].mean(axis=0)
    a_s = a[seen_ids] - a_bar
    # Dual form: (seen classes x seen classes), small whatever the description's size.
    alpha = np.linalg.solve(a_s @ a_s.T + ridge * np.eye(len(seen_ids)), means[seen_ids] - mu_bar)
    predicted = mu_bar + (a - a_bar) @ a_s.T @ alpha
    means[~seen] = predicted[~seen]
    return means, x - means[y]


def _gaussian_features(x: np.ndarray, y: np.ndarray, a: np.ndarray, seen: np.ndarray, per_class: int, ridge: float,
                       shrink: float, widen: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    means, residuals = _regress_means(x, y, a, seen, ridge)
    # Pooled within-class covariance (classes weighted equally), shrunk towards its average variance: with
    # few items per class the raw estimate is rank deficient and over-confident.
    d = x.shape[1]
    covariance = np.zeros((d, d))
    seen_ids = np.flatnonzero(seen)
    for c in seen_ids:
        r = residuals[y == c]
        covariance += r.T @ r / max(len(r), 1)
    covariance /= len(seen_ids)
    covariance = (1 - shrink) * covariance + shrink * np.trace(covariance) / d * np.eye(d)
    # Unseen classes' means are only predicted: widening their spread makes the classifier leave the seen
    # classes their observed (tight) clusters and give the unseen classes the space around them.
    root = widen * np.linalg.cholesky(covariance + 1e-9 * np.eye(d))
    labels = np.repeat(np.flatnonzero(~seen), per_class)
    samples = means[labels] + rng.standard_normal((len(labels), d)) @ root.T
    return normalise(samples).astype(np.float32), labels


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
                   batch: int, widen: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """f-CLSWGAN: a conditional WGAN-GP on seen embeddings plus a classification loss from a softmax
    classifier fitted on the real seen embeddings (so generated ones stay class-discriminative)."""
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
    for c in unseen_ids:  # the same widening as the Gaussian's, around each class's sample mean
        mine = labels == c
        centre = samples[mine].mean(axis=0)
        samples[mine] = centre + widen * (samples[mine] - centre)
    return normalise(samples).astype(np.float32), labels


@single_threaded
def train_generative(features: np.ndarray, labels: np.ndarray, descriptions: np.ndarray, seen_mask: np.ndarray,
                     seed: int = 0, *, generator: str = "gaussian", synth_per_class: int = 300, ridge: float = 0.1,
                     shrink: float = 0.2, widen: float = 3.0, noise: int = 32, hidden: int = 256, gan_steps: int = 600,
                     critic_steps: int = 5, gp: float = 10.0, cls_weight: float = 0.1, gan_lr: float = 1e-3,
                     gan_batch: int = 128, clf_steps: int = 400, clf_lr: float = 1e-2, clf_decay: float = 1e-4,
                     clf_batch: int = 512, clf_scale: Optional[float] = 50.0) -> Linear:
    """Synthesises ``synth_per_class`` embeddings per unseen class, spread ``widen`` times the seen classes'
    within-class spread (unseen classes' places are only predicted, and the backbone embeds truly unseen
    pictures off them, towards seen neighbours), then fits one classifier over all classes: a cosine
    classifier of scale ``clf_scale`` (a biased linear one with ``None``), on class-balanced batches for a
    fixed number of steps, so no class dominates by its number of items."""
    x, y, a, seen = check_inputs(features, labels, descriptions, seen_mask)
    rng = np.random.default_rng(seed)
    hp: dict[str, Any] = {"generator": generator, "widen": widen}
    if generator == "gaussian":
        synthetic, synthetic_y = _gaussian_features(x, y, a, seen, synth_per_class, ridge, shrink, widen, rng)
        hp |= {"ridge": ridge, "shrink": shrink}
    elif generator == "wgan":
        synthetic, synthetic_y = _wgan_features(
            x, y, a, seen, synth_per_class, noise=noise, hidden=hidden, gan_steps=gan_steps,
            critic_steps=critic_steps, gp=gp, cls_weight=cls_weight, gan_lr=gan_lr, batch=gan_batch, widen=widen,
            seed=seed)
        hp |= {"noise": noise, "hidden": hidden, "gan_steps": gan_steps, "critic_steps": critic_steps, "gp": gp,
               "cls_weight": cls_weight, "gan_lr": gan_lr, "gan_batch": gan_batch}
    else:
        raise HeadError(f"unknown generator {generator!r}: one of {', '.join(GENERATORS)}")
    weight, bias = fit_softmax(np.concatenate([x, synthetic]), np.concatenate([y, synthetic_y]), len(a),
                               steps=clf_steps, lr=clf_lr, weight_decay=clf_decay, batch=clf_batch, seed=seed + 1,
                               scale=clf_scale)
    hp |= {"synth_per_class": synth_per_class, "clf_scale": clf_scale, "clf_steps": clf_steps, "clf_lr": clf_lr,
           "clf_decay": clf_decay, "clf_batch": clf_batch}
    return Linear(weight, bias, hp)
