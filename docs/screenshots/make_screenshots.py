"""Screenshots for docs/REPORT.md: a real broker and real clients in real terminals.

    make screenshots            # or: python docs/screenshots/make_screenshots.py

A private tmux server (its own socket, `tmux -L`) runs one window per program, 100 x 28
cells: a shell that starts the broker, and one shell per client (alice, bob, bella, carol,
and dave, who joins after the broker restarted; then alice, bob and carol come back, for a
room, buffers and mentions). The broker and each client keep their state
(the broker's database, a client's identity and input history) in a temporary directory.
The script types into them with `send-keys` (text, Tab, Enter), waits for what it expects
to appear on screen by polling `capture-pane` (bounded, no fixed sleeps), captures panes
with their colours (`capture-pane -e`, ANSI SGR) and renders them to PNG with Pillow and
DejaVu Sans Mono: one cell per character (two for wide characters), 16, 256 and 24-bit
colours, bold, italic, underline and reverse, on a dark background. Where the client's
terminal title matters (its count of unseen mentions), the title bar shows the title the
client set (tmux's `pane_title`).

The tmux server, and with it the broker and the clients, is stopped on exit, failure and
Ctrl-C included. Needs tmux and Pillow (`pip install -e '.[screenshots]'`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = Path(__file__).resolve().parent
COLUMNS, ROWS = 100, 28
#: The port `make broker` uses; another free one is taken if it is busy.
PREFERRED_PORT = 5555
ADMIN_TOKEN = "demo-operator-token-0123456"
#: Longest wait for something to appear on a screen, in seconds.
WAIT_S = 20.0
POLL_S = 0.1

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_SIZE = 15
FONTS = {
    (False, False): "DejaVuSansMono.ttf",
    (True, False): "DejaVuSansMono-Bold.ttf",
    (False, True): "DejaVuSansMono-Oblique.ttf",
    (True, True): "DejaVuSansMono-BoldOblique.ttf",
}
#: For characters DejaVu Sans Mono lacks (✓ among them).
FALLBACK_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")

RGB = tuple[int, int, int]
DEFAULT_FG: RGB = (0xD0, 0xD0, 0xD0)
DEFAULT_BG: RGB = (0x1C, 0x1C, 0x1C)
TITLE_BG: RGB = (0x30, 0x30, 0x30)
TITLE_FG: RGB = (0xA8, 0xA8, 0xA8)
FRAME_BG: RGB = (0x12, 0x12, 0x12)
#: The 16 ANSI colours (Tango), as most dark terminal themes draw them.
ANSI16: tuple[RGB, ...] = (
    (0x2E, 0x34, 0x36),
    (0xCC, 0x00, 0x00),
    (0x4E, 0x9A, 0x06),
    (0xC4, 0xA0, 0x00),
    (0x34, 0x65, 0xA4),
    (0x75, 0x50, 0x7B),
    (0x06, 0x98, 0x9A),
    (0xD3, 0xD7, 0xCF),
    (0x55, 0x57, 0x53),
    (0xEF, 0x29, 0x29),
    (0x8A, 0xE2, 0x34),
    (0xFC, 0xE9, 0x4F),
    (0x72, 0x9F, 0xCF),
    (0xAD, 0x7F, 0xA8),
    (0x34, 0xE2, 0xE2),
    (0xEE, 0xEE, 0xEC),
)


def xterm256(index: int) -> RGB:
    """Colour `index` of the xterm 256-colour palette."""
    if index < 16:
        return ANSI16[index]
    if index < 232:
        index -= 16
        steps = (0, 95, 135, 175, 215, 255)
        return (steps[index // 36], steps[index // 6 % 6], steps[index % 6])
    level = 8 + 10 * (index - 232)
    return (level, level, level)


# -- ANSI text to cells ------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """The SGR state of one cell; None colours are the terminal's defaults."""

    fg: RGB | None = None
    bg: RGB | None = None
    bold: bool = False
    italic: bool = False
    underline: bool = False
    reverse: bool = False

    def colours(self) -> tuple[RGB, RGB]:
        """Foreground and background as drawn (reverse applied)."""
        fg, bg = self.fg or DEFAULT_FG, self.bg or DEFAULT_BG
        return (bg, fg) if self.reverse else (fg, bg)


