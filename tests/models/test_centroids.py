"""The conditional-centroids model (musicsep.models.centroids) at tiny sizes:
posteriors that sum to one, one EM step against a float64 numpy reference,
and gradients that reach the class-conditional layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tinymodels import K, N_MELS, noise_mix, random_sources, tiny

from musicsep.models.centroids import COVARIANCES, ConditionalCentroids
from musicsep.models.losses import l1_mask_loss

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("shared", [True, False], ids=["shared-params", "per-example-params"])
def test_log_posteriors_normalised(shared):
    g = torch.Generator().manual_seed(0)
    batch, points, dim = 3, 50, 6
    n = 1 if shared else batch
    v = torch.randn(batch, points, dim, generator=g) * 2
    means = torch.randn(n, K, dim, generator=g)
    var = torch.rand(n, K, dim, generator=g) + 0.05
    log_prior = torch.log_softmax(torch.randn(n, K, generator=g), dim=-1)
    log_post = ConditionalCentroids.log_posteriors(v, means, var, log_prior)
    assert log_post.shape == (batch, points, K)
    assert (log_post <= 1e-6).all()
    torch.testing.assert_close(log_post.exp().sum(-1), torch.ones(batch, points), atol=1e-5, rtol=0)
    # and not uniform: the posteriors depend on the data
    assert log_post.exp().max() > 0.9
    # the softmax that the model's forward pass uses is the same, and its gradient too
    v.requires_grad_(True)
    weights = torch.rand(batch, points, K, generator=g)
    fast = ConditionalCentroids.posteriors(v, means, var, log_prior)
    torch.testing.assert_close(fast, log_post.exp(), atol=1e-6, rtol=1e-5)
    grad_fast, = torch.autograd.grad((fast * weights).sum(), v)
    grad_log, = torch.autograd.grad((ConditionalCentroids.log_posteriors(v, means, var, log_prior).exp()
                                     * weights).sum(), v)
    torch.testing.assert_close(grad_fast, grad_log, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("spherical", [False, True])
def test_log_posteriors_of_shared_variances(spherical):
    """With the same variances for every source, the term they share may be left
    out: the same posteriors (float64: to 1e-12), and the same gradients."""
    g = torch.Generator().manual_seed(1)
    batch, points, dim = 2, 40, 5
    v = (torch.randn(batch, points, dim, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    means = torch.randn(1, K, dim, generator=g, dtype=torch.float64, requires_grad=True)
    # tied as the model ties them (one variance vector expanded over the sources): the gradient
    # reaches it summed over the sources, where the left-out term's parts cancel
    tied = (torch.rand(1, 1, 1 if spherical else dim, generator=g, dtype=torch.float64) + 0.05).requires_grad_(True)
    var = tied.expand(1, K, dim)
    log_prior = torch.log_softmax(torch.randn(1, K, generator=g, dtype=torch.float64), dim=-1)
    full = ConditionalCentroids.log_posteriors(v, means, var, log_prior)
    shared = ConditionalCentroids.log_posteriors(v, means, var, log_prior, shared_var=True)
    torch.testing.assert_close(shared, full, rtol=0, atol=1e-12)
    w = torch.randn(batch, points, K, generator=g, dtype=torch.float64)
    grads = [torch.autograd.grad((lp.exp() * w).sum(), (v, means, tied)) for lp in (full, shared)]
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-12)
    # unequal variances: the term matters, and leaving it out would be wrong
    var_unequal = (torch.rand(1, K, dim, generator=g, dtype=torch.float64) + 0.05)
    assert not torch.allclose(ConditionalCentroids.log_posteriors(v, means, var_unequal, log_prior, shared_var=True),
                              ConditionalCentroids.log_posteriors(v, means, var_unequal, log_prior), atol=1e-3)


@pytest.mark.parametrize("em", [0, 2])
@pytest.mark.parametrize("cov", COVARIANCES)
def test_model_mel_posteriors_normalised(cov, em):
    model = tiny("conditional_centroids", covariance=cov, em_iterations=em).eval()
    mix = noise_mix()
    frames = mix.shape[-1]
    with torch.no_grad():
        v = model.embeddings(mix)
        means, var, log_prior = (p.unsqueeze(0) for p in model.initial_parameters())
        log_post = model.log_posteriors(v, means, var, log_prior)
        for _ in range(em):
            means, var, log_prior = model.m_step(v, log_post.exp())
            log_post = model.log_posteriors(v, means, var, log_prior)
        post = log_post.exp()
        torch.testing.assert_close(post.sum(-1), torch.ones(mix.shape[0], frames * N_MELS), atol=1e-5, rtol=0)
        # these are the model's posteriors: its masks are their inverse mel projection
        mel = post.view(mix.shape[0], frames, N_MELS, K).permute(0, 3, 2, 1)
        torch.testing.assert_close(model(mix)["masks"], model.features.to_linear(mel))


# one EM step against a float64 numpy reference ----------------------------------------------


def np_shape_variance(var: np.ndarray, covariance: str, counts: np.ndarray | None = None) -> np.ndarray:
    """``var`` (sources, dim): spherical = mean over dims; tied = average over
    classes (weighted by class counts when given)."""
    shape = var.shape
    if covariance in ("spherical", "tied_spherical"):
        var = np.repeat(var.mean(axis=1, keepdims=True), shape[1], axis=1)
    if covariance in ("tied_diag", "tied_spherical"):
        w = np.ones(shape[0]) if counts is None else counts
        var = np.repeat((w[:, None] * var).sum(0, keepdims=True) / w.sum(), shape[0], axis=0)
    return var


def np_initial_parameters(weight: np.ndarray, bias: np.ndarray, dim: int, covariance: str, var_floor: float):
    out = np.eye(K) @ weight.T + bias                       # the layer on each one-hot class vector
    means = out[:, :dim]
    var = np.logaddexp(0.0, out[:, dim:2 * dim]) + var_floor
    logits = out[:, -1]
    log_prior = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
    return means, np_shape_variance(var, covariance), log_prior


def np_e_step(v: np.ndarray, means: np.ndarray, var: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """Log posteriors (points, sources) of a diagonal Gaussian mixture, directly
    from (x - mu)^2 / var."""
    diff = v[:, None, :] - means[None, :, :]
    log_lik = -0.5 * (np.log(2 * np.pi * var)[None] + diff ** 2 / var[None]).sum(-1)
    joint = log_prior[None, :] + log_lik
    top = joint.max(axis=1, keepdims=True)
    return joint - (top + np.log(np.exp(joint - top).sum(axis=1, keepdims=True)))

COUNT_EPS = 1e-8      # the model's guard against an empty class, added to the soft counts


def np_m_step(v: np.ndarray, post: np.ndarray, covariance: str, var_floor: float):
    counts = post.sum(0) + COUNT_EPS
    means = (post.T @ v) / counts[:, None]
    var = (post.T @ v ** 2) / counts[:, None] - means ** 2 + var_floor
    return means, np_shape_variance(var, covariance, counts), np.log(counts / counts.sum())


@pytest.mark.parametrize("cov", COVARIANCES)
def test_em_step_matches_numpy(cov):
    dim, var_floor = 5, 1e-3
    model = tiny("conditional_centroids", covariance=cov, dim=dim, var_floor=var_floor).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():                                   # distinct classes, distinct variances
        model.conditional.weight.copy_(torch.randn(2 * dim + 1, K, generator=g, dtype=torch.float64))
        model.conditional.bias.copy_(torch.randn(2 * dim + 1, generator=g, dtype=torch.float64) * 0.5)
    batch, points = 2, 60
    v = torch.randn(batch, points, dim, generator=g, dtype=torch.float64) * 1.5
    tol = dict(rtol=1e-8, atol=1e-8)

    with torch.no_grad():
        means0, var0, log_prior0 = model.initial_parameters()
        np_means0, np_var0, np_log_prior0 = np_initial_parameters(
            model.conditional.weight.numpy(), model.conditional.bias.numpy(), dim, cov, var_floor)
        for got, want in ((means0, np_means0), (var0, np_var0), (log_prior0, np_log_prior0)):
            np.testing.assert_allclose(got.numpy(), want, **tol)

        log_post0 = model.log_posteriors(v, means0[None], var0[None], log_prior0[None])
        means1, var1, log_prior1 = model.m_step(v, log_post0.exp())
        log_post1 = model.log_posteriors(v, means1, var1, log_prior1)
    assert var1.shape == (batch, K, dim)

    for b in range(batch):
        x = v[b].numpy()
        np_post0 = np_e_step(x, np_means0, np_var0, np_log_prior0)
        np.testing.assert_allclose(log_post0[b].numpy(), np_post0, **tol)
        np_means1, np_var1, np_log_prior1 = np_m_step(x, np.exp(np_post0), cov, var_floor)
        np.testing.assert_allclose(means1[b].numpy(), np_means1, **tol)
        np.testing.assert_allclose(var1[b].numpy(), np_var1, **tol)
        np.testing.assert_allclose(log_prior1[b].numpy(), np_log_prior1, **tol)
        np.testing.assert_allclose(log_post1[b].numpy(), np_e_step(x, np_means1, np_var1, np_log_prior1), **tol)
        # the structure the covariance type promises
        if cov.endswith("spherical"):
            assert np.ptp(var1[b].numpy(), axis=1).max() == 0
        if cov.startswith("tied"):
            assert np.ptp(var1[b].numpy(), axis=0).max() == 0
        if cov == "diag":
            assert np.ptp(var1[b].numpy(), axis=0).min() > 1e-3


@pytest.mark.parametrize("cov", COVARIANCES)
def test_forward_runs_the_numpy_em(cov):
    """The model's forward with one EM iteration is the numpy E, M, E steps on
    its own embeddings, taken to full resolution."""
    model = tiny("conditional_centroids", covariance=cov, em_iterations=1).double().eval()
    mix = noise_mix(batch=2).double()
    frames = mix.shape[-1]
    with torch.no_grad():
        v = model.embeddings(mix)
        masks = model(mix)["masks"]
    init = np_initial_parameters(model.conditional.weight.detach().numpy(), model.conditional.bias.detach().numpy(),
                                 model.dim, cov, model.var_floor)
    posts = []
    for x in v.numpy():
        post = np.exp(np_e_step(x, *init))
        posts.append(np.exp(np_e_step(x, *np_m_step(x, post, cov, model.var_floor))))
    mel = torch.from_numpy(np.stack(posts)).view(2, frames, N_MELS, K).permute(0, 3, 2, 1)
    torch.testing.assert_close(masks, model.features.to_linear(mel), rtol=1e-8, atol=1e-8)


# gradients reach the class-conditional layer ------------------------------------------------


@pytest.mark.parametrize("em", [0, 1])
def test_gradient_reaches_conditional_layer(em):
    model = tiny("conditional_centroids", em_iterations=em)
    mix = noise_mix()
    loss = l1_mask_loss(model(mix)["masks"], mix, random_sources(mix))
    loss.backward()
    grad = model.conditional.weight.grad
    assert grad is not None and torch.isfinite(grad).all()
    dim = model.dim
    bias = model.conditional.bias.grad
    # every starting parameter is learned: the means, the variances and the priors
    for part, rows in (("means", slice(0, dim)), ("variances", slice(dim, 2 * dim)), ("priors", slice(2 * dim, None))):
        assert grad[rows].abs().sum() > 0, part
    for part, rows in (("means", slice(0, dim)), ("variances", slice(dim, 2 * dim))):
        assert bias[rows].abs().sum() > 0, part
    # the priors' bias shifts every class's logit alike, which the softmax
    # cancels: its gradient is zero up to rounding
    assert bias[2 * dim:].abs().sum() <= 1e-4 * grad[2 * dim:].abs().sum()
    assert model.embed.weight.grad.abs().sum() > 0
