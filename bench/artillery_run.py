"""Drive the gateway with Artillery (npm, ``engine: ws``), a load tool nobody here wrote.

    python -m bench.artillery_run [--vus 50 --rate 200 --duration 30 --group-size 5 ...]

Installs ``bench/artillery`` (``npm ci``) if it is missing; starts the system as
``bench.run_local`` does (a memory ``LocalStack``, one stream worker, one gateway, and the same
first round trip); signs the users in and creates their groups over HTTP, and hands
``user_id,conversation_id`` rows to Artillery in a CSV payload (one row, so one user, per
virtual user); runs ``bench/artillery/scenario.yml`` with ``--output``; reads every
conversation's history back over HTTP to check that what Artillery counted as sent and acked is
there, once each, with seqs 1..n; stops everything and appends a section to ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.run_local import (BENCH_DIR, CpuSampler, Running, append_results, code_version, cpu_lines, local_system,
                             machine_line)
from tests.client import Client, full_history

ART_DIR = BENCH_DIR / "artillery"
LATENCIES = {"chat.send_to_ack": "send→ack", "chat.send_to_deliver": "send→deliver (other members' devices)",
             "chat.send_to_echo": "send→echo (the sender's own device)", "chat.sign_in": "sign-in (HTTP)"}


# ---------------------------------------------------------------------------- Artillery

def ensure_artillery() -> str:
    """``npm ci`` in bench/artillery if artillery is not installed there; its version."""
    if not (ART_DIR / "node_modules" / ".bin" / "artillery").exists():
        print("installing Artillery: npm ci in bench/artillery", file=sys.stderr)
        subprocess.run(["npm", "ci"], cwd=ART_DIR, check=True,
                       env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
    return json.loads((ART_DIR / "node_modules" / "artillery" / "package.json").read_text())["version"]


def artillery_command(target: str, report: Path, csv: Path, vus: int, ramp_s: float, messages: int,
                      think_ms: float, body_bytes: int, ack_timeout_s: float) -> list[str]:
    overrides = {"config": {
        "phases": [{"name": "arrive", "duration": ramp_s, "arrivalCount": vus}],
        "payload": [{"path": str(csv), "fields": ["user_id", "conversation_id"], "order": "sequence",
                     "skipHeader": True, "cast": False}],  # a list: Artillery's overrides replace lists whole
        "variables": {"messages": messages, "think": f"{think_ms:g}ms", "body_bytes": body_bytes,
                      "ack_timeout_ms": int(ack_timeout_s * 1000)}}}
    return [str(ART_DIR / "node_modules" / ".bin" / "artillery"), "run", "--target", target,
            "--output", str(report), "--overrides", json.dumps(overrides), "scenario.yml"]


def _summary(s: dict[str, Any] | None) -> dict[str, float] | None:
    if not s or not s.get("count"):
        return None
    return {k: s[k] for k in ("count", "min", "mean", "p50", "p95", "p99", "max") if k in s}


def parse_report(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of an Artillery ``--output`` JSON report (its ``aggregate``)."""
    agg = report["aggregate"]
    c: dict[str, int] = agg.get("counters", {})
    return {
        "vusers": {k: c.get(f"vusers.{k}", 0) for k in ("created", "completed", "failed")},
        "ws_frames_sent": c.get("websocket.messages_sent", 0),
        "sends": c.get("chat.sends", 0),
        "acks": c.get("chat.acks", 0),
        "rejected": c.get("chat.rejected", 0),
        "unacked": c.get("chat.unacked", 0),
        "deliveries": c.get("chat.deliveries", 0),
        "echoes": c.get("chat.echoes", 0),
        "replayed": c.get("chat.replayed", 0),
        "closed_early": c.get("chat.closed_early", 0),
        "errors": {k: v for k, v in sorted(c.items()) if k.startswith(("errors.", "chat.errors."))},
        "frames": {k[len("chat.frames."):]: v for k, v in sorted(c.items()) if k.startswith("chat.frames.")},
        "latency_ms": {k: _summary(agg.get("summaries", {}).get(k)) for k in LATENCIES},
        "send_rate": agg.get("rates", {}).get("websocket.send_rate"),
        "periods": [{"start_ms": int(p["period"]),
                     "end": time.strftime("%H:%M:%S", time.gmtime(int(p["period"]) / 1000 + 10)),
                     "sends": p.get("counters", {}).get("chat.sends", 0),
                     "acks": p.get("counters", {}).get("chat.acks", 0),
                     "ack_ms": _summary(p.get("summaries", {}).get("chat.send_to_ack"))}
                    for p in report.get("intermediate", [])],
        "wall_s": (int(agg["lastMetricAt"]) - int(agg["firstMetricAt"])) / 1000
        if agg.get("firstMetricAt") and agg.get("lastMetricAt") else None,
    }


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat), to tell other load apart."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- our side

