"""Queues through the SDK's `Queue` (api v0) and `lep queue`: create, send, receive
in FIFO order, `q.length()`, list, delete, `queue.Empty` on an empty receive, text
that needs JSON escaping, and the 256 KiB message limit at the limit and one over.

One queue is made with `Queue.create_queue` (the SDK polls the list every 10 s until
it appears); the CLI makes and removes its own."""

import queue
import re

import pytest

from conftest import KIB, assert_names_limit, lep, unique
from leptonai.queue import Queue

NAME = unique("q")
MESSAGE_BYTES_MAX = 256 * KIB


@pytest.fixture(scope="module")
def q():
    return Queue.create_queue(NAME)


def test_create_get_list_queue(q):
    assert NAME in Queue.list_queue()
    assert q.length() == 0
    with pytest.raises(ValueError):
        Queue.create_queue(NAME)  # exists
    with pytest.raises(ValueError):
        Queue.get_queue(unique("no-such-queue"))
    assert Queue.get_queue(NAME).length() == 0
    # The docs' form: an existing queue is opened, not created again.
    same = Queue(NAME, create_if_not_exists=True)
    same.send(unique("via-second-handle"))
    assert q.length() == 1
    assert q.receive() == unique("via-second-handle")


def test_send_receive_fifo_length_and_empty(q):
    messages = [unique(f"m{i}") for i in range(4)]
    for i, message in enumerate(messages):
        q.send(message)
        assert q.length() == i + 1
    for i, message in enumerate(messages):
        assert q.receive() == message
        assert q.length() == len(messages) - i - 1
    with pytest.raises(queue.Empty):
        q.receive()
    assert q.length() == 0


def test_messages_that_need_escaping_round_trip(q):
    texts = [
        'quotes " and \\ backslash',
        "new\nline\ttab",
        "ünïcödé ☃ – ñ",
        "astral 😀 𝄞",
        "nul \x00 byte",
        " ",
        unique("plain"),
    ]
    for text in texts:
        q.send(text)
    assert [q.receive() for _ in texts] == texts
    with pytest.raises(queue.Empty):
        q.receive()


def test_message_limit_256kib(q, api):
    at_limit = ("0123456789abcdef" * (MESSAGE_BYTES_MAX // 16))[:-8] + unique("")[:8]
    assert len(at_limit.encode()) == MESSAGE_BYTES_MAX
    q.send(at_limit)
    assert q.length() == 1
    refused = api.request("POST", f"/queue/{NAME}/messages", json={"message": at_limit + "!"})
    assert refused.status_code == 413, (refused.status_code, refused.text[:300])
    assert_names_limit(refused, MESSAGE_BYTES_MAX)
    assert q.length() == 1, "a refused send must not enqueue anything"
    assert q.receive() == at_limit


def test_lep_queue_commands():
    name = unique("cli-q")
    lep("queue", "create", "-n", name)
    assert name in Queue.list_queue()
    message = "cli message ü ☃ " + unique("")
    lep("queue", "send", "-n", name, "-m", message)
    listed = lep("queue", "list", "--pattern", re.escape(name))
    row = next((line for line in listed.stdout.splitlines() if name in line), None)
    assert row is not None, listed.stdout
    assert re.search(r"\b1\b", row.replace(name, "")), f"length 1 expected in {row!r}"
    assert NAME not in listed.stdout, "--pattern should filter the list"
    assert Queue.get_queue(name).length() == 1
    received = lep("queue", "receive", "-n", name)
    assert message in received.stdout, received.stdout
    empty = lep("queue", "receive", "-n", name)
    assert f"Queue {name} is empty." in empty.stdout, empty.stdout
    lep("queue", "remove", "-n", name)
    assert name not in Queue.list_queue()
    assert name not in lep("queue", "list").stdout


def test_delete_queue(q, api):
    q.send(unique("left-behind"))
    Queue.delete_queue(q)
    assert NAME not in Queue.list_queue()
    assert api.request("GET", f"/queue/{NAME}/length").status_code == 404
    with pytest.raises(ValueError):
        Queue.get_queue(NAME)
