#!/usr/bin/env python3
"""bench/compare: sluice side by side with its peers (run through ../compare, which sets up the
venv with matplotlib and builds sluice). See ../compare for the knobs."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
SLUICE = os.path.join(ROOT, "target", "release", "sluice")
TICK = os.sysconf("SC_CLK_TCK")

MESSAGES = int(os.environ.get("MESSAGES", "1000000"))
PARTITIONS = int(os.environ.get("PARTITIONS", "8"))
SKIP = set(os.environ.get("SKIP", "").replace(",", " ").split())
DATASETS = os.environ.get("DATASETS", "narrow wide").split()
TIMEOUT = float(os.environ.get("TIMEOUT", "900"))
LAT_RATE = int(os.environ.get("LATENCY_RATE", "20000"))
LAT_SECONDS = int(os.environ.get("LATENCY_SECONDS", "30"))
LAT_WARMUP = float(os.environ.get("LATENCY_WARMUP", "5"))
KEEP = os.environ.get("KEEP", "0") == "1"
# sluice and the file ceiling run this many times each, alternated; the median run is reported
ROUNDS = max(1, int(os.environ.get("ROUNDS", "3")))
RESULTS = os.environ.get("RESULTS", os.path.join(ROOT, "bench", "results"))
CACHE = os.environ.get("COMPARE_CACHE", os.path.expanduser("~/.cache/sluice-compare"))
KAFKA = os.environ.get("SLUICE_TEST_KAFKA", "127.0.0.1:19092")
CH = os.environ.get("SLUICE_TEST_CLICKHOUSE_URL", "http://127.0.0.1:18123")
CH18 = os.environ.get("SLUICE_TEST_LEGACY_CLICKHOUSE_URL", "http://127.0.0.1:28123")
CH_NATIVE = os.environ.get("SLUICE_TEST_CLICKHOUSE_NATIVE", "127.0.0.1:19000")
# clickhouse_sinker, installed by ../compare from the Go module proxy or built by hand (SINKER_BIN)
SINKER_BIN = os.environ.get("SINKER_BIN", "")
TESTBED = os.environ.get("SLUICE_TESTBED_DIR", os.path.join(ROOT, ".testbed"))
RUN_ID = time.strftime("%Y%m%d%H%M%S") + "_%d" % os.getpid()
DB = "sluice_compare"

ALL = ["sluice-alo", "sluice-eo", "sluice-alo-ch18", "sluice-eo-ch18", "ch26-kafka-engine", "ch26-kafka-engine-1c",
       "ch18-kafka-engine", "clickhouse_sinker", "vector", "kafka-connect-clickhouse", "kafka-connect-clickhouse-8t",
       "ceiling-http", "ceiling-http-rowbinary", "ceiling-consume", "latency", "sluice-eo-250ms",
       "latency-ch18"]
for s in SKIP:
    if s not in ALL:
        sys.exit("bench/compare: unknown SKIP entry %r (known: %s)" % (s, " ".join(ALL)))


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# ---- servers ----------------------------------------------------------------------------------
def q(url, sql, timeout=600):
    """One statement over HTTP; returns the body (stripped); raises with ClickHouse's message."""
    req = urllib.request.Request(url + "/", data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read().decode().strip()
    except urllib.error.HTTPError as e:
        raise RuntimeError("%s: %s" % (sql[:120], e.read().decode()[:500])) from None


def q26(sql, **kw):
    return q(CH, sql, **kw)


def pid_of(name):
    try:
        pid = int(open(os.path.join(TESTBED, "run", name + ".pid")).read().strip())
        os.stat("/proc/%d" % pid)
        return pid
    except (OSError, ValueError):
        return None


def cpu_ticks(pid):
    try:
        s = open("/proc/%d/stat" % pid).read()
    except OSError:
        return 0
    f = s.rsplit(") ", 1)[1].split()
    return int(f[11]) + int(f[12])


def status_kib(pid, key):
    try:
        for line in open("/proc/%d/status" % pid):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def idle_rate(pid, seconds=3.0):
    """CPU-s per second a server burns with nothing to do (chdb's listener query, merges)."""
    if not pid:
        return 0.0
    a, t = cpu_ticks(pid), time.time()
    time.sleep(seconds)
    return (cpu_ticks(pid) - a) / TICK / (time.time() - t)


CH26_PID = pid_of("clickhouse")
CH18_PID = pid_of("legacy-clickhouse")
KAFKA_PID = pid_of("kafka")


def sluice(*args, **kw):
    return subprocess.run([SLUICE] + list(args), check=True, **kw)


def topic_counts(topic):
    out = subprocess.run([SLUICE, "topics", "--brokers", KAFKA, "describe", topic],
                         check=True, capture_output=True, text=True).stdout.splitlines()
    per = []
    for line in out[2:]:
        f = line.split()
        if len(f) >= 6:
            per.append(int(f[5]) - int(f[4]))
    return per


def reset_group_to_earliest(group, topic):
    """Commit offset 0 for every partition of a fresh group (the 18.16 Kafka engine starts at the
    end of a partition that has no committed offset)."""
    subprocess.run([os.path.join(ROOT, "dev", "testbed"), "kafka-cli",
                    "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                    "--bootstrap-server", KAFKA, "--group", group, "--topic", topic,
                    "--reset-offsets", "--to-earliest", "--execute"],
                   check=True, capture_output=True, text=True)


# ---- datasets ---------------------------------------------------------------------------------
NARROW = [("id", "UInt64"), ("ts", "DateTime64(3)"), ("user", "String"), ("url", "String"),
          ("agent", "String"), ("status", "Int32"), ("latency", "Float64"), ("ok", "Bool"),
          ("region", "LowCardinality(String)"), ("parent", "Nullable(Int64)"),
          ("tags", "Array(String)"), ("amount", "Decimal(18, 4)")]


def wide_columns():
    out = subprocess.run([sys.executable, os.path.join(HERE, "gen_wide.py"), "--columns"],
                         check=True, capture_output=True, text=True).stdout
    return [tuple(l.split("\t")) for l in out.splitlines()]


def legacy(name, typ):
    """(Kafka-table type, target type, MV expression) on ClickHouse 18.16, which has no
    DateTime64, Bool, LowCardinality (without an experimental flag) and reads no quoted Decimal."""
    if typ == "DateTime64(3)":
        return "String", "DateTime", "toDateTime(substring(%s, 1, 19))" % name
    if typ == "Bool":
        return "UInt8", "UInt8", name
    if typ == "LowCardinality(String)":
        return "String", "String", name
    if typ.startswith("Decimal"):
        return "String", typ, "toDecimal64(%s, 4)" % name
    return typ, typ, name


def cols_sql(cols):
    return ", ".join("`%s` %s" % (n, t) for n, t in cols)


def dataset_file(name):
    os.makedirs(os.path.join(CACHE, "data"), exist_ok=True)
    path = os.path.join(CACHE, "data", "%s-%d.jsonl" % (name, MESSAGES))
    gen = os.path.join(ROOT, "bench", "gen_messages.py") if name == "narrow" else os.path.join(HERE, "gen_wide.py")
    if not os.path.exists(path):
        log("generating %d %s messages -> %s" % (MESSAGES, name, path))
        subprocess.run([sys.executable, gen, str(MESSAGES), path + ".tmp"], check=True)
        os.rename(path + ".tmp", path)
    return path


# ---- measurement ------------------------------------------------------------------------------
class Result:
    def __init__(self, dataset, name, **kw):
        self.dataset, self.name = dataset, name
        self.wall = self.rows_s = self.mb_s = None
        self.cpu = self.cpu_m = self.rss_mib = self.ch_cpu = self.kafka_cpu = None
        self.check = "-"
        self.note = ""
        self.runs = None   # rows/s of every run when the contender ran ROUNDS times
        self.__dict__.update(kw)

    def allin_m(self):
        """ingesting process + ClickHouse server CPU-s per million rows (not double-counted
        when the ingester is the server)."""
        if self.cpu is None or self.ch_cpu is None:
            return None
        if self.name.startswith("ClickHouse") or self.name.startswith("ceiling: curl"):
            return self.ch_cpu / (MESSAGES / 1e6)
        return (self.cpu + self.ch_cpu) / (MESSAGES / 1e6)


RESULTS_ROWS = []
NOT_RUN = []   # (contender, reason)
LATENCY = []   # (contender, rate, n, p50, p90, p99, max)
LATENCY_PARTS = []   # (contender, rate, n, rows in parts never listed, polls, [p50, p90, p99, max])
CLEANUP = []   # callables


def stop_process(p, grace_s=60):
    """SIGTERM, then SIGKILL after grace_s: a contender's slow shutdown (a Kafka Connect worker
    has taken longer than a minute) happens after its rows are counted and must not discard
    its figures."""
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(grace_s)
    except subprocess.TimeoutExpired:
        log("pid %d did not stop within %d s of SIGTERM; killed" % (p.pid, grace_s))
        p.kill()
        p.wait()


def wait_for_count(url, table, n, alive, on_sample=None, deadline_s=TIMEOUT):
    t0 = time.time()
    count = 0
    while True:
        if alive is not None and not alive():
            raise RuntimeError("ingester exited or failed before all rows landed (%d of %d)" % (count, n))
        try:
            count = int(q(url, "SELECT count() FROM %s" % table, timeout=30) or 0)
        except Exception:
            count = count
        if on_sample:
            on_sample()
        if count >= n:
            # a contender that duplicates reaches count() = n early: wait for every distinct id
            t_done = time.time()
            if count == n or int(q(url, "SELECT uniqExact(id) FROM %s" % table, timeout=60)) >= n:
                return t_done, count
        if time.time() - t0 > deadline_s:
            raise RuntimeError("only %d of %d rows after %ds" % (count, n, deadline_s))
        time.sleep(0.1)


def final_check(url, table, n):
    c, u = q(url, "SELECT count(), uniqExact(id) FROM %s FORMAT TSV" % table).split("\t")
    c, u = int(c), int(u)
    if not KEEP:   # its background merges must not land in the next contender's server CPU
        q(url, "DROP TABLE IF EXISTS %s" % table)
    return "ok" if c == n and u == n else "count=%d unique=%d" % (c, u)


def measure_process(cmd, logf, url, table, server_pid, env=None, failed=None):
    """Runs an ingesting process until `table` holds MESSAGES rows, then stops it (SIGTERM).
    Returns wall, the process's CPU-s and peak RSS (MiB), the receiving server's CPU-s (net of
    its idle rate) and Kafka's CPU-s over the run. `failed`, if given, is asked while waiting:
    a process that reports a failure and keeps running counts as exited."""
    idle = idle_rate(server_pid)
    ch0, k0 = cpu_ticks(server_pid), cpu_ticks(KAFKA_PID)
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env)
    try:
        t1, _ = wait_for_count(url, table, MESSAGES,
                               lambda: p.poll() is None and not (failed and failed()))
        ticks = cpu_ticks(p.pid)
        hwm = status_kib(p.pid, "VmHWM")
        ch1, k1 = cpu_ticks(server_pid), cpu_ticks(KAFKA_PID)
    finally:
        stop_process(p)
    wall = t1 - t0
    return dict(wall=wall, cpu=ticks / TICK, rss_mib=hwm / 1024,
                ch_cpu=max(0.0, (ch1 - ch0) / TICK - idle * wall), kafka_cpu=(k1 - k0) / TICK)


