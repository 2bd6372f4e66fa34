"""TagProp: tag propagation from weighted nearest neighbours with learned weights.

Guillaumin, Mensink, Verbeek, Schmid, "TagProp: Discriminative metric learning in nearest
neighbour models for image auto-annotation", ICCV 2009.

The score of tag w for photo i is a weighted vote of its K nearest training photos j:

    x_iw = Σ_j pi_ij p(y_jw = +1),  p(y_jw = +1) = 1 - ε if j has w else ε,

with pi_ij ≥ 0, Σ_j pi_ij = 1, either
- rank-based: pi_ij = gamma_k for the k-th neighbour (gamma = softmax(u), one weight per rank), or
- distance-based: pi_ij = softmax_j(-theta·d_ij) over several distances d_ij, theta ≥ 0.
sigma-ML adds a per-tag sigmoid p_iw = sigmoid(alpha_w x_iw + beta_w) so that rare tags,
whose votes are always small, can still reach high scores.

Parameters maximise the leave-one-out log-likelihood of the training tags, each present
tag weighted 1/n+ and each absent one 1/n- (the paper's c_iw, because absences vastly
outnumber presences and are noisier). The neighbour weights by L-BFGS-B (theta ≥ 0) on
analytic gradients; the sigmoids by Newton's method per tag with alpha ≥ 0 (a vote may
only raise a tag's probability), alternating with the weights as the paper does.

Labels are {0, 1}: a keyword the user removed (an explicit negative) and a keyword never
given (unknown) are both 0 — TagProp's likelihood has no third state, and ε already
treats every absence as slightly uncertain.

Votes never materialise the [N, K, T] tensor: Y is sparse, so the maths runs over the
(photo, neighbour, tag of that neighbour) triples only (`_Triples`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from phototag.files.fileio import atomic_write

Kind = Literal["dist", "rank"]
EPS = 1e-5  # the paper's smoothing of training labels


@dataclass(frozen=True, eq=False)
class TagPropModel:
    """Learned TagProp parameters; with the training tags Y they predict new photos."""

    kind: Kind
    weights: np.ndarray  # theta [D] for "dist", gamma [K] (sums to 1) for "rank"
    k: int  # neighbours per photo
    tags: tuple[str, ...]  # the columns of Y
    distances: tuple[str, ...] = ()  # names of the distance channels theta weighs, in order
    alpha: np.ndarray | None = None  # sigma-ML slopes [T]; None: no sigmoid
    beta: np.ndarray | None = None  # sigma-ML offsets [T]
    eps: float = EPS

    def to_json(self) -> str:
        """Canonical JSON: floats written by repr, so a load gives back the same bits."""
        doc = {
            "format": "phototag-tagprop/1",
            "kind": self.kind,
            "k": self.k,
            "eps": self.eps,
            "tags": list(self.tags),
            "distances": list(self.distances),
            "weights": self.weights.tolist(),
            "alpha": None if self.alpha is None else self.alpha.tolist(),
            "beta": None if self.beta is None else self.beta.tolist(),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TagPropModel:
        try:
            doc = json.loads(text)
            if doc.get("format") != "phototag-tagprop/1":
                raise ValueError(f"unknown format {doc.get('format')!r}")
            alpha, beta = doc["alpha"], doc["beta"]
            model = cls(
                kind=doc["kind"],
                weights=np.asarray(doc["weights"], np.float64),
                k=int(doc["k"]),
                tags=tuple(doc["tags"]),
                distances=tuple(doc["distances"]),
                alpha=None if alpha is None else np.asarray(alpha, np.float64),
                beta=None if beta is None else np.asarray(beta, np.float64),
                eps=float(doc["eps"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a TagProp model: {exc}") from exc
        model.validate()
        return model

    def digest(self) -> str:
        """Short stable hash of the parameters, for ModelVersion.tagprop."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:12]

    def validate(self) -> None:
        n_weights = self.k if self.kind == "rank" else len(self.distances)
        if self.kind not in ("dist", "rank"):
            raise ValueError(f"TagProp kind must be 'dist' or 'rank', not {self.kind!r}")
        if self.weights.shape != (n_weights,):
            raise ValueError(f"TagProp {self.kind} model needs {n_weights} weights")
        if (self.alpha is None) != (self.beta is None):
            raise ValueError("TagProp sigma-ML needs both alpha and beta")
        if self.alpha is not None and (
            self.alpha.shape != (len(self.tags),) or self.beta.shape != (len(self.tags),)
        ):
            raise ValueError("TagProp alpha/beta need one value per tag")


