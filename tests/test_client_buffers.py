"""Buffers, notifications and filters of the full-screen client: the model in tables (no
I/O), then the real client through pipe input against a real broker, the bytes it writes to
its terminal included."""

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prompt_toolkit.data_structures import Size
from prompt_toolkit.output.vt100 import Vt100_Output

from client.buffers import GENERAL, Buffer, BufferKey, Buffers, Level, level_of
from client.bufferview import BufferView, Line
from client.filters import SMART_FILTER_MS, Filters
from client.history import RoomsFile
from client.notify import title
from client.outbox import Delivery
from client.state import Entry, EntryKind
from messages import commands as cmd
from messages import events as ev
from tests.client_helpers import E, bot_client, eventually, running_client
from tests.conftest import RunningBroker
from tests.peers import Peer

Connect = Callable[..., Peer]

T = 1_000_000


def say(sender: str, text: str = "hi", highlight: bool = False, own: bool = False) -> Entry:
    return Entry(EntryKind.MESSAGE, text, T, sender, own=own, highlight=highlight)


def tell(sender: str, recipient: str, own: bool = False, history: bool = False) -> Entry:
    return Entry(
        EntryKind.PRIVATE, "psst", T, sender, recipient, own=own, highlight=not own, history=history
    )


def presence(nick: str, text: str = "joined") -> Entry:
    return Entry(EntryKind.SYSTEM, f"{nick} {text}", T, nick, presence=True)


def info(text: str = "answer") -> Entry:
    return Entry(EntryKind.SYSTEM, text, T)


BOB, CAROL = BufferKey.private("bob"), BufferKey.private("carol")
DEV = BufferKey.room("#dev")


def in_dev(entry: Entry) -> Entry:
    return replace(entry, room="#dev")


# (the buffers open, the current one, the entry) -> the buffers it goes to, in order.
@pytest.mark.parametrize(
    ("open_", "current", "entry", "expected"),
    [
        # Everyone's chat goes to #general, wherever the user is.
        ([], GENERAL, say("bob"), [GENERAL]),
        ([BOB], BOB, say("bob"), [GENERAL]),
        ([BOB], BOB, Entry(EntryKind.NOTICE, "maintenance", T), [GENERAL]),
        # A private message opens its conversation's buffer (either way round).
        ([], GENERAL, tell("bob", "alice"), [BOB]),
        ([BOB], BOB, tell("alice", "BOB", own=True), [BOB]),
        # An own one sent from elsewhere (/msg) shows where it was typed too.
        ([], GENERAL, tell("alice", "bob", own=True), [BOB, GENERAL]),
        ([BOB, CAROL], CAROL, tell("alice", "bob", own=True), [BOB, CAROL]),
        # Joins and leaves: #general, and the private buffer with that nick if open.
        ([], GENERAL, presence("bob"), [GENERAL]),
        ([BOB], GENERAL, presence("Bob", "left"), [GENERAL, BOB]),
        # Answers to commands and stored history: where the user is.
        ([BOB], BOB, info(), [BOB]),
        ([BOB], BOB, Entry(EntryKind.ERROR, "no such nick", T), [BOB]),
        ([BOB], BOB, Entry(EntryKind.MESSAGE, "old", T, "carol", history=True), [BOB]),
        ([BOB], BOB, tell("carol", "alice", history=True), [BOB]),
        # What happens in a room goes to its buffer (opened if need be); an own post
        # from elsewhere shows where it was typed too.
        ([], GENERAL, in_dev(say("bob")), [DEV]),
        ([DEV], BOB, in_dev(info("bob joined #dev")), [DEV]),
        ([DEV, BOB], BOB, in_dev(say("alice", own=True)), [DEV, BOB]),
    ],
)
def test_route(
    open_: list[BufferKey], current: BufferKey, entry: Entry, expected: list[BufferKey]
) -> None:
    buffers = Buffers()
    for key in open_:
        buffers.open(key, key.key)
    buffers.switch(buffers.open(current, current.key))
    assert [buffer.key for buffer in buffers.route(entry)] == expected


