"""The shared settings, re-exported: they live in the bottom layer, `schemas.settings`."""

from schemas.settings import BridgeSettings, TopicNames

__all__ = ["BridgeSettings", "TopicNames"]
