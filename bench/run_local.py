"""Benchmark the system on this machine: memory broker + Redis, one worker, one gateway.

    python -m bench.run_local [--messages 500 --rate 200 --users 20 --group-size 5 ...]

Starts a ``LocalStack`` (Apache Kafka, Redis) in a temporary directory and a
``tests.support.System`` with one stream worker and one gateway; measures the time from
starting those two processes to ``/healthz`` answering 200 and to the first message round
trip (sign in, connect, create a group, send, ack, delivery); runs ``bench.loadgen`` (which
warms up with a message per group first); stops everything; appends a section to
``bench/RESULTS.md`` and writes the full results dict to ``bench/results/<stamp>.json``.

The load generator runs in this process, on the same cores as the system under test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, Iterator

import aiohttp
import orjson

from bench import loadgen, trace_topics

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from infra.stack import LocalStack  # noqa: E402
from tests.support import System, wait_workers  # noqa: E402

RESULTS_HEADER = """# Benchmark results

Appended by `python -m bench.run_local` (see `bench/README.md`): one section per run, newest last.
Everything (broker on memory storage, Redis, one stream worker, one gateway, and the load
generator itself) runs on the one machine described in each section, so the load generator
competes with the system for the same cores. Latencies are measured at the client, from the
`send` call to the `ack` (sender) or `message` frame (every other member device).
"""


# ---------------------------------------------------------------------------- the machine

def machine() -> dict[str, Any]:
    mem_kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    model = None
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        model = m.group(1).strip() if m else None
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1) if mem_kb else None,
            "cpu_model": model, "platform": platform.platform(), "python": platform.python_version()}


def machine_line() -> str:
    m = machine()
    return f"Machine: {m['cores']} cores, {m['memory_gib']} GiB, {m['cpu_model']}; Python {m['python']}."


def append_results(lines: list[str], path: Path = BENCH_DIR / "RESULTS.md") -> None:
    """Append a section (its lines) to RESULTS.md, starting the file if there is none."""
    if not path.exists():
        path.write_text(RESULTS_HEADER)
    with path.open("a") as out:
        out.write("\n".join(lines) + "\n")


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_sample(pid: int | None) -> dict[str, float] | None:
    """CPU seconds (user+system, all threads) and RSS MiB of a live process, from /proc."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        rss_kb = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
        return {"cpu_s": (int(stat[11]) + int(stat[12])) / _TICK, "rss_mib": rss_kb / 1024}
    except (OSError, IndexError, ValueError):
        return None