@dataclass(frozen=True)
class Cell:
    char: str
    style: Style
    width: int


_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
_OTHER_ESCAPE = re.compile(
    r"\x1b(?:\[[0-9;:?]*[A-Za-ln-z]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][A-Za-z0-9])"
)


def _extended_colour(params: list[str], index: int) -> tuple[RGB | None, int]:
    """The colour of `38;5;n` / `38;2;r;g;b` starting at params[index] (the 5 or 2), and
    how many parameters it used."""
    if index < len(params) and params[index] == "5" and index + 1 < len(params):
        return xterm256(int(params[index + 1] or 0) % 256), 2
    if index < len(params) and params[index] == "2" and index + 3 < len(params):
        r, g, b = (int(p or 0) % 256 for p in params[index + 1 : index + 4])
        return (r, g, b), 4
    return None, len(params) - index


def apply_sgr(style: Style, parameters: str) -> Style:
    """`style` after the SGR sequence with `parameters` (`1;38;5;208`, colons allowed)."""
    # 38:2::r:g:b (ITU form, empty colour space id) and 38:5:n become 38;2;r;g;b / 38;5;n.
    params = re.sub(r"([34]8):2::", r"\1;2;", parameters).replace(":", ";").split(";")
    i = 0
    while i < len(params):
        code = int(params[i] or 0)
        i += 1
        if code == 0:
            style = Style()
        elif code == 1:
            style = replace(style, bold=True)
        elif code == 3:
            style = replace(style, italic=True)
        elif code == 4:
            style = replace(style, underline=True)
        elif code == 7:
            style = replace(style, reverse=True)
        elif code == 22:
            style = replace(style, bold=False)
        elif code == 23:
            style = replace(style, italic=False)
        elif code == 24:
            style = replace(style, underline=False)
        elif code == 27:
            style = replace(style, reverse=False)
        elif 30 <= code <= 37:
            style = replace(style, fg=ANSI16[code - 30])
        elif 90 <= code <= 97:
            style = replace(style, fg=ANSI16[code - 90 + 8])
        elif 40 <= code <= 47:
            style = replace(style, bg=ANSI16[code - 40])
        elif 100 <= code <= 107:
            style = replace(style, bg=ANSI16[code - 100 + 8])
        elif code == 39:
            style = replace(style, fg=None)
        elif code == 49:
            style = replace(style, bg=None)
        elif code in (38, 48):
            colour, used = _extended_colour(params, i)
            i += used
            style = replace(style, fg=colour) if code == 38 else replace(style, bg=colour)
    return style


def char_width(char: str) -> int:
    """Terminal cells `char` takes: 2 for wide (CJK, full-width), 0 for combining marks."""
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def parse_ansi(text: str, rows: int) -> list[list[Cell]]:
    """The cells of `rows` lines of `capture-pane -e -p` output; attributes carry over
    from line to line, as on the terminal."""
    style = Style()
    screen: list[list[Cell]] = []
    for line in text.split("\n")[:rows]:
        cells: list[Cell] = []
        position = 0
        line = _OTHER_ESCAPE.sub("", line)
        for match in _SGR.finditer(line + "\x1b[m"):
            for char in line[position : match.start()]:
                width = char_width(char)
                if width == 0 and cells:
                    last = cells[-1]
                    cells[-1] = Cell(last.char + char, last.style, last.width)
                elif width:
                    cells.append(Cell(char, style, width))
            if match.end() <= len(line):
                style = apply_sgr(style, match.group(1))
            position = match.end()
        screen.append(cells)
    while len(screen) < rows:
        screen.append([])
    return screen


# -- cells to pixels ---------------------------------------------------------------------