def ch18_sluice_table(table, cols, mode):
    """(columns, engine) of sluice's table on 18.16: the engine's target types, except that the
    millisecond timestamps stay text (the engine's view cuts them to seconds with
    toDateTime(substring(ts, 1, 19)), and sluice never truncates a value silently: it would
    dead-letter every message); exactly-once there needs a ReplicatedMergeTree, which the
    testbed's ZooKeeper serves."""
    cols = [(n, "String" if t == "DateTime64(3)" else legacy(n, t)[1]) for n, t in cols]
    engine = ("ReplicatedMergeTree('/clickhouse/tables/{shard}/%s', '{replica}')" % table
              if mode == "exactly-once" else "MergeTree")
    return cols, engine


def run_sluice(ds, mode, topic, cols, mb, ch18=False, rnd=1):
    """sluice into ClickHouse 26.9, or with ch18 into the 18.16 server the 18.16 Kafka engine
    writes to, with the same target table as the engine's (18.16 types; exactly-once on 18.16
    needs a ReplicatedMergeTree, which the testbed's ZooKeeper serves)."""
    short = ("alo" if mode == "at-least-once" else "eo") + ("_ch18" if ch18 else "")
    url, pid = (CH18, CH18_PID) if ch18 else (CH, CH26_PID)
    table = "%s.%s_sluice_%s_%s_r%d" % (DB, ds, short, RUN_ID, rnd)
    if ch18:
        cols, engine = ch18_sluice_table(table, cols, mode)
        settings = ""
        q(url, "CREATE DATABASE IF NOT EXISTS %s" % DB)
    else:
        engine = "MergeTree"
        settings = " SETTINGS non_replicated_deduplication_window = 1000" if mode == "exactly-once" else ""
    q(url, "CREATE TABLE %s (%s) ENGINE = %s ORDER BY id%s" % (table, cols_sql(cols), engine, settings))
    CLEANUP.append(lambda: q(url, "DROP TABLE IF EXISTS %s" % table))
    work = os.path.join(WORK, "sluice-%s-%s-r%d" % (ds, short, rnd))
    os.makedirs(work, exist_ok=True)
    cfg = os.path.join(work, "sluice.toml")
    with open(cfg, "w") as f:
        f.write("""[kafka]
brokers = "%s"
group_id = "compare-%s-sluice-%s-%s-r%d"
auto_offset_reset = "earliest"

[clickhouse]
url = "%s"
database = "%s"

[[route]]
topic = "%s"
table = "%s"
format = "json"
delivery = "%s"
""" % (KAFKA, ds, short, RUN_ID, rnd, url, DB, topic, table.split(".", 1)[1], mode))
    logf = open(os.path.join(work, "sluice.log"), "w")
    # each batch's commit in the log (work dir), to tell a slow run's waits from its work
    env = dict(os.environ, RUST_LOG="info,sluice::lane=debug")
    m = measure_process([SLUICE, "run", "--config", cfg], logf, url, table, pid, env=env)
    return Result(ds, "sluice %s%s" % (mode, " -> ClickHouse 18.16" if ch18 else ""),
                  rows_s=MESSAGES / m["wall"], mb_s=mb / m["wall"], cpu_m=m["cpu"] / (MESSAGES / 1e6), **m,
                  check=final_check(url, table, MESSAGES),
                  note="sluice process; ClickHouse %s HTTP" % ("18.16" if ch18 else "26.9"))


def vector_config(work, group, topic, table, latency=False):
    """Vector's config for one run (see run_vector); with latency, the Kafka timestamp (the
    event's timestamp in Vector's log schema) goes to the `_timestamp` column (RFC 3339 text,
    read with best_effort)."""
    os.makedirs(os.path.join(work, "data"), exist_ok=True)
    cfg = os.path.join(work, "vector.toml")
    with open(cfg, "w") as f:
        f.write("""data_dir = "%s"
%s
[sources.kafka]
type = "kafka"
bootstrap_servers = "%s"
group_id = "%s"
topics = ["%s"]
auto_offset_reset = "earliest"
decoding.codec = "json"

[sinks.clickhouse]
type = "clickhouse"
inputs = ["kafka"]
endpoint = "%s"
database = "%s"
table = "%s"
skip_unknown_fields = true
acknowledgements.enabled = true
%s""" % (os.path.join(work, "data"), '[log_schema]\ntimestamp_key = "_timestamp"\n' if latency else "",
         KAFKA, group, topic, CH, DB, table.split(".", 1)[1], "date_time_best_effort = true\n" if latency else ""))
    return cfg


def run_vector(ds, topic, cols, mb):
    """Vector (VECTOR_BIN, built by hand outside the repository): its kafka source (JSON codec)
    into its clickhouse sink (JSONEachRow over HTTP) on ClickHouse 26.9. Configured as its docs
    show, with end-to-end acknowledgements on, so that offsets are committed only for stored
    events (at-least-once, like sluice's at-least-once mode); batching and buffers at their
    defaults. The source's metadata fields (topic, offset, ...) are not columns:
    skip_unknown_fields drops them."""
    vbin = os.environ["VECTOR_BIN"]
    table = "%s.%s_vector_%s" % (DB, ds, RUN_ID)
    q26("CREATE TABLE %s (%s) ENGINE = MergeTree ORDER BY id" % (table, cols_sql(cols)))
    CLEANUP.append(lambda: q26("DROP TABLE IF EXISTS %s" % table))
    work = os.path.join(WORK, "vector-%s" % ds)
    cfg = vector_config(work, "compare-%s-vector-%s" % (ds, RUN_ID), topic, table)
    logf = open(os.path.join(work, "vector.log"), "w")
    m = measure_process([vbin, "--config", cfg], logf, CH, table, CH26_PID)
    version = subprocess.run([vbin, "--version"], capture_output=True, text=True).stdout.strip()
    return Result(ds, "Vector -> 26.9 (kafka source, clickhouse sink, acknowledgements)",
                  rows_s=MESSAGES / m["wall"], mb_s=mb / m["wall"], cpu_m=m["cpu"] / (MESSAGES / 1e6), **m,
                  check=final_check(CH, table, MESSAGES),
                  note="vector process (%s); ClickHouse 26.9 HTTP JSONEachRow" % version)


def sinker_ready():
    return bool(SINKER_BIN) and os.access(SINKER_BIN, os.X_OK) and not os.environ.get("SINKER_NOT_RUN")


