"""The zmq-chat broker: a sans-IO routing core (`core`) behind one ROUTER loop (`server`)."""

from .core import ChatCore
from .server import BrokerConfig, BrokerServer
from .session import Session

__all__ = ["BrokerConfig", "BrokerServer", "ChatCore", "Session"]