class Renderer:
    """Draws terminal screens with DejaVu Sans Mono, one fixed-size cell per column."""

    def __init__(self, size: int = FONT_SIZE) -> None:
        self.fonts = {
            key: ImageFont.truetype(str(FONT_DIR / name), size) for key, name in FONTS.items()
        }
        self.fallbacks = [ImageFont.truetype(str(FONT_DIR / name), size) for name in FALLBACK_FONTS]
        regular = self.fonts[(False, False)]
        ascent, descent = regular.getmetrics()
        self.cell_w = round(regular.getlength("M"))
        self.cell_h = ascent + descent + 2
        self.baseline_pad = 1
        self._missing: dict[tuple[int, str], bool] = {}
        self._notdef = {
            id(f): self._mask(f, "\U000f0000") for f in [*self.fonts.values(), *self.fallbacks]
        }

    @staticmethod
    def _mask(font: ImageFont.FreeTypeFont, text: str) -> bytes:
        image = Image.new("L", (4 * FONT_SIZE, 2 * FONT_SIZE))
        ImageDraw.Draw(image).text((0, 0), text, font=font, fill=255)
        return image.tobytes()

    def _has_glyph(self, font: ImageFont.FreeTypeFont, char: str) -> bool:
        key = (id(font), char)
        if key not in self._missing:
            self._missing[key] = self._mask(font, char) == self._notdef[id(font)]
        return not self._missing[key]

    def font_for(self, cell: Cell) -> ImageFont.FreeTypeFont:
        font = self.fonts[(cell.style.bold, cell.style.italic)]
        base = cell.char[0]
        if base.isspace() or self._has_glyph(font, base):
            return font
        for fallback in self.fallbacks[1:] if cell.style.bold else self.fallbacks:
            if self._has_glyph(fallback, base):
                return fallback
        return font

    def screen(self, cells: list[list[Cell]], columns: int, title: str) -> Image.Image:
        """One terminal: a title bar with `title`, then the cells."""
        pad = 10
        title_h = self.cell_h + 8
        width = columns * self.cell_w + 2 * pad
        height = title_h + len(cells) * self.cell_h + 2 * pad
        image = Image.new("RGB", (width, height), DEFAULT_BG)
        draw = ImageDraw.Draw(image)
        draw.rectangle((0, 0, width, title_h - 1), fill=TITLE_BG)
        for i, colour in enumerate(((0xED, 0x6A, 0x5E), (0xF5, 0xBF, 0x4F), (0x61, 0xC5, 0x54))):
            x = pad + i * 18
            draw.ellipse((x, title_h // 2 - 5, x + 10, title_h // 2 + 5), fill=colour)
        label_w = self.fonts[(False, False)].getlength(title)
        draw.text(((width - label_w) / 2, 4), title, font=self.fonts[(False, False)], fill=TITLE_FG)
        top = title_h + pad
        for row, line in enumerate(cells):
            y = top + row * self.cell_h
            x_cell = 0
            for cell in line:
                if x_cell >= columns:
                    break
                fg, bg = cell.style.colours()
                x = pad + x_cell * self.cell_w
                span = cell.width * self.cell_w
                if bg != DEFAULT_BG:
                    draw.rectangle((x, y, x + span - 1, y + self.cell_h - 1), fill=bg)
                if not cell.char.isspace():
                    font = self.font_for(cell)
                    glyph_w = font.getlength(cell.char)
                    # Centre glyphs that are narrower or wider than their cells.
                    gx = x + (span - glyph_w) / 2 if abs(glyph_w - span) > 1 else x
                    draw.text((gx, y + self.baseline_pad), cell.char, font=font, fill=fg)
                if cell.style.underline:
                    draw.line((x, y + self.cell_h - 2, x + span - 1, y + self.cell_h - 2), fill=fg)
                x_cell += cell.width
        return image


def side_by_side(images: Sequence[Image.Image], gap: int = 16) -> Image.Image:
    """`images` next to each other on a dark frame."""
    width = sum(image.width for image in images) + gap * (len(images) + 1)
    height = max(image.height for image in images) + 2 * gap
    sheet = Image.new("RGB", (width, height), FRAME_BG)
    x = gap
    for image in images:
        sheet.paste(image, (x, gap))
        x += image.width + gap
    return sheet


def framed(image: Image.Image, gap: int = 16) -> Image.Image:
    return side_by_side([image], gap)


# -- tmux --------------------------------------------------------------------------------


class Tmux:
    """A private tmux server (socket `name`) with one window per program."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.started = False

    def run(self, *args: str, check: bool = True) -> str:
        result = subprocess.run(
            ["tmux", "-u", "-L", self.name, *args],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def new_window(self, window: str, shell: Sequence[str]) -> None:
        command = shlex.join(shell)
        if not self.started:
            self.run(
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "shots",
                "-n",
                window,
                "-x",
                str(COLUMNS),
                "-y",
                str(ROWS),
                command,
            )
            self.started = True
            # No client ever attaches: windows take default-size. (window-size manual and
            # resize-window make tmux 3.3a crash on the next new-window.)
            self.run("set-option", "-g", "default-size", f"{COLUMNS}x{ROWS}")
            self.run("set-option", "-g", "status", "off")
            self.run("set-option", "-g", "default-terminal", "tmux-256color")
            self.run("set-option", "-g", "escape-time", "0")
        else:
            self.run("new-window", "-d", "-t", "shots", "-n", window, command)
        size = self.run(
            "display-message", "-p", "-t", f"shots:{window}", "#{pane_width}x#{pane_height}"
        ).strip()
        if size != f"{COLUMNS}x{ROWS}":
            raise RuntimeError(f"window {window} is {size}, not {COLUMNS}x{ROWS}")

    def type(self, window: str, text: str) -> None:
        """Type `text` literally."""
        self.run("send-keys", "-t", f"shots:{window}", "-l", text)

    def keys(self, window: str, *keys: str) -> None:
        """Press named keys (`Enter`, `Tab`, ...)."""
        self.run("send-keys", "-t", f"shots:{window}", *keys)

    def title(self, window: str) -> str:
        """The title the program in `window` gave its terminal (`OSC 2`)."""
        return self.run("display-message", "-p", "-t", f"shots:{window}", "#{pane_title}").strip()

    def capture(self, window: str, colours: bool = False) -> str:
        args = ["capture-pane", "-p", "-t", f"shots:{window}"]
        if colours:
            # -N keeps trailing spaces: a reverse-video status line spans the whole width.
            args[1:1] = ["-e", "-N"]
        return self.run(*args)

    def wait_for(self, window: str, *texts: str, timeout_s: float = WAIT_S) -> str:
        """Poll `window` until every one of `texts` is on its screen; its text then."""
        return self.wait_until(
            window, lambda screen: all(text in screen for text in texts), repr(texts), timeout_s
        )

    def wait_until(
        self,
        window: str,
        ready: Callable[[str], bool],
        what: str,
        timeout_s: float = WAIT_S,
    ) -> str:
        """Poll `window` until `ready(screen text)`; the screen text then."""
        deadline = time.monotonic() + timeout_s
        while True:
            screen = self.capture(window)
            if ready(screen):
                return screen
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{window}: {what} did not appear within {timeout_s:g} s; "
                    f"the screen shows:\n{screen}"
                )
            time.sleep(POLL_S)

    def pane_pids(self) -> list[int]:
        if not self.started:
            return []
        out = self.run("list-panes", "-a", "-F", "#{pane_pid}", check=False)
        return [int(pid) for pid in out.split()]

    def kill(self) -> None:
        if self.started:
            self.run("kill-server", check=False)
            self.started = False


def descendants(pids: Sequence[int]) -> list[int]:
    """Every process below `pids` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = list(pids)
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def free_port() -> int:
    """PREFERRED_PORT if nothing listens there, else a port the kernel picks."""
    for port in (PREFERRED_PORT, 0):
        with socket.socket() as probe:
            # As libzmq binds: connections of an earlier run in TIME_WAIT do not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise RuntimeError("no free port")  # pragma: no cover


@contextlib.contextmanager
def terminals() -> Iterator[Tmux]:
    """A private tmux server; it, and every process it started, is gone afterwards."""
    python_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{python_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PS1": "$ ",
        "TERM": "xterm-256color",
    }
    env.pop("TMUX", None)
    tmux = Tmux(f"zmq-chat-shots-{os.getpid()}", env)

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield tmux
    finally:
        processes = descendants(tmux.pane_pids())
        tmux.kill()
        deadline = time.monotonic() + 3
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        while processes and time.monotonic() < deadline:
            processes = [pid for pid in processes if Path(f"/proc/{pid}").exists()]
            time.sleep(POLL_S)
        for pid in processes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        signal.signal(signal.SIGTERM, previous)


# -- the scenario ------------------------------------------------------------------------

#: Where the client's user list starts: text left of it is the message pane.
USER_LIST_COLUMN = 70
SHELL = ["env", "PS1=$ ", "bash", "--norc", "--noprofile", "-i"]


def shoot(out_dir: Path, state_dir: Path) -> list[Path]:
    """Run the scenario, the broker and each client keeping their state under `state_dir`;
    return the PNG files written."""
    renderer = Renderer()
    written: list[Path] = []
    server = f"tcp://127.0.0.1:{free_port()}"
    broker_command = (
        f"ZMQ_CHAT_ADMIN_TOKEN={ADMIN_TOKEN} python -m broker --bind {server} "
        f"--state-dir {shlex.quote(str(state_dir / 'broker'))}"
    )

    def client_command(nick: str) -> str:
        home = shlex.quote(str(state_dir / nick))
        return f"ZMQ_CHAT_STATE_DIR={home} python -m client --server {server} --nick {nick}"

    def save(name: str, image: Image.Image) -> None:
        path = out_dir / name
        image.save(path, optimize=True)
        written.append(path)
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    def screen(tmux: Tmux, window: str, title: str) -> Image.Image:
        cells = parse_ansi(tmux.capture(window, colours=True), ROWS)
        return renderer.screen(cells, COLUMNS, title)

    def start(tmux: Tmux, window: str, command: str) -> None:
        tmux.new_window(window, SHELL)
        tmux.wait_for(window, "$")
        restart(tmux, window, command)

    def restart(tmux: Tmux, window: str, command: str) -> None:
        """Run `command` in `window`'s shell, on a cleared screen."""
        tmux.run("send-keys", "-t", f"shots:{window}", "clear", "Enter")
        tmux.type(window, command)
        tmux.keys(window, "Enter")

    def titled(tmux: Tmux, window: str) -> str:
        """`window`'s name and the title its program set: `bob — (1) zmq-chat`."""
        return f"{window} — {tmux.title(window)}"

    def say(tmux: Tmux, window: str, line: str) -> None:
        """Type `line` and Enter."""
        tmux.type(window, line)
        tmux.keys(window, "Enter")

    with terminals() as tmux:
        os.chdir(ROOT)
        # 1. The broker starts; the operator asks its console for help.
        start(tmux, "broker", broker_command)
        tmux.wait_for("broker", "type /help for operator commands")
        tmux.type("broker", "/help")
        tmux.keys("broker", "Enter")
        tmux.wait_for("broker", "/shutdown [reason]")
        save("01-broker-start.png", framed(screen(tmux, "broker", "broker")))

        # 2. alice, then bob, bella and carol connect.
        nicks = ("alice", "bob", "bella", "carol")
        for nick in nicks:
            start(tmux, nick, client_command(nick))
            tmux.wait_for(nick, f"connected to {server} as {nick}")
        tmux.wait_for("alice", "bob joined", "bella joined", "carol joined", "4 here")
        tmux.type("bob", "hi all")
        tmux.keys("bob", "Enter")
        tmux.wait_for("alice", "<bob> hi all")
        save("02-users-connected.png", framed(screen(tmux, "alice", "alice")))

        # 3. alice picks a recipient with Tab: bob (spoke last) and bella match `b`; the
        # first Tab takes bob, the menu shows bella too.
        tmux.type("alice", "/msg b")
        tmux.keys("alice", "Tab")
        # The menu opens over the bottom lines, left of the user list.
        tmux.wait_until(
            "alice",
            lambda text: any("bella" in line[:USER_LIST_COLUMN] for line in text.splitlines()[-4:]),
            "the completion menu",
        )
        save("03-tab-completion.png", framed(screen(tmux, "alice", "alice")))

        # 4. bob it is; a private message, an answer, and a broadcast. The private message
        # opens bob's buffer 2, alice's conversation; bob goes there (Alt-2) and answers
        # with a plain line, which goes to alice, whose side panel counts it in her buffer
        # 2, bob's, while she stays in #general.
        tmux.wait_for("alice", "[all] > /msg bob")
        say(tmux, "alice", "lunch at one?")
        tmux.wait_for("bob", "!2 alice 1")
        tmux.wait_for("alice", "lunch at one? ✓✓")
        tmux.keys("bob", "M-2")
        tmux.wait_for("bob", "[2:alice]", "lunch at one?")
        say(tmux, "bob", "sure, see you there")
        tmux.wait_for("alice", "!2 bob 1")
        say(tmux, "carol", "anyone else hungry?")
        tmux.wait_for("alice", "<carol> anyone else hungry?")
        tmux.wait_for("bob", " 1 #general 1", "sure, see you there ✓✓")
        save(
            "04-private-and-broadcast.png",
            side_by_side([screen(tmux, "alice", "alice"), screen(tmux, "bob", "bob")]),
        )

        # 5. The operator stops the broker from its console; every client is told why.
        tmux.type("broker", "/shutdown maintenance, back at 14:00")
        tmux.keys("broker", "Enter")
        tmux.wait_for("broker", "broker stopped")
        for nick in nicks:
            # The client has left full-screen mode, printed why it ended and exited.
            tmux.wait_until(
                nick,
                lambda text: (
                    "the server is shutting down" in text and text.rstrip().endswith("\n$")
                ),
                "the shutdown reason and the shell prompt",
            )
        save(
            "05-shutdown-notice.png",
            side_by_side([screen(tmux, "broker", "broker"), screen(tmux, "alice", "alice")]),
        )

        # 6. The broker starts again on its database; dave, who was never there, joins and
        # sees the conversation as history, dimmed, above the line where now begins.
        tmux.run("send-keys", "-t", "shots:broker", "clear", "Enter")
        tmux.type("broker", broker_command)
        tmux.keys("broker", "Enter")
        tmux.wait_for("broker", "remembering the chat in")
        start(tmux, "dave", client_command("dave"))
        tmux.wait_for("dave", "anyone else hungry?", "now")
        save("06-history-after-restart.png", framed(screen(tmux, "dave", "dave")))

        # 7. alice, bob and carol come back; alice and bob go into #dev, where alice sets
        # the topic. While alice looks at #dev, carol mentions her in #general and dave
        # writes to her privately: the side panel counts both buffers, with `!` for the
        # mention and the private message, and the status line lists them.
        for nick in ("alice", "bob", "carol"):
            restart(tmux, nick, client_command(nick))
            tmux.wait_for(nick, f"connected to {server} as {nick}")
        tmux.wait_for("dave", "carol joined", "4 here")
        say(tmux, "alice", "/join #dev")
        tmux.wait_for("alice", "you joined #dev", "[2:#dev]")
        say(tmux, "bob", "/join #dev")
        tmux.wait_for("bob", "you joined #dev", "[2:#dev]")
        tmux.wait_for("alice", "bob joined #dev")
        say(tmux, "alice", "/topic release on Friday")
        tmux.wait_for("bob", "alice set the topic: release on Friday")
        say(tmux, "bob", "the rooms branch is merged")
        tmux.wait_for("alice", "<bob> the rooms branch is merged")
        say(tmux, "alice", "great, I will write the notes")
        tmux.wait_for("bob", "<alice> great, I will write the notes")
        say(tmux, "carol", "alice: are the screenshots ready?")
        tmux.wait_for("alice", "!1 #general 1")
        say(tmux, "dave", "lunch anyone?")
        tmux.wait_for("alice", "!1 #general 2")
        say(tmux, "dave", "/msg alice can I join #dev?")
        tmux.wait_for("alice", "!3 dave 1", "Act: 1,3")
        tmux.wait_until(
            "alice", lambda _: tmux.title("alice") == "(2) zmq-chat", "(2) in the title"
        )
        save("07-buffers-and-activity.png", framed(screen(tmux, "alice", titled(tmux, "alice"))))

        # 8. bob goes to #general (Alt-1); alice mentions him in #dev, which he is not
        # looking at: his bell rings, #dev gets `!` and a count, and his terminal's title
        # counts the mention.
        tmux.keys("bob", "M-1")
        tmux.wait_for("bob", "[1:#general]", "lunch anyone?")
        say(tmux, "alice", "bob: can you tag the release?")
        tmux.wait_for("alice", "<alice> bob: can you tag the release?")
        tmux.wait_for("bob", "!2 #dev 1", "Act: 2")
        tmux.wait_until("bob", lambda _: tmux.title("bob") == "(1) zmq-chat", "(1) in the title")
        save(
            "08-mention-elsewhere.png",
            side_by_side(
                [
                    screen(tmux, "alice", titled(tmux, "alice")),
                    screen(tmux, "bob", titled(tmux, "bob")),
                ]
            ),
        )
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where to write the PNGs")
    args = parser.parse_args(argv)
    if shutil.which("tmux") is None:
        print("make_screenshots: tmux is not installed", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zmq-chat-shots-") as state_dir:
        shoot(args.out.resolve(), Path(state_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