@pytest.mark.parametrize(
    ("entry", "level"),
    [
        (say("bob"), Level.MESSAGE),
        (say("bob", "alice: hi", highlight=True), Level.HIGHLIGHT),
        (tell("bob", "alice"), Level.PRIVATE),
        (presence("bob"), Level.LOW),
        (info(), Level.LOW),
        (say("alice", own=True), Level.NONE),
        (tell("alice", "bob", own=True), Level.NONE),
        (tell("bob", "alice", history=True), Level.NONE),
    ],
)
def test_level_of(entry: Entry, level: Level) -> None:
    assert level_of(entry) is level


# Entries arriving in buffer `where` (the user looks at #general): unread, level, alerts.
@pytest.mark.parametrize(
    ("where", "entries", "muted", "unread", "level", "alerts", "rings"),
    [
        (GENERAL, [say("bob"), say("bob", highlight=True)], False, 0, Level.NONE, 0, 0),
        (BOB, [tell("bob", "alice")], False, 1, Level.PRIVATE, 1, 1),
        (BOB, [tell("bob", "alice"), tell("bob", "alice")], False, 2, Level.PRIVATE, 2, 2),
        (BOB, [presence("bob", "left")], False, 0, Level.LOW, 0, 0),
        (BOB, [presence("bob", "left"), tell("bob", "alice")], False, 1, Level.PRIVATE, 1, 1),
        (BOB, [tell("alice", "bob", own=True)], False, 0, Level.NONE, 0, 0),
        # Muted: counted as unread, but no level, no alert.
        (BOB, [tell("bob", "alice")], True, 1, Level.NONE, 0, 0),
    ],
)
def test_arrivals(
    where: BufferKey,
    entries: list[Entry],
    muted: bool,
    unread: int,
    level: Level,
    alerts: int,
    rings: int,
) -> None:
    buffers = Buffers()
    buffer = buffers.open(where, where.key)
    buffer.muted = muted
    assert sum(buffers.arrive(buffer, entry).alert for entry in entries) == rings
    assert (buffer.unread, buffer.level, buffer.alerts) == (unread, level, alerts)
    assert buffers.alerts == alerts
    buffers.switch(buffer)
    assert (buffer.unread, buffer.level, buffer.alerts, buffers.alerts) == (0, Level.NONE, 0, 0)


def test_a_mention_in_general_alerts_when_the_user_looks_elsewhere() -> None:
    buffers = Buffers()
    buffers.switch(buffers.open(BOB, "bob"))
    general = buffers.buffers[0]
    assert buffers.arrive(general, say("carol", "alice?", highlight=True)).alert
    assert not buffers.arrive(general, say("carol")).alert
    assert (general.unread, general.level, buffers.alerts) == (2, Level.HIGHLIGHT, 1)
    assert [number for number, _ in buffers.activity()] == [1]


def _buffers(levels: list[Level], muted: int | None = None) -> Buffers:
    """#general (current) and one private buffer per level, numbered from 2."""
    buffers = Buffers()
    for index, level in enumerate(levels):
        buffer = buffers.open(BufferKey.private(f"n{index}"), f"n{index}")
        buffer.level = level
        buffer.muted = index + 2 == muted
    return buffers


@pytest.mark.parametrize(
    ("levels", "muted", "expected"),
    [
        ([], None, None),
        ([Level.NONE, Level.NONE], None, None),
        ([Level.LOW, Level.MESSAGE], None, 3),
        ([Level.PRIVATE, Level.HIGHLIGHT, Level.MESSAGE], None, 3),
        # Equal levels: the lowest number first.
        ([Level.MESSAGE, Level.PRIVATE, Level.PRIVATE], None, 3),
        # A muted buffer has no activity.
        ([Level.LOW, Level.HIGHLIGHT], 3, 2),
    ],
)
def test_alt_a_goes_to_the_highest_level_first(
    levels: list[Level], muted: int | None, expected: int | None
) -> None:
    buffers = _buffers(levels, muted)
    found = buffers.next_active()
    assert (None if found is None else buffers.number(found)) == expected