def save(model: TagPropModel, path: Path) -> None:
    """Write atomically: a crash leaves the old model or the new one, never half of one."""
    atomic_write(Path(path), model.to_json().encode("utf-8"))


def load(path: Path) -> TagPropModel:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read TagProp model: {exc.strerror}") from exc
    try:
        return TagPropModel.from_json(text)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class _Triples:
    """(photo i, neighbour slot k, tag w) for every tag w that neighbour idx[i, k] carries.

    A vote x_iw sums pi_ik over these triples; a gradient wrt pi_ik sums over them too.
    """

    pair: np.ndarray  # flat index i*K + k
    cell: np.ndarray  # flat index i*T + w
    shape: tuple[int, int, int]  # M, K, T

    @classmethod
    def build(cls, idx: np.ndarray, labels: np.ndarray) -> _Triples:
        m, k = idx.shape
        t = labels.shape[1]
        rows, cols = np.nonzero(labels)
        counts = np.bincount(rows, minlength=len(labels))
        starts = np.cumsum(counts) - counts
        flat = idx.ravel()
        reps = counts[flat]
        # int32 halves the memory of the two index arrays whenever the indices fit.
        small = max(m * k, m * t, len(rows)) < 2**31
        dtype = np.int32 if small else np.int64
        pair = np.repeat(np.arange(m * k, dtype=dtype), reps)
        within = np.arange(len(pair), dtype=dtype) - np.repeat(
            (np.cumsum(reps) - reps).astype(dtype), reps
        )
        tag = cols[np.repeat(starts[flat], reps) + within].astype(dtype)
        return cls(pair, (pair // k) * t + tag, (m, k, t))

    def votes(self, pi: np.ndarray, eps: float) -> np.ndarray:
        m, _, t = self.shape
        hits = np.bincount(self.cell, pi.ravel()[self.pair], minlength=m * t)
        return eps + (1.0 - 2.0 * eps) * hits.reshape(m, t)

    def grad_pi(self, grad_x: np.ndarray, eps: float) -> np.ndarray:
        m, k, _ = self.shape
        hits = np.bincount(self.pair, grad_x.ravel()[self.cell], minlength=m * k)
        return eps * grad_x.sum(1, keepdims=True) + (1.0 - 2.0 * eps) * hits.reshape(m, k)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def neighbour_weights(kind: Kind, weights: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """pi [M, K] from parameters; dist [M, K, D] nearest first."""
    m, k = dist.shape[:2]
    if kind == "rank":
        gamma = weights[:k] / weights[:k].sum()  # fewer neighbours than trained: renormalise
        return np.broadcast_to(gamma, (m, k))
    return _softmax(-(dist @ weights))


def predict(
    model: TagPropModel, dist: np.ndarray, idx: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Tag scores [M, T] in [0, 1] for photos with neighbours idx [M, K] at dist [M, K, D]."""
    labels = np.asarray(labels, bool)
    dist = _as_channels(dist)
    if labels.shape[1] != len(model.tags):
        raise ValueError(
            f"model has {len(model.tags)} tags, training labels have {labels.shape[1]}"
        )
    if dist.shape[1] > model.k or (model.kind == "dist" and dist.shape[2] != len(model.weights)):
        raise ValueError(
            f"model expects at most {model.k} neighbours and {len(model.distances)} distances, "
            f"got {dist.shape[1]} and {dist.shape[2]}"
        )
    pi = neighbour_weights(model.kind, model.weights, dist)
    x = vote(pi, idx, labels, model.eps)
    if model.alpha is None:
        return x
    from scipy.special import expit  # SciPy loads in 0.6 s: only when a TagProp model is used

    return expit(model.alpha * x + model.beta)


def vote(pi: np.ndarray, idx: np.ndarray, labels: np.ndarray, eps: float = 0.0) -> np.ndarray:
    """x [M, T] = Σ_k pi[m, k] p(y[idx[m, k]] = +1), with ε-smoothed labels."""
    return _Triples.build(np.asarray(idx, np.int64), np.asarray(labels, bool)).votes(pi, eps)


def _as_channels(dist: np.ndarray) -> np.ndarray:
    dist = np.asarray(dist, np.float64)
    return dist[..., None] if dist.ndim == 2 else dist


def _log_sigmoid(z: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(log p(label), p(+1)) under p(+1) = sigmoid(z), sharing one exp, never overflowing."""
    e = np.exp(-np.abs(z))
    p = np.where(z >= 0, 1.0, e) / (1.0 + e)
    signed = np.where(labels, z, -z)
    return np.minimum(signed, 0.0) - np.log1p(e), p


@dataclass
class _Problem:
    """The leave-one-out log-likelihood as a function of a flat parameter vector.

    Layout: [neighbour params (theta·scale for dist, u for rank) | alpha (T) | beta (T)],
    the last two for sigma-ML only. theta is optimised multiplied by each channel's mean
    distance so that all variables start near 1, which L-BFGS-B needs for sensible first
    steps.
    """

    kind: Kind
    dist: np.ndarray  # [N, K, D]
    triples: _Triples
    labels: np.ndarray  # bool [N, T]
    cost: np.ndarray  # c_iw [N, T]
    scale: np.ndarray  # [D] mean distance of each channel
    eps: float
    sigma: bool

    @property
    def n_weights(self) -> int:
        return self.dist.shape[1] if self.kind == "rank" else self.dist.shape[2]

    def unpack(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = self.labels.shape[1]
        nw = self.n_weights
        weights = _softmax(v[:nw]) if self.kind == "rank" else v[:nw] / self.scale
        alpha = v[nw : nw + t] if self.sigma else np.ones(t)
        beta = v[nw + t :] if self.sigma else np.zeros(t)
        return weights, alpha, beta

    def votes(self, v: np.ndarray) -> np.ndarray:
        weights = self.unpack(v)[0]
        return self.triples.votes(neighbour_weights(self.kind, weights, self.dist), self.eps)

    def loss_and_grad(self, v: np.ndarray) -> tuple[float, np.ndarray]:
        """Negative weighted log-likelihood and its gradient."""
        weights, alpha, beta = self.unpack(v)
        pi = neighbour_weights(self.kind, weights, self.dist)
        x = self.triples.votes(pi, self.eps)
        labels, c = self.labels, self.cost
        if self.sigma:
            z = alpha * x + beta
            loglik, p = _log_sigmoid(z, labels)
            resid = c * (labels - p)  # d loglik / dz, weighted
            grad_x = resid * alpha
            sigmoid_grads = [(resid * x).sum(0), resid.sum(0)]
        else:
            loglik = np.log(np.where(labels, x, 1.0 - x))
            grad_x = c * np.where(labels, 1.0 / x, -1.0 / (1.0 - x))
            sigmoid_grads = []
        grad_pi = self.triples.grad_pi(grad_x, self.eps)
        if self.kind == "rank":
            g = grad_pi.sum(0)
            grad_w = weights * (g - weights @ g)
        else:
            grad_z = pi * (grad_pi - (pi * grad_pi).sum(1, keepdims=True))
            grad_w = -np.einsum("nk,nkd->d", grad_z, self.dist) / self.scale
        return -float((c * loglik).sum()), -np.concatenate([grad_w, *sigmoid_grads])


def _problem(
    kind: Kind, dist: np.ndarray, idx: np.ndarray, labels: np.ndarray, sigma: bool, eps: float
) -> _Problem:
    n_pos = max(1, int(labels.sum()))
    n_neg = max(1, labels.size - n_pos)
    cost = np.where(labels, 1.0 / n_pos, 1.0 / n_neg)
    scale = dist.reshape(-1, dist.shape[2]).mean(0)
    scale = np.where(scale > 0, scale, 1.0)
    return _Problem(kind, dist, _Triples.build(idx, labels), labels, cost, scale, eps, sigma)


def _minimise_weights(problem: _Problem, v0: np.ndarray, max_iter: int) -> np.ndarray:
    """L-BFGS-B over the neighbour parameters, the sigmoids (if any) held at v0."""
    nw = problem.n_weights
    bounds = [(None, None)] * nw if problem.kind == "rank" else [(0.0, None)] * nw

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = problem.loss_and_grad(np.r_[w, v0[nw:]])
        return loss, grad[:nw]

    from scipy.optimize import minimize  # SciPy loads in 0.6 s: only when training

    res = minimize(
        f,
        v0[:nw],
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iter, "ftol": 1e-6, "gtol": 1e-5},
    )
    return np.r_[res.x, v0[nw:]]


def _fit_sigmoids(
    x: np.ndarray,
    labels: np.ndarray,
    cost: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    max_iter: int = 50,
    floor: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tag weighted logistic regression of the labels on the votes, alpha ≥ floor.

    Each tag is a separate 2-parameter concave problem, so Newton's method, vectorised
    over the tags not yet converged, with step-halving that never lowers a tag's
    likelihood, gets there in a few iterations; a joint L-BFGS struggles with tags whose
    curvatures differ by orders of magnitude.
    """
    alpha, beta = np.maximum(alpha.astype(np.float64), floor), beta.astype(np.float64)
    # A tag no training photo carries has its MLE at beta = -inf; give it the prior ε.
    unseen = ~labels.any(0)
    alpha[unseen], beta[unseen] = 0.0, np.log(EPS / (1.0 - EPS))
    active = np.flatnonzero(~unseen)
    scale = None  # |total log-likelihood|, the yardstick for "no further gain"
    for _ in range(max_iter):
        xa, ya, ca = x[:, active], labels[:, active], cost[:, active]
        a, b = alpha[active], beta[active]
        loglik, p = _log_sigmoid(a * xa + b, ya)
        current = (ca * loglik).sum(0)
        scale = abs(current.sum()) if scale is None else scale
        resid, curv = ca * (ya - p), ca * p * (1.0 - p)
        ga, gb = (resid * xa).sum(0), resid.sum(0)
        haa, hab, hbb = (curv * xa * xa).sum(0), (curv * xa).sum(0), curv.sum(0)
        det = haa * hbb - hab * hab
        safe_det = np.where(det > 1e-12 * haa * hbb, det, np.inf)
        da = (hbb * ga - hab * gb) / safe_det
        db = (haa * gb - hab * ga) / safe_det
        # Only beta moves where the votes do not vary (det 0: a tag nobody near carries)
        # or where alpha sits on its bound and wants to go below it.
        beta_only = ~np.isfinite(safe_det) | ((a <= floor) & (da < 0.0))
        da = np.where(beta_only, 0.0, da)
        db = np.where(beta_only, gb / np.maximum(hbb, 1e-300), db)
        # Newton decrement: the likelihood the full step would gain on the quadratic model.
        expected = 0.5 * (da * ga + db * gb)
        step = np.ones_like(a)
        todo = np.arange(len(a))
        for _ in range(30):
            trial_a = np.maximum(a[todo] + step[todo] * da[todo], floor)
            trial_b = b[todo] + step[todo] * db[todo]
            z = trial_a * xa[:, todo] + trial_b
            new = (ca[:, todo] * _log_sigmoid(z, ya[:, todo])[0]).sum(0)
            ok = new >= current[todo] - 1e-14 * scale
            alpha[active[todo[ok]]], beta[active[todo[ok]]] = trial_a[ok], trial_b[ok]
            todo = todo[~ok]
            step[todo] /= 2
            if not len(todo):
                break
        active = active[expected > 1e-11 * scale]
        if not len(active):
            break
    return alpha, beta


def _sigmoids(
    problem: _Problem, v: np.ndarray, alpha: np.ndarray, beta: np.ndarray, pooled_floor: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The per-tag sigmoids for the neighbour parameters in v (see `fit`'s pooled_floor)."""
    x, labels, cost = problem.votes(v), problem.labels, problem.cost
    floor = 0.0
    if pooled_floor:
        seen = labels.any(0)
        pooled, _ = _fit_sigmoids(
            x[:, seen].reshape(-1, 1),
            labels[:, seen].reshape(-1, 1),
            cost[:, seen].reshape(-1, 1),
            np.ones(1),
            np.zeros(1),
        )
        floor = float(pooled[0])
    return _fit_sigmoids(x, labels, cost, alpha, beta, floor=floor)


def fit(
    dist: np.ndarray,
    idx: np.ndarray,
    labels: np.ndarray,
    kind: Kind = "dist",
    sigma: bool = True,
    *,
    tags: tuple[str, ...] | None = None,
    distances: tuple[str, ...] | None = None,
    eps: float = EPS,
    max_iter: int = 100,
    rounds: int = 3,
    pooled_floor: bool = False,
) -> TagPropModel:
    """Learn TagProp from leave-one-out neighbours of the training photos.

    dist [N, K, D] (or [N, K]) and idx [N, K]: each training photo's K nearest *other*
    training photos, nearest first (`neighbours.search(..., exclude_self=True)`).
    labels [N, T] bool. sigma-ML alternates, as the paper does, between the sigmoids (neighbour
    weights fixed: concave per tag) and the neighbour weights (sigmoids fixed), starting
    from the weights that are best without sigmoids; `rounds` such alternations.

    pooled_floor: each tag's slope alpha_w is at least the slope of one sigmoid fitted to
    all tags at once, instead of at least 0. A tag with a handful of photos often has no
    leave-one-out evidence that its votes matter (its few photos are not each other's
    neighbours), and its maximum-likelihood alpha_w is 0: the same score for every photo,
    which puts it in every photo's top tags or in none. The floor says that, lacking
    evidence, a tag's votes count as much as the average tag's.
    """
    labels = np.asarray(labels, bool)
    dist = _as_channels(dist)
    idx = np.asarray(idx, np.int64)
    n, k, d = dist.shape
    t = labels.shape[1]
    if idx.shape != (n, k) or labels.shape[0] != n:
        raise ValueError(f"dist {dist.shape}, idx {idx.shape} and labels {labels.shape} disagree")
    if kind not in ("dist", "rank"):
        raise ValueError(f"TagProp kind must be 'dist' or 'rank', not {kind!r}")
    if idx.size and (idx.min() < 0 or idx.max() >= n or (idx == np.arange(n)[:, None]).any()):
        raise ValueError("neighbour indices must be other training photos (leave-one-out)")
    tags = tags or tuple(f"tag{w}" for w in range(t))
    distances = distances or tuple(f"d{c}" for c in range(d))
    if len(tags) != t or len(distances) != d:
        raise ValueError("one tag name per label column and one name per distance channel")

    # Start from pi ∝ exp(-Σ d/mean d) or uniform rank weights.
    problem = _problem(kind, dist, idx, labels, sigma=False, eps=eps)
    v = _minimise_weights(problem, np.zeros(k) if kind == "rank" else np.ones(d), max_iter)
    alpha = beta = None
    if sigma:
        problem = _problem(kind, dist, idx, labels, sigma=True, eps=eps)
        alpha, beta = np.ones(t), np.zeros(t)
        for _ in range(rounds):
            alpha, beta = _sigmoids(problem, v, alpha, beta, pooled_floor)
            v = _minimise_weights(problem, np.r_[v[: problem.n_weights], alpha, beta], max_iter)
        alpha, beta = _sigmoids(problem, v, alpha, beta, pooled_floor)
    weights = problem.unpack(v)[0].copy()
    model = TagPropModel(kind, weights, k, tuple(tags), tuple(distances), alpha, beta, eps)
    model.validate()
    return model
