"""A batch's commands for the guarded transport, where a retry changes nothing.

Only two kinds of command would count twice if Redis applied a batch twice: a trace
list's RPUSH and an aggregate's HINCRBY. Those run inside a script
(``GUARDED_WRITES``) that first sets the part's guard key with NX and does nothing
when it was set already; the script also refreshes each list's lifetime, from the
key it already holds. Every other command of a batch sets a member, a score or a
lifetime that a second run leaves as it was (EXPIRE, EXPIREAT, SADD, ZADD,
ZREMRANGEBY*) and is sent plainly after the scripts, in the same write: Redis turns
each script argument into a Lua string, which cost more than running the command
itself (``docs/performance.md``), so as few arguments as possible go through the
script.

A batch is cut into parts of about ``PART_SPANS`` spans, at trace boundaries, each
its own guarded script: a part is sent as soon as it is made, and Redis runs it
while the next is being encoded, in one round trip all the same (every reply is
read after the last write). A part ends after the same spans on every try of a
batch, so a retry's parts have their first try's guard keys: a part Redis applied
is skipped, one it did not is written.
"""

from __future__ import annotations

import hashlib
from typing import Any

from asynctrace import keys
from asynctrace.export._resp import ENCODING_ERRORS, bulk, bulks, error_text

__all__ = ["GUARDED_WRITES", "MAX_LIST_ENTRIES", "PART_SPANS", "GuardedCommands", "part_id"]

# Spans (counted by whole traces) after which a part ends. Each part costs Redis a
# script call and a guard key (about 10 us): 64 spans make it a few percent.
PART_SPANS = 32
# Lua's unpack() takes at most about 8,000 values: a longer list write is split.
MAX_LIST_ENTRIES = 4000

# KEYS[1]: the part's guard key. ARGV[1]: its lifetime (s); ARGV[2]: the trace lists'
# lifetime (s); ARGV[3]: how many arguments the list writes take. Then the list
# writes, each a key, an entry count and the entries (RPUSH, then EXPIRE), and the
# increments, each a key, a field and an amount (HINCRBY). Returns 0 for a part
# already written, else {commands that failed, the first failure's text}. A
# command's failure does not stop the others, as in a pipeline.
GUARDED_WRITES = """\
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local failed, first = 0, ''
local function note(reply)
  if type(reply) == 'table' and reply.err then
    failed = failed + 1
    if failed == 1 then first = reply.err end
  end
end
local ttl, last, i = ARGV[2], 3 + tonumber(ARGV[3]), 4
while i <= last do
  local key, count = ARGV[i], tonumber(ARGV[i + 1])
  if count == 1 then
    note(redis.pcall('RPUSH', key, ARGV[i + 2]))
  else
    note(redis.pcall('RPUSH', key, unpack(ARGV, i + 2, i + 1 + count)))
  end
  note(redis.pcall('EXPIRE', key, ttl))
  i = i + 2 + count
end
for j = last + 1, #ARGV, 3 do
  note(redis.pcall('HINCRBY', ARGV[j], ARGV[j + 1], ARGV[j + 2]))
end
return {failed, first}
"""
_SCRIPT_BULK = bulk(GUARDED_WRITES)
_ONE = "$1\r\n1\r\n"


def part_id(batch_id: str, number: int) -> str:
    """The guard id of a batch's part ``number``: the batch's own id for part 0 (a
    batch of one part is guarded by its id), else 32 hex digits derived from both."""
    if number == 0:
        return batch_id
    return hashlib.blake2b(f"{batch_id}:{number}".encode(), digest_size=16).hexdigest()