async def prepare(url: str, run_id: str, vus: int, group_size: int) -> dict[str, list[tuple[str, str]]]:
    """Sign ``vus`` users in and put them in groups of ``group_size`` (a remainder of one joins
    the last group); wait until every member can read its group. conversation -> [(user, token)]."""
    async with aiohttp.ClientSession() as session:
        users = await asyncio.gather(*(Client.sign_in(session, url, f"{run_id}-u{i}") for i in range(vus)))
        chunks = [users[i:i + group_size] for i in range(0, vus, group_size)]
        if len(chunks) > 1 and len(chunks[-1]) < 2:
            chunks[-2] += chunks.pop()
        groups: dict[str, list[tuple[str, str]]] = {}
        for n, chunk in enumerate(chunks):
            conv = await chunk[0].create_group(f"{run_id}-g{n}", [u.user_id for u in chunk[1:]], "artillery")
            groups[conv["conversation_id"]] = [(u.user_id, u.token) for u in chunk]
        deadline = time.monotonic() + 30
        for cid, members in groups.items():
            for user, token in members:
                while (await Client(session, url, user, token).call("GET", f"/v1/conversations/{cid}"))[0] != 200:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{user} cannot read {cid} 30 s after it was created")
                    await asyncio.sleep(0.1)
    return groups


def check_history(histories: dict[str, list[dict[str, Any]]], run_id: str) -> dict[str, Any]:
    """What the server holds: messages, seqs 1..n per conversation, each client_msg_id once."""
    total = sum(len(h) for h in histories.values())
    gaps = [cid for cid, h in histories.items() if [m["seq"] for m in h] != list(range(1, len(h) + 1))]
    keys = [(m["sender_id"], m["client_msg_id"]) for h in histories.values() for m in h]
    sent_at = sorted(m["sent_at"] for h in histories.values() for m in h)
    span_s = (sent_at[-1] - sent_at[0]) / 1000 if len(sent_at) > 1 else 0.0
    return {"messages": total, "conversations": len(histories), "seq_problems": gaps, "sent_at": sent_at,
            "accepted_span_s": span_s, "accepted_per_s": (total - 1) / span_s if span_s else None,
            "duplicate_client_msg_ids": len(keys) - len(set(keys)),
            "foreign": sum(1 for s, _ in keys if not s.startswith(f"{run_id}-"))}


