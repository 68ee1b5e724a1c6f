#!/usr/bin/env python3
"""Credits the transfers of tron-actors' event stream, as docs/CONSUMERS.md explains.

A consumer group gives the reader a durable place in the stream and keeps what it was handed but
did not acknowledge (its pending entries), so that a crashed reader's entries are taken over by
another one (XAUTOCLAIM). Each entry is applied and acknowledged in one MULTI: the ledger (here a
Redis hash next to the stream; in real life your database) and the acknowledgement move together.

- a transfer (trc20, trc721, trx, trc10, internal) is credited under its key `<tx>_<i>`, so
  applying it twice credits it once;
- `block_reverted` uncredits everything credited for that block (its new version follows);
- `finalized` marks every credit at or below its block as final;
- `block`, `approval` and `log` entries are acknowledged and otherwise ignored.

When no entry comes for --idle-exit-ms, it prints the ledger (one JSON object per credited
transfer, with "final") and exits 0. Needs redis-py (pip install redis).

    python3 examples/consumer.py --redis redis://127.0.0.1:6379 --group deposits --consumer c1
"""

import argparse
import json
import os
import sys
import time

import redis

TRANSFERS = ("trc20", "trc721", "trx", "trc10", "internal")
FIELDS = ("block", "tx", "i", "kind", "contract", "from", "to", "value", "token")
# Stream ids are the Redis server's clock at publication; a block's timestamp is its producer's.
# Start this much earlier than the block's time when finding one's place by block number.
CLOCK_MARGIN_MS = 60_000
BLOCK_INTERVAL_MS = 3_000


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis", default="redis://127.0.0.1:6379")
    p.add_argument("--stream", default="{tron}:events")
    p.add_argument("--group", default="deposits")
    p.add_argument("--consumer", default="consumer-1")
    p.add_argument("--ledger", default="{tron}:example-ledger",
                   help="key prefix of the example's ledger; same hash tag as the stream")
    p.add_argument("--from-block", type=int,
                   help="a new group starts at this block (an existing group resumes)")
    p.add_argument("--claim-idle-ms", type=int, default=60_000,
                   help="take over entries another consumer left pending this long")
    p.add_argument("--idle-exit-ms", type=int, default=2_000)
    p.add_argument("--crash-after", type=int,
                   help="for tests: exit 3 after applying this many entries, as a crash would")
    return p.parse_args()


def start_id_for_block(r, stream, number):
    """The id to start a group at so that no entry of a block >= number is missed.

    A block is published after its timestamp, and timestamps grow with the block number (by at
    least 3 s a block), so the `block` entry of any block k <= number gives a lower bound:
    time(number) >= block_time(k) + (number - k) * 3 s. Searched newest first.
    """
    end = "+"
    while True:
        page = r.xrevrange(stream, end, "-", count=1000)
        if not page:
            return "0"
        for entry_id, f in page:
            if f.get("kind") == "block" and int(f["block"]) <= number:
                at = int(f["block_time"]) + (number - int(f["block"])) * BLOCK_INTERVAL_MS
                return f"{max(at - CLOCK_MARGIN_MS, 0)}-0"
        end = "(" + page[-1][0]


def ensure_group(r, args):
    start = "0"
    if args.from_block is not None:
        start = start_id_for_block(r, args.stream, args.from_block)
    try:
        r.xgroup_create(args.stream, args.group, id=start, mkstream=True)
        print(f"created group {args.group} at {start}", file=sys.stderr)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    warn_if_trimmed(r, args)


def warn_if_trimmed(r, args):
    """A group whose next entry was trimmed (older than the stream's retention) lost entries."""
    groups = {g["name"]: g for g in r.xinfo_groups(args.stream)}
    info = r.xinfo_stream(args.stream)
    first = info.get("first-entry")
    last_delivered = groups[args.group]["last-delivered-id"]
    if first and last_delivered != "0-0" and id_tuple(last_delivered) < id_tuple(first[0]):
        # Entries between the two were trimmed unread: re-read those blocks from the node.
        print(f"warning: group {args.group} stopped at {last_delivered}, the stream now starts "
              f"at {first[0]}: entries in between were trimmed before it read them",
              file=sys.stderr)


def id_tuple(entry_id):
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class Ledger:
    def __init__(self, r, args):
        self.r = r
        self.args = args
        self.credits = args.ledger + ":credits"       # <tx>_<i> -> the transfer (JSON)
        self.finalized = args.ledger + ":finalized"   # the highest finalized block seen
        self.applied = 0

    def by_block(self, number):
        return f"{self.args.ledger}:block:{number}"   # the keys credited for that block

    def apply(self, entry_id, f):
        kind = f.get("kind")
        number = int(f["block"])
        pipe = self.r.pipeline(transaction=True)
        if kind in TRANSFERS and (self.args.from_block is None or number >= self.args.from_block):
            key = f"{f['tx']}_{f['i']}"
            pipe.hset(self.credits, key, json.dumps({k: f.get(k, "") for k in FIELDS}))
            pipe.sadd(self.by_block(number), key)
        elif kind == "block_reverted":
            for key in self.r.smembers(self.by_block(number)):
                credited = self.r.hget(self.credits, key)
                # The same transaction may already stand in another block of the new branch.
                if credited and int(json.loads(credited)["block"]) == number:
                    pipe.hdel(self.credits, key)
            pipe.delete(self.by_block(number))
        elif kind == "finalized":
            current = int(self.r.get(self.finalized) or 0)
            pipe.set(self.finalized, max(current, number))
        pipe.xack(self.args.stream, self.args.group, entry_id)
        pipe.execute()
        self.applied += 1
        if self.args.crash_after is not None and self.applied >= self.args.crash_after:
            os._exit(3)  # no cleanup, no acknowledgement of what was read but not applied

    def print(self):
        final = int(self.r.get(self.finalized) or 0)
        rows = [json.loads(v) for v in self.r.hgetall(self.credits).values()]
        rows.sort(key=lambda t: (int(t["block"]), t["tx"], t["i"]))
        for t in rows:
            t["final"] = int(t["block"]) <= final
            print(json.dumps(t, sort_keys=True))


def claim_abandoned(r, args, ledger):
    """Entries a crashed consumer of the group read but never acknowledged, oldest first."""
    cursor = "0-0"
    while True:
        reply = r.xautoclaim(args.stream, args.group, args.consumer,
                             min_idle_time=args.claim_idle_ms, start_id=cursor, count=100)
        cursor, entries = reply[0], reply[1]
        deleted = reply[2] if len(reply) > 2 else []
        for entry_id, fields in entries:
            if fields:
                ledger.apply(entry_id, fields)
        if deleted:  # trimmed while pending: nothing left to apply
            r.xack(args.stream, args.group, *deleted)
        if cursor == "0-0":
            return


def main():
    args = parse_args()
    r = redis.Redis.from_url(args.redis, decode_responses=True)
    ensure_group(r, args)
    ledger = Ledger(r, args)
    # This consumer's own pending entries (a previous run under the same name), then the
    # abandoned ones of others, then new entries.
    for entry_id, fields in r.xreadgroup(args.group, args.consumer, {args.stream: "0"})[0][1]:
        if fields:
            ledger.apply(entry_id, fields)
    claim_abandoned(r, args, ledger)
    while True:
        reply = r.xreadgroup(args.group, args.consumer, {args.stream: ">"},
                             count=100, block=args.idle_exit_ms)
        if not reply:
            break
        for entry_id, fields in reply[0][1]:
            ledger.apply(entry_id, fields)
    ledger.print()


if __name__ == "__main__":
    main()