class GuardedCommands:
    """A batch's commands as guarded scripts, one per part, each followed by the
    plain commands added while it was made.

    ``take_ready()`` hands over what is made so far, ``finish()`` the rest;
    ``outcome(replies)`` reads their replies, in the order written.
    """

    __slots__ = (
        "_batch_id",
        "_expected",
        "_in_part",
        "_increment_arguments",
        "_increments",
        "_list_arguments",
        "_lists",
        "_parts",
        "_plain",
        "_prefix",
        "_ready",
        "_ttls",
        "count",
    )

    def __init__(self, trace_ttl_s: int, batch_id: str, *, prefix: str) -> None:
        self._batch_id = batch_id
        self._prefix = prefix
        self._ttls = bulk(str(keys.BATCH_GUARD_TTL_S)) + bulk(str(trace_ttl_s))
        self._lists: list[str] = []  # the current part's list writes (argument form)
        self._list_arguments = 0
        self._increments: list[str] = []  # HINCRBY key, field, amount (argument form)
        self._increment_arguments = 0
        self._plain: list[str] = []  # the idempotent commands, as RESP commands
        self._ready: list[str] = []  # parts made and not yet taken
        # The replies to come, in order: a part's Redis commands, or 0 for a plain one.
        self._expected: list[int] = []
        self._parts = 0
        self._in_part = 0  # Redis commands in the current part
        self.count = 0  # Redis commands in all (a list write is an RPUSH and an EXPIRE)

    def rpush(self, key: str, entries: list[str]) -> None:
        count = len(entries)
        if not count:
            return
        if count <= MAX_LIST_ENTRIES and key.isascii():
            # The common case in one f-string: a trace's spans of this batch.
            size = str(count)
            self._lists.append(f"${len(key)}\r\n{key}\r\n${len(size)}\r\n{size}\r\n")
            self._lists.append(bulks(entries))
            self._list_arguments += count + 2
            self._in_part += 2
            self.count += 2
            return
        for first in range(0, count, MAX_LIST_ENTRIES):
            chunk = entries[first : first + MAX_LIST_ENTRIES]
            self._lists.append(f"{bulk(key)}{bulk(str(len(chunk)))}{bulks(chunk)}")
            self._list_arguments += len(chunk) + 2
            self._in_part += 2
            self.count += 2

    def rpush_and_expire(self, key: str, entries: list[str]) -> None:
        # Every list write refreshes the lifetime: an empty rest needs nothing more.
        self.rpush(key, entries)

    def rpush_one_and_expire(self, key: str, entry: str) -> None:
        if key.isascii() and entry.isascii():
            self._lists.append(f"${len(key)}\r\n{key}\r\n{_ONE}${len(entry)}\r\n{entry}\r\n")
            self._list_arguments += 3
            self._in_part += 2
            self.count += 2
        else:
            self.rpush(key, [entry])

    def command(self, *arguments: str) -> None:
        if arguments[0] == "HINCRBY":
            self._increments.append(bulks(arguments[1:]))
            self._increment_arguments += 3
            self._in_part += 1
        else:
            self._plain.append(f"*{len(arguments)}\r\n{bulks(arguments)}")
        self.count += 1

    def end_part(self) -> None:
        """Make the guarded script of the list writes and increments added since the
        last part, followed by the plain commands added meanwhile."""
        arguments = self._list_arguments + self._increment_arguments
        if arguments:
            guard_key = keys.batch_key(part_id(self._batch_id, self._parts), prefix=self._prefix)
            self._parts += 1
            self._ready.append(
                f"*{7 + arguments}\r\n$4\r\nEVAL\r\n{_SCRIPT_BULK}{_ONE}{bulk(guard_key)}"
                f"{self._ttls}{bulk(str(self._list_arguments))}"
            )
            self._ready += self._lists
            self._ready += self._increments
            self._expected.append(self._in_part)
            self._in_part = 0
            self._lists = []
            self._increments = []
            self._list_arguments = self._increment_arguments = 0
        if self._plain:
            self._ready += self._plain
            self._expected += [0] * len(self._plain)
            self._plain = []

    def take_ready(self) -> bytes:
        """The parts made since the last call, as RESP bytes (empty when none)."""
        text = "".join(self._ready)
        self._ready.clear()
        return text.encode("utf-8", ENCODING_ERRORS)

    def finish(self) -> bytes:
        """The last part and the plain commands, as RESP bytes: the batch's last write."""
        self.end_part()
        return self.take_ready()

    @property
    def replies(self) -> int:
        """Replies to read once everything is written: one per part, one per plain
        command."""
        return len(self._expected)

    def outcome(self, replies: list[Any]) -> tuple[int, str]:
        """(commands that failed, the first failure's text) from the batch's replies,
        in the order written. A part that did not run (its guard's SET refused: out of
        memory, a read-only replica) failed whole; one written before, by an earlier
        try of this batch, did not fail."""
        failed, first = 0, ""
        for commands, reply in zip(self._expected, replies, strict=True):
            if isinstance(reply, Exception):
                failed += commands or 1
                first = first or error_text(reply)
            elif commands and isinstance(reply, list) and len(reply) == 2:
                count, text = reply
                if isinstance(count, int) and count:
                    failed += count
                    if not first:
                        first = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        return failed, first
