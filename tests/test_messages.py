"""The wire protocol without sockets: round trips and every decoding error, table-driven."""

import logging

import pytest

from messages import (
    HISTORY_PAGE_LIMIT,
    MAX_AWAY_BYTES,
    MAX_NICK_CHARS,
    MAX_PACKED_BYTES,
    MAX_REASON_BYTES,
    MAX_SEARCH_BYTES,
    MAX_TEXT_BYTES,
    SIGNATURE,
    ErrorCode,
    ProtocolError,
    SanitizingFormatter,
    decode_command,
    decode_event,
    encode,
    message_ref,
    nick_key,
    nick_skeleton,
    normalize_nick,
    pack_events,
    prove_payload,
    register_payload,
    truncate_utf8,
    unpack_events,
)
from messages import commands as cmd
from messages import events as ev
from messages.commands import CLIENT_COMMANDS
from messages.events import BROKER_EVENTS
from messages.identity import b64url, b64url_length, from_b64url

#: A public key and a signature as they travel: 32 and 64 bytes in base64url (43, 86 chars).
KEY = b64url(bytes(range(32)))
SIG = b64url(bytes(range(64)))

COMMANDS: list[cmd.ClientCommand] = [
    cmd.Hello("alice", "tok-1.session-token-128"),
    cmd.Hello("Анна", "a.b_c-9" * 4, stream=True),
    cmd.Say("tok-1", "hello, world"),
    cmd.Say("tok-2", "émoji 🎉 and 中文"),
    cmd.Tell("tok-3", "bob", "psst"),
    cmd.ListUsers(),
    cmd.ListUsers("Анна"),
    cmd.Ping(),
    cmd.Quit(""),
    cmd.Quit("gone fishing"),
    cmd.Admin("s3cret"),
    cmd.Kick("mallory", 60, "spam"),
    cmd.Ban("mallory", 86400, "spam"),
    cmd.Unban("mallory"),
    cmd.Wall("maintenance at noon"),
    cmd.Shutdown("upgrade"),
    cmd.Received("tok-3", "alice"),
    cmd.Fetch(17),
    cmd.History("h1", "", 0, 50),
    cmd.History("h2", "Анна", 1234, HISTORY_PAGE_LIMIT),
    cmd.Search("s1", 'лето AND "quoted" *', 1),
    cmd.Register(KEY, SIG),
    cmd.Unregister(),
    cmd.Prove(KEY, SIG),
    cmd.ListNicks(),
    cmd.ListNicks("Анна"),
    cmd.Enter("#dev"),
    cmd.Part("#dev", ""),
    cmd.Part("#Dev-2_x", "done for today"),
    cmd.Post("#dev", "tok-5", "hi, devs"),
    cmd.SetTopic("#dev", "release on Friday"),
    cmd.SetTopic("#dev", ""),
    cmd.ListRooms(),
    cmd.ListRooms("#dev"),
    cmd.ListMembers("#dev"),
    cmd.ListMembers("#dev", "Анна"),
    cmd.FetchRoom("#dev", 3),
    cmd.SetMode("#ops", "+i"),
    cmd.Invite("#ops", "Анна"),
    cmd.Evict("#ops", "mallory", "spam"),
    cmd.Evict("#ops", "mallory", ""),
    cmd.Away("lunch, back at one"),
    cmd.Away(""),
    cmd.Nick("Анна"),
]