class CpuSampler:
    """CPU of named processes over a measured phase: totals between ``start()`` and ``stop()``,
    and samples every ``interval`` seconds (a helper thread) for the peaks."""

    def __init__(self, pids: dict[str, int | None], interval: float = 0.5) -> None:
        self.pids = pids
        self.interval = interval
        self.marks: dict[str, dict[str, Any]] = {}
        self.series: list[dict[str, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _snap(self) -> dict[str, Any]:
        return {"t": perf_counter(), **{n: proc_sample(pid) for n, pid in self.pids.items()}}

    def _sample(self) -> None:
        prev = self._snap()
        while not self._stop.wait(self.interval):
            cur = self._snap()
            dt = cur["t"] - prev["t"]
            self.series.append({n: round((cur[n]["cpu_s"] - prev[n]["cpu_s"]) / dt * 100)
                                for n in self.pids if cur.get(n) and prev.get(n)})
            prev = cur

    def start(self) -> None:
        self.marks["start"] = self._snap()
        self._thread.start()

    def stop(self) -> None:
        self.marks["end"] = self._snap()
        self._stop.set()

    def wall_s(self) -> float:
        return self.marks["end"]["t"] - self.marks["start"]["t"]

    def usage(self) -> dict[str, dict[str, Any]]:
        """Per process: CPU s, mean and peak % of one core, RSS MiB at the end."""
        wall = self.wall_s()
        cpu = {}
        for name in self.pids:
            a, b = self.marks["start"].get(name), self.marks["end"].get(name)
            if a and b:
                used = b["cpu_s"] - a["cpu_s"]
                peak = max((x.get(name, 0) for x in self.series), default=0)
                cpu[name] = {"cpu_s": used, "pct_core": used / wall * 100, "peak_pct_core": peak,
                             "rss_mib": b["rss_mib"]}
        return cpu


PRODUCT_DIRS = ("chat", "gateway", "streams", "projections", "infra", "schemas")


def append_section(title: str, command: str, lines: list[str], path: Path) -> None:
    """Append a measured section to ``path``: its title with the UTC time, the machine, the
    command and the code version, then ``lines``."""
    append_results([f"\n## {title} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})\n", machine_line(),
                    f"Command: `{command}`. Code: {code_version()}.", ""] + lines, path)


def code_version() -> str:
    """HEAD, the modified files (read-only git), and a hash of the product sources as they are."""
    import hashlib
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = [l[3:] for l in git("status", "--porcelain", "--untracked-files=no").splitlines()
             if l[3:].split("/")[0] in PRODUCT_DIRS]
    h = hashlib.sha256()
    for d in PRODUCT_DIRS:
        for f in sorted((ROOT / d).rglob("*")):
            if f.is_file() and f.suffix in (".py", ".avsc") and "node_modules" not in f.parts:
                h.update(str(f.relative_to(ROOT)).encode())
                h.update(f.read_bytes())
    mod = f" + uncommitted changes to {', '.join(dirty)}" if dirty else ""
    return f"HEAD {head}{mod}; product sources sha256 {h.hexdigest()[:12]}"


# ---------------------------------------------------------------------------- start-up

def start_and_time_health(system: System, poll_s: float = 0.02, timeout: float = 90.0,
                          **gateway_env: str) -> dict[str, float]:
    """Start the worker and the gateway, and time /healthz answering 200.

    ``System.start_gateway`` blocks until healthy with a 0.2 s poll; a helper thread polls
    every ``poll_s`` for a finer reading. The processes are started from this (main) thread:
    they get PR_SET_PDEATHSIG, which fires when the *thread* that forked them exits.
    """
    t0 = perf_counter()
    system.start_worker()
    healthy: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set() and perf_counter() - t0 < timeout:
            if system.gateways:
                try:
                    with urllib.request.urlopen(f"{system.url()}/healthz", timeout=2) as r:
                        if r.status == 200:
                            healthy.append(perf_counter())
                            return
                except OSError:
                    pass
            time.sleep(poll_s)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        system.start_gateway(**gateway_env)
    finally:
        poller.join(5)
        stop.set()
    done = perf_counter()
    return {"t0": t0, "healthz_s": (healthy[0] if healthy else done) - t0}


async def first_round_trip(url: str, t0: float, timeout: float = 90.0) -> dict[str, float]:
    """Sign in two users, connect a device each, create a group, send one message: seconds
    from ``t0`` (the worker+gateway start) to each step; the last is the full round trip."""
    marks: dict[str, float] = {}
    tag = f"rt{int(time.time())}"
    async with aiohttp.ClientSession() as session:
        async def token(user: str) -> str:
            async with session.post(f"{url}/v1/dev/token", json={"user_id": user}) as r:
                assert r.status == 200, await r.text()
                return (await r.json())["token"]

        async with asyncio.timeout(timeout):
            ta, tb = await asyncio.gather(token(f"{tag}-a"), token(f"{tag}-b"))
            ws_url = url.replace("http", "ws", 1)
            wa = await session.ws_connect(f"{ws_url}/v1/ws?device_id=d0", headers={"Authorization": f"Bearer {ta}"})
            wb = await session.ws_connect(f"{ws_url}/v1/ws?device_id=d0", headers={"Authorization": f"Bearer {tb}"})
            marks["connected_s"] = perf_counter() - t0
            while True:  # the worker may not have its partitions yet: the gateway answers 503
                async with session.post(f"{url}/v1/conversations", headers={"Authorization": f"Bearer {ta}"},
                                        json={"type": "group", "name": "rt", "members": [f"{tag}-b"]}) as r:
                    if r.status == 201:
                        cid = (await r.json())["conversation_id"]
                        break
                    marks["group_503s"] = marks.get("group_503s", 0) + 1
                await asyncio.sleep(0.2)
            marks["group_created_s"] = perf_counter() - t0
            await wa.send_str(orjson.dumps({"type": "send", "conversation_id": cid, "client_msg_id": "rt1",
                                            "body": "first"}).decode())

            async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> None:
                async for m in ws:
                    f = orjson.loads(m.data)
                    if f.get("type") == kind and (kind != "message" or f["message"]["client_msg_id"] == "rt1"):
                        return
                    if f.get("type") == "error":
                        raise RuntimeError(f"first round trip: {f}")
                raise RuntimeError(f"first round trip: socket closed waiting for {kind}")

            async def ack() -> None:
                await until(wa, "ack")
                marks["first_ack_s"] = perf_counter() - t0

            async def delivered() -> None:
                await until(wb, "message")
                marks["first_delivery_s"] = perf_counter() - t0

            await asyncio.gather(ack(), delivered())
            marks["round_trip_s"] = max(marks["first_ack_s"], marks["first_delivery_s"])
            await wa.close()
            await wb.close()
    return marks


def scrape_metrics(url: str) -> dict[str, float]:
    """A few of the gateway's own Prometheus figures."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        for name in ("chat_send_to_ack_seconds_sum", "chat_send_to_ack_seconds_count", "chat_deliveries_total",
                     "chat_connections_open"):
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
        if line.startswith("chat_errors_total{"):
            out[line.split()[0]] = float(line.split()[1])
        m = re.match(r'chat_send_to_ack_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            out[f"ack_le_{m.group(1)}"] = float(m.group(2))
    return out


IGNORED_LOG_LINES = re.compile(r"Memory overcommit must be enabled|InsecureKeyLengthWarning")


def log_findings(base: Path) -> dict[str, Any]:
    """Per log file: WARNING/ERROR lines and the exceptions of tracebacks, counted by kind."""
    found: dict[str, Any] = {}
    for log in sorted(base.rglob("*.log")):
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            continue
        kinds: dict[str, int] = {}
        samples: list[str] = []
        for line in lines:
            if IGNORED_LOG_LINES.search(line):
                continue
            exc = re.match(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt))\b:?(.*)$", line)
            if exc:
                key = f"{exc.group(1)} (traceback)"
            elif re.search(r"\b(WARNING|ERROR|CRITICAL|WARN)\b", line):
                key = re.sub(r"\d+", "#", re.sub(r"^.*?\b(WARNING|ERROR|CRITICAL|WARN)\b", r"\1", line))[:100]
            else:
                continue
            kinds[key] = kinds.get(key, 0) + 1
            if len(samples) < 3:
                samples.append(line[:300])
        if kinds:
            found[log.name] = {"lines": sum(kinds.values()),
                               "kinds": sorted(kinds.items(), key=lambda kv: -kv[1])[:6], "samples": samples}
    return found


@dataclass
class Running:
    """A started local system (``local_system``): its directory, stack, system and start-up times."""
    base: Path
    stack: LocalStack
    system: System
    startup: dict[str, float]
    logs: dict[str, Any] = field(default_factory=dict)  # log_findings(), filled in once it is stopped

    def pids(self) -> dict[str, int | None]:
        workers = {("worker" if i == 0 else f"worker{i + 1}"): w.pid for i, w in enumerate(self.system.workers)}
        gateways = {("gateway" if i == 0 else f"gateway{i + 1}"): g.pid for i, g in enumerate(self.system.gateways)}
        return {**workers, **gateways,
                "kafka": self.stack.kafka.pid if self.stack.kafka else None,
                "redis": self.stack.redis.pid if self.stack.redis else None}

    def died(self) -> list[str]:
        return [s.name for s in self.system.workers + self.system.gateways + self.stack.services if not s.running]


@contextlib.contextmanager
def local_system(partitions: int = 4, env: dict[str, str] | None = None, keep: bool = False,
                 workers: int = 1, gateways: int = 1) -> Iterator[Running]:
    """A memory ``LocalStack`` and a ``System`` (``workers`` stream workers, ``gateways``
    gateway processes sharing one port with SO_REUSEPORT) in a temporary directory, up to the
    first full message round trip (and, with more workers, until they share the partitions);
    always stopped on leaving (error and Ctrl-C too). The directory (logs) is removed after a
    clean exit unless ``keep``."""
    base = Path(tempfile.mkdtemp(prefix="chat-bench-"))
    print(f"working directory: {base}", file=sys.stderr)
    ok = False
    stack = LocalStack(base / "stack", topics={})
    system: System | None = None
    running: Running | None = None
    try:
        t = perf_counter()
        stack.start()
        stack_s = perf_counter() - t
        system = System(stack, base / "system", partitions=partitions, **(env or {}))
        startup = start_and_time_health(system, **({"CHAT_REUSE_PORT": "true"} if gateways > 1 else {}))
        for _ in range(gateways - 1):
            system.start_gateway(port=system.gateways[0].port_number)  # type: ignore[attr-defined]
        t0 = startup.pop("t0")
        startup.update(asyncio.run(first_round_trip(system.url(), t0)))
        if workers > 1:
            for _ in range(workers - 1):
                system.start_worker()
            wait_workers(system, workers, timeout=120)
            startup["workers_settled_s"] = perf_counter() - t0
        startup["stack_start_s"] = stack_s
        print("start-up: " + ", ".join(f"{k} {v:.2f}" for k, v in startup.items()), file=sys.stderr)
        running = Running(base, stack, system, startup)
        yield running
        ok = True
    finally:
        try:
            if system is not None:
                system.stop()
        finally:
            stack.stop()
        if running is not None:
            running.logs = log_findings(base)
        if ok and not keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept {base} (logs under logs/ and system/logs/)", file=sys.stderr)


# ---------------------------------------------------------------------------- report

def cpu_lines(cpu: dict[str, dict[str, Any]], wall: float, cores: int | None) -> list[str]:
    """A markdown table of ``CpuSampler.usage()`` (plus any other rows of the same shape)."""
    lines = [f"CPU during the measured phase ({wall:.1f} s wall, "
             f"{cores} cores = {wall * (cores or 1):.1f} core-seconds available):", "",
             "| process | CPU s | mean % of one core | peak % (0.5 s samples) | RSS MiB after |",
             "|---|---|---|---|---|"]
    for name, v in cpu.items():
        peak = "–" if v.get("peak_pct_core") is None else f"{v['peak_pct_core']:.0f}"
        rss = "–" if v.get("rss_mib") is None else f"{v['rss_mib']:.0f}"
        lines.append(f"| {name} | {v['cpu_s']:.2f} | {v['pct_core']:.0f} | {peak} | {rss} |")
    return lines


def timeline_lines(tl: list[dict[str, Any]]) -> list[str]:
    """A markdown table of a run's ``timeline`` (loadgen results)."""
    lines = ["Over the send window (by send time): messages sent, acks arriving, send→ack of what was sent:", "",
             "| t (s) | sent | acks arriving | ack p50 ms | ack max ms |", "|---|---|---|---|---|"]
    for row in tl:
        lines.append(f"| {row['t_s']:.2f} | {row['sent']} | {row['acks_arriving']} | "
                     f"{loadgen._f(row['ack_p50_ms'])} | {loadgen._f(row['ack_max_ms'])} |")
    return lines


def section(r: dict[str, Any]) -> str:
    m = r["machine"]
    s = r["startup"]
    lines = [
        f"### {r['date']}: {r['config']['messages']} messages at {r['config']['rate']:g} msg/s", "",
        f"- command: `{r['command']}`",
        f"- machine: {m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}",
        f"- system: Apache Kafka (one KRaft node) + Redis, 1 stream worker, 1 gateway, {r['partitions']} partitions; "
        f"load generator in the same machine (uvloop: {r['uvloop']})"
        + (f"; extra environment: `{' '.join(f'{k}={v}' for k, v in r['env'].items())}`" if r.get("env") else ""),
        f"- code: {r['code']}",
        f"- start-up (from starting the worker and gateway processes): `/healthz` 200 after "
        f"{s['healthz_s']:.2f} s; first message round trip (sign in, connect, create group, send, ack and "
        f"delivery) complete after {s['round_trip_s']:.2f} s (group created at {s['group_created_s']:.2f} s, "
        f"ack at {s['first_ack_s']:.2f} s, delivery at {s['first_delivery_s']:.2f} s)",
        f"- setup of the load: {', '.join(f'{k} {v:.2f}' for k, v in r['setup'].items())}; warm-up: "
        f"{r['warmup']['acked']}/{r['warmup']['messages']} acked, ack p50 {loadgen._f(r['warmup']['ack_ms']['p50'])} ms",
        "",
    ]
    extra = []
    srv = r.get("server_metrics", {})
    if srv.get("chat_send_to_ack_seconds_count"):
        mean = srv["chat_send_to_ack_seconds_sum"] / srv["chat_send_to_ack_seconds_count"] * 1000
        extra.append(("gateway's own send→ack mean (ms, whole run)", f"{mean:.1f}"))
    lines += ["| | |", "|---|---|"]
    for k, v in loadgen.summary_rows(r) + extra:
        lines.append(f"| {k} | {v} |")
    cpu = r.get("process_cpu", {})
    if cpu:
        lines += [""] + cpu_lines(cpu, r["measured_wall_s"], m["cores"])
    tl = r.get("timeline", [])
    if tl:
        lines += [""] + timeline_lines(tl)
    tr = r.get("trace", {})
    if tr.get("stages_ms"):
        lines += ["", f"Where send→ack goes (records' CreateTime vs client clock; {tr['matched']} of {tr['of']} "
                      "messages matched in the commands, events and delivery topics):", ""]
        lines += trace_topics.markdown_rows(tr)
    elif tr:
        lines += ["", f"Topic trace failed: {tr}"]
    notes = r.get("notes", [])
    if notes:
        lines += ["", "Observed:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def notes_for(r: dict[str, Any]) -> list[str]:
    notes = []
    d = r["deliveries"]
    if r["unanswered"]:
        notes.append(f"{r['unanswered']} sent messages got neither an ack nor an error within the drain timeout")
    if r["rejected"]:
        notes.append(f"{r['rejected']} messages rejected: {r['errors']}")
    if d["lost"]:
        notes.append(f"{d['lost']} deliveries missing after the drain timeout, over {d['messages_with_losses']} "
                     f"messages; samples: {r['lost_samples'][:2]}")
    if d["duplicates"]:
        notes.append(f"{d['duplicates']} duplicate message frames (same device, conversation and seq)")
    if d["out_of_order"]:
        notes.append(f"{d['out_of_order']} out-of-order message frames over {d['out_of_order_pairs']} "
                     f"(device, conversation) pairs")
    if r["acks"]["duplicates"] or r["acks"]["misrouted"] or r["acks"]["seq_problems"]:
        notes.append(f"acks: {r['acks']}")
    if r["disconnects"]:
        notes.append(f"{len(r['disconnects'])} WebSockets closed during the run: {r['disconnects'][:5]}")
    if r.get("missing_conversation_frames"):
        notes.append(f"{r['missing_conversation_frames']} member devices never got their group's `conversation` frame")
    lag = r["schedule_lag_ms"]
    if lag["p99"] is not None and lag["p99"] > 50:
        notes.append(f"the load generator fell behind its schedule (p99 {lag['p99']:.0f} ms, max {lag['max']:.0f} ms): "
                     f"offered {r['offered_msg_s']} msg/s of {r['config']['rate']:g}")
    ll = r["loop_lag_ms"]
    if ll["p99"] is not None and ll["p99"] > 20:
        notes.append(f"the load generator's own event loop was late by up to {ll['max']:.0f} ms (p99 {ll['p99']:.0f} ms); "
                     "client-side latencies include that")
    for name in r.get("died", []):
        notes.append(f"process {name} exited during the run")
    for log, f in r.get("logs", {}).items():
        kinds = "; ".join(f"{n}× {k}" for k, n in f["kinds"])
        notes.append(f"{log}: {kinds} (e.g. `{f['samples'][0][:160]}`)")
    return notes


# ---------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.run_local", description=__doc__.split("\n\n")[0])
    loadgen.parser(p)  # --url is ignored here: the gateway's address is chosen at start
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    p.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--env", action="append", default=[], metavar="CHAT_X=VALUE",
                   help="extra environment for the worker and gateway (repeatable), e.g. "
                        "CHAT_FETCH_MAX_WAIT_MS=1500")
    args = p.parse_args(argv)
    extra_env = dict(e.split("=", 1) for e in args.env)
    uv = False if args.no_uvloop else loadgen._install_uvloop()
    cfg = loadgen.config_from(args)
    if cfg.rate / cfg.users > 50:
        print(f"note: {cfg.rate / cfg.users:.0f} msg/s per user is above PROTOCOL.md's 50/s sustained limit",
              file=sys.stderr)

    with local_system(args.partitions, extra_env, args.keep) as running:
        system, stack, startup = running.system, running.stack, running.startup
        sampler = CpuSampler(running.pids())
        cfg.url = system.url()
        result = asyncio.run(loadgen.run(cfg, sampler.start, sampler.stop, raw=True))
        result["server_metrics"] = scrape_metrics(system.url())
        try:
            st = system.settings
            with urllib.request.urlopen(f"{system.url()}/healthz", timeout=5) as r:
                gateway_id = orjson.loads(r.read())["gateway_id"]
            result["trace"] = trace_topics.trace(stack.bootstrap, st.commands_topic, st.events_topic,
                                                 [st.delivery_topic(gateway_id)], args.partitions,
                                                 result.pop("_messages"))
        except Exception as exc:  # a diagnostic: never fail the run for it
            result["trace"] = {"error": repr(exc)}
        wall = sampler.wall_s()
        result["measured_wall_s"] = wall
        cpu = sampler.usage()
        cpu["load generator"] = {"cpu_s": result["loadgen_cpu_s"],
                                 "pct_core": result["loadgen_cpu_s"] / wall * 100, "peak_pct_core": None,
                                 "rss_mib": proc_sample(os.getpid())["rss_mib"]}  # type: ignore[index]
        result["process_cpu"] = cpu
        result["cpu_series_pct"] = sampler.series
        result["died"] = running.died()
        result.pop("hooks", None)
    result["logs"] = running.logs

    result["startup"] = {k: round(v, 3) for k, v in startup.items()}
    result["machine"] = machine()
    result["partitions"] = args.partitions
    result["uvloop"] = uv
    result["env"] = extra_env
    result["code"] = code_version()
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    result["command"] = "python -m bench.run_local " + shlex.join(argv)
    result["notes"] = notes_for(result)
    loadgen.print_summary(result)
    for n in result["notes"]:
        print(f"note: {n}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"{stamp}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    if not args.no_results:
        if not args.results.exists():
            args.results.write_text(RESULTS_HEADER)
        with open(args.results, "a") as f:
            f.write("\n" + section(result))
        print(f"appended to {args.results}", file=sys.stderr)
    d = result["deliveries"]
    return 0 if (d["lost"] == 0 and d["duplicates"] == 0 and d["out_of_order"] == 0
                 and result["acked"] == result["sent"]) else 1


if __name__ == "__main__":
    sys.exit(main())
