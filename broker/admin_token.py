"""The operator token: where the broker takes it from, the rule it must meet, and making one.

Never from the command line: every user of the host reads a process's arguments
(/proc/PID/cmdline, `ps`). The token comes from the environment (ZMQ_CHAT_ADMIN_TOKEN),
from a file (`--admin-token-file`), or is generated and written to a file only its owner
reads.
"""

import os
import secrets
import stat
from pathlib import Path
from typing import Final

from messages import MAX_TOKEN_BYTES

#: Environment variable holding the operator token.
ADMIN_TOKEN_ENV: Final = "ZMQ_CHAT_ADMIN_TOKEN"
#: Shortest operator token, in characters: 22 URL-safe characters hold 128 random bits.
MIN_ADMIN_TOKEN_CHARS: Final = 22
#: Bytes of randomness in a generated token (secrets.token_urlsafe: 22 characters).
GENERATED_TOKEN_BYTES: Final = 16
#: Where a generated token is written, in the state directory.
GENERATED_TOKEN_FILE: Final = "admin-token"
#: The rule, as the broker states it when a token breaks it.
TOKEN_RULE: Final = (
    f"the operator token must be {MIN_ADMIN_TOKEN_CHARS} to {MAX_TOKEN_BYTES} bytes, holding "
    "at least 128 random bits (such as: python3 -c 'import secrets; "
    "print(secrets.token_urlsafe(16))')"
)


def check_admin_token(token: str) -> None:
    """Raise ValueError, stating the rule, if `token` is too short or too long to use."""
    size = len(token.encode())
    if len(token) < MIN_ADMIN_TOKEN_CHARS or size > MAX_TOKEN_BYTES:
        raise ValueError(f"{TOKEN_RULE}; this one is {size} bytes")


def read_token_file(path: Path) -> str:
    """The token in file `path` (its first line, without surrounding white space)."""
    text = path.read_text(encoding="utf-8")
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def readable_by_others(path: Path) -> bool:
    """Whether users other than the owner may read `path`."""
    return bool(path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH))


def generate_token_file(state_dir: Path) -> tuple[str, Path]:
    """A new random token, written to `state_dir`/admin-token readable by its owner only;
    the token and the file."""
    token = secrets.token_urlsafe(GENERATED_TOKEN_BYTES)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / GENERATED_TOKEN_FILE
    # Created private, not made private afterwards: no moment where others can read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)  # an older file may have had another mode
        file.write(token + "\n")
    return token, path