EVENTS: list[ev.BrokerEvent] = [
    ev.Welcome("alice", 2000, "e1f2", 0, ("HELLO", "SAY"), 5556),
    ev.Welcome("alice", 1, "x", 99, (), 0),
    ev.Joined(1, "bob"),
    ev.Left(2, "bob", "quit"),
    ev.Message(3, "tok-1", "alice", "hi", 1_700_000_000_123),
    ev.PrivateMessage("tok-3", "alice", "bob", "psst", 0),
    ev.UserList(3, ("alice", "bob", "Анна")),
    ev.UserList(0, ()),
    ev.Notice(4, "operator: restart soon"),
    ev.Error(ErrorCode.NICK_TAKEN, "", "nick alice is taken"),
    ev.Error(499, "tok-9", "a code this client does not know"),
    ev.Ack(("tok-1",)),
    ev.Ack(("tok-1", "tok-2", "x.y_z")),
    ev.Delivered("tok-3", "bob"),
    ev.Stored("tok-4", "alice"),
    ev.Pong(),
    ev.Operator(),
    ev.Kicked("operator", "spam"),
    ev.Tick(0),
    ev.Tick(12345),
    ev.ServerShutdown("bye"),
    ev.LogEntry("h1", 7, "alice", "", "hi", 1_700_000_000_123),
    ev.LogEntry("h1", 8, "", "", "operator: restart soon", 5),
    ev.LogEntry("h2", 3, "bob", "Анна", "psst", 6),
    ev.Page("h1", 2, 7),
    ev.Page("h2", 0, 0),
    ev.Challenge(KEY),
    ev.Registered("alice", True),
    ev.Registered("Анна", False),
    ev.NickList(("alice", "bob"), "", more=True),
    ev.NickList((), "zed"),
    ev.RoomState("#dev", "a1b2", 4, 2, "release on Friday"),
    ev.RoomState("#x", "c3", 0, 1, "", invite_only=True),
    ev.RoomTick("#dev", 12),
    ev.ModeSet("#ops", 5, "alice", "+i"),
    ev.Invited("#ops", "Анна", "alice"),
    ev.Entered("#dev", 1, "alice"),
    ev.Parted("#dev", 2, "alice", ""),
    ev.Posted("#dev", 3, "tok-5", "Анна", "hi, devs", 1_700_000_000_123),
    ev.TopicSet("#dev", 4, "alice", "release on Friday"),
    ev.RoomList("#dev", True),
    ev.RoomList("", False),
    ev.MemberList("#dev", 4, ("alice", "Анна")),
    ev.MemberList("#dev", 4, (), "zed", more=False),
    ev.AwayChanged(5, "bob", "lunch"),
    ev.AwayChanged(6, "bob", ""),
    ev.Renamed(7, "bob", "Анна"),
    ev.IsAway("bob", "lunch"),
    ev.AwayReply("bob", "lunch"),
]


def test_tables_cover_every_message_type() -> None:
    assert {type(c) for c in COMMANDS} == set(CLIENT_COMMANDS)
    assert {type(e) for e in EVENTS} == set(BROKER_EVENTS)


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_command_round_trip(command: cmd.ClientCommand) -> None:
    frames = encode(command)
    assert frames[0] == SIGNATURE
    assert frames[1] == command.VERB
    assert decode_command(frames) == command


@pytest.mark.parametrize("event", EVENTS, ids=repr)
def test_event_round_trip(event: ev.BrokerEvent) -> None:
    assert decode_event(encode(event)) == event


@pytest.mark.parametrize(
    ("message", "frames"),
    [
        (cmd.Tell("m1", "bob", "hi"), [b"ZCHAT01", b"TELL", b"m1", b"bob", b"hi"]),
        (cmd.Hello("Боб", "s1"), [b"ZCHAT01", b"HELLO", "Боб".encode(), b"s1", b"0"]),
        (cmd.Hello("a", "s1", stream=True), [b"ZCHAT01", b"HELLO", b"a", b"s1", b"1"]),
        (cmd.Fetch(5), [b"ZCHAT01", b"FETCH", b"5"]),
        (cmd.Ping(), [b"ZCHAT01", b"PING"]),
        (
            ev.Welcome("a", 2000, "ep", 7, ("SAY", "TELL"), 5556),
            [b"ZCHAT01", b"WELCOME", b"a", b"2000", b"ep", b"7", b"SAY TELL", b"5556"],
        ),
        (ev.Ack(("m1", "m2")), [b"ZCHAT01", b"ACK", b"m1 m2"]),
        (ev.Tick(42), [b"ZCHAT01", b"TICK", b"42"]),
        (ev.UserList(0, ()), [b"ZCHAT01", b"USERS", b"0", b"", b"", b"0"]),
        (
            ev.UserList(5, ("carol", "dave"), "bob", more=True),
            [b"ZCHAT01", b"USERS", b"5", b"carol dave", b"bob", b"1"],
        ),
        (cmd.ListUsers(), [b"ZCHAT01", b"USERS", b""]),
        (cmd.Register(KEY, SIG), [b"ZCHAT01", b"REGISTER", KEY.encode(), SIG.encode()]),
        (cmd.Unregister(), [b"ZCHAT01", b"UNREGISTER"]),
        (cmd.Prove(KEY, SIG), [b"ZCHAT01", b"PROVE", KEY.encode(), SIG.encode()]),
        (cmd.ListNicks("bob"), [b"ZCHAT01", b"NICKS", b"bob"]),
        (ev.Challenge(KEY), [b"ZCHAT01", b"CHALLENGE", KEY.encode()]),
        (ev.Registered("bob", True), [b"ZCHAT01", b"REGISTERED", b"bob", b"1"]),
        (
            ev.NickList(("carol", "dave"), "bob", more=True),
            [b"ZCHAT01", b"NICKS", b"carol dave", b"bob", b"1"],
        ),
        (cmd.ListUsers("bob"), [b"ZCHAT01", b"USERS", b"bob"]),
        (
            ev.Error(404, "m1", "no such nick: x"),
            [b"ZCHAT01", b"ERROR", b"404", b"m1", b"no such nick: x"],
        ),
        (
            ev.Message(9, "m1", "a", "hi", 5),
            [b"ZCHAT01", b"MESSAGE", b"9", b"m1", b"a", b"hi", b"5"],
        ),
        (
            ev.PrivateMessage("m2", "a", "b", "t", 12),
            [b"ZCHAT01", b"PRIVATE", b"m2", b"a", b"b", b"t", b"12"],
        ),
        (cmd.History("h1", "", 0, 50), [b"ZCHAT01", b"HISTORY", b"h1", b"", b"0", b"50"]),
        (cmd.Search("s1", "red fox", 100), [b"ZCHAT01", b"SEARCH", b"s1", b"red fox", b"100"]),
        (
            ev.LogEntry("h1", 9, "", "", "operator: hi", 5),
            [b"ZCHAT01", b"LOG", b"h1", b"9", b"", b"", b"operator: hi", b"5"],
        ),
        (ev.Page("h1", 1, 9), [b"ZCHAT01", b"PAGE", b"h1", b"1", b"9"]),
    ],
    ids=repr,
)
def test_wire_layout_is_as_documented(
    message: cmd.ClientCommand | ev.BrokerEvent, frames: list[bytes]
) -> None:
    assert encode(message) == frames