@pytest.mark.parametrize(
    ("count", "current", "close", "error", "names", "now"),
    [
        # Closing the current buffer goes to the one before it; numbers close up.
        (3, 3, 3, None, ["#general", "n0"], 2),
        (3, 2, 2, None, ["#general", "n1"], 1),
        # Closing another keeps the current one (under its new number).
        (3, 3, 2, None, ["#general", "n1"], 2),
        (3, 1, 3, None, ["#general", "n0"], 1),
        # #general stays.
        (2, 1, 1, "#general cannot be closed", ["#general", "n0"], 1),
    ],
)
def test_close(
    count: int, current: int, close: int, error: str | None, names: list[str], now: int
) -> None:
    buffers = _buffers([Level.NONE] * (count - 1))
    buffers.switch(buffers.buffers[current - 1])
    assert buffers.close(buffers.buffers[close - 1]) == error
    assert [b.name for b in buffers.buffers] == names
    assert buffers.current_number == now


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1", "#general"),
        ("2", "Bob"),
        ("3", None),
        ("0", None),
        ("#general", "#general"),
        ("GENERAL", "#general"),
        ("bob", "Bob"),
        ("carol", None),
    ],
)
def test_lookup(name: str, expected: str | None) -> None:
    buffers = Buffers()
    buffers.open(BOB, "Bob")
    found: Buffer | None = buffers.lookup(name)
    assert (None if found is None else found.name) == expected


def test_steps_go_round_the_ends() -> None:
    buffers = _buffers([Level.NONE, Level.NONE])
    assert [buffers.number(buffers.step(+1)) for _ in range(4)] == [2, 3, 1, 2]
    assert [buffers.number(buffers.step(-1)) for _ in range(3)] == [1, 3, 2]


