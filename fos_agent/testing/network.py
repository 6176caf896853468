"""The test kit's lossy network: messages in flight, any of which may be delivered next (in
any order), dropped or duplicated (public via fos_agent.testing)."""

from __future__ import annotations

from collections.abc import Iterable

from fos_agent.protocol.messages import Message


class LossyNetwork:
    """Messages in flight. Any one may be delivered next, dropped or duplicated."""

    def __init__(self) -> None:
        self.in_flight: list[Message] = []
        self.sent = self.delivered = self.dropped = self.duplicated = 0

    def send(self, messages: Iterable[Message]) -> None:
        for msg in messages:
            self.in_flight.append(msg)
            self.sent += 1

    def take(self, index: int) -> Message | None:
        if not self.in_flight:
            return None
        self.delivered += 1
        return self.in_flight.pop(index % len(self.in_flight))

    def drop(self, index: int) -> None:
        if self.in_flight:
            self.in_flight.pop(index % len(self.in_flight))
            self.dropped += 1

    def duplicate(self, index: int) -> None:
        if self.in_flight:
            self.in_flight.append(self.in_flight[index % len(self.in_flight)])
            self.duplicated += 1
