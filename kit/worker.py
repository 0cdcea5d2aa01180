"""A worker process of `kit.snapshot.in_processes`: runs the calls it is sent, one at a time.

Each message, both ways, is 8 bytes of length then a pickle: in, `(function, args)`; out,
`(True, result)` or `(False, exception)`. It stops at the end of its input.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any, BinaryIO


def _read(source: BinaryIO) -> Any:
    header = source.read(8)
    if len(header) < 8:
        return None
    return pickle.loads(source.read(int.from_bytes(header, "big")))


def frame(message: Any) -> bytes:
    """A message as sent either way: 8 bytes of length, then its pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(8, "big") + data


def write(sink: BinaryIO, message: Any) -> None:
    sink.write(frame(message))
    sink.flush()


# Workers yield to the process that started them: it holds the part of the job that cannot be
# spread (and, in a server, the requests).
NICENESS = 5


def main() -> None:
    if hasattr(os, "nice"):
        os.nice(NICENESS)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # what the calls print must not mix with the replies
    while (request := _read(requests)) is not None:
        function, args = request
        try:
            reply = (True, function(*args))
        except Exception as error:  # sent back, raised again in the parent
            reply = (False, error)
        write(replies, reply)


if __name__ == "__main__":
    main()