SAY = [SIGNATURE, b"SAY", b"m1"]


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([], ErrorCode.MALFORMED),
        ([SIGNATURE], ErrorCode.MALFORMED),
        ([b"junk"], ErrorCode.MALFORMED),
        ([b"GET / HTTP/1.1", b"Host: x"], ErrorCode.MALFORMED),
        ([b"ZCHAT02", b"SAY", b"hi"], ErrorCode.UNSUPPORTED_VERSION),
        ([b"ZCHAT", b"SAY", b"hi"], ErrorCode.UNSUPPORTED_VERSION),
        ([SIGNATURE, b"DANCE"], ErrorCode.UNKNOWN_COMMAND),
        ([SIGNATURE, b"say", b"hi"], ErrorCode.UNKNOWN_COMMAND),
        ([SIGNATURE, b"\xff\xfe"], ErrorCode.UNKNOWN_COMMAND),
        ([SIGNATURE, b"MESSAGE", b"a", b"b", b"1"], ErrorCode.UNKNOWN_COMMAND),
        (SAY, ErrorCode.MALFORMED),
        ([SIGNATURE, b"SAY", b"", b"hi"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"SAY", b"bad id", b"hi"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"SAY", b"x" * 65, b"hi"], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"HELLO", b"alice", b"", b"0"], ErrorCode.MALFORMED),
        # A session token of fewer than 128 random bits can be guessed.
        ([SIGNATURE, b"HELLO", b"alice", b"4711", b"0"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"HELLO", b"alice", b"x" * 21, b"0"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"HELLO", b"alice", b"s1"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"HELLO", b"alice", b"s1", b"yes"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"HELLO", b"alice", b"s1", b""], ErrorCode.MALFORMED),
        ([SIGNATURE, b"FETCH", b"-1"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"RECEIVED", b"\xff"], ErrorCode.MALFORMED),
        ([*SAY, b"hi", b"extra"], ErrorCode.MALFORMED),
        ([*SAY, b""], ErrorCode.MALFORMED),
        ([*SAY, b"\xc3\x28"], ErrorCode.MALFORMED),
        ([*SAY, b"\xed\xa0\x80"], ErrorCode.MALFORMED),
        ([*SAY, b"x" * (MAX_TEXT_BYTES + 1)], ErrorCode.TOO_LARGE),
        ([*SAY, *[b"x"] * 20], ErrorCode.MALFORMED),
        ([SIGNATURE, b"HELLO", b"", b"s", b"0"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"HELLO", b"a" * 200, b"s", b"0"], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"TELL", b"m", b"", b"hi"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"QUIT", b"r" * (MAX_REASON_BYTES + 1)], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"ADMIN", b"t" * 257], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"PING", b"extra"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"AWAY", b"a" * (MAX_AWAY_BYTES + 1)], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"AWAY"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"NICK", b""], ErrorCode.MALFORMED),
        ([SIGNATURE, b"NICK", b"a" * 200], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"HISTORY", b"", b"", b"0", b"50"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"HISTORY", b"h 1", b"", b"0", b"50"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"HISTORY", b"h1", b"", b"0", b"0"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"HISTORY", b"h1", b"", b"0", b"101"], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"HISTORY", b"h1", b"", b"-1", b"5"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"HISTORY", b"h1", b"x" * 129, b"0", b"5"], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"HISTORY", b"h1", b"", b"0"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"SEARCH", b"s1", b"", b"5"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"SEARCH", b"s1", b"w" * (MAX_SEARCH_BYTES + 1), b"5"], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"SEARCH", b"s1", b"fox", b"1000"], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"SEARCH", b"s1", b"\xff", b"5"], ErrorCode.MALFORMED),
        ([SIGNATURE, b"REGISTER", KEY.encode()], ErrorCode.MALFORMED),
        ([SIGNATURE, b"REGISTER", KEY.encode() + b"A", SIG.encode()], ErrorCode.TOO_LARGE),
        ([SIGNATURE, b"REGISTER", KEY.encode(), SIG[:-1].encode()], ErrorCode.MALFORMED),
        ([SIGNATURE, b"PROVE", KEY[:-1].encode() + b"=", SIG.encode()], ErrorCode.MALFORMED),
        ([SIGNATURE, b"PROVE", KEY[:-1].encode() + b"+", SIG.encode()], ErrorCode.MALFORMED),
        ([SIGNATURE, b"PROVE", b"", SIG.encode()], ErrorCode.MALFORMED),
        # The last character of 32 bytes carries 2 unused bits: only one spelling is valid.
        ([SIGNATURE, b"PROVE", KEY[:-1].encode() + b"9", SIG.encode()], ErrorCode.MALFORMED),
        ([SIGNATURE, b"UNREGISTER", b""], ErrorCode.MALFORMED),
        ([SIGNATURE, b"NICKS", b"n" * 129], ErrorCode.TOO_LARGE),
    ],
    ids=repr,
)
def test_bad_commands_raise_protocol_error(frames: list[bytes], code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_command(frames)
    assert caught.value.code == code
    assert caught.value.reason


@pytest.mark.parametrize(
    ("frames", "ref"),
    [
        ([SIGNATURE, b"HISTORY", b"h1", b"", b"0", b"500"], "h1"),
        ([SIGNATURE, b"SEARCH", b"s-2", b""], "s-2"),
        ([SIGNATURE, b"FETCH", b"f1"], ""),
    ],
    ids=repr,
)
def test_a_failed_history_or_search_names_its_ref(frames: list[bytes], ref: str) -> None:
    assert message_ref(frames) == ref


@pytest.mark.parametrize(
    "frames",
    [
        [SIGNATURE, b"WELCOME", b"a", b"-1", b"e", b"0", b"", b"5556"],
        [SIGNATURE, b"WELCOME", b"a", b"2e3", b"e", b"0", b"", b"5556"],
        [SIGNATURE, b"WELCOME", b"a", b"", b"e", b"0", b"", b"5556"],
        [SIGNATURE, b"WELCOME", b"a", b"1", b"e", b"0", b"SAY  TELL", b"5556"],
        [SIGNATURE, b"WELCOME", b"a", b"1", b"e", b"0", b"", b""],
        [SIGNATURE, b"USERS", b"1", b"a  b"],
        [SIGNATURE, b"MESSAGE", b"1", b"m", b"a", b"hi", b"1" * 40],
        [SIGNATURE, b"ERROR", b"four", b"", b"x"],
        [SIGNATURE, b"ACK", b"not;an;id"],
        [SIGNATURE, b"ACK", b""],
        [SIGNATURE, b"ACK", b"a  b"],
        [SIGNATURE, b"ACK", b" ".join([b"m"] * 65)],
        [SIGNATURE, b"ACK", b"x" * 65],
        [SIGNATURE, b"TICK", b"-3"],
        [SIGNATURE, b"SAY", b"hi"],
        [SIGNATURE, b"PONG", b""],
        [SIGNATURE, b"LOG", b"", b"1", b"a", b"", b"hi", b"5"],
        [SIGNATURE, b"LOG", b"h1", b"1", b"a", b"", b"", b"5"],
        [SIGNATURE, b"PAGE", b"h1", b"x", b"0"],
        [SIGNATURE, b"PAGE", b"", b"0", b"0"],
        [SIGNATURE, b"CHALLENGE", b"short"],
        [SIGNATURE, b"REGISTERED", b"alice", b"yes"],
        [SIGNATURE, b"REGISTERED", b"", b"1"],
        [SIGNATURE, b"NICKS", b"a  b", b"", b"0"],
    ],
    ids=repr,
)
def test_bad_events_raise_protocol_error(frames: list[bytes]) -> None:
    with pytest.raises(ProtocolError):
        decode_event(frames)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 31, 32, 64])
