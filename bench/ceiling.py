"""The ceiling: the least a pyzmq ROUTER relay can do per message, in a plain loop.

    python -m bench.ceiling --bind tcp://127.0.0.1:* [--asyncio]

Same socket options as the broker (ROUTER_MANDATORY, high-water marks, backlog), no chat
logic. Clients speak a three-verb dialect; what they want delivered is already encoded as
the broker's event, so receivers see the same frames from either relay:

    HELLO name          -> remember name; answer [SIGNATURE, WELCOME]
    TO name frames...   -> send frames... to name
    ALL frames...       -> send frames... to every client, in order of arrival

A send that would block (the client's queue is full) or finds the client gone is dropped.
Prints the endpoint it listens on as its first line; runs until killed.
"""

import argparse
import asyncio
import contextlib
import sys

import zmq
import zmq.asyncio

from broker.server import LISTEN_BACKLOG, RECEIVE_HWM_MESSAGES, SEND_HWM_MESSAGES
from messages import SIGNATURE

WELCOME = [SIGNATURE, b"WELCOME"]


def configure(sock: zmq.Socket) -> None:  # type: ignore[type-arg]
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.SNDHWM, SEND_HWM_MESSAGES)
    sock.setsockopt(zmq.RCVHWM, RECEIVE_HWM_MESSAGES)
    sock.setsockopt(zmq.BACKLOG, LISTEN_BACKLOG)
    sock.setsockopt(zmq.LINGER, 0)


def serve_sync(bind: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    configure(sock)
    sock.bind(bind)
    print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    names: dict[bytes, bytes] = {}
    members: list[bytes] = []
    recv, send, noblock = sock.recv_multipart, sock.send_multipart, zmq.NOBLOCK
    while True:
        frames = recv()
        verb = frames[1]
        try:
            if verb == b"TO":
                send([names[frames[2]], *frames[3:]], noblock)
            elif verb == b"ALL":
                body = frames[2:]
                for member in members:
                    with contextlib.suppress(zmq.ZMQError):
                        send([member, *body], noblock)
            elif verb == b"HELLO":
                names[frames[2]] = frames[0]
                members.append(frames[0])
                send([frames[0], *WELCOME], noblock)
        except (zmq.ZMQError, KeyError):
            pass


async def serve_async(bind: str) -> None:
    ctx = zmq.asyncio.Context()
    sock = ctx.socket(zmq.ROUTER)
    configure(sock)
    sock.bind(bind)
    print(sock.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    names: dict[bytes, bytes] = {}
    members: list[bytes] = []
    recv, send = sock.recv_multipart, sock.send_multipart
    while True:
        frames = await recv()
        verb = frames[1]
        try:
            if verb == b"TO":
                await send([names[frames[2]], *frames[3:]])
            elif verb == b"ALL":
                body = frames[2:]
                for member in members:
                    with contextlib.suppress(zmq.ZMQError):
                        await send([member, *body])
            elif verb == b"HELLO":
                names[frames[2]] = frames[0]
                members.append(frames[0])
                await send([frames[0], *WELCOME])
        except (zmq.ZMQError, KeyError):
            pass


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling")
    parser.add_argument("--bind", default="tcp://127.0.0.1:*")
    parser.add_argument("--asyncio", action="store_true", help="zmq.asyncio instead of a loop")
    args = parser.parse_args()
    if args.asyncio:
        asyncio.run(serve_async(args.bind))
    else:
        serve_sync(args.bind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
