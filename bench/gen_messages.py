#!/usr/bin/env python3
"""Writes N JSON messages (one per line), ~200 bytes, for the 12-column bench table.

Usage: gen_messages.py N OUT
Same shape as benches/decode_encode.rs: UInt64 id, DateTime64(3) string, three Strings, Int32,
Float64, Bool, LowCardinality(String), Nullable(Int64) (null every 3rd), Array(String),
Decimal(18,4) as a string. Deterministic (same N -> same bytes).
"""
import sys

REGIONS = ["eu-west-1", "us-east-1", "ap-south-1", "sa-east-1"]
AGENTS = ["Mozilla/5.0", "curl/8.4.0", "okhttp/4.12", "Go-http/1.1"]
STATUS = [200, 201, 404, 500]
TAGS = ['["a","bb"]', '["checkout"]', '[]', '["x","yy","zzz"]']


def main():
    n = int(sys.argv[1])
    out = sys.argv[2]
    with open(out, "w", buffering=1 << 20) as f:
        w = f.write
        for i in range(n):
            parent = "null" if i % 3 == 0 else str(i * 7)
            w(
                '{"id":%d,"ts":"2024-05-%02d %02d:%02d:%02d.%03d","user":"user_%d","url":"/items/%d",'
                '"agent":"%s","status":%d,"latency":%.3f,"ok":%s,"region":"%s","parent":%s,'
                '"tags":%s,"amount":"%d.%04d"}\n'
                % (
                    1_000_000 + i,
                    1 + i % 28, (i // 3600) % 24, (i // 60) % 60, i % 60, i % 1000,
                    i % 9973,
                    i,
                    AGENTS[i % 4],
                    STATUS[i % 4],
                    0.25 + (i % 4096) / 8.0,
                    "true" if i % 5 else "false",
                    REGIONS[i % 4],
                    parent,
                    TAGS[i % 4],
                    i * 13 % 10_000_000,
                    i % 10_000,
                )
            )


if __name__ == "__main__":
    main()
