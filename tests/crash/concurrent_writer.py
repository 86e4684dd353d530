"""Child process of the concurrency test: waits for ``go`` on stdin, then writes N times.

    python concurrent_writer.py DATA_DIR N TAG

Prints one line per acknowledged record id, ``won <id>`` for each contested id it got,
and ``done`` after closing. Every 10th write is a `store_many` of three; every 7th tries
the contested id ``shared-<i // 7>``, which exactly one writer in the whole test may get.
"""

from __future__ import annotations

import sys

from fabric import MemoryFabric
from fabric.errors import DuplicateRecordError


def main() -> None:
    data_dir, n, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    fabric = MemoryFabric(config={"data_dir": data_dir, "segment_bytes": 4096})
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    assert sys.stdin.readline() == "go\n"
    for i in range(n):
        if i % 7 == 0:
            try:
                rid = fabric.store(f"contested {i} by {tag}", {"by": tag}, record_id=f"shared-{i // 7}")
                out.write(f"won {rid}\n")
            except DuplicateRecordError:
                pass
        elif i % 10 == 0:
            for rid in fabric.store_many({"content": f"{tag} batch {i} #{k}"} for k in range(3)):
                out.write(rid + "\n")
        else:
            rid = fabric.store(f"{tag} note {i}", {"by": tag, "i": i})
            out.write(rid + "\n")
        if i % 25 == 0 and i % 7:
            assert fabric.retrieve(rid) is not None  # read-your-writes
    fabric.close()
    out.write("done\n")
    out.flush()


if __name__ == "__main__":
    main()