def test_base64url_round_trips_without_padding(size: int) -> None:
    data = bytes(range(256))[-size:] if size else b""
    text = b64url(data)
    assert len(text) == b64url_length(size)
    assert "=" not in text
    assert from_b64url(text) == data


def test_what_is_signed_names_the_verb_the_nick_key_and_the_session() -> None:
    assert register_payload("Alice", "tok") == b"ZCHAT01 REGISTER\nalice\ntok"
    assert prove_payload(KEY, "ALICE", "tok") == b"ZCHAT01 PROVE\n" + KEY.encode() + b"\nalice\ntok"


@pytest.mark.parametrize("text", ["AB=", "A", "AB+/", "AB C", "ABD"])
def test_base64url_refuses_what_is_not_canonical(text: str) -> None:
    with pytest.raises(ValueError):
        from_b64url(text)


@pytest.mark.parametrize(
    ("nick", "stored"),
    [
        ("alice", "alice"),
        ("Alice_2", "Alice_2"),
        ("bob-the-builder", "bob-the-builder"),
        ("Анна", "Анна"),
        ("李雷", "李雷"),
        ("e\u0301mile", "\u00e9mile"),  # NFD input is stored composed (NFC)
        ("x" * MAX_NICK_CHARS, "x" * MAX_NICK_CHARS),
        ("٣٣", "٣٣"),  # Arabic-Indic digits are decimal digits
        ("नमस्ते", "नमस्ते"),  # Devanagari needs combining vowel signs
        ("สมชาย", "สมชาย"),
    ],
)
def test_valid_nicks(nick: str, stored: str) -> None:
    assert normalize_nick(nick) == stored


