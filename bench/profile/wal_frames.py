#!/usr/bin/env python3
"""Which tables and indexes the SQLite writer's commits write. Run by scripts/wal-frames;
usage: wal_frames.py strace.txt pages.txt store.db, where strace.txt is `strace -ttt -s 24
-x -e trace=pwrite64,fsync` of the writer thread, pages.txt is `SELECT pageno, name,
pagetype FROM dbstat` of a copy of the store taken afterwards, and store.db that copy.
Each WAL frame starts with a 24-byte header written on its own, whose first 4 bytes are
the page number; an fsync ends a commit."""
import collections, re, sqlite3, sys

HEADER = re.compile(r'([\d.]+) pwrite64\(\d+, "((?:\\x[0-9a-f]{2}){24})", 24,')


def main(trace, pages, store):
    btree = {}
    for line in open(pages):
        pageno, name, kind = line.rstrip("\n").split("|")
        btree[int(pageno)] = f"{name} ({kind})"
    btree[1] = "page 1 (database header)"
    # With incremental vacuum, every 1 + usable/5 pages from page 2 is a pointer-map page,
    # which dbstat does not list; a commit that allocates pages rewrites the one recording
    # them.
    db = sqlite3.connect(store)
    vacuum = db.execute("PRAGMA auto_vacuum").fetchone()[0]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()

    def name(page):
        if page in btree:
            return btree[page]
        if vacuum and (page - 2) % (size // 5 + 1) == 0:
            return "pointer map (incremental vacuum)"
        return "not in the copy"

    commits, frames = 0, collections.Counter()
    pending, first, last = 0, None, None
    for line in open(trace):
        if " fsync(" in line:
            commits += pending > 0
            pending = 0
            continue
        m = HEADER.match(line)
        if m:
            first = first or float(m.group(1))
            last = float(m.group(1))
            page = int.from_bytes(bytes.fromhex(m.group(2).replace("\\x", "")[:8]), "big")
            frames[name(page)] += 1
            pending += 1
    total = sum(frames.values())
    if not commits:
        sys.exit("no commit in the trace")
    # Events are stamped at ingest, a few milliseconds before their commit.
    events = sqlite3.connect(store).execute(
        "SELECT COUNT(*) FROM events WHERE created_at BETWEEN ?1 AND ?2",
        (int(first * 1000), int(last * 1000)),
    ).fetchone()[0]
    print(f"{commits} commits, {events / commits:.1f} events and {total / commits:.1f} frames per commit")
    print("| B-tree | Frames per commit | Share |\n|---|---|---|")
    for name, n in frames.most_common():
        if n / total >= 0.01:
            print(f"| {name} | {n / commits:.2f} | {100 * n / total:.0f}% |")


if __name__ == "__main__":
    main(*sys.argv[1:4])
