"""Embeddings that look like CLIP's, at any size: a Gaussian mixture fitted to the tiny
CLIP's embeddings of generated scenes, in 512 dimensions.

Uniform random vectors are the worst case for approximate search (every point is about
equally far from every other) and nothing like a real gallery. Real embeddings are
clustered (a collection holds many pictures of a few kinds of thing), share a large
mean direction (CLIP's "cone") and spread over few directions (a decaying spectrum).
This module measures those three things on the tiny CLIP's image embeddings:

- the mean vector's share of the embedding (how narrow the cone is),
- k-means clusters: the spectrum of the centres (between clusters) and of the
  residuals (within clusters), each fitted with a power law ``lambda_i ~ i^-alpha``,
  and the spread of the cluster sizes,

then draws ``n`` vectors in ``dim`` dimensions with the same mean share, the measured
spectra extended to ``dim`` (the same total variance) in a random basis, lognormal
cluster weights with the measured spread, and unit length. Queries are fresh draws from
the same mixture: held out, never indexed items. ``describe`` gives the statistics that
compare the two (nearest-neighbour cosines, effective dimension), printed by the bench.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MixtureFit:
    mean_share: float  # |mean|^2 / E|x|^2 of the fitted embeddings
    between_total: float  # variance of the cluster centres (sum of eigenvalues)
    within_total: float  # variance inside clusters
    between_spectrum: tuple[float, ...]  # eigenvalues of the centres' covariance, largest first
    within_spectrum: tuple[float, ...]  # eigenvalues of the residuals' covariance
    size_cv: float  # coefficient of variation of cluster sizes
    clusters: int
    source_dim: int

    def to_dict(self) -> dict:
        return {"mean_share": round(self.mean_share, 4), "between_total": round(self.between_total, 4),
                "within_total": round(self.within_total, 4), "size_cv": round(self.size_cv, 4),
                "clusters": self.clusters, "source_dim": self.source_dim,
                "tail_alpha_between": round(_tail_alpha(np.array(self.between_spectrum)), 3),
                "tail_alpha_within": round(_tail_alpha(np.array(self.within_spectrum)), 3)}


def _tail_alpha(lam: np.ndarray) -> float:
    """Power-law exponent of the spectrum's middle (eigenvalues 8..half): how it goes on."""
    mid = lam[8: max(16, len(lam) // 2)]
    mid = mid[mid > 0]
    i = np.arange(9, 9 + len(mid))
    return float(-np.polyfit(np.log(i), np.log(mid), 1)[0])


def extend(lam: np.ndarray, dim: int, total: float) -> np.ndarray:
    """The measured spectrum, continued past its own dimension by its middle's power law,
    scaled to the measured total variance."""
    lam = np.clip(np.sort(lam)[::-1], 0, None)
    if dim > len(lam):
        alpha = _tail_alpha(lam)
        i = np.arange(len(lam) + 1, dim + 1)
        lam = np.concatenate([lam, lam[len(lam) // 2] * (i / (len(lam) // 2 + 1)) ** -alpha])
    lam = lam[:dim]
    return lam / lam.sum() * total


def fit(embeddings: np.ndarray, clusters: int = 64, seed: int = 0) -> MixtureFit:
    import faiss

    x = np.asarray(embeddings, np.float64)
    mean = x.mean(0)
    centred = (x - mean).astype(np.float32)
    km = faiss.Kmeans(x.shape[1], clusters, niter=25, seed=seed, verbose=False)
    km.train(centred)
    _, assign = km.index.search(centred, 1)
    assign = assign[:, 0]
    sizes = np.bincount(assign, minlength=clusters)
    centres = np.stack([centred[assign == c].mean(0) if sizes[c] else np.zeros(x.shape[1]) for c in range(clusters)])
    between = np.cov(centres[sizes > 0].T, aweights=sizes[sizes > 0])
    resid = centred - centres[assign]
    within = np.cov(resid.T)
    lam_b, lam_w = np.linalg.eigvalsh(between), np.linalg.eigvalsh(within)
    return MixtureFit(mean_share=float(mean @ mean / np.mean(np.sum(x * x, 1))),
                      between_total=float(lam_b.sum()), within_total=float(lam_w.sum()),
                      between_spectrum=tuple(np.sort(lam_b)[::-1].tolist()),
                      within_spectrum=tuple(np.sort(lam_w)[::-1].tolist()),
                      size_cv=float(sizes.std() / sizes.mean()), clusters=clusters, source_dim=x.shape[1])


class Mixture:
    """The fitted mixture in ``dim`` dimensions with ``components`` clusters."""

    def __init__(self, f: MixtureFit, dim: int = 512, components: int = 1024, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.dim = dim
        basis, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
        self._scale_b = np.sqrt(extend(np.array(f.between_spectrum), dim, f.between_total))
        self._scale_w = np.sqrt(extend(np.array(f.within_spectrum), dim, f.within_total))
        self._basis = basis.astype(np.float32)
        # The mean: the same share of the squared length as in the fitted embeddings.
        spread = f.between_total + f.within_total
        mean_norm = np.sqrt(f.mean_share / max(1e-9, 1 - f.mean_share) * spread)
        direction = rng.normal(size=dim)
        self._mean = (direction / np.linalg.norm(direction) * mean_norm).astype(np.float32)
        self._centres = (rng.normal(size=(components, dim)) * self._scale_b) @ basis.T
        sigma = np.sqrt(np.log1p(f.size_cv ** 2))  # lognormal weights with the measured spread
        w = rng.lognormal(0.0, sigma, components)
        self._weights = w / w.sum()

    def sample(self, n: int, seed: int, chunk: int = 100_000) -> np.ndarray:
        """``n`` unit vectors, float32, drawn in chunks so a million fit in 2 GB."""
        rng = np.random.default_rng(seed)
        out = np.empty((n, self.dim), np.float32)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            comp = rng.choice(len(self._weights), size=m, p=self._weights)
            noise = (rng.standard_normal((m, self.dim), dtype=np.float32) * self._scale_w.astype(np.float32)) \
                @ self._basis.T
            x = self._mean + self._centres[comp].astype(np.float32) + noise
            out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def describe(embeddings: np.ndarray, sample: int = 2000, seed: int = 0) -> dict:
    """Statistics to compare embedding sets of any dimension: cosines to a random item and
    to the 1st/10th nearest neighbour, and the effective dimension (participation ratio)."""
    from mmdemo.index import exact_topk

    rng = np.random.default_rng(seed)
    x = np.asarray(embeddings, np.float32)
    idx = rng.choice(len(x), size=min(sample, len(x)), replace=False)
    q = x[idx]
    s, _ = exact_topk(x, q, 11)
    lam = np.linalg.eigvalsh(np.cov(x[rng.choice(len(x), size=min(20_000, len(x)), replace=False)].T.astype(np.float64)))
    return {"cos_random_pair": round(float(np.mean(np.sum(q * x[rng.permutation(len(x))[: len(q)]], 1))), 3),
            "cos_nn1": round(float(s[:, 1].mean()), 3), "cos_nn10": round(float(s[:, 10].mean()), 3),
            "effective_dim": round(float(lam.sum() ** 2 / (lam ** 2).sum()), 1)}