def sinker_config(work, name, group, topic, table, exclude=()):
    """clickhouse_sinker's config for one run (see run_sinker): one task, JSON parser, columns
    read from the table (autoSchema), the native protocol to ClickHouse 26.9; every other
    setting at its default except flushInterval."""
    os.makedirs(work, exist_ok=True)
    host, _, port = CH_NATIVE.rpartition(":")
    cfg = os.path.join(work, "sinker.json")
    with open(cfg, "w") as f:
        json.dump({
            "clickhouse": {"hosts": [[host]], "port": int(port), "protocol": "native", "db": DB,
                           "username": "default", "password": ""},
            "kafka": {"brokers": KAFKA},
            "task": {"name": name, "topic": topic, "consumerGroup": group, "earliest": True,
                     "parser": "json", "tableName": table.split(".", 1)[1], "autoSchema": True,
                     "excludeColumns": list(exclude), "flushInterval": 1},
        }, f, indent=2)
    return cfg


def sinker_cmd(cfg):
    # --http-host: without it the sinker finds its own address by dialing out to 8.8.8.8;
    # --http-port 0: no metrics server (progress is read from ClickHouse like everyone's).
    return [SINKER_BIN, "--local-cfg-file", cfg, "--http-host", "127.0.0.1", "--http-port", "0",
            "--log-paths", "stdout"]


def log_says(logpath, text):
    """A probe for measure_process's `failed`: true once the process's log holds `text`, for
    peers that log a failure and keep running."""
    def probe():
        try:
            with open(logpath) as f:
                return text in f.read()
        except OSError:
            return False
    return probe


def sinker_failed(logpath):
    """The sinker logs a task it could not start (table missing, ClickHouse unreachable) as a
    warning and keeps running, so its log is the only sign."""
    return log_says(logpath, "task init failed")


def run_sinker(ds, topic, cols, mb):
    """clickhouse_sinker (SINKER_BIN): a Go service (franz-go consumer, clickhouse-go native
    protocol with LZ4) that buffers rows per task and inserts them, committing offsets after
    each insert succeeded (at-least-once). Its defaults except flushInterval: 1 s instead of
    10, the max_age of sluice and the batch timeout of Vector, so that the run's last partial
    buffer does not wait 10 s; bufferSize stays at 262,144 rows (a flush at 4/5 of it)."""
    table = "%s.%s_sinker_%s" % (DB, ds, RUN_ID)
    q26("CREATE TABLE %s (%s) ENGINE = MergeTree ORDER BY id" % (table, cols_sql(cols)))
    CLEANUP.append(lambda: q26("DROP TABLE IF EXISTS %s" % table))
    work = os.path.join(WORK, "sinker-%s" % ds)
    cfg = sinker_config(work, "compare_%s" % ds, "compare-%s-sinker-%s" % (ds, RUN_ID), topic, table)
    logpath = os.path.join(work, "sinker.log")
    logf = open(logpath, "w")
    m = measure_process(sinker_cmd(cfg), logf, CH, table, CH26_PID, failed=sinker_failed(logpath))
    # -v logs through the same logger: stdout only, or it writes clickhouse_sinker.log here
    out = subprocess.run([SINKER_BIN, "-v", "--log-paths", "stdout"], capture_output=True, text=True,
                         cwd=work).stdout.strip()
    try:
        version = json.loads(out.splitlines()[0])["msg"]   # a JSON log line
    except (ValueError, IndexError, KeyError, TypeError):
        version = out
    return Result(ds, "clickhouse_sinker -> 26.9 (native protocol, flushInterval 1 s)",
                  rows_s=MESSAGES / m["wall"], mb_s=mb / m["wall"], cpu_m=m["cpu"] / (MESSAGES / 1e6), **m,
                  check=final_check(CH, table, MESSAGES),
                  note="clickhouse_sinker process (%s); ClickHouse 26.9 native protocol" % version)


def connect_ready():
    return bool(os.environ.get("CONNECT_LIBS")) and bool(os.environ.get("CONNECT_PLUGIN_DIR")) \
        and not os.environ.get("CONNECT_NOT_RUN")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connect_cmd(work, name, topic, table, tasks, sink_extra=""):
    """Writes a standalone worker's and the sink's properties into `work`; returns the command
    that runs the worker (see run_connect)."""
    libs, plugins = os.environ["CONNECT_LIBS"], os.environ["CONNECT_PLUGIN_DIR"]
    os.makedirs(work, exist_ok=True)
    host, _, port = CH.split("://", 1)[1].rstrip("/").rpartition(":")
    worker, sink = os.path.join(work, "worker.properties"), os.path.join(work, "sink.properties")
    with open(worker, "w") as f:
        f.write("bootstrap.servers=%s\n"
                "key.converter=org.apache.kafka.connect.storage.StringConverter\n"
                "value.converter=org.apache.kafka.connect.json.JsonConverter\n"
                "value.converter.schemas.enable=false\n"
                "offset.storage.file.filename=%s\n"
                "plugin.path=%s\n"
                "listeners=http://127.0.0.1:%d\n" % (KAFKA, os.path.join(work, "offsets"), plugins, free_port()))
    with open(sink, "w") as f:
        f.write("name=%s\n"
                "connector.class=com.clickhouse.kafka.connect.ClickHouseSinkConnector\n"
                "tasks.max=%d\n"
                "topics=%s\n"
                "hostname=%s\nport=%s\ndatabase=%s\nusername=default\npassword=\nssl=false\n"
                "exactlyOnce=false\n"
                "topic2TableMap=%s=%s\n"
                # 26.9 answers a compressing client in ZSTD, which the connector's client (0.9.5)
                # cannot read: "Magic is not correct"; this only turns off compressed answers
                "jdbcConnectionProperties=?compress=0\n%s"
                % (name, tasks, topic, host, port, DB, topic, table.split(".", 1)[1], sink_extra))
    return ["java", "-Xms256m", "-Xmx2g", "-cp", os.path.join(libs, "*"),
            "org.apache.kafka.connect.cli.ConnectStandalone", worker, sink]


def run_connect(ds, topic, cols, mb, tasks=1):
    """The ClickHouse Kafka Connect sink (CONNECT_PLUGIN_DIR: a plugin directory built by hand
    outside the repository, since Maven Central does not serve the connector) in one Kafka
    Connect standalone worker (connect-runtime and its dependencies from Maven Central,
    CONNECT_LIBS), heap as connect-standalone.sh sets it (-Xmx2G). Schemaless JSON values
    (JsonConverter, schemas.enable=false), the connector's settings at their defaults
    (exactlyOnce=false: at-least-once, offsets committed by the worker after the task's
    flush) except tasks.max."""
    table = "%s.%s_connect_%dt_%s" % (DB, ds, tasks, RUN_ID)
    q26("CREATE TABLE %s (%s) ENGINE = MergeTree ORDER BY id" % (table, cols_sql(cols)))
    CLEANUP.append(lambda: q26("DROP TABLE IF EXISTS %s" % table))
    work = os.path.join(WORK, "connect-%s-%dt" % (ds, tasks))
    cmd = connect_cmd(work, "compare-%s-connect-%dt-%s" % (ds, tasks, RUN_ID), topic, table, tasks)
    logpath = os.path.join(work, "connect.log")
    logf = open(logpath, "w")
    m = measure_process(cmd, logf, CH, table, CH26_PID, failed=connect_failed(logpath))
    return Result(ds, "Kafka Connect + ClickHouse sink -> 26.9 (%d task%s)" % (tasks, "s" if tasks > 1 else ""),
                  rows_s=MESSAGES / m["wall"], mb_s=mb / m["wall"], cpu_m=m["cpu"] / (MESSAGES / 1e6), **m,
                  check=final_check(CH, table, MESSAGES),
                  note="Kafka Connect %s worker JVM, %s; ClickHouse 26.9 HTTP"
                  % (os.environ.get("CONNECT_RUNTIME_VERSION", "?"),
                     connect_plugin_jars(os.environ["CONNECT_PLUGIN_DIR"])))


def connect_plugin_jars(plugins):
    """The plugin's jar names (the connector's version is in its name)."""
    found = []
    for _, _, files in os.walk(plugins):
        found += sorted(f for f in files if f.endswith(".jar"))
    return ", ".join(found) or "no jar"


def connect_failed(logpath):
    """A Connect task that fails stops (\"is being killed and will not recover\") while the
    worker keeps running, so its log is the only sign."""
    return log_says(logpath, "will not recover until manually restarted")


