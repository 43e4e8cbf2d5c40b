"""Ray, where edgenn runs work on it: `federated simulate` (Flower's backend) and `fit` (trials)."""

from __future__ import annotations

from .errors import UsageError


def check_ray_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast when --ray-address names no reachable Ray head (Ray itself retries for ever).

    ``auto``, ``local`` and ``ray://`` (Ray Client) addresses are left to Ray.
    """
    import socket

    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address!r} is not HOST:PORT",
                         "pass the head's address as `ray start --head` prints it, e.g. "
                         "10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"no Ray cluster answers at {address} ({exc.strerror or exc})",
                         "start one with `ray start --head --port PORT`, or fix --ray-address"
                         ) from None
