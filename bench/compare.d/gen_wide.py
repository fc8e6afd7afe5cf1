#!/usr/bin/env python3
"""Writes N wide JSON messages (one per line), ~1.5 KB, 60 columns, for bench/compare.

Usage: gen_wide.py N OUT
Columns: id UInt64, ts DateTime64(3) string, then c01..c58 cycling through six types
(see COLUMN_TYPES): long String, Int64, Float64, short String, UInt32, Array(String).
Deterministic (same N -> same bytes). `gen_wide.py --columns` prints the column list as
"name<TAB>type" lines (the table definition bench/compare uses).
"""
import sys

CYCLE = ["String", "Int64", "Float64", "String", "UInt32", "Array(String)"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
         "juliet", "kilo", "lima", "mike", "november", "oscar", "papa"]
LONG = ["%s-%s-%s-%s-%s-%s-%s-%s" % (WORDS[i % 16], WORDS[(i * 3) % 16], WORDS[(i * 5) % 16],
                                  WORDS[(i * 7) % 16], WORDS[(i * 11) % 16], WORDS[(i * 13) % 16],
                                  WORDS[(i + 9) % 16], WORDS[(i * 15) % 16]) for i in range(64)]
SHORT = ["%s_%d" % (WORDS[i % 16], i) for i in range(64)]
ARRS = ['["%s","%s"]' % (WORDS[i % 16], WORDS[(i + 5) % 16]) for i in range(64)]
NCOLS = 58


def columns():
    cols = [("id", "UInt64"), ("ts", "DateTime64(3)")]
    for c in range(NCOLS):
        cols.append(("c%02d" % (c + 1), CYCLE[c % 6]))
    return cols


def row(i):
    parts = ['{"id":%d,"ts":"2024-05-%02d %02d:%02d:%02d.%03d"' % (
        1_000_000 + i, 1 + i % 28, (i // 3600) % 24, (i // 60) % 60, i % 60, i % 1000)]
    for c in range(NCOLS):
        k = c % 6
        h = (i * 31 + c * 17) & 63
        if k == 0:
            parts.append('"c%02d":"%s %d"' % (c + 1, LONG[h], i))
        elif k == 1:
            parts.append('"c%02d":%d' % (c + 1, (i * 2654435761 + c) % 10_000_000_000 - 5_000_000_000))
        elif k == 2:
            parts.append('"c%02d":%.4f' % (c + 1, (i % 100_000) / 7.0 + c))
        elif k == 3:
            parts.append('"c%02d":"%s"' % (c + 1, SHORT[h]))
        elif k == 4:
            parts.append('"c%02d":%d' % (c + 1, (i * 7 + c) % 4_000_000_000))
        else:
            parts.append('"c%02d":%s' % (c + 1, ARRS[h]))
    return ",".join(parts) + "}\n"


def main():
    if sys.argv[1:] == ["--columns"]:
        for name, typ in columns():
            print("%s\t%s" % (name, typ))
        return
    n = int(sys.argv[1])
    with open(sys.argv[2], "w", buffering=1 << 20) as f:
        for i in range(n):
            f.write(row(i))


if __name__ == "__main__":
    main()
