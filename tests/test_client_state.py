"""Who is present, without sockets: WELCOME names nobody, a USERS answer names everyone as
of one broadcast, and the joins and leaves numbered after it come on top."""

from client.state import ChatState
from messages import events as ev

SERVER = "tcp://127.0.0.1:5555"


def welcomed(seq: int = 5) -> ChatState:
    state = ChatState("alice", SERVER)
    state.apply(ev.Welcome("alice", 2000, "e1", seq, (), 5556))
    return state


def test_until_the_users_answer_only_self_and_who_joined_are_known() -> None:
    state = welcomed()
    assert not state.users_known
    assert state.users == ["alice"]
    state.apply(ev.Joined(6, "bob"))
    assert state.users == ["alice", "bob"]
    assert not state.users_known


def test_joins_and_leaves_applied_before_the_answer_came_are_applied_again_on_top() -> None:
    state = welcomed(5)
    # The stream ran ahead of the answer: carol joined (6) and bob left (7) ...
    state.apply(ev.Joined(6, "carol"))
    state.apply(ev.Left(7, "bob", "quit"))
    # ... after the broker listed everyone as of broadcast 5.
    entries = state.apply(ev.UserList(5, ("alice", "bob", "dave")))
    assert state.users_known
    assert state.users == ["alice", "carol", "dave"]
    assert [entry.text for entry in entries] == ["3 users: alice carol dave"]


def test_an_answer_ahead_of_the_stream_is_not_undone_by_what_it_includes() -> None:
    state = welcomed(5)
    # The answer names everyone as of 8; broadcasts 6 to 8 arrive after it.
    state.user_list(ev.UserList(8, ("alice", "carol")), announce=False)
    state.apply(ev.Joined(6, "bob"))
    state.apply(ev.Joined(7, "carol"))
    state.apply(ev.Left(8, "bob", "quit"))
    assert state.users == ["alice", "carol"]
    # And what comes after it applies as usual.
    state.apply(ev.Joined(9, "dave"))
    assert state.users == ["alice", "carol", "dave"]


def test_a_restarted_broker_numbers_afresh() -> None:
    state = welcomed(5)
    state.apply(ev.Joined(6, "bob"))
    state.apply(ev.UserList(6, ("alice", "bob")))
    # The new run's broadcast 1 is not the old run's: the old join is not replayed.
    state.welcome(ev.Welcome("alice", 2000, "e2", 0, (), 5556), restarted=True)
    state.apply(ev.UserList(0, ("alice",)))
    assert state.users == ["alice"]


def test_a_query_target_before_the_user_list_is_checked_when_it_comes() -> None:
    state = welcomed()
    # A script's first lines run before the answer: the nick is taken as typed ...
    state.set_target("BOB")
    assert state.target == "BOB"
    # ... spelled as the broker spells it once known ...
    state.apply(ev.UserList(5, ("alice", "bob")))
    assert state.target == "bob"
    # ... and refused once known if nobody has it.
    state.set_target(None)
    state.set_target("nobody")
    assert state.target is None
    # Taken before the list came, it stays: never does a private line turn public.
    other = welcomed()
    other.set_target("nobody")
    entries = other.apply(ev.UserList(5, ("alice",)))
    assert other.target == "nobody"
    assert entries[-1].text == (
        "nobody is not here; your lines still go to nobody only (they fail until it is "
        "back): /all to talk to everyone"
    )
    # Said once, not again with every user list.
    # (By text: each entry carries the millisecond it was made.)
    assert [e.text for e in other.apply(ev.UserList(5, ("alice",)))] == [other._users_entry().text]


def test_a_query_target_that_leaves_stays_the_target_until_the_user_changes_it() -> None:
    state = welcomed()
    state.apply(ev.UserList(5, ("alice", "bob")))
    state.set_target("bob")
    entries = state.apply(ev.Left(6, "bob", "quit"))
    assert state.target == "bob"
    assert [e.text for e in entries] == [
        "bob left (quit)",
        "bob is not here; your lines still go to bob only (they fail until it is back): "
        "/all to talk to everyone",
    ]
    entries = state.apply(ev.Joined(7, "Bob"))
    assert state.target == "Bob"
    assert [e.text for e in entries] == ["Bob joined", "your lines go to Bob again"]
    state.set_target(None)
    assert state.target is None


def test_own_leave_after_quit_is_not_taken_for_a_dropped_session() -> None:
    state = welcomed()
    state.apply(ev.Operator())
    dropped = state.apply(ev.Left(6, "alice", "no heartbeat for 6 s"))
    assert [e.text for e in dropped] == [
        "the server dropped your session (no heartbeat for 6 s)",
        "operator rights were lost when it dropped your session: /admin TOKEN again",
    ]
    # After our own QUIT, our LEAVE may come back on the stream before we close: nothing.
    state.apply(ev.Operator())
    state.quitting = True
    assert state.apply(ev.Left(7, "alice", "quit")) == []
