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


@dataclass(frozen=True)
class Update:
    collection: str
    statements: list[dict]  # the command's `updates`: each {"q": filter, "u": update, ...}
    modified: int  # documents the server says it changed


class UpdateRecorder(monitoring.CommandListener):
    """Records every `update` command that changed a document, from any thread, while `recording()` is active."""

    def __init__(self) -> None:
        self._active = False
        self._lock = threading.Lock()
        self._started: dict[tuple[object, int], tuple[str, list[dict]]] = {}
        self.updates: list[Update] = []

    @contextmanager
    def recording(self) -> Iterator[list[Update]]:
        with self._lock:
            self.updates = []
            self._started.clear()
            self._active = True
        try:
            yield self.updates
        finally:
            self._active = False

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self._active and event.command_name == "update":
            with self._lock:
                target = (event.connection_id, event.request_id)
                self._started[target] = (event.command["update"], list(event.command.get("updates", [])))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        with self._lock:
            started = self._started.pop((event.connection_id, event.request_id), None)
            if started is not None and event.reply.get("nModified", 0):
                self.updates.append(Update(started[0], started[1], int(event.reply["nModified"])))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        with self._lock:
            self._started.pop((event.connection_id, event.request_id), None)


MONGO_UPDATES = UpdateRecorder()
monitoring.register(MONGO_UPDATES)
