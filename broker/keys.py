"""The broker's CurveZMQ key pair, created once and kept in a state directory."""

import os
from pathlib import Path
from typing import Final

import zmq.auth

#: Environment variable naming the state directory.
STATE_DIR_ENV: Final = "ZMQ_CHAT_STATE_DIR"
#: Base name of the broker's certificate files: server.key (public, give it to clients)
#: and server.key_secret (keep it private).
SERVER_CERT_NAME: Final = "server"


def default_state_dir() -> Path:
    """$ZMQ_CHAT_STATE_DIR, or ~/.local/state/zmq-chat."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".local" / "state" / "zmq-chat"


def server_key_pair(state_dir: Path) -> tuple[bytes, bytes]:
    """The broker's (public, secret) Z85 keys, created in `state_dir` on first use."""
    secret_file = state_dir / f"{SERVER_CERT_NAME}.key_secret"
    if not secret_file.exists():
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Created private, not made private afterwards: no moment where others can read.
        previous = os.umask(0o077)
        try:
            zmq.auth.create_certificates(state_dir, SERVER_CERT_NAME)
        finally:
            os.umask(previous)
    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key")
    return public, secret
