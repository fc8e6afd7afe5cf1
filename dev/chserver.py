#!/usr/bin/env python3
"""Serve ClickHouse (chDB, PyPI chdb-core) over the real HTTP and native TCP protocols.

Started by dev/testbed as a background process:
    python3 dev/chserver.py --workdir STATE/clickhouse --data STATE/clickhouse/data

chDB reads ./config.xml of the *current directory* (http_port, tcp_port, listen_host,
users_config, logger), so we chdir into --workdir before loading the engine. The listeners
live as long as the long-running query below runs; SIGTERM ends the process (~1-2 s).
The high-level chdb.connect()/chdb.query() APIs do not listen: use the low-level module.

HTTPS (`./dev/testbed up --secure`): chDB cannot listen HTTPS itself ("SYSTEM START/STOP LISTEN
in clickhouse-local supports only TCP and HTTP listeners"), so with --https-port this process
also terminates TLS (Python ssl, server certificate from the testbed CA, a client certificate
verified when presented) and forwards the bytes to the HTTP port. chdb's query releases the
GIL, so the forwarder thread runs alongside it. (The legacy 18.16 server serves HTTPS natively.)
"""
import argparse
import asyncio
import os
import ssl
import sys
import threading


def serve_https(port, http_port, cert, key, ca, ready):
    """TLS on 127.0.0.1:port -> plain TCP to 127.0.0.1:http_port. Sets ready[0] to None or the
    bind error, then serves forever."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL

    async def pipe(reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except (OSError, RuntimeError):
                pass

    async def handle(client_r, client_w):
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", http_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    async def main():
        try:
            server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=ctx)
        except OSError as e:
            ready[0] = e
            ready[1].set()
            return
        ready[1].set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True, help="directory holding config.xml (and users.xml)")
    ap.add_argument("--data", required=True, help="persistent data directory")
    ap.add_argument("--https-port", type=int, help="also serve HTTPS here (TLS terminated in front of the HTTP port)")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-ca")
    args = ap.parse_args()

    workdir = os.path.abspath(args.workdir)
    data = os.path.abspath(args.data)
    os.makedirs(data, exist_ok=True)
    if not os.path.isfile(os.path.join(workdir, "config.xml")):
        print(f"chserver: no config.xml in {workdir}", file=sys.stderr)
        return 2
    os.chdir(workdir)
    if args.https_port:
        import re
        with open("config.xml", encoding="utf-8") as f:
            m = re.search(r"<http_port>(\d+)</http_port>", f.read())
        if not m:
            print("chserver: --https-port needs <http_port> in config.xml", file=sys.stderr)
            return 2
        ready = [None, threading.Event()]
        threading.Thread(
            target=serve_https,
            args=(args.https_port, int(m.group(1)), args.tls_cert, args.tls_key, args.tls_ca, ready),
            daemon=True,
        ).start()
        ready[1].wait(10)
        if ready[0] is not None or not ready[1].is_set():
            print(f"chserver: cannot serve HTTPS on {args.https_port}: {ready[0]}", file=sys.stderr)
            return 1
        print(f"chserver: HTTPS on 127.0.0.1:{args.https_port} -> HTTP {m.group(1)}", flush=True)

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
