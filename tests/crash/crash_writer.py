"""Child process of the crash tests: writes until killed, printing what was acknowledged.

    python crash_writer.py DATA_DIR MODE DURABILITY TAG

MODE ``single``: one `store` per line of output, the line is the id.
MODE ``many``: one `store_many` batch per line, the line is its ids separated by spaces;
every record of batch *i* carries ``{"batch": "TAG-i", "n": size}`` so the parent can
check that no batch is ever half there.

A line is printed (and flushed) only after the call returned, so every line the parent
reads is an acknowledged write. ``ready`` is printed once the store is open.
"""

from __future__ import annotations

import sys

from fabric import MemoryFabric


def main() -> None:
    data_dir, mode, durability, tag = sys.argv[1:5]
    fabric = MemoryFabric(config={"data_dir": data_dir, "durability": durability, "segment_bytes": 8192})
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    i = 0
    while True:
        if mode == "single":
            rid = fabric.store(f"note {tag}-{i} " + "x" * (i % 97), {"tag": tag, "i": i}, ["crash"])
            out.write(rid + "\n")
        else:
            n = 1 + i % 7
            ids = fabric.store_many(
                {"content": f"batch {tag}-{i} item {k} " + "y" * (k * 13), "metadata": {"batch": f"{tag}-{i}", "n": n}}
                for k in range(n))
            out.write(" ".join(ids) + "\n")
        out.flush()
        i += 1


if __name__ == "__main__":
    main()