@pytest.mark.parametrize(
    "nick",
    [
        "",
        "x" * (MAX_NICK_CHARS + 1),
        "two words",
        "semi;colon",
        "at@sign",
        "tab\t",
        "esc\x1b",
        "dot.",
        "emoji🎉",
        "rlo\u202e",
        "²",
        "\u0301accent-first",
    ],
)
def test_invalid_nicks(nick: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        normalize_nick(nick)
    assert caught.value.code == ErrorCode.INVALID_NICK


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Alice", "alice"),
        ("ALICE", "alice"),
        ("ＡＬＩＣＥ", "alice"),
        ("Анна", "аННА"),
        ("Straße", "STRASSE"),
        ("\u00e9mile", "e\u0301mile"),
    ],
)
def test_nick_keys_match_case_insensitively(a: str, b: str) -> None:
    assert nick_key(a) == nick_key(b)


def test_distinct_nicks_have_distinct_keys() -> None:
    assert nick_key("alice") != nick_key("alice2")


#: `alice` with an invisible (default-ignorable) character: drawn exactly like `alice`.
INVISIBLE_ALICES = [
    ("alice\ufe00", "U+FE00 VARIATION SELECTOR-1"),
    ("alice\ufe0f", "U+FE0F VARIATION SELECTOR-16"),
    ("alice\u034f", "U+034F COMBINING GRAPHEME JOINER"),
    ("alice\U000e0100", "U+E0100 VARIATION SELECTOR-17"),
    ("ali\u200bce", "U+200B ZERO WIDTH SPACE"),
    ("alice\u200d", "U+200D ZERO WIDTH JOINER"),
    ("ali\u00adce", "U+00AD SOFT HYPHEN"),
    ("alice\u2060", "U+2060 WORD JOINER"),
    ("alice\u2064", "U+2064 INVISIBLE PLUS"),
    ("\ufeffalice", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
    ("alice\U000e0041", "U+E0041 TAG LATIN CAPITAL LETTER A"),
    ("alice\U000e0001", "U+E0001 LANGUAGE TAG"),
    ("alice\u180b", "U+180B MONGOLIAN FREE VARIATION SELECTOR ONE"),
]
#: Other nicks with default-ignorable characters, some of them letters.
INVISIBLE_OTHERS = [
    ("김\u3164", "U+3164 HANGUL FILLER"),  # a Hangul letter, in a Hangul nick
    ("\u3164", "U+3164 HANGUL FILLER"),  # a nick that shows as nothing at all
    ("\u115f\u1160", "U+115F HANGUL CHOSEONG FILLER"),
    ("\uffa0", "U+FFA0 HALFWIDTH HANGUL FILLER"),
    ("ក\u17b4", "U+17B4 KHMER VOWEL INHERENT AQ"),
]


@pytest.mark.parametrize(("nick", "named"), INVISIBLE_ALICES + INVISIBLE_OTHERS)
def test_nicks_with_invisible_characters_are_refused_naming_the_character(
    nick: str, named: str
) -> None:
    with pytest.raises(ProtocolError) as caught:
        normalize_nick(nick)
    assert caught.value.code == ErrorCode.INVALID_NICK
    assert f"may not contain {named}, which is invisible" in caught.value.reason


@pytest.mark.parametrize("nick", [nick for nick, _ in INVISIBLE_ALICES])
def test_invisible_characters_make_no_other_key_or_skeleton(nick: str) -> None:
    # As NFKC_Casefold and the UTS #39 skeleton do: a TELL or KICK spelled with one finds
    # the user everyone sees.
    assert nick_key(nick) == nick_key("alice")
    assert nick_skeleton(nick) == nick_skeleton("alice")


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [("hello", 10, "hello"), ("hello", 3, "hel"), ("ééé", 5, "éé"), ("🎉x", 3, ""), ("", 0, "")],
)
def test_truncate_utf8_never_splits_a_character(text: str, limit: int, expected: str) -> None:
    assert truncate_utf8(text, limit) == expected


