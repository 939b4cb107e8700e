"""A MongoDB command recorder for tests that count database operations (cache, analytics, jobs).

Registered at import, before any MongoClient exists: pymongo applies global
listeners only to clients created afterwards.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pymongo import monitoring


@dataclass(frozen=True)
class Command:
    name: str
    collection: str


EVERY_THREAD = -1


class CommandRecorder(monitoring.CommandListener):
    """Records (command, collection) sent from the recording thread (or, with `every_thread`, from any
    thread) while `recording()` is active."""

    def __init__(self) -> None:
        self._thread: int | None = None
        self.commands: list[Command] = []

    @contextmanager
    def recording(self, *, every_thread: bool = False) -> Iterator[list[Command]]:
        self.commands = []
        self._thread = EVERY_THREAD if every_thread else threading.get_ident()
        try:
            yield self.commands
        finally:
            self._thread = None

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self._thread in (EVERY_THREAD, threading.get_ident()):
            target = event.command.get(event.command_name)
            self.commands.append(Command(event.command_name, target if isinstance(target, str) else ""))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


MONGO_COMMANDS = CommandRecorder()
monitoring.register(MONGO_COMMANDS)
