"""Several server processes on one port, each with its own listening socket (`SO_REUSEPORT`).

uvicorn's supervisor binds one socket and shares it: every worker waits on it, and whichever
wakes first takes every connection then pending. Clients that keep their connections open (a
site's scanners, a reverse proxy's pool of connections, a load generator) then often land
mostly on one worker while the other idles — measured with bench/redemption.py: about three
quarters of 32 connections on one worker; its answers wait longer, and the run's p99 with
them.

Here each worker gets a socket of its own, bound to the same address with `SO_REUSEPORT`: the
kernel spreads new connections over the listening workers by a hash of their addresses, so each
worker takes its share whichever is awake. uvicorn's supervisor is kept for the rest (health
checks, restarts, signals); only the sockets it hands its workers differ. The supervisor keeps
no copy: a worker's socket closes with it, and its replacement binds a new one. (On Linux,
connections still waiting in a stopped worker's queue are reset — rare, a client retries —
unless `net.ipv4.tcp_migrate_req` moves them to another worker's socket.)
"""

from __future__ import annotations

import socket
from typing import Any

from uvicorn.config import Config
from uvicorn.supervisors.multiprocess import Multiprocess


def bind_shared(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port) that other sockets of this user may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class PortSharingWorkers(Multiprocess):
    """uvicorn's `Multiprocess`, each worker started with a socket bound for it alone.

    uvicorn starts every worker as `Process(self.config, self.sockets)` then starts it — at
    first, on a restart (SIGHUP), in place of one that died — so `sockets` is read once per
    worker and binds a fresh socket each time. The worker inherits the socket when it starts;
    the supervisor's copy is closed right after (`_close_handed`)."""

    def __init__(self, config: Config) -> None:
        self._handed: list[socket.socket] = []
        super().__init__(config, sockets=[])

    @property  # type: ignore[override]
    def sockets(self) -> list[socket.socket]:
        sock = bind_shared(self.config.host, self.config.port)
        self._handed.append(sock)
        return [sock]

    @sockets.setter
    def sockets(self, _: Any) -> None:  # set by uvicorn's __init__: each worker binds its own
        pass

    def _close_handed(self) -> None:
        while self._handed:
            self._handed.pop().close()

    def init_processes(self) -> None:
        try:
            super().init_processes()
        finally:
            self._close_handed()

    def restart_all(self) -> None:
        try:
            super().restart_all()
        finally:
            self._close_handed()

    def keep_subprocess_alive(self) -> None:
        try:
            super().keep_subprocess_alive()
        finally:
            self._close_handed()
