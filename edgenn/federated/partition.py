"""Split a dataset across simulated clients: iid, Dirichlet label skew, or label shards."""

from __future__ import annotations

import numpy as np

from ..errors import UsageError


def partition(y: np.ndarray, clients: int, scheme, seed: int = 0,
              min_size: int = 1) -> list[np.ndarray]:
    """Index arrays, one per client.

    Parameters
    ----------
    scheme
        ``"iid"``; ``{"dirichlet": alpha}`` (per class, client shares drawn from
        Dirichlet(alpha): small alpha, strong skew); or ``{"shards": k}`` (sort by label, cut into
        clients * k shards, k per client, as in McMahan et al.).
    min_size
        Redraw a Dirichlet split until every client holds at least this many samples.
    """
    if clients < 1 or clients > len(y):
        raise UsageError(f"clients must be between 1 and the {len(y)} samples; received {clients}",
                         "lower clients")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(len(y)), clients)]
    if isinstance(scheme, dict) and set(scheme) == {"dirichlet"}:
        alpha = float(scheme["dirichlet"])
        if alpha <= 0:
            raise UsageError(f"dirichlet alpha must be positive; received {alpha}", "use e.g. 0.5")
        classes = np.unique(y)
        for _ in range(100):
            parts: list[list[int]] = [[] for _ in range(clients)]
            for c in classes:
                idx = rng.permutation(np.flatnonzero(y == c))
                shares = rng.dirichlet(np.full(clients, alpha))
                cuts = (np.cumsum(shares) * len(idx)).astype(int)[:-1]
                for client, chunk in enumerate(np.split(idx, cuts)):
                    parts[client].extend(chunk.tolist())
            if min(len(p) for p in parts) >= min_size:
                return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
        raise UsageError(f"could not give every client {min_size} samples with dirichlet {alpha}",
                         "raise alpha or lower the number of clients")
    if isinstance(scheme, dict) and set(scheme) == {"shards"}:
        per_client = int(scheme["shards"])
        n_shards = clients * per_client
        if per_client < 1 or n_shards > len(y):
            raise UsageError(f"shards must be >= 1 and clients * shards <= samples; received "
                             f"{per_client}", "lower shards")
        order = np.argsort(y, kind="stable")
        shards = np.array_split(order, n_shards)
        picks = rng.permutation(n_shards).reshape(clients, per_client)
        return [np.sort(np.concatenate([shards[i] for i in row])) for row in picks]
    raise UsageError(f"unknown partition {scheme!r}",
                     "use iid, {dirichlet: ALPHA} or {shards: K}")
