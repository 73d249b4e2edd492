"""The zmq-chat terminal client: a full-screen prompt_toolkit chat, or a line mode for scripts.

Only `client.connection` touches sockets; the chat state, command parsing, completion and
rendering are plain code that tests drive directly.
"""
