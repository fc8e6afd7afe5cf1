#!/usr/bin/env python3
"""Serve ClickHouse (chDB, PyPI chdb-core) over the real HTTP and native TCP protocols.

Started by dev/testbed as a background process:
    python3 dev/chserver.py --workdir STATE/clickhouse --data STATE/clickhouse/data

chDB reads ./config.xml of the *current directory* (http_port, tcp_port, listen_host,
users_config, logger), so we chdir into --workdir before loading the engine. The listeners
live as long as the long-running query below runs; SIGTERM ends the process (~1-2 s).
The high-level chdb.connect()/chdb.query() APIs do not listen: use the low-level module.
"""
import argparse
import os
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True, help="directory holding config.xml (and users.xml)")
    ap.add_argument("--data", required=True, help="persistent data directory")
    args = ap.parse_args()

    workdir = os.path.abspath(args.workdir)
    data = os.path.abspath(args.data)
    os.makedirs(data, exist_ok=True)
    if not os.path.isfile(os.path.join(workdir, "config.xml")):
        print(f"chserver: no config.xml in {workdir}", file=sys.stderr)
        return 2
    os.chdir(workdir)

    import chdb  # noqa: F401  (loads the engine; ~1 s)
    from chdb import _chdb

    print(f"chserver: chdb {getattr(chdb, '__version__', '?')} pid={os.getpid()} "
          f"workdir={workdir} data={data}", flush=True)
    # 100M rows * 3 s = effectively forever. If the listeners cannot start (port in use,
    # bad config) the query raises and we exit non-zero.
    res = _chdb.query(
        "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
        "SELECT sleepEachRow(3) FROM numbers(100000000) SETTINGS max_block_size=1 FORMAT Null",
        "TSV",
        path=data,
    )
    err = getattr(res, "error_message", None)
    if callable(err):
        err = err()
    print(f"chserver: serving query ended unexpectedly: {err or res!r}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
