"""The client's identity file: made once, kept secret, read back the same; real files."""

import os
import stat
from pathlib import Path

import pytest
from nacl.signing import VerifyKey

from client.cli import identity_path
from client.identity import IDENTITY_FILE, IdentityError, load_identity
from messages import from_b64url, prove_payload, register_payload


def test_the_first_run_makes_an_identity_only_its_owner_may_read(tmp_path: Path) -> None:
    path = tmp_path / "state" / IDENTITY_FILE
    old_umask = os.umask(0)  # the most permissive umask: the file is 0600 all the same
    try:
        identity = load_identity(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # One line of base64url; nothing else (no temporary file) is left beside it.
    assert len(path.read_text().strip()) == 43
    assert [p.name for p in path.parent.iterdir()] == [IDENTITY_FILE]
    # The next run reads the same identity.
    assert load_identity(path).public_key == identity.public_key


def test_a_copy_of_the_file_is_the_same_identity(tmp_path: Path) -> None:
    original = load_identity(tmp_path / "laptop" / IDENTITY_FILE)
    copy = tmp_path / "desktop" / "my-identity"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "laptop" / IDENTITY_FILE).read_bytes())
    copy.chmod(0o600)
    assert load_identity(copy).public_key == original.public_key


def test_what_it_signs_verifies_with_its_public_key(tmp_path: Path) -> None:
    identity = load_identity(tmp_path / IDENTITY_FILE)
    key = VerifyKey(from_b64url(identity.public_key))
    register = identity.register("Alice", "session-token-of-22-chars")
    key.verify(
        register_payload("alice", "session-token-of-22-chars"), from_b64url(register.signature)
    )
    nonce = "A" * 43
    prove = identity.prove(nonce, "alice", "session-token-of-22-chars")
    assert prove.public_key == identity.public_key
    key.verify(
        prove_payload(nonce, "ALICE", "session-token-of-22-chars"), from_b64url(prove.signature)
    )


def test_a_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / IDENTITY_FILE
    load_identity(path)
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        load_identity(path)


@pytest.mark.parametrize("content", [b"", b"not base64!\n", b"QUJD\n", bytes(range(256))])
def test_a_file_that_is_not_an_identity_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / IDENTITY_FILE
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="not an identity file"):
        load_identity(path)


def test_an_identity_that_cannot_be_kept_says_where(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(IdentityError, match=f"identity file {blocked / IDENTITY_FILE}: "):
        load_identity(blocked / IDENTITY_FILE)


def test_a_file_named_on_the_command_line_is_not_made(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="no identity file at"):
        load_identity(tmp_path / "typo", create=False)
    assert not (tmp_path / "typo").exists()


def test_the_identity_lives_in_the_state_directory_unless_named(tmp_path: Path) -> None:
    assert identity_path(None, tmp_path) == tmp_path / IDENTITY_FILE
    assert identity_path(tmp_path / "other", tmp_path) == tmp_path / "other"
