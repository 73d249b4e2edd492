"""Tab completion against a chat state fed with broker events."""

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from client.completion import ChatCompleter
from client.state import ChatState
from messages import events as ev

SERVER = "tcp://127.0.0.1:5555"


def completions(state: ChatState, text: str) -> list[str]:
    """What replaces the current word, in offered order, for `text` with the cursor at its end."""
    document = Document(text, len(text))
    event = CompleteEvent(completion_requested=True)
    return [c.text for c in ChatCompleter(state).get_completions(document, event)]


def applied(state: ChatState, text: str) -> list[str]:
    """The whole line after each offered completion."""
    document = Document(text, len(text))
    event = CompleteEvent(completion_requested=True)
    return [
        text[: len(text) + c.start_position] + c.text
        for c in ChatCompleter(state).get_completions(document, event)
    ]


@pytest.fixture
def state() -> ChatState:
    chat = ChatState("alice", SERVER)
    chat.apply(ev.Welcome("alice", 2000, "e1", 0, (), 5556))
    chat.apply(ev.UserList(0, ("alice", "bob", "Bernd", "Анна", "carol", "Alfred")))
    return chat


def test_commands_after_slash(state: ChatState) -> None:
    assert completions(state, "/q") == ["/query ", "/quit "]
    assert completions(state, "/")[:3] == ["/msg ", "/query ", "/all"]
    assert completions(state, "/US") == ["/users"]
    assert completions(state, "/b") == ["/buffer ", "/ban "]
    assert completions(state, "/unig") == ["/unignore "]
    assert completions(state, "/nope") == []
    # "//" starts a literal line, not a command.
    assert completions(state, "//q") == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/msg b", ["/msg Bernd ", "/msg bob "]),
        ("/query c", ["/query carol "]),
        ("/kick BO", ["/kick bob "]),
        ("/ignore ca", ["/ignore carol "]),
        ("@b", ["@Bernd ", "@bob "]),
        ("hey @ca", ["hey @carol "]),
        ("b", ["Bernd: ", "bob: "]),
        ("thanks c", ["thanks carol "]),
        ("/msg bob thanks c", ["/msg bob thanks carol "]),
        ("/wall ask c", ["/wall ask carol "]),
        ("ан", ["Анна: "]),
        ("/msg АН", ["/msg Анна "]),
        ("x", []),
    ],
)
def test_nick_positions_and_suffixes(state: ChatState, text: str, expected: list[str]) -> None:
    assert applied(state, text) == expected


def test_own_nick_is_never_offered(state: ChatState) -> None:
    assert completions(state, "al") == ["Alfred: "]
    assert completions(state, "/msg al") == ["Alfred "]


def test_no_nick_completion_in_tokens_or_targets(state: ChatState) -> None:
    assert completions(state, "/admin b") == []
    assert completions(state, "/query bob c") == []


def test_recent_speakers_first_then_joins_then_alphabetical(state: ChatState) -> None:
    assert completions(state, "") == ["Alfred: ", "Bernd: ", "bob: ", "carol: ", "Анна: "]
    state.apply(ev.Joined(1, "bert"))
    state.apply(ev.Message(2, "c-1", "carol", "hi", 1))
    state.apply(ev.Message(3, "b-1", "bob", "hi", 2))
    state.apply(ev.Message(4, "a-1", "alice", "my own line does not rank me", 3))
    assert completions(state, "b") == ["bob: ", "bert: ", "Bernd: "]
    assert completions(state, "") == ["bob: ", "carol: ", "bert: ", "Alfred: ", "Bernd: ", "Анна: "]
    # A private message ranks the other side of the conversation, whoever sent it.
    state.apply(ev.PrivateMessage("a-2", "alice", "Bernd", "psst", 4))
    assert completions(state, "b") == ["Bernd: ", "bob: ", "bert: "]


def test_joined_completes_at_once_and_left_never(state: ChatState) -> None:
    completer = ChatCompleter(state)
    document = Document("da", 2)
    event = CompleteEvent(completion_requested=True)
    assert list(completer.get_completions(document, event)) == []
    state.apply(ev.Joined(1, "dave"))
    assert [c.text for c in completer.get_completions(document, event)] == ["dave: "]
    state.apply(ev.Message(2, "d-1", "dave", "hello", 5))
    state.apply(ev.Left(3, "dave", "quit"))
    assert list(completer.get_completions(document, event)) == []
    state.apply(ev.Joined(4, "Dave"))
    # Back again: ranks as a join, not with the old message.
    assert completions(state, "d") == ["Dave: "]


def test_user_list_refresh_replaces_users(state: ChatState) -> None:
    state.apply(ev.UserList(5, ("alice", "zoe")))
    assert completions(state, "") == ["zoe: "]


def test_owners_who_are_away_complete_for_private_messages_only(state: ChatState) -> None:
    # Owned nicks: bob is here; Bea and zed are away; alice is us.
    state.owned_list(ev.NickList(("alice", "Bea"), more=True), ev.NickList(("bob", "zed"), "Bea"))
    assert state.away_users == ["Bea", "zed"]
    assert applied(state, "/msg b") == ["/msg Bernd ", "/msg bob ", "/msg Bea "]
    assert applied(state, "/query z") == ["/query zed "]
    assert applied(state, "@b") == ["@Bernd ", "@bob ", "@Bea "]
    # Not to address someone in the room, nor to kick.
    assert applied(state, "b") == ["Bernd: ", "bob: "]
    assert applied(state, "/kick b") == ["/kick Bernd ", "/kick bob "]
    # Back in the room, an owner is listed once, with those present.
    state.apply(ev.Joined(1, "zed"))
    assert state.away_users == ["Bea"]
    assert applied(state, "/msg z") == ["/msg zed "]