def kafka_engine(ds, which, topic, cols, mb, consumers, extra_settings="", latency_cols=False):
    """ClickHouse Kafka table engine + materialized view into a MergeTree table; CPU = the server
    process's CPU delta over the run; RSS = the server's largest sampled VmRSS. latency_cols:
    True adds the now64 latency columns and returns (target, stop) right after starting;
    "parts" does the same for the part-poll latency (a `sent` column, merges stopped)."""
    url, pid = (CH, CH26_PID) if which == 26 else (CH18, CH18_PID)
    tag = "%s_ch%d_kafka_%dc_%s" % (ds, which, consumers, RUN_ID)
    group = "compare-" + tag
    if which == 26:
        ktypes = cols
        target = list(cols)
        select = ", ".join("`%s`" % n for n, _ in cols)
    else:
        ktypes = [(n, legacy(n, t)[0]) for n, t in cols]
        target = [(n, legacy(n, t)[1]) for n, t in cols]
        select = ", ".join("%s AS `%s`" % (legacy(n, t)[2], n) for n, t in cols)
    table_settings = ""
    if latency_cols == "parts":
        ktypes = ktypes + [("sent", "UInt64")]
        target = target + [("sent", "UInt64")]
        select += ", sent"
        table_settings = " SETTINGS " + NO_PART_LIMITS
    elif latency_cols:
        target = target + [("_timestamp", "DateTime64(3)"), ("ins", "DateTime64(3) DEFAULT now64(3)")]
        select += ", _timestamp_ms AS _timestamp"
    q(url, "CREATE DATABASE IF NOT EXISTS %s" % DB)
    t_table, k_table, mv = "%s.%s" % (DB, tag), "%s.%s_queue" % (DB, tag), "%s.%s_mv" % (DB, tag)
    q(url, "CREATE TABLE %s (%s) ENGINE = MergeTree ORDER BY id%s" % (t_table, cols_sql(target), table_settings))
    CLEANUP.append(lambda: q(url, "DROP TABLE IF EXISTS %s" % t_table))
    if latency_cols == "parts":
        q(url, "SYSTEM STOP MERGES %s" % t_table)
    reset_group_to_earliest(group, topic)
    settings = ("kafka_broker_list = '%s', kafka_topic_list = '%s', kafka_group_name = '%s', "
                "kafka_format = 'JSONEachRow', kafka_num_consumers = %d%s"
                % (KAFKA, topic, group, consumers, extra_settings))

    def drop_queue():
        for stmt in ("DROP TABLE IF EXISTS %s" % mv, "DROP TABLE IF EXISTS %s" % k_table):
            try:
                q(url, stmt)
            except Exception as e:
                log("  (%s: %s)" % (stmt, str(e)[:200]))
    CLEANUP.append(drop_queue)
    idle = 0.0 if latency_cols else idle_rate(pid)
    ch0, k0 = cpu_ticks(pid), cpu_ticks(KAFKA_PID)
    rss = [status_kib(pid, "VmRSS")]
    t0 = time.time()
    try:
        q(url, "CREATE TABLE %s (%s) ENGINE = Kafka SETTINGS %s" % (k_table, cols_sql(ktypes), settings))
    except RuntimeError as e:
        # 26.9 via chdb answers "Code: 49 ... Shutdown was called" yet creates the table
        if "Shutdown was called" not in str(e):
            raise
    q(url, "CREATE MATERIALIZED VIEW %s TO %s AS SELECT %s FROM %s" % (mv, t_table, select, k_table))
    if latency_cols:
        return t_table, drop_queue
    t1, _ = wait_for_count(url, t_table, MESSAGES, None,
                           on_sample=lambda: rss.append(status_kib(pid, "VmRSS")))
    ch1, k1 = cpu_ticks(pid), cpu_ticks(KAFKA_PID)
    drop_queue()
    time.sleep(2)
    wall = t1 - t0
    cpu = max(0.0, (ch1 - ch0) / TICK - idle * wall)
    return Result(ds, "ClickHouse %s Kafka engine, %d consumer%s" % ("26.9" if which == 26 else "18.16",
                                                                     consumers, "s" if consumers > 1 else ""),
                  wall=wall, rows_s=MESSAGES / wall, mb_s=mb / wall, cpu=cpu,
                  cpu_m=cpu / (MESSAGES / 1e6), rss_mib=max(rss) / 1024, ch_cpu=cpu,
                  kafka_cpu=(k1 - k0) / TICK, check=final_check(url, t_table, MESSAGES),
                  note="whole server: CPU delta, max sampled RSS (baseline %d MiB)" % (rss[0] // 1024))


def rowbinary_file(ds, path, cols):
    """The dataset's rows as RowBinary, the format sluice sends, made by ClickHouse itself from
    the JSON file (not timed), ordered by id like each partition's rows."""
    out = os.path.join(WORK, "%s.rowbinary" % ds)
    if os.path.exists(out):
        return out
    table = "%s.%s_rowbinary_%s" % (DB, ds, RUN_ID)
    q26("CREATE TABLE %s (%s) ENGINE = MergeTree ORDER BY id" % (table, cols_sql(cols)))
    try:
        with open(path, "rb") as body:
            subprocess.run(["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "-X", "POST", "-T", "-",
                            CH + "/?async_insert=0&query=" + urllib.parse.quote(
                                "INSERT INTO %s FORMAT JSONEachRow" % table)], stdin=body, check=True)
        with open(out + ".tmp", "wb") as f:
            subprocess.run(["curl", "-sS", "--fail-with-body", "-X", "POST", "--data-binary",
                            "SELECT * FROM %s ORDER BY id FORMAT RowBinary" % table, CH + "/"],
                           stdout=f, check=True)
    finally:
        q26("DROP TABLE IF EXISTS %s" % table)
    os.rename(out + ".tmp", out)
    return out


def ceiling_http(ds, path, cols, mb, rnd=1, fmt_name="JSONEachRow"):
    """The same rows from a file, one INSERT by curl: JSONEachRow (the messages as they are,
    parsed by the server in parallel) or RowBinary (pre-encoded: the format sluice sends)."""
    table = "%s.%s_ceiling_%s_%s_r%d" % (DB, ds, fmt_name.lower(), RUN_ID, rnd)
    q26("CREATE TABLE %s (%s) ENGINE = MergeTree ORDER BY id" % (table, cols_sql(cols)))
    CLEANUP.append(lambda: q26("DROP TABLE IF EXISTS %s" % table))
    idle = idle_rate(CH26_PID)
    ch0 = cpu_ticks(CH26_PID)
    t0 = time.time()
    sql = "INSERT INTO %s FORMAT %s" % (table, fmt_name)
    exited = []
    with open(path, "rb") as body:   # streamed (-T -): --data-binary @file holds the file in memory
        curl = subprocess.Popen(["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "-X", "POST", "-T", "-",
                                 CH + "/?async_insert=0&query=" + urllib.parse.quote(sql)], stdin=body)
        waiter = threading.Thread(target=lambda: exited.append((curl.wait(), time.time())))
        waiter.start()
        # Timed like every contender: until a `SELECT count()`, polled every 0.1 s, sees all
        # rows. Timed by curl's exit instead (as before 2026-11-25 07:00), the ceiling was
        # spared that polling's 0-0.1 s, a tenth of a 1 s narrow run.
        try:
            t1, _ = wait_for_count(CH, table, MESSAGES, lambda: not exited or exited[0][0] == 0)
            ch1 = cpu_ticks(CH26_PID)
        finally:
            waiter.join()
    if exited[0][0] != 0:
        raise RuntimeError("curl exited with status %d" % exited[0][0])
    wall, curl_s = t1 - t0, exited[0][1] - t0
    cpu = max(0.0, (ch1 - ch0) / TICK - idle * wall)
    label = "RowBinary file (pre-encoded)" if fmt_name == "RowBinary" else "JSONEachRow file"
    return Result(ds, "ceiling: curl %s -> ClickHouse 26.9" % label, wall=wall,
                  rows_s=MESSAGES / wall, mb_s=mb / wall, cpu=cpu,
                  cpu_m=cpu / (MESSAGES / 1e6), ch_cpu=cpu, curl_s=curl_s,
                  check=final_check(CH, table, MESSAGES),
                  note="one INSERT; CPU = ClickHouse server; curl returned after %.2f s" % curl_s)


def ceiling_consume(ds, topic, mb):
    k0 = cpu_ticks(KAFKA_PID)
    t0 = time.time()
    with open(os.devnull, "w") as null:
        p = subprocess.Popen([SLUICE, "consume", "--brokers", KAFKA, "--topic", topic, "--from-beginning",
                              "--max-messages", str(MESSAGES), "--idle-exit", "5s", "--count-only"], stdout=null,
                             stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = status
    t1 = time.time()
    k1 = cpu_ticks(KAFKA_PID)
    wall = t1 - t0
    cpu = ru.ru_utime + ru.ru_stime
    return Result(ds, "ceiling: librdkafka consume, no ClickHouse (sluice consume --count-only)",
                  wall=wall, rows_s=MESSAGES / wall, mb_s=mb / wall, cpu=cpu,
                  cpu_m=cpu / (MESSAGES / 1e6), rss_mib=ru.ru_maxrss / 1024, kafka_cpu=(k1 - k0) / TICK,
                  check="ok" if status == 0 else "exit status %d" % status,
                  note="one consumer, all partitions, messages counted, nothing printed")


# ---- latency under a steady load ----------------------------------------------------------------
PACER = r'''
import sys, time
sys.path.insert(0, sys.argv[4])
rate, seconds, tick = int(sys.argv[1]), int(sys.argv[2]), 0.01
# argv[3] == "sent": each message carries the wall-clock millisecond its tick was written at
sent = sys.argv[3] == "sent"
per = max(1, int(rate * tick))
n_total = rate * seconds
out = sys.stdout
i = 0
t0 = time.monotonic()
while i < n_total:
    lines = []
    extra = ',"sent":%d' % int(time.time() * 1000) if sent else ""
    for _ in range(min(per, n_total - i)):
        lines.append('{"id":%d,"ts":"2024-05-01 00:00:00.000","user":"user_%d","url":"/items/%d","agent":"Mozilla/5.0","status":200,"latency":0.25,"ok":true,"region":"eu-west-1","parent":null,"tags":["a","bb"],"amount":"%d.0001"%s}\n' % (1_000_000 + i, i % 9973, i, i % 1000, extra))
        i += 1
    out.write("".join(lines))
    out.flush()
    nxt = t0 + (i / rate)
    d = nxt - time.monotonic()
    if d > 0:
        time.sleep(d)
sys.stderr.write("paced %d messages in %.2f s\n" % (i, time.monotonic() - t0))
'''


# The part-poll latency, for ClickHouse 18.16, which has no millisecond clock to stamp a row's
# insert with (no now64): the target table's merges are stopped, so every insert stays a part
# of its own; a thread lists the table's active parts every PART_POLL s; a row's latency is the
# time its part was first listed (the midpoint of that poll's start and the previous one's)
# minus the wall-clock millisecond the pacer wrote the message (`sent`, a field of each
# message, ~1 ms before the producer stamps its CreateTime). Run once on 26.9 beside the
# now64 method, to show the two agree.
PART_POLL = 0.02
# With merges stopped, the part limits would delay or refuse inserts (30 s at one insert per
# partition per second is 240 parts; 18.16 delays inserts from 150 parts on).
NO_PART_LIMITS = "parts_to_delay_insert = 100000, parts_to_throw_insert = 100000"
# sluice-eo-parts: one 26.9 run timed both ways (now64 and part polling)
PARTS_CHECK_LABEL = "sluice exactly-once (max_age 1s default), merges stopped, timed both ways"


class PartPoller:
    def __init__(self, url, table):
        self.url, self.table = url, table
        self.db, self.name = table.split(".", 1)
        self.seen = {}
        self.polls = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        prev = time.time()
        while not self.done.is_set():
            t = time.time()
            try:
                names = q(self.url, "SELECT name FROM system.parts WHERE database = '%s' AND table = '%s' "
                          "AND active FORMAT TSV" % (self.db, self.name), timeout=30).split()
            except Exception:
                time.sleep(PART_POLL)
                continue   # a failed poll proves nothing: the next one is timed from `prev`
            self.polls += 1
            for n in names:
                if n not in self.seen:
                    self.seen[n] = (prev + t) / 2
            prev = t
            time.sleep(max(0.0, PART_POLL - (time.time() - t)))

    def quantiles(self):
        """Stops polling once a poll started after every row was counted; (rows measured, rows
        whose part was never listed, [p50, p90, p99, max] ms)."""
        until = self.polls + 2
        t0 = time.time()
        while self.polls < until and time.time() - t0 < 10:
            time.sleep(PART_POLL / 2)
        self.done.set()
        self.thread.join(60)
        rows = [line.split("\t") for line in q(self.url, "SELECT _part, sent FROM %s FORMAT TSV" % self.table,
                                                timeout=120).splitlines()]
        first = min(int(sent) for _, sent in rows) + LAT_WARMUP * 1000
        lat, unseen = [], 0
        for part, sent in rows:
            if int(sent) < first:
                continue
            if part not in self.seen:
                unseen += 1
                continue
            lat.append(self.seen[part] * 1000 - int(sent))
        lat.sort()
        pick = lambda f: lat[max(0, min(len(lat) - 1, int(f * len(lat) + 0.999999) - 1))]
        return len(lat), unseen, [pick(0.5), pick(0.9), pick(0.99), lat[-1]] if lat else [0, 0, 0, 0]


def latency_run(contender):
    topic = "compare_latency_%s_%s" % (contender.replace("-", "_"), RUN_ID)
    sluice("topics", "--brokers", KAFKA, "create", topic, "--partitions", str(PARTITIONS),
           "--replication-factor", "1", stdout=subprocess.DEVNULL)
    CLEANUP.append(lambda: sluice("topics", "--brokers", KAFKA, "delete", topic,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    cols = NARROW + [("_timestamp", "DateTime64(3)"), ("ins", "DateTime64(3) DEFAULT now64(3)")]
    n = LAT_RATE * LAT_SECONDS
    proc = None
    stop = None
    poller = None
    # sluice-eo-parts (26.9) and the *-ch18 contenders (18.16) are timed by part polling
    by_parts = contender in ("sluice-eo-parts", "sluice-eo-ch18", "ch18-kafka-engine")
    on18 = contender.endswith("ch18") or contender.startswith("ch18")
    url = CH18 if on18 else CH
    if contender.startswith("sluice"):
        mode = "exactly-once" if contender.startswith("sluice-eo") else "at-least-once"
        # sluice-eo-250ms: the same with max_age 250 ms, the latency a lower max_age buys
        # (four inserts per partition per second instead of one).
        max_age = "250ms" if contender.endswith("-250ms") else None
        table = "%s.lat_%s_%s" % (DB, contender.replace("-", "_"), RUN_ID)
        engine = "MergeTree"
        settings = ["non_replicated_deduplication_window = 1000"] if mode == "exactly-once" else []
        if on18:
            cols, engine = ch18_sluice_table(table, NARROW, mode)
            settings = []
            q(url, "CREATE DATABASE IF NOT EXISTS %s" % DB)
        if by_parts:
            cols = cols + [("sent", "UInt64")]
            settings.append(NO_PART_LIMITS)
        q(url, "CREATE TABLE %s (%s) ENGINE = %s ORDER BY id%s"
          % (table, cols_sql(cols), engine, " SETTINGS " + ", ".join(settings) if settings else ""))
        CLEANUP.append(lambda: q(url, "DROP TABLE IF EXISTS %s" % table))
        if by_parts:
            q(url, "SYSTEM STOP MERGES %s" % table)
        cfg = os.path.join(WORK, "lat-%s.toml" % contender)
        with open(cfg, "w") as f:
            f.write('[kafka]\nbrokers = "%s"\ngroup_id = "compare-lat-%s-%s"\nauto_offset_reset = "earliest"\n\n'
                    '[clickhouse]\nurl = "%s"\ndatabase = "%s"\n\n[[route]]\ntopic = "%s"\ntable = "%s"\n'
                    'format = "json"\ndelivery = "%s"\n%s' % (KAFKA, contender, RUN_ID, url, DB, topic,
                                                             table.split(".", 1)[1], mode,
                                                             'max_age = "%s"\n' % max_age if max_age else ""))
        proc = subprocess.Popen([SLUICE, "run", "--config", cfg],
                                stdout=open(os.path.join(WORK, "lat-%s.log" % contender), "w"),
                                stderr=subprocess.STDOUT)
        label = "sluice %s (max_age %s)" % (mode, max_age or "1s default")
        parts_label = "%s, ClickHouse %s" % (label, "18.16" if on18 else "26.9")
        if contender == "sluice-eo-parts":
            label = PARTS_CHECK_LABEL
    elif contender == "vector":
        table = "%s.lat_vector_%s" % (DB, RUN_ID)
        q26("CREATE TABLE %s (%s) ENGINE = MergeTree ORDER BY id" % (table, cols_sql(cols)))
        CLEANUP.append(lambda: q26("DROP TABLE IF EXISTS %s" % table))
        cfg = vector_config(os.path.join(WORK, "lat-vector"), "compare-lat-vector-%s" % RUN_ID, topic, table,
                            latency=True)
        proc = subprocess.Popen([os.environ["VECTOR_BIN"], "--config", cfg],
                                stdout=open(os.path.join(WORK, "lat-vector.log"), "w"), stderr=subprocess.STDOUT)
        label = "Vector (acknowledgements, batch timeout 1 s default)"
    elif contender == "clickhouse_sinker":
        # Its Kafka timestamp goes to a column named __kafka_*_timestamp; _timestamp reads it.
        table = "%s.lat_sinker_%s" % (DB, RUN_ID)
        scols = NARROW + [("__kafka_timestamp", "DateTime64(3)"),
                          ("_timestamp", "DateTime64(3) ALIAS __kafka_timestamp"),
                          ("ins", "DateTime64(3) DEFAULT now64(3)")]
        q26("CREATE TABLE %s (%s) ENGINE = MergeTree ORDER BY id" % (table, cols_sql(scols)))
        CLEANUP.append(lambda: q26("DROP TABLE IF EXISTS %s" % table))
        cfg = sinker_config(os.path.join(WORK, "lat-sinker"), "lat_sinker", "compare-lat-sinker-%s" % RUN_ID,
                            topic, table, exclude=("_timestamp", "ins"))
        proc = subprocess.Popen(sinker_cmd(cfg), stdout=open(os.path.join(WORK, "lat-sinker.log"), "w"),
                                stderr=subprocess.STDOUT)
        label = "clickhouse_sinker (flushInterval 1 s)"
    elif contender == "kafka-connect-clickhouse":
        # the record's timestamp, as Connect's InsertField transform adds it (epoch ms), read
        # back through an ALIAS; one task per partition, its faster setting here
        table = "%s.lat_connect_%s" % (DB, RUN_ID)
        ccols = NARROW + [("_ts_ms", "Int64"), ("_timestamp", "DateTime64(3) ALIAS fromUnixTimestamp64Milli(_ts_ms)"),
                          ("ins", "DateTime64(3) DEFAULT now64(3)")]
        q26("CREATE TABLE %s (%s) ENGINE = MergeTree ORDER BY id" % (table, cols_sql(ccols)))
        CLEANUP.append(lambda: q26("DROP TABLE IF EXISTS %s" % table))
        work = os.path.join(WORK, "lat-connect")
        cmd = connect_cmd(work, "compare-lat-connect-%s" % RUN_ID, topic, table, PARTITIONS,
                          "transforms=ts\ntransforms.ts.type=org.apache.kafka.connect.transforms.InsertField$Value\n"
                          "transforms.ts.timestamp.field=_ts_ms\n")
        proc = subprocess.Popen(cmd, stdout=open(os.path.join(work, "connect.log"), "w"), stderr=subprocess.STDOUT)
        label = "Kafka Connect + ClickHouse sink, %d tasks (defaults otherwise)" % PARTITIONS
    elif contender == "ch18-kafka-engine":
        table, stop = kafka_engine("latency", 18, topic, NARROW, 0, PARTITIONS, latency_cols="parts")
        label = parts_label = "ClickHouse 18.16 Kafka engine, %d consumers (defaults otherwise)" % PARTITIONS
    else:
        table, stop = kafka_engine("latency", 26, topic, NARROW, 0, PARTITIONS,
                                   ", kafka_thread_per_consumer = 1, kafka_disable_num_consumers_limit = 1",
                                   latency_cols=True)
        label = "ClickHouse 26.9 Kafka engine, %d consumers (defaults otherwise)" % PARTITIONS
    if by_parts:
        poller = PartPoller(url, table)
    # group join (a Connect worker also starts its JVM, its REST server and the connector first)
    time.sleep(15 if contender == "kafka-connect-clickhouse" else 5)
    t0 = time.time()
    prod = subprocess.Popen([SLUICE, "produce", "--brokers", KAFKA, "--topic", topic, "--acks", "1",
                             "--key-field", "id"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    pacer = subprocess.Popen([sys.executable, "-c", PACER, str(LAT_RATE), str(LAT_SECONDS),
                              "sent" if by_parts else "", HERE],
                             stdout=prod.stdin, stderr=subprocess.PIPE, text=True)
    prod.stdin.close()
    pacer_err = pacer.communicate()[1]
    prod.wait()
    t_prod = time.time() - t0
    try:
        wait_for_count(url, table, n, (lambda: proc.poll() is None) if proc else None, deadline_s=300)
    except BaseException:
        if poller:
            poller.done.set()
        raise
    finally:
        if proc:
            stop_process(proc)
        if stop:
            stop()
    if poller:
        cnt, unseen, qs = poller.quantiles()
        LATENCY_PARTS.append((parts_label, n / t_prod, cnt, unseen, poller.polls, qs))
        log("latency by parts %s: %d rows, %d in parts never listed, %d polls; p50 %.0f ms p99 %.0f ms"
            % (parts_label, cnt, unseen, poller.polls, qs[0], qs[2]))
        if on18:
            return
    r = q26("SELECT quantilesExact(0.5, 0.9, 0.99, 1)(toUnixTimestamp64Milli(ins) - toUnixTimestamp64Milli(_timestamp)), "
            "count() FROM %s WHERE _timestamp >= (SELECT min(_timestamp) FROM %s) + INTERVAL %d SECOND "
            "FORMAT JSONCompact" % (table, table, int(LAT_WARMUP)))
    (qs, cnt), = json.loads(r)["data"]
    LATENCY.append((label, n / t_prod, int(cnt), qs))
    log("latency %s: produced %d in %.1f s (%s); p50 %s ms p99 %s ms" % (label, n, t_prod, pacer_err.strip(), qs[0], qs[2]))


# ---- main -------------------------------------------------------------------------------------
def timed_measurement_gate():
    t0 = time.time()
    while True:
        busy = [p for p in GATE
                if subprocess.run(["pgrep", "-f", p], capture_output=True).returncode == 0]
        if not busy:
            return
        if time.time() - t0 > GATE_MAX:
            BUSY_NOTES.append("started after waiting %d s while still running: %s" % (GATE_MAX, ", ".join(busy)))
            log("proceeding although busy: %s" % ", ".join(busy))
            return
        log("waiting: another measurement is running (%s)" % ", ".join(busy))
        time.sleep(10)


def attempt(label, fn):
    if label in SKIP:
        NOT_RUN.append((label, "skipped (SKIP)"))
        return None
    r = measured(label, fn)
    if r is not None:
        RESULTS_ROWS.append(r)
    return r


def measured(label, fn):
    """One timed run of a contender: its Result, or None with the failure in NOT_RUN."""
    timed_measurement_gate()
    LOADS.append(os.getloadavg()[0])
    try:
        r = fn()
        if r is not None:
            log("%s / %s: %.2f s, %s rows/s, CPU %.2f s, %s" % (r.dataset, r.name, r.wall, format(r.rows_s, ",.0f"),
                                                              r.cpu or 0, r.check))
        return r
    except Exception as e:
        NOT_RUN.append((label, "failed: %s" % str(e)[:400]))
        log("%s FAILED: %s" % (label, e))
        return None


def attempt_rounds(contenders):
    """Runs each (label, fn(rnd)) ROUNDS times, alternated, and records the run of median rows/s
    with every run's rows/s (`runs`): one run per contender on this shared machine moves by
    10-20 %, so a ratio of two single runs can move by twice that. A contender that fails any
    round is reported as failed, not by its other rounds."""
    runs = {label: [] for label, _ in contenders if label not in SKIP}
    for label, _ in contenders:
        if label in SKIP:
            NOT_RUN.append((label, "skipped (SKIP)"))
    for rnd in range(1, ROUNDS + 1):
        for label, fn in contenders:
            if label in runs and runs[label] is not None:
                r = measured(label, lambda: fn(rnd))
                runs[label] = None if r is None else runs[label] + [r]
    for label, rs in runs.items():
        if not rs:
            continue
        rs_sorted = sorted(rs, key=lambda r: r.rows_s)
        med = rs_sorted[(len(rs_sorted) - 1) // 2]   # the lower median when ROUNDS is even
        med.runs = [r.rows_s for r in rs]
        med.curl_runs = [r.curl_s for r in rs if getattr(r, "curl_s", None) is not None]
        if any(r.check != "ok" for r in rs):
            med.check = "; ".join(sorted(set(r.check for r in rs)))
        RESULTS_ROWS.append(med)


WORK = None
# other measurements (and test suites hammering the same servers) ruin a timed run: wait for them
GATE = [g for g in os.environ.get("GATE", "bench/e2e|cargo bench|cargo test|sluice run").split("|") if g]
GATE_MAX = float(os.environ.get("GATE_MAX", "900"))
BUSY_NOTES = []


def main():
    global WORK
    WORK = os.path.join(CACHE, "work", RUN_ID)
    os.makedirs(WORK, exist_ok=True)
    q26("CREATE DATABASE IF NOT EXISTS %s" % DB)
    versions = {"ch26": q26("SELECT version()")}
    try:
        versions["ch18"] = q(CH18, "SELECT version()")
    except Exception as e:
        versions["ch18"] = None
        log("ClickHouse 18.16 not answering at %s: %s" % (CH18, e))

    # peers that cannot be installed or were not given: say why, once
    if "clickhouse_sinker" not in SKIP and not sinker_ready():
        NOT_RUN.append(("clickhouse_sinker", os.environ.get("SINKER_NOT_RUN") or "not installed"))
    if "vector" not in SKIP and not os.environ.get("VECTOR_BIN"):
        NOT_RUN.append(("vector", "VECTOR_BIN is not set: Vector is not on any package registry this "
                        "machine reaches, and the repository must not build it; build it by hand outside "
                        "the repository and point VECTOR_BIN at the binary"))
    elif os.environ.get("VECTOR_BIN") and not os.access(os.environ["VECTOR_BIN"], os.X_OK):
        NOT_RUN.append(("vector", "VECTOR_BIN=%s is not an executable file" % os.environ["VECTOR_BIN"]))
    if "kafka-connect-clickhouse" not in SKIP and not connect_ready():
        NOT_RUN.append(("kafka-connect-clickhouse", os.environ.get("CONNECT_NOT_RUN", "not installed")))

    for ds in DATASETS:
        cols = NARROW if ds == "narrow" else wide_columns()
        path = dataset_file(ds)
        size = os.path.getsize(path) - MESSAGES
        mb = size / 1e6
        topic = "compare_%s_%s" % (ds, RUN_ID)
        sluice("topics", "--brokers", KAFKA, "create", topic, "--partitions", str(PARTITIONS),
               "--replication-factor", "1", stdout=subprocess.DEVNULL)
        CLEANUP.append(lambda t=topic: sluice("topics", "--brokers", KAFKA, "delete", t,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        log("%s: producing %d messages (%.0f MB, avg %d B) into %s (%d partitions)"
            % (ds, MESSAGES, mb, size / MESSAGES, topic, PARTITIONS))
        t0 = time.time()
        sluice("produce", "--brokers", KAFKA, "--topic", topic, "--acks", "1", "--key-field", "id", path,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        per = topic_counts(topic)
        if sum(per) != MESSAGES:
            sys.exit("topic %s holds %d messages, expected %d" % (topic, sum(per), MESSAGES))
        DATA_INFO[ds] = dict(avg=size / MESSAGES, mb=mb, cols=len(cols), spread="%d-%d" % (min(per), max(per)),
                             produce_s=time.time() - t0)

        attempt_rounds([
            ("sluice-alo", lambda rnd: run_sluice(ds, "at-least-once", topic, cols, mb, rnd=rnd)),
            ("sluice-eo", lambda rnd: run_sluice(ds, "exactly-once", topic, cols, mb, rnd=rnd)),
            ("ceiling-http", lambda rnd: ceiling_http(ds, path, cols, mb, rnd=rnd)),
            ("ceiling-http-rowbinary", lambda rnd: ceiling_http(ds, rowbinary_file(ds, path, cols), cols, mb,
                                                               rnd=rnd, fmt_name="RowBinary")),
        ])
        if os.environ.get("VECTOR_BIN") and os.access(os.environ["VECTOR_BIN"], os.X_OK):
            attempt("vector", lambda: run_vector(ds, topic, cols, mb))
        if sinker_ready():
            attempt("clickhouse_sinker", lambda: run_sinker(ds, topic, cols, mb))
        if connect_ready():
            attempt("kafka-connect-clickhouse", lambda: run_connect(ds, topic, cols, mb))
            # one task per partition, as the connector's docs advise for throughput
            attempt("kafka-connect-clickhouse-8t", lambda: run_connect(ds, topic, cols, mb, tasks=PARTITIONS))
        attempt("ch26-kafka-engine", lambda: kafka_engine(
            ds, 26, topic, cols, mb, PARTITIONS,
            ", kafka_thread_per_consumer = 1, kafka_disable_num_consumers_limit = 1"))
        attempt("ch26-kafka-engine-1c", lambda: kafka_engine(ds, 26, topic, cols, mb, 1))
        if versions["ch18"]:
            attempt("ch18-kafka-engine", lambda: kafka_engine(ds, 18, topic, cols, mb, PARTITIONS))
            attempt_rounds([
                ("sluice-alo-ch18", lambda rnd: run_sluice(ds, "at-least-once", topic, cols, mb, ch18=True,
                                                           rnd=rnd)),
                ("sluice-eo-ch18", lambda rnd: run_sluice(ds, "exactly-once", topic, cols, mb, ch18=True,
                                                          rnd=rnd)),
            ])
        elif "ch18-kafka-engine" not in SKIP:
            NOT_RUN.append(("ch18-kafka-engine", "ClickHouse 18.16 not running (./dev/testbed up --with-legacy)"))
        attempt("ceiling-consume", lambda: ceiling_consume(ds, topic, mb))

    if "latency" in SKIP:
        NOT_RUN.append(("latency", "skipped (SKIP)"))
    else:
        for c in ("sluice-alo", "sluice-eo", "sluice-eo-250ms", "ch26-kafka-engine", "vector", "clickhouse_sinker",
                  "kafka-connect-clickhouse"):
            if c in SKIP or (c == "vector" and not os.access(os.environ.get("VECTOR_BIN", ""), os.X_OK)):
                continue
            if c == "kafka-connect-clickhouse" and not connect_ready():
                continue
            if c == "clickhouse_sinker" and not sinker_ready():
                continue
            latency_attempt(c)
    if "latency-ch18" in SKIP:
        NOT_RUN.append(("latency-ch18", "skipped (SKIP)"))
    elif not CH18_PID:
        NOT_RUN.append(("latency-ch18", "ClickHouse 18.16 not running (./dev/testbed up --with-legacy)"))
    else:
        for c in ("sluice-eo-parts", "sluice-eo-ch18", "ch18-kafka-engine"):
            latency_attempt(c)
    report(versions)


def latency_attempt(contender):
    """One latency run once the machine is quiet; a failure is reported, not raised."""
    timed_measurement_gate()
    try:
        latency_run(contender)
    except Exception as e:
        NOT_RUN.append(("latency " + contender, "failed: %s" % str(e)[:300]))
        log("latency %s FAILED: %s" % (contender, e))


DATA_INFO = {}
LOADS = []


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def report(versions):
    date = time.strftime("%Y-%m-%d", time.gmtime())
    stamp = time.strftime("%Y-%m-%dT%H%MZ", time.gmtime())
    commit = os.environ.get("SLUICE_COMMIT") or subprocess.run(
        ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    mem = int(open("/proc/meminfo").readline().split()[1]) / 1048576
    osname = next((l.split("=", 1)[1].strip().strip('"') for l in open("/etc/os-release")
                   if l.startswith("PRETTY_NAME=")), "Linux")
    env = "MESSAGES=%d PARTITIONS=%d%s" % (MESSAGES, PARTITIONS, (" SKIP='%s'" % " ".join(sorted(SKIP))) if SKIP else "")
    if DATASETS != ["narrow", "wide"]:
        env += " DATASETS='%s'" % " ".join(DATASETS)
    if ROUNDS != 3:
        env += " ROUNDS=%d" % ROUNDS
    L = []
    L.append("# bench/compare %s" % stamp)
    L.append("")
    L.append("Command: `%s ./bench/compare` (sluice %s, release build)." % (env, commit))
    L.append("Machine: %d cores, %.0f GiB, %s; Apache Kafka 4.4 KRaft single node (%s); ClickHouse %s "
             "(chdb, %s) and ClickHouse %s (Debian, %s) on the same machine."
             % (os.cpu_count(), mem, osname, KAFKA, versions["ch26"], CH, versions["ch18"] or "-", CH18))
    L.append("")
    L.append("Each contender drains the same pre-produced topic (own consumer group, from the earliest "
             "offset) into its own fresh MergeTree table. wall = from starting the contender until "
             "`SELECT count()` = %d. CPU = the ingesting process's utime+stime over that time (for the "
             "Kafka engine: the ClickHouse server's CPU delta, since the engine runs inside it). "
             "all-in = ingesting process + the ClickHouse server receiving the rows. RSS = peak "
             "resident set of the ingesting process (Kafka engine: the whole server's largest sampled "
             "RSS). ClickHouse server CPU is net of its idle rate (measured for 3 s before each "
             "contender: chdb's listener query and background work). 1-min load average when "
             "contenders started: %s." % (MESSAGES, ", ".join("%.1f" % l for l in LOADS)))
    L.append("")
    L.append("Kafka engine tables: JSONEachRow, kafka_num_consumers as named (8 consumers: "
             "kafka_thread_per_consumer = 1, kafka_disable_num_consumers_limit = 1), other settings at "
             "their defaults; the group's offsets are set to the earliest first (18.16 starts at the end "
             "otherwise). ClickHouse 18.16 has no DateTime64, Bool or LowCardinality and does not read a "
             "quoted Decimal: its Kafka table reads ts and amount as String, ok as UInt8, and the "
             "materialized view converts (target: ts DateTime, amount Decimal(18, 4), region String). "
             "A contender that stores duplicates is timed until every distinct id is queryable; "
             "`check` shows count and distinct ids.")
    L.append("")
    L.append("sluice and the file ceilings ran %d times each, alternated (sluice at-least-once, exactly-once, "
             "the JSONEachRow ceiling, the RowBinary ceiling; then sluice into 18.16); the table shows each one's run of median rows/s (the lower one of two), "
             "the runs are listed below it. The peers ran once (Vector, clickhouse_sinker and the Kafka "
             "engines take 10-70 s a run)." % ROUNDS)
    for ds in DATASETS:
        if ds not in DATA_INFO:
            continue
        d = DATA_INFO[ds]
        L.append("")
        L.append("## Dataset %s: %d JSON messages, %d columns, avg %d B (%.0f MB), %d partitions (%s each)"
                 % (ds, MESSAGES, d["cols"], d["avg"], d["mb"], PARTITIONS, d["spread"]))
        L.append("")
        L.append("Pre-produced with `sluice produce --acks 1 --key-field id` in %.1f s." % d["produce_s"])
        L.append("")
        L.append("| contender | wall s | rows/s | MB/s | CPU-s | CPU-s / M rows | all-in CPU-s / M rows | peak RSS MiB | check |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for r in RESULTS_ROWS:
            if r.dataset != ds:
                continue
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                r.name, fmt(r.wall, ".2f"), fmt(r.rows_s, ",.0f"), fmt(r.mb_s, ".1f"), fmt(r.cpu, ".2f"),
                fmt(r.cpu_m, ".2f"), fmt(r.allin_m(), ".2f"), fmt(r.rss_mib, ".0f"), r.check))
        repeated = [r for r in RESULTS_ROWS if r.dataset == ds and r.runs and len(r.runs) > 1]
        if repeated:
            L.append("")
            L.append("Every run, rows/s in run order: " + "; ".join(
                "%s %s" % (r.name, ", ".join(format(x, ",.0f") for x in r.runs)) for r in repeated) + ".")
        for r in RESULTS_ROWS:
            if r.dataset == ds and getattr(r, "curl_runs", None):
                L.append("")
                L.append("%s is timed like every contender, until a `SELECT count()` polled "
                         "every 0.1 s sees all rows (before 2026-11-25 07:00 it was timed by curl's exit, "
                         "sparing it that polling); curl itself returned after %s s."
                         % (r.name, ", ".join("%.2f" % x for x in r.curl_runs)))
        L += targets(ds)
    if LATENCY:
        L.append("")
        L.append("## Latency, produce -> queryable, under a steady load (dataset narrow)")
        L.append("")
        L.append("A paced producer (`sluice produce --acks 1`) sends %d msg/s for %d s into a fresh %d-partition "
                 "topic while the contender runs; latency = the row's insert time (`ins DateTime64(3) DEFAULT "
                 "now64(3)`, evaluated by ClickHouse at the insert) - its Kafka timestamp (CreateTime, set "
                 "by the producer); the first %d s are left out." % (LAT_RATE, LAT_SECONDS, PARTITIONS, LAT_WARMUP))
        L.append("")
        L.append("| contender | achieved msg/s | rows measured | p50 ms | p90 ms | p99 ms | max ms |")
        L.append("|---|---|---|---|---|---|---|")
        for label, rate, cnt, qs in LATENCY:
            L.append("| %s | %s | %d | %.0f | %.0f | %.0f | %.0f |" % (label, format(rate, ",.0f"), cnt, *qs))
    if LATENCY_PARTS:
        L.append("")
        L.append("## Latency by part polling, on ClickHouse 18.16 too (dataset narrow)")
        L.append("")
        L.append("ClickHouse 18.16 has no millisecond clock (no now64) to stamp a row's insert, so here the "
                 "same paced load (%d msg/s for %d s, %d partitions) is timed from outside: the target "
                 "table's merges are stopped, so each insert stays a part of its own; its active parts are "
                 "listed every %.0f ms; a row's latency = the time its part was first listed (the midpoint "
                 "of that poll and the one before) - the millisecond the pacer wrote the message (a `sent` "
                 "field in each message); the first %d s are left out. The 26.9 row is one run timed both "
                 "ways: its now64 figures are the row \"%s\" of the table above."
                 % (LAT_RATE, LAT_SECONDS, PARTITIONS, PART_POLL * 1000, LAT_WARMUP, PARTS_CHECK_LABEL))
        L.append("")
        L.append("| contender | achieved msg/s | rows measured | rows in parts never listed | polls | "
                 "p50 ms | p90 ms | p99 ms | max ms |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for label, rate, cnt, unseen, polls, qs in LATENCY_PARTS:
            L.append("| %s | %s | %d | %d | %d | %.0f | %.0f | %.0f | %.0f |"
                     % (label, format(rate, ",.0f"), cnt, unseen, polls, *qs))
    if BUSY_NOTES:
        L.append("")
        L.append("Caveat: some contenders %s." % "; ".join(sorted(set(BUSY_NOTES))))
    L.append("")
    L.append("## Not run")
    L.append("")
    if not NOT_RUN:
        L.append("Everything ran.")
    # A contender skipped or missing is met once per dataset; it is listed once.
    for name, why in dict.fromkeys(NOT_RUN):
        L.append("- **%s**: %s" % (name, why))
    text = "\n".join(L) + "\n"
    os.makedirs(RESULTS, exist_ok=True)
    # Named for the day and the build measured, so that a day's runs never overwrite each
    # other (a second run of the same build gets its time too).
    stem = "compare-%s-sluice-%s" % (date, "".join(c if c.isalnum() else "-" for c in commit).strip("-"))
    if os.path.exists(os.path.join(RESULTS, stem + ".md")):
        stem += "-" + time.strftime("%H%MZ", time.gmtime())
    md = os.path.join(RESULTS, stem + ".md")
    png = os.path.join(RESULTS, stem + ".png")
    chart(png)
    if os.path.exists(png):
        text += "\n![chart](%s.png)\n" % stem
    open(md, "w").write(text)
    print(text)
    log("written: %s, %s" % (md, png))


def targets(ds):
    rows = {r.name: r for r in RESULTS_ROWS if r.dataset == ds}
    peers = [r for r in rows.values() if not r.name.startswith("sluice") and not r.name.startswith("ceiling")]
    out = [""]
    if not peers:
        return out + ["No peer ran on this dataset: no comparison."]
    same = [r for r in peers if "26.9" in r.name]
    groups = []
    if same:
        groups.append(("the fastest peer writing to the same ClickHouse 26.9", max(same, key=lambda r: r.rows_s)))
    best = max(peers, key=lambda r: r.rows_s)
    if not same or best is not groups[0][1]:
        groups.append(("the fastest peer of all (another, older server: lighter types, see above)", best))
    for mode in ("exactly-once", "at-least-once"):
        s = rows.get("sluice " + mode)
        if not s:
            continue
        for what, b in groups:
            sp = s.rows_s / b.rows_s
            cr = s.cpu_m / b.cpu_m
            alone = "the server alone" if b.name.startswith("ClickHouse") else "the peer + the server"
            out.append("- sluice %s vs %s (%s): rows/s x%.2f (target >= 2: %s); CPU-s per row x%.2f "
                       "(target <= 0.33: %s); all-in CPU per row (sluice + ClickHouse server vs %s) "
                       "x%.2f." % (mode, what, b.name, sp, "met" if sp >= 2 else "NOT met", cr,
                                   "met" if cr <= 1 / 3 else "NOT met", alone, s.allin_m() / b.allin_m()))
        for c in [r for r in rows.values() if r.name.startswith("ceiling")]:
            pct = 100 * s.rows_s / c.rows_s
            out.append("  - %.0f %% of %s (target >= 80 %%: %s)" % (pct, c.name, "met" if pct >= 80 else "NOT met"))
    # Same server, same target table: sluice into 18.16 against the 18.16 Kafka engine.
    e18 = next((r for r in peers if "18.16" in r.name), None)
    for mode in ("exactly-once", "at-least-once"):
        s = rows.get("sluice %s -> ClickHouse 18.16" % mode)
        if not s or not e18:
            continue
        sp = s.rows_s / e18.rows_s
        cr = s.cpu_m / e18.cpu_m
        out.append("- sluice %s into ClickHouse 18.16 vs the %s (same server, same target table): rows/s "
                   "x%.2f (target >= 2: %s); CPU-s per row x%.2f (target <= 0.33: %s); all-in CPU per row "
                   "x%.2f." % (mode, e18.name, sp, "met" if sp >= 2 else "NOT met", cr,
                               "met" if cr <= 1 / 3 else "NOT met", s.allin_m() / e18.allin_m()))
    return out


def chart(png):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        log("matplotlib missing: no chart")
        return
    dss = [ds for ds in DATASETS if any(r.dataset == ds for r in RESULTS_ROWS)]
    if not dss:
        return
    fig, axes = plt.subplots(len(dss), 2, figsize=(15, 4.2 * len(dss) + 0.6), squeeze=False)
    for i, ds in enumerate(dss):
        rs = [r for r in RESULTS_ROWS if r.dataset == ds]
        names = [r.name.replace(" (sluice consume --count-only)", "").replace(" (sluice consume > /dev/null)", "").replace("ceiling: ", "ceiling:\n")
                 .replace("Kafka engine, ", "Kafka engine\n") for r in rs]
        colors = ["#1f77b4" if r.name.startswith("sluice") else "#999999" if r.name.startswith("ceiling")
                  else "#d62728" for r in rs]
        ax = axes[i][0]
        ax.barh(names, [r.rows_s for r in rs], color=colors)
        ax.invert_yaxis()
        ax.set_title("%s: rows/s until all rows queryable (higher is better)" % ds)
        for y, r in enumerate(rs):
            ax.text(r.rows_s, y, " " + format(r.rows_s, ",.0f"), va="center", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: "%.0fk" % (v / 1000)))
        ax = axes[i][1]
        vals = [r.allin_m() or 0 for r in rs]
        ax.barh(names, vals, color=colors)
        ax.barh(names, [r.cpu_m or 0 if not r.name.startswith("ClickHouse") else 0 for r in rs],
                color="none", edgecolor="black", hatch="//")
        ax.invert_yaxis()
        ax.set_title("%s: all-in CPU-s per M rows\n(hatched: the ingesting process)" % ds)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle("bench/compare, %d messages, %d partitions, %d cores" % (MESSAGES, PARTITIONS, os.cpu_count()))
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    try:
        main()
    finally:
        if not KEEP:
            for f in reversed(CLEANUP):
                try:
                    f()
                except Exception:
                    pass
            if WORK:
                shutil.rmtree(WORK, ignore_errors=True)