def test_packed_events_unpack_to_their_frames() -> None:
    events = [encode(ev.Message(1, "m1", "alice", "hi", 5)), encode(ev.Tick(1)), [b"a", b""]]
    assert unpack_events(pack_events(events)) == events
    assert pack_events([[b"ab", b""]]) == b"\x02\x00\x00\x00\x02ab\x00\x00\x00\x00"


@pytest.mark.parametrize(
    "packed",
    [
        b"",
        b"\x01\x00\x00\x00\x00",  # one frame: no verb
        b"\x09" + b"\x00\x00\x00\x00" * 9,  # more frames than any event has
        b"\x02\x00\x00\x00\x05ab",  # a frame cut short
        b"\x02\x00\x00\x00\x00\x00\x00",  # a length cut short
        b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\x07",  # a trailing partial event
        b"\x00" * (MAX_PACKED_BYTES + 1),
    ],
    ids=repr,
)
def test_bad_packed_frames_raise_protocol_error(packed: bytes) -> None:
    with pytest.raises(ProtocolError):
        unpack_events(packed)


def _record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("broker.core", logging.INFO, __file__, 1, msg, args, exc_info)


@pytest.mark.parametrize(
    ("msg", "args", "line"),
    [
        ("%s left: %s", ("bob", "bye"), "INFO bob left: bye"),
        ("%s left: %s", ("bob", "bye\nINFO mallory is now an operator"), "INFO bob left: bye^J"),
        ("too many joins from %s", ("\x1b]0;title\x07",), "from ^[]0;title^G"),
        ("shutting down: %s", ("\u202eevil\x9b",), "down: <U+202E>evil<U+009B>"),
        ("100%% sure: %s", ("%s %d",), "INFO 100% sure: %s %d"),
    ],
)
def test_log_lines_show_what_peers_sent_escaped(msg: str, args: tuple[str], line: str) -> None:
    record = _record(msg, *args)
    formatted = SanitizingFormatter("%(levelname)s %(message)s").format(record)
    assert line in formatted
    assert "\n" not in formatted and "\x1b" not in formatted
    # Other handlers still get the record as it was logged.
    assert record.getMessage() == msg % args


def test_a_logged_traceback_keeps_its_lines_with_their_text_escaped() -> None:
    try:
        raise ValueError("bad \x1b[2J reason")
    except ValueError as exc:
        record = _record("failed: %s", "x\ny", exc=exc)
    lines = SanitizingFormatter("%(message)s").format(record).split("\n")
    assert lines[0] == "failed: x^Jy"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: bad ^[[2J reason"
