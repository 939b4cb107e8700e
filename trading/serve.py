"""`python -m trading.serve [uvicorn's options]`: one uvicorn process on a port it shares with its siblings.

Why (docs/decisions/0006-process-supervision.md): `uvicorn --workers 2` is one
master and two workers; a kill -9 of the master takes both workers with it (they
must not outlive it, or the restarted master cannot bind), so the site is down
until a new master has started two workers and each has imported the app
(measured: 12 s under the fault bench's load). Instead the supervisor runs
independent single-process servers that all listen on the same port with
SO_REUSEPORT: the kernel spreads new connections over the live ones, a killed one
is restarted on its own, and the others serve meanwhile.

The options are uvicorn's own (its command-line parser reads them); only
`--workers` is refused, since each process here is one worker. The socket is
bound after the app is imported, so the kernel never routes a connection to a
process that cannot accept it yet.
"""

from __future__ import annotations

import os
import socket
import sys

import uvicorn
from uvicorn import main as uvicorn_cli  # the click command
from uvicorn.config import Config, logger


def shared_port_socket(config: Config) -> socket.socket:
    """A listening-ready TCP socket on the configured host and port that other processes may bind too."""
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((config.host, config.port))
    sock.setblocking(False)
    return sock


class SharedPortServer(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if sockets is None and self.config.uds is None and self.config.fd is None:
            sockets = [shared_port_socket(self.config)]
            host, port = sockets[0].getsockname()[:2]
            logger.info("Uvicorn running on http://%s:%d (shared port, pid %d)", host, port, os.getpid())
        await super().startup(sockets=sockets)


def main(argv: list[str]) -> None:
    if any(arg == "--workers" or arg.startswith("--workers=") for arg in argv):
        sys.exit("trading.serve runs one process; start several of them instead of --workers")
    # uvicorn.run() builds its server from the module's name `Server` (the package's `uvicorn.main` is the command)
    sys.modules["uvicorn.main"].Server = SharedPortServer  # type: ignore[attr-defined]
    uvicorn_cli(argv, prog_name="trading.serve")


if __name__ == "__main__":
    main(sys.argv[1:])
