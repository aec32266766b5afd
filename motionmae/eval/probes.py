"""Probes on frozen features: a linear classifier and cosine k-nearest neighbours."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class ProbeResult:
    """Held-out accuracy of one probe (fractions in [0, 1]) and two baselines: ``chance``,
    a uniform guess among the ``K`` classes of the training set (``1 / K``), and
    ``majority``, always answering the validation set's most frequent class.
    ``val_from_train``: how many validation clips come from a video of the training set (then
    the accuracy is not a held-out one)."""

    kind: str
    top1: float
    top5: float
    chance: float
    majority: float
    num_train: int
    num_val: int
    details: dict
    val_from_train: int = 0


def _check(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray) -> int:
    if len(train_x) == 0 or len(val_x) == 0:
        raise ValueError("a probe needs at least one training and one validation clip")
    if train_x.shape[1] != val_x.shape[1]:
        raise ValueError(f"feature sizes differ: {train_x.shape[1]} vs {val_x.shape[1]}")
    if (train_y < 0).any() or (val_y < 0).any():
        raise ValueError("a probe needs a label for every clip (found unlabelled clips)")
    return int(max(train_y.max(), val_y.max())) + 1


def _topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return float((top == labels[:, None]).any(dim=1).float().mean())


def _baselines(train_y: np.ndarray, val_y: np.ndarray) -> tuple[float, float]:
    """``(1 / K, share of the most frequent validation class)``, ``K`` the classes that
    training clips have: :class:`ProbeResult`'s ``chance`` and ``majority``."""
    return 1 / len(np.unique(train_y)), float(np.bincount(val_y).max() / len(val_y))


def _fit_softmax(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float,
                 iterations: int) -> torch.nn.Linear:
    torch.manual_seed(0)
    head = torch.nn.Linear(x.shape[1], classes)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=iterations,
                                  history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(x), y) + l2 * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    l2_grid: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2),
    iterations: int = 300,
    seed: int = 0,
) -> ProbeResult:
    """Multinomial logistic regression on standardised features (full-batch L-BFGS).

    The L2 strength is chosen on a 20% split of the training set, then the head is refit on
    the whole training set and scored once on the validation set.
    """
    classes = _check(train_x, train_y, val_x, val_y)
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    tx = torch.from_numpy((train_x - mean) / std).float()
    vx = torch.from_numpy((val_x - mean) / std).float()
    ty, vy = torch.from_numpy(train_y).long(), torch.from_numpy(val_y).long()
    order = torch.randperm(len(tx), generator=torch.Generator().manual_seed(seed))
    cut = max(1, len(tx) // 5)
    hold, fit = order[:cut], order[cut:]
    scores = {}
    if len(fit) >= classes:
        for l2 in l2_grid:
            head = _fit_softmax(tx[fit], ty[fit], classes, l2, iterations)
            with torch.no_grad():
                scores[l2] = _topk(head(tx[hold]), ty[hold], 1)
    best = max(scores, key=scores.get) if scores else l2_grid[len(l2_grid) // 2]
    head = _fit_softmax(tx, ty, classes, best, iterations)
    with torch.no_grad():
        logits = head(vx)
    return ProbeResult("linear", _topk(logits, vy, 1), _topk(logits, vy, 5),
                       *_baselines(train_y, val_y), len(tx), len(vx),
                       {"l2": best, "l2_scores": scores})


def knn_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    k: int = 20,
    temperature: float = 0.07,
) -> ProbeResult:
    """Weighted k-NN on cosine similarity (votes weighted by ``exp(sim / temperature)``)."""
    classes = _check(train_x, train_y, val_x, val_y)
    tx = F.normalize(torch.from_numpy(train_x).float(), dim=1)
    vx = F.normalize(torch.from_numpy(val_x).float(), dim=1)
    ty, vy = torch.from_numpy(train_y).long(), torch.from_numpy(val_y).long()
    k = min(k, len(tx))
    similarity, neighbours = (vx @ tx.T).topk(k, dim=1)
    votes = torch.zeros(len(vx), classes)
    votes.scatter_add_(1, ty[neighbours], (similarity / temperature).exp())
    return ProbeResult("knn", _topk(votes, vy, 1), _topk(votes, vy, 5),
                       *_baselines(train_y, val_y), len(tx), len(vx),
                       {"k": k, "temperature": temperature})
