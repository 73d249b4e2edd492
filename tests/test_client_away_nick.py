"""/me, /away and /nick in the client without sockets: parsing, state and the lines shown."""

import time

import pytest
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from client.commands import COMMANDS, Hint, Post, Send, parse_line
from client.completion import ChatCompleter
from client.render import formatted_line, plain_line
from client.state import ChatState
from messages import MAX_AWAY_BYTES
from messages import commands as cmd
from messages import events as ev

SERVER = "tcp://127.0.0.1:5555"
T = 1_700_000_000_000
HHMM = time.strftime("%H:%M", time.localtime(T / 1000))


def welcomed() -> ChatState:
    state = ChatState("alice", SERVER, clock=lambda: T)
    state.apply(ev.Welcome("alice", 2000, "e1", 5, (), 5556))
    state.apply(ev.UserList(5, ("alice", "bob", "carol")))
    return state


@pytest.mark.parametrize(
    ("line", "target", "action"),
    [
        ("/me waves", None, Post("/me waves")),
        ("/me waves at bob", "bob", Post("/me waves at bob", "bob")),
        ("/ME  waves", None, Post("/me waves")),
        ("/me", None, Hint("usage: /me ACTION")),
        ("/away lunch, back at one", None, Send(cmd.Away("lunch, back at one"))),
        ("/away", None, Send(cmd.Away(""))),
        ("/back", None, Send(cmd.Away(""))),
        ("/nick alice2", None, Send(cmd.Nick("alice2"))),
        ("/nick", None, Hint("usage: /nick NEWNICK")),
        ("/nick two words", None, Hint("usage: /nick NEWNICK")),
    ],
)
def test_parse(line: str, target: str | None, action: object) -> None:
    assert parse_line(line, target) == action


def test_parse_refuses_a_long_away_message_and_a_bad_nick() -> None:
    assert isinstance(parse_line("/away " + "x" * (MAX_AWAY_BYTES + 1), None), Hint)
    hint = parse_line("/nick a@b", None)
    assert isinstance(hint, Hint) and hint.text.startswith("'a@b' is not a nick")


@pytest.mark.parametrize(
    ("text", "offered"),
    [
        ("/aw", ["/away "]),
        ("/ni", ["/nick "]),
        ("/me", ["/me "]),
        ("/m", ["/msg ", "/mode ", "/mute", "/me "]),
        ("/me waves at b", ["bob "]),
    ],
)
def test_the_new_commands_and_nicks_in_an_action_complete(text: str, offered: list[str]) -> None:
    document = Document(text, len(text))
    completer = ChatCompleter(welcomed())
    got = completer.get_completions(document, CompleteEvent(completion_requested=True))
    assert [c.text for c in got] == offered
    assert {"me", "away", "nick"} <= {info.name for info in COMMANDS}


@pytest.mark.parametrize(
    ("event", "line", "highlight"),
    [
        (ev.Message(6, "m1", "bob", "/me waves", T), f"{HHMM} * bob waves", False),
        (ev.Message(6, "m1", "bob", "/me waves at alice", T), f"{HHMM} * bob waves at alice", True),
        (
            ev.Message(6, "m1", "alice", "/me waves at alice", T),
            f"{HHMM} * alice waves at alice",
            False,
        ),
        (ev.Message(6, "m1", "bob", "/mean it", T), f"{HHMM} <bob> /mean it", False),
        (
            ev.PrivateMessage("m2", "bob", "alice", "/me nods", T),
            f"{HHMM} [bob -> alice] * bob nods",
            True,
        ),
    ],
)
def test_actions_show_as_star_nick_and_highlight_only_a_mention(
    event: ev.BrokerEvent, line: str, highlight: bool
) -> None:
    [entry] = welcomed().apply(event)
    assert plain_line(entry) == line
    assert entry.highlight == highlight
    shown = "".join(text for _, text, *_ in formatted_line(entry))
    assert shown == line.replace(" -> ", " → ")


def test_a_nick_called_me_is_not_mentioned_by_every_action() -> None:
    state = ChatState("me", SERVER, clock=lambda: T)
    state.apply(ev.Welcome("me", 2000, "e1", 5, (), 5556))
    [entry] = state.apply(ev.Message(6, "m1", "bob", "/me waves", T))
    assert not entry.highlight


@pytest.mark.parametrize(
    ("events", "lines", "away"),
    [
        ([ev.AwayChanged(6, "bob", "lunch")], ["bob is away: lunch"], {"bob": "lunch"}),
        (
            [ev.AwayChanged(6, "bob", "lunch"), ev.AwayChanged(7, "bob", "")],
            ["bob is away: lunch", "bob is back"],
            {},
        ),
        ([ev.AwayChanged(6, "alice", "out")], ["you are away: out"], {"alice": "out"}),
        ([ev.AwayReply("bob", "lunch")], ["bob is away: lunch"], {}),
        (
            [ev.AwayChanged(6, "bob", "lunch"), ev.Renamed(7, "bob", "bobby")],
            ["bob is away: lunch", "bob is now known as bobby"],
            {"bobby": "lunch"},
        ),
        ([ev.AwayChanged(6, "bob", "lunch"), ev.Left(7, "bob", "quit")], None, {}),
    ],
)
def test_away_and_renames_update_who_is_away(
    events: list[ev.BrokerEvent], lines: list[str] | None, away: dict[str, str]
) -> None:
    state = welcomed()
    entries = [entry for event in events for entry in state.apply(event)]
    if lines is not None:
        assert [entry.text for entry in entries] == lines
    assert {nick: state.away_of(nick) for nick in state.users if state.away_of(nick)} == away


def test_the_users_answer_carries_who_is_away_and_later_broadcasts_come_on_top() -> None:
    state = welcomed()
    # carol went away (6) and bob came back (7) after the snapshot of 5 was taken.
    state.apply(ev.AwayChanged(6, "carol", "meeting"))
    state.apply(ev.AwayChanged(7, "bob", ""))
    state.apply(ev.IsAway("bob", "lunch"))
    entries = state.apply(ev.UserList(5, ("alice", "bob", "carol")))
    assert state.away_of("bob") is None
    assert state.away_of("carol") == "meeting"
    assert [entry.text for entry in entries] == [
        "3 users: alice bob carol",
        "1 of them away: carol (meeting)",
    ]
    # A fresh answer without ISAWAY: nobody is away (as of a number after both).
    state.apply(ev.UserList(8, ("alice", "bob", "carol")))
    assert state.away_of("carol") is None


def test_an_own_rename_changes_the_nick_the_target_and_keeps_the_old_one_as_ours() -> None:
    state = welcomed()
    state.set_target("bob")
    [entry] = state.apply(ev.Renamed(6, "alice", "alice2"))
    assert plain_line(entry) == f"{HHMM} -!- you are now known as alice2"
    assert state.nick == "alice2" and state.users == ["alice2", "bob", "carol"]
    assert state.was_self("alice") and not state.is_self("alice")
    state.apply(ev.Renamed(7, "bob", "robert"))
    assert state.target == "robert"
    assert "robert" in state.ranked_nicks()