# (seconds since bob last spoke, or None: never) -> whether the smart filter hides his
# join or leave.
@pytest.mark.parametrize(
    ("spoke_s_ago", "quiet"),
    [
        (None, True),
        (10, False),
        (SMART_FILTER_MS // 1000, False),
        (SMART_FILTER_MS // 1000 + 1, True),
    ],
)
def test_smart_filter(spoke_s_ago: int | None, quiet: bool) -> None:
    filters = Filters()
    now = T + SMART_FILTER_MS * 2
    if spoke_s_ago is not None:
        assert not filters.ignores(say("Bob"), now - spoke_s_ago * 1000)
    assert filters.quiet(presence("bob", "left"), now) is quiet
    # Other lines never are.
    assert not filters.quiet(info("bob left, as an answer"), now)
    assert not filters.quiet(say("bob"), now)


@pytest.mark.parametrize(
    ("entry", "hidden"),
    [
        (say("bob"), True),
        (say("BOB"), True),
        (tell("bob", "alice"), True),
        (tell("bob", "alice", history=True), True),
        (say("carol"), False),
        (tell("alice", "bob", own=True), False),
        (presence("bob"), False),
    ],
)
def test_ignore(entry: Entry, hidden: bool) -> None:
    filters = Filters()
    assert filters.ignore("Bob") and not filters.ignore("bob")
    assert filters.ignores(entry, T) is hidden
    assert filters.ignored == ["Bob"]
    assert filters.unignore("bob") and not filters.unignore("bob")
    assert not filters.ignores(entry, T)


def _texts(view: BufferView) -> list[str]:
    return ["".join(fragment[1] for fragment in line)[6:] for line in view.pane.lines]


def test_a_refiltered_scrollback_keeps_own_lines_updatable() -> None:
    view = BufferView()
    own = Entry(EntryKind.MESSAGE, "mine", T, "alice", own=True, msg_id="m1")
    pending = replace(own, delivery=Delivery.PENDING)
    view.show([Line(presence("bob"), quiet=True), Line(pending), Line(say("carol"))])
    assert _texts(view) == ["-!- bob joined", "<alice> mine …", "<carol> hi"]
    view.refilter(hide_quiet=True)
    assert _texts(view) == ["<alice> mine …", "<carol> hi"]
    # The echo adds nothing; the delivery state changes the line where it is now.
    view.show([Line(own), Line(replace(pending, kind=EntryKind.DELIVERY, delivery=Delivery.SENT))])
    view.show([Line(presence("dave"), quiet=True)])
    assert _texts(view) == ["<alice> mine ✓", "<carol> hi"]
    view.refilter(hide_quiet=False)
    assert _texts(view) == ["-!- bob joined", "<alice> mine ✓", "<carol> hi", "-!- dave joined"]


def test_title() -> None:
    assert title(0) == "zmq-chat"
    assert title(2) == "(2) zmq-chat"


# -- the real client ---------------------------------------------------------------------

#: A title escape (OSC 2 ... BEL): its BEL ends it and is no bell.
_TITLE = re.compile("\x1b]2;([^\x07]*)\x07")


class Terminal:
    """What the client wrote to its terminal: a real VT100 output into a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("w", encoding="utf-8")
        self.output = Vt100_Output(self.file, lambda: Size(rows=20, columns=80), term="xterm")

    def written(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def bells(self) -> int:
        """Bells rung: BEL characters that end no title."""
        return _TITLE.sub("", self.written()).count("\x07")

    def titles(self) -> list[str]:
        return _TITLE.findall(self.written())


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    """A terminal for bob's client to write to."""
    written = Terminal(tmp_path / "terminal")
    yield written
    written.file.close()


async def until(peer: Peer, kind: type[E], **fields: Any) -> E:
    """The next `kind` event with these field values on `peer`'s connection, whatever
    comes before it (off the event loop, so that the client under test keeps running)."""

    def wait() -> E:
        while True:
            event = peer.next_event()
            if isinstance(event, kind) and all(
                getattr(event, name) == value for name, value in fields.items()
            ):
                return event

    return await asyncio.to_thread(wait)


def test_a_mention_elsewhere_rings_once_counts_and_alt_keys_switch(
    broker: RunningBroker, connect: Connect, terminal: Terminal
) -> None:
    alice = connect("alice")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "bob", output=terminal.output) as bob:
            ui = bob.client.ui
            bob.type("/query alice\r")
            await eventually(lambda: ui.buffers.current.name == "alice", "alice's buffer")
            # Alice mentions bob in #general, where he is not looking.
            alice.say("lunch, Bob?")
            await eventually(lambda: ui.buffers.buffers[0].unread == 1, "an unread count")
            await eventually(lambda: terminal.bells() == 1, "a bell")
            await eventually(lambda: terminal.titles() == ["(1) zmq-chat"], "the title")
            assert "Act: 1" in "".join(text for _, text, *_ in ui.status_fragments())
            assert ui.buffer_list.rows()[0].text == "!1 #general 1"
            # Redraws ring no more.
            for key, text in (("x", "x"), ("\x7f", "")):
                renders = ui.app.render_counter
                bob.type(key)
                await eventually(
                    lambda: ui.app.render_counter > renders and bob.input_text == text,  # noqa: B023
                    "a redraw",
                )
            assert terminal.bells() == 1
            # Alt-1: #general, with the mention in it; nothing unseen any more.
            bob.type("\x1b1")
            await eventually(lambda: ui.buffers.current_number == 1, "Alt-1")
            await bob.wait_for_pane("<alice> lunch, Bob?")
            assert terminal.titles() == ["(1) zmq-chat", "zmq-chat"]
            assert ui.buffers.buffers[0].unread == 0
            # Alt-2 goes back; plain lines there are private to alice.
            bob.type("\x1b2")
            await eventually(lambda: ui.buffers.current_number == 2, "Alt-2")
            bob.type("just you\r")
            await until(alice, ev.PrivateMessage, recipient="alice", text="just you")
            # /close: gone, back to #general, where lines are public again.
            bob.type("/close\r")
            await eventually(lambda: len(ui.buffers.buffers) == 1, "alice's buffer closed")
            assert bob.client.state.target is None
            bob.type("everyone\r")
            await until(alice, ev.Message, sender="bob", text="everyone")

    asyncio.run(scenario())


def test_ignore_hides_messages_and_privates_but_confirms_them(
    broker: RunningBroker, connect: Connect, terminal: Terminal
) -> None:
    alice = connect("alice")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "bob", output=terminal.output) as bob:
            ui = bob.client.ui
            bob.type("/ignore ALICE\r")
            await bob.wait_for_pane("ignoring ALICE")
            alice.say("bob: spam")
            msg_id = alice.tell("bob", "more spam")
            # Still confirmed: alice's client is not left waiting.
            await until(alice, ev.Delivered, msg_id=msg_id)
            bob.type("/unignore alice\r")
            await bob.wait_for_pane("alice is shown again")
            alice.say("sorry")
            await bob.wait_for_pane("<alice> sorry")
            assert "spam" not in bob.pane_text()
            assert len(ui.buffers.buffers) == 1  # no private buffer opened
            assert terminal.bells() == 0 and terminal.titles() == []

    asyncio.run(scenario())


