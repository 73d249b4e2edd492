"""The zmq-chat broker: a sans-IO routing core (`core`) behind one ROUTER loop (`server`)."""

from .core import ChatCore, Session
from .server import BrokerConfig, BrokerServer

__all__ = ["BrokerConfig", "BrokerServer", "ChatCore", "Session"]