async def read_back(url: str, groups: dict[str, list[tuple[str, str]]], run_id: str, expect: int,
                    timeout_s: float = 15.0) -> dict[str, Any]:
    """Every group's full history (``GET …/messages``), again until it holds ``expect`` messages
    (the acked ones; the history projection may trail the acks) or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while True:
            histories = {}
            for cid, members in groups.items():
                user, token = members[0]
                histories[cid] = await full_history(Client(session, url, user, token), cid)
            found = check_history(histories, run_id)
            if found["messages"] >= expect or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.5)


# ---------------------------------------------------------------------------- report

def _ms(s: dict[str, float] | None) -> str:
    if not s:
        return "–"
    return (f"{s['p50']:.1f} / {s['p95']:.1f} / {s['p99']:.1f} / {s['max']:.1f} "
            f"(n={s['count']:,}, mean {s['mean']:.1f})")


def section(r: dict[str, Any]) -> list[str]:
    a, h, cfg = r["artillery"], r["history"], r["config"]
    sends = a["sends"]
    all_there = h["messages"] == a["acks"] == sends and not h["seq_problems"] and not h["duplicate_client_msg_ids"]
    load = r["loadavg"]
    lines = [
        f"\n## Artillery (independent load tool), {r['date']}\n",
        machine_line(),
        f"Load average (1 min) {load['before']:.2f} before the run, {load['after']:.2f} after"
        + ("; other work was running on the machine, so the figures may be disturbed by it."
           if load["before"] > 0.7 else "; the machine was otherwise quiet."),
        f"Command: `{r['command']}`",
        f"Artillery {r['version']} (npm; Node {r['node']}), `engine: ws`, `bench/artillery/scenario.yml`: "
        f"{cfg['vus']} virtual users arriving over {cfg['ramp_s']:g} s, each one user of a group "
        f"({r['groups']} groups of {cfg['group_size']}; all members are VUs), signing in over HTTP, connecting "
        f"with `?device_id=&token=`, sending `sync`, then {cfg['messages']} `send` frames one every "
        f"{cfg['think_ms']:g} ms (offered {cfg['vus'] * 1000 / cfg['think_ms']:.0f} msg/s once all have arrived), "
        f"{cfg['body_bytes']}-byte bodies, not waiting for acks. System: Apache Kafka (one KRaft node) + Redis, 1 stream worker, "
        f"1 gateway, {cfg['partitions']} partitions, Artillery on the same machine. Code: {r['code']}.",
        "",
        "| | |", "|---|---|",
        f"| VUs created / completed / failed | {a['vusers']['created']} / {a['vusers']['completed']} / "
        f"{a['vusers']['failed']} |",
        f"| `send` frames / all frames Artillery sent (`websocket.messages_sent`, with one `sync` per VU) | "
        f"{sends:,} / {a['ws_frames_sent']:,} |",
        f"| acked / rejected by an error frame / no answer within {cfg['ack_timeout_s']:g} s | "
        f"{a['acks']:,} / {a['rejected']:,} / {a['unacked']:,} |",
        f"| errors (Artillery's and error frames) | {', '.join(f'{k} {v}' for k, v in a['errors'].items()) or 'none'} |",
    ]
    if h["accepted_per_s"]:
        lines.append(f"| accepted msg/s (the messages' `sent_at`, first to last) / Artillery's "
                     f"`websocket.send_rate` (mean of its periods) | {h['accepted_per_s']:.0f} over "
                     f"{h['accepted_span_s']:.1f} s / {a['send_rate']} |")
    for key, label in LATENCIES.items():
        lines.append(f"| {label}, ms p50 / p95 / p99 / max | {_ms(a['latency_ms'].get(key))} |")
    lines += [
        f"| live deliveries to other members' devices / echoes to the sender / replayed by `sync` | "
        f"{a['deliveries']:,} / {a['echoes']:,} / {a['replayed']:,} |",
        f"| checked from our side (`GET /v1/conversations/{{id}}/messages`, every group) | {h['messages']:,} messages "
        f"in {h['conversations']} conversations; seqs 1..n without gap: "
        f"{'yes' if not h['seq_problems'] else 'no, in ' + str(len(h['seq_problems']))}; client_msg_id twice: "
        f"{h['duplicate_client_msg_ids']}; from senders not in this run: {h['foreign']}; "
        f"{'equal to' if all_there else 'NOT equal to'} the sends and acks "
        f"Artillery counted |",
    ]
    if a["periods"]:
        lines += ["", "Artillery's 10 s periods (UTC end, partial at the edges), with the messages the server "
                      "accepted in each (their `sent_at`, read back):", "",
                  "| period to | sends | accepted | acks | send→ack ms p50 / p95 / p99 / max |", "|---|---|---|---|---|"]
        for p in a["periods"]:
            accepted = (bisect.bisect_left(h["sent_at"], p["start_ms"] + 10_000)
                        - bisect.bisect_left(h["sent_at"], p["start_ms"]))
            lines.append(f"| {p['end']} | {p['sends']:,} | {accepted:,} | {p['acks']:,} | "
                         f"{_ms(p['ack_ms']).split(' (')[0]} |")
    cpu = r.get("cpu", {})
    if cpu:
        lines += ["", "The measured phase below is the Artillery process's whole life, its start-up and its "
                      "last report included, so the means understate the load while the sends came in; the "
                      "peaks do not.", ""]
        lines += cpu_lines(cpu, r["artillery_wall_s"], os.cpu_count())
    notes = [f"{log}: " + "; ".join(f"{n}× {k}" for k, n in f["kinds"]) for log, f in r.get("logs", {}).items()]
    notes[:0] = [f"process {name} exited during the run" for name in r.get("died", [])]
    if a["closed_early"]:
        notes.insert(0, f"{a['closed_early']} sockets closed by the server before their VU was done")
    if notes:
        lines += ["", "Observed:", ""] + [f"- {n}" for n in notes]
    return lines


def print_summary(r: dict[str, Any]) -> None:
    a = r["artillery"]
    print(f"VUs {a['vusers']}; sends {a['sends']}, acks {a['acks']}, rejected {a['rejected']}, "
          f"unacked {a['unacked']}; errors {a['errors'] or 'none'}")
    for key, label in LATENCIES.items():
        print(f"{label}: {_ms(a['latency_ms'].get(key))}")
    print(f"history: { {k: v for k, v in r['history'].items() if k != 'sent_at'} }")


# ---------------------------------------------------------------------------- main

def run_artillery(cmd: list[str], running: Running, timeout_s: float) -> tuple[dict[str, Any], float, int]:
    """Run Artillery (output to artillery.log in the run's directory), sampling the CPU of the
    system's processes, of Artillery's node process and of the whole machine meanwhile."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = machine_busy_s()
    with open(running.base / "artillery.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=ART_DIR, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "ARTILLERY_DISABLE_TELEMETRY": "true", "NO_COLOR": "1"})
        sampler = CpuSampler({**running.pids(), "artillery (node)": proc.pid})
        sampler.start()
        try:
            rc = proc.wait(timeout_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sampler.stop()
    wall = sampler.wall_s()
    cpu = sampler.usage()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    node_s = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime  # it has exited: from rusage
    cpu["artillery (node)"] = {"cpu_s": node_s, "pct_core": node_s / wall * 100, "rss_mib": None,
                               "peak_pct_core": max((x.get("artillery (node)", 0) for x in sampler.series), default=0)}
    other = machine_busy_s() - busy - sum(v["cpu_s"] for v in cpu.values())
    cpu["everything else on the machine (other people's runs; /proc/stat)"] = {
        "cpu_s": other, "pct_core": other / wall * 100, "peak_pct_core": None, "rss_mib": None}
    return cpu, wall, rc


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.artillery_run", description=__doc__.split("\n\n")[0])
    p.add_argument("--vus", type=int, default=50, help="virtual users, one user each")
    p.add_argument("--rate", type=float, default=200.0, help="msg/s over all VUs once all have arrived")
    p.add_argument("--duration", type=float, default=30.0, help="seconds each VU sends for")
    p.add_argument("--ramp", type=float, default=5.0, help="seconds over which the VUs arrive")
    p.add_argument("--group-size", type=int, default=5)
    p.add_argument("--body-bytes", type=int, default=64)
    p.add_argument("--ack-timeout", type=float, default=15.0, help="seconds a VU waits for its last acks")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    p.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, CSV, report)")
    args = p.parse_args(argv)
    if args.vus < 2 or args.group_size < 2:
        p.error("--vus and --group-size must be at least 2")
    think_ms = args.vus / args.rate * 1000
    messages = max(1, round(args.duration * args.rate / args.vus))
    if args.rate / args.vus > 50:
        print(f"note: {args.rate / args.vus:.0f} msg/s per user is above PROTOCOL.md's 50/s sustained limit",
              file=sys.stderr)
    version = ensure_artillery()
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()

    run_id = f"art{int(time.time()) % 100000}"
    loadavg_before = os.getloadavg()[0]
    r: dict[str, Any] = {}
    with local_system(args.partitions, keep=args.keep) as running:
        url = running.system.url()
        groups = asyncio.run(prepare(url, run_id, args.vus, args.group_size))
        csv = running.base / "users.csv"
        csv.write_text("user_id,conversation_id\n" + "".join(
            f"{user},{cid}\n" for cid, members in groups.items() for user, _ in members))
        report = running.base / "report.json"
        cmd = artillery_command(url.replace("http", "ws", 1), report, csv, args.vus, args.ramp, messages,
                                think_ms, args.body_bytes, args.ack_timeout)
        r["cpu"], r["artillery_wall_s"], rc = run_artillery(cmd, running, args.ramp + args.duration * 3
                                                            + args.ack_timeout + 120)
        if rc != 0 or not report.exists():
            raise RuntimeError(f"artillery exited {rc}:\n{(running.base / 'artillery.log').read_text()[-3000:]}")
        r["artillery"] = parse_report(json.loads(report.read_text()))
        r["history"] = asyncio.run(read_back(url, groups, run_id, r["artillery"]["acks"]))
        r["groups"] = len(groups)
        r["died"] = running.died()
    r["logs"] = running.logs

    r.update(version=version, node=node, code=code_version(), date=time.strftime("%Y-%m-%d %H:%M %z"),
             command=".venv/bin/python -m bench.artillery_run " + shlex.join(argv),
             loadavg={"before": loadavg_before, "after": os.getloadavg()[0]},
             config={"vus": args.vus, "ramp_s": args.ramp, "group_size": args.group_size, "messages": messages,
                     "think_ms": think_ms, "body_bytes": args.body_bytes, "ack_timeout_s": args.ack_timeout,
                     "partitions": args.partitions})
    print_summary(r)
    if not args.no_results:
        append_results(section(r), args.results)
        print(f"appended to {args.results}", file=sys.stderr)
    a, h = r["artillery"], r["history"]
    return 0 if (a["vusers"]["failed"] == 0 and a["acks"] == a["sends"] == h["messages"]
                 and not h["seq_problems"] and not h["duplicate_client_msg_ids"]) else 1


if __name__ == "__main__":
    sys.exit(main())
