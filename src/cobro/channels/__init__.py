"""Channels: one module per way of reaching a person, behind the ``Channel`` port."""

from cobro.channels.base import Channel, Outgoing

__all__ = ["Channel", "Outgoing"]