def test_filter_joins_hides_the_silent_and_shows_them_again(
    broker: RunningBroker, connect: Connect
) -> None:
    async def scenario() -> None:
        async with running_client(broker.endpoint, "bob") as bob:
            carol = connect("carol")
            await bob.wait_for_pane("carol joined")
            # Lines shown already are hidden too.
            bob.type("/filter joins\r")
            await bob.wait_for_pane("filter joins on")
            assert "carol joined" not in bob.pane_text()
            dave = connect("dave")
            dave.say("hello")
            await bob.wait_for_pane("<dave> hello")
            carol.send(cmd.Quit(""))
            dave.send(cmd.Quit(""))
            # Dave spoke: his leave shows; carol did not.
            await bob.wait_for_pane("dave left")
            assert "carol" not in bob.pane_text()
            bob.type("/filter joins\r")
            await bob.wait_for_pane("filter joins off")
            lines = bob.pane_text()
            assert "carol joined" in lines and "carol left" in lines and "dave joined" in lines

    asyncio.run(scenario())


def test_line_mode_says_buffers_are_the_full_screen_clients(broker: RunningBroker) -> None:
    async def scenario() -> None:
        async with bot_client(broker.endpoint, "bot") as bot:
            await bot.session.handle_line("/buffer 2")
            assert bot.lines()[-1] == "-!- /buffer works in the full-screen client only"

    asyncio.run(scenario())


def test_a_mention_in_a_room_rings_for_a_member_looking_elsewhere(
    broker: RunningBroker, connect: Connect, terminal: Terminal
) -> None:
    alice = connect("alice")
    alice.send(cmd.Enter("#dev"))
    alice.on_connection(ev.RoomState)
    alice.send(cmd.Post("#dev", alice.next_id(), "welcome to #dev"))
    alice.on_connection(ev.Ack)

    async def scenario() -> None:
        async with running_client(
            broker.endpoint, "bob", output=terminal.output, history_lines=10
        ) as bob:
            ui = bob.client.ui
            # Typing '#' asks for the rooms there are: Tab completes #dev.
            bob.type("/join #")
            await eventually(lambda: "#dev" in bob.client.state.ranked_rooms(), "the rooms")
            bob.type("d\t")
            await eventually(lambda: bob.input_text == "/join #dev ", "completion")
            bob.type("\r")
            await eventually(lambda: ui.buffers.current.name == "#dev", "#dev's buffer")
            await until(alice, ev.Entered, nick="bob")
            # What was said there before bob came, as history.
            await bob.wait_for_pane("<alice> welcome to #dev")
            bob.type("\x1b1")
            await eventually(lambda: ui.buffers.current_number == 1, "Alt-1")
            alice.send(cmd.Post("#dev", alice.next_id(), "bob: review please"))
            await eventually(lambda: terminal.bells() == 1, "a bell")
            await eventually(lambda: terminal.titles()[-1:] == ["(1) zmq-chat"], "the title")
            assert ui.buffer_list.rows()[1].text == "!2 #dev 1"
            bob.type("\x1b2")
            await bob.wait_for_pane("<alice> bob: review please")
            assert "#dev <alice>" not in bob.pane_text()  # its own buffer names no room
            # The side panel lists who is in #dev; Tab offers them first.
            await eventually(
                lambda: ui.user_list.rows()[0].text.strip() == "2 in #dev", "#dev's members"
            )
            assert bob.client.state.ranked_nicks()[:1] == ["alice"]
            bob.type("/part\r")
            await until(alice, ev.Parted, nick="bob")

    asyncio.run(scenario())


def test_the_next_run_is_back_in_the_rooms_the_last_one_was_in(
    broker: RunningBroker, tmp_path: Path
) -> None:
    rooms = RoomsFile(tmp_path / "rooms.json")

    async def scenario() -> None:
        async with running_client(broker.endpoint, "bob", rooms=rooms) as bob:
            for room in ("#dev", "#ops"):
                bob.type(f"/join {room}\r")
                await eventually(lambda: bob.client.ui.buffers.current.name == room, room)  # noqa: B023
            bob.type("/part #ops\r")
            await eventually(lambda: rooms.rooms(broker.endpoint) == ["#dev"], "the file")
        # (The file is the state directory's, whatever the nick of the next run.)
        async with running_client(broker.endpoint, "robert", rooms=rooms) as again:
            ui = again.client.ui
            await eventually(
                lambda: [b.name for b in ui.buffers.buffers] == ["#general", "#dev"],
                "#dev's buffer",
            )
            assert ui.buffers.current.name == "#general"  # lines still go where they went

    asyncio.run(scenario())
