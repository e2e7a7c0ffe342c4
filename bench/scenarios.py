"""The benchmark scenarios, each on a fresh local system: ``python -m bench.scenarios a|b|d|all``.

a. 1,000 users x 1 device in groups of 10, 1,000 msg/s in total for ``--duration`` seconds:
   accepted msg/s, send->ack and send->deliver p50/p95/p99/max, lost/duplicated/out of order.
b. the same users, a sweep of offered rates (``--rates``, ``--step-duration`` each) on one
   running system and one set of connections, until p99 send->deliver passes twice the
   threshold or the system accepts less than 90% of what is offered: per step offered,
   accepted, p50/p95/p99; the highest rate sustained with p99 <= ``--threshold-ms``; a plot
   (``latency_vs_load.png`` beside the results file).
d. one group of ``--members`` (1 device each, all connected), one sender at each of
   ``--fanout-rates`` msg/s for ``--fanout-duration`` seconds: send->deliver over every member,
   and send->the last member per message; deliveries expected vs received. Past 1,000 members
   the group is built before its members connect (``--group-first``, ``LoadGen.announce``
   says why), with the server's group size cap raised to ``--members``
   (``CHAT_MAX_MEMBERS_PER_REQUEST``) and its presence debounce past the set-up
   (``CHAT_PRESENCE_DEBOUNCE_S``); ``--gateways 2`` runs two gateway processes on one port.

(c, idle connections, is ``bench.idle``; e, replay and rebuild, is ``bench.replay_rebuild``.)

Each scenario starts the system as ``bench.run_local`` does (``local_system``: Apache Kafka,
Redis, ``--workers`` stream workers, ``--gateways`` gateways), runs the load in ``--procs`` load generator
processes (``bench.procs``) on the same machine, stops everything (on an error or Ctrl-C too),
appends one section to ``--results`` (default ``bench/RESULTS.md``) and writes the raw results
to ``results/scenario-<name>-<stamp>.json`` beside it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Iterator

import orjson

from bench import loadgen
from bench.procs import MultiLoad
from bench.run_local import (BENCH_DIR, CpuSampler, append_results, code_version, cpu_lines, local_system,
                             machine, machine_line, notes_for, timeline_lines)

_f = loadgen._f


# ---------------------------------------------------------------------------- the scenarios

def _users_config(args: argparse.Namespace) -> loadgen.Config:
    return loadgen.Config(users=args.users, group_size=args.group_size, devices_per_user=1, procs=args.procs,
                          setup_timeout_s=args.setup_timeout, drain_timeout_s=args.drain_timeout,
                          body_bytes=args.body_bytes, shape=args.shape,
                          client="raw" if args.client == "raw" else "aiohttp")


def group_first(args: argparse.Namespace) -> bool:
    """d: build the group before its members connect: ``--group-first``, or past 1,000 members."""
    return args.group_first == "on" or (args.group_first == "auto" and args.members > loadgen.MEMBERS_PER_REQUEST)


def _fanout_config(args: argparse.Namespace) -> loadgen.Config:
    return loadgen.Config(users=args.members, group_size=args.members, groups=1, devices_per_user=1, senders=1,
                          procs=args.procs, setup_timeout_s=args.setup_timeout,
                          drain_timeout_s=args.drain_timeout, body_bytes=args.body_bytes,
                          group_first=group_first(args), client="aiohttp" if args.client == "aiohttp" else "raw")


def fanout_env(args: argparse.Namespace, env: dict[str, str]) -> dict[str, str]:
    """d's server settings, unless ``--env`` gives them: a group of ``--members`` allowed, and
    with ``group_first`` a presence debounce that outlasts the set-up."""
    extra = {"CHAT_MAX_MEMBERS_PER_REQUEST": str(args.members)} if args.members > loadgen.MEMBERS_PER_REQUEST else {}
    if group_first(args):
        extra["CHAT_PRESENCE_DEBOUNCE_S"] = "3600"
    return {**extra, **env}


def _senders(cfg: loadgen.Config) -> str:
    if cfg.senders:
        return "the first member of each group"
    return "every user, at random" if cfg.shape == "random" else "round robin over groups and members"


def _steps_a(args: argparse.Namespace) -> Iterator[tuple[str, float, int]]:
    yield "a", args.rate, max(1, round(args.rate * args.duration))


def _steps_b(args: argparse.Namespace) -> Iterator[tuple[str, float, int]]:
    for i, rate in enumerate(args.rates):
        yield f"b{i}", rate, max(1, round(rate * args.step_duration))


def _steps_d(args: argparse.Namespace) -> Iterator[tuple[str, float, int]]:
    for i, rate in enumerate(args.fanout_rates):
        yield f"d{i}", rate, max(1, round(rate * args.fanout_duration))


def sustained(r: dict[str, Any], threshold_ms: float) -> bool:
    """A step the system kept up with: everything acked and delivered, accepted >= 95% of the
    offered rate, p99 send->deliver within the threshold."""
    d = r["deliveries"]
    p99 = r["deliver_ms"]["p99"]
    return (p99 is not None and p99 <= threshold_ms and d["lost"] == 0 and r["acked"] == r["sent"]
            and (r["throughput_msg_s"] or 0) >= 0.95 * r["offered_msg_s"])


def _stop_b(steps: list[dict[str, Any]], args: argparse.Namespace) -> str | None:
    """Past the threshold clearly: saturated (accepted < 90% of offered), or p99 over twice the
    threshold in two steps running (one more point for the plot after the first)."""
    r = steps[-1]
    if (r["throughput_msg_s"] or 0) < 0.9 * r["offered_msg_s"]:
        return f"accepted {_f(r['throughput_msg_s'])} msg/s is under 90% of the {_f(r['offered_msg_s'])} offered"
    if args.full_sweep:
        return None
    over = [x["deliver_ms"]["p99"] is None or x["deliver_ms"]["p99"] > 2 * args.threshold_ms for x in steps[-2:]]
    if len(over) == 2 and all(over):
        return (f"p99 send→deliver was over twice the {args.threshold_ms:g} ms threshold in two steps running "
                f"({_f(steps[-2]['deliver_ms']['p99'])} and {_f(r['deliver_ms']['p99'])} ms)")
    return None


SCENARIOS: dict[str, dict[str, Any]] = {
    "a": {"title": lambda a: f"{a.users:,} users in groups of {a.group_size} at {a.rate:,g} msg/s",
          "config": _users_config, "steps": _steps_a},
    "b": {"title": lambda a: f"the highest rate with p99 send→deliver ≤ {a.threshold_ms:g} ms, "
                             f"{a.users:,} users in groups of {a.group_size}",
          "config": _users_config, "steps": _steps_b, "stop": _stop_b},
    "d": {"title": lambda a: f"fan-out to one group of {a.members:,} members",
          "config": _fanout_config, "steps": _steps_d},
}


def run_scenario(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Start the system, set up the load, run the steps, stop everything; the raw results."""
    spec = SCENARIOS[name]
    cfg = spec["config"](args)
    env = dict(e.split("=", 1) for e in args.env)
    if name == "d":
        env = fanout_env(args, env)
    out: dict[str, Any] = {"scenario": name, "title": spec["title"](args), "steps": [], "stopped_because": None,
                           "load_average_before": os.getloadavg(), "env": env, "procs": cfg.procs,
                           "shape": _senders(cfg),
                           "partitions": args.partitions, "workers": args.workers, "gateways": args.gateways,
                           "group_first": cfg.group_first, "client": cfg.client}
    with local_system(args.partitions, env, args.keep, workers=args.workers, gateways=args.gateways) as running:
        cfg.url = running.system.url()
        with MultiLoad(cfg, uvloop=not args.no_uvloop) as load:
            load.setup()
            out["setup"] = {k: round(v, 3) for k, v in load.gen.timings.items()}
            out["warmup"] = load.warmup
            out["missing_conversation_frames"] = load.gen.missing_conversation_frames  # type: ignore[attr-defined]
            out["warm"] = warm_up(load, args, name)
            time.sleep(args.settle)
            for phase, rate, count in spec["steps"](args):
                print(f"[{name}] step {phase}: {count} messages at {rate:g} msg/s", file=sys.stderr)
                sampler = CpuSampler(running.pids())
                r = load.step(phase, rate, count, sampler.start, sampler.stop)
                r["measured_wall_s"] = sampler.wall_s()
                r["process_cpu"] = sampler.usage()
                r["target_rate"] = rate
                out["steps"].append(r)
                print(f"[{name}] {_step_line(r)}", file=sys.stderr)
                why = spec.get("stop", lambda *_: None)(out["steps"], args)
                if why:
                    out["stopped_because"] = why
                    break
                time.sleep(args.pause)
        out["died"] = running.died()
        out["startup"] = {k: round(v, 3) for k, v in running.startup.items()}
    out["logs"] = running.logs
    return out


def warm_up(load: MultiLoad, args: argparse.Namespace, scenario: str) -> dict[str, Any] | None:
    """``--warm-s`` seconds of load at ``--warm-rate``, not measured: a fresh broker's JVM spends
    the first thousands of messages compiling (its C2 thread took 7.9 of its 13.8 CPU-s over
    4,500 messages; the same load again cost it 4.8), which a long-running broker has done."""
    seconds = args.warm_s if args.warm_s is not None else (0 if scenario == "d" else 20)
    if seconds <= 0:  # d's one big group: its own steps are the load
        return None
    count = int(seconds * args.warm_rate)
    print(f"warm-up: {count} messages at {args.warm_rate:g} msg/s (not measured)", file=sys.stderr)
    r = load.step("warm", args.warm_rate, count, lambda: None, lambda: None)
    time.sleep(args.pause)
    return {"messages": count, "rate": args.warm_rate, "accepted": r["throughput_msg_s"]}


def _step_line(r: dict[str, Any]) -> str:
    d = r["deliver_ms"]
    return (f"offered {_f(r['offered_msg_s'])} accepted {_f(r['throughput_msg_s'])} msg/s; send→deliver p50/p95/p99/max "
            f"{_f(d['p50'])}/{_f(d['p95'])}/{_f(d['p99'])}/{_f(d['max'])} ms; deliveries "
            f"{r['deliveries']['received']}/{r['deliveries']['expected']}")


# ---------------------------------------------------------------------------- RESULTS.md

def _header(out: dict[str, Any], args: argparse.Namespace, command: str) -> list[str]:
    s, st = out["startup"], out["setup"]
    env = out["env"]
    label = f" ({args.label})" if args.label else ""
    la = ", ".join(f"{x:.2f}" for x in out["load_average_before"])
    return [
        f"\n## Scenario ({out['scenario']}): {out['title']}, {out['date']}{label}\n",
        f"{machine_line()} Load average before the run: {la}.",
        f"Command: `{command}`",
        f"System: Apache Kafka (one KRaft node) + Redis, {out.get('workers', 1)} stream worker"
        f"{'s' if out.get('workers', 1) > 1 else ''}, "
        + (f"{out['gateways']} gateway processes on one port (SO_REUSEPORT)" if out.get("gateways", 1) > 1
           else "1 gateway") + f", {out['partitions']} partitions"
        + (f", environment `{' '.join(f'{k}={v}' for k, v in env.items())}`" if env else "")
        + f"; the load generator runs in {out['procs']} processes on the same machine"
        + (" (WebSocket client: `bench.wsclient`)" if out.get("client") == "raw" else "")
        + (f", senders {out['shape']}" if out.get("shape") else "") + f". Code: {out['code']}.",
        (f"The first step began {args.settle:g} s after the set-up. " if args.settle else "")
        + f"Start-up: `/healthz` 200 after {s['healthz_s']:.2f} s, first message round trip after "
        f"{s['round_trip_s']:.2f} s. Load set-up (s): "
        + ", ".join(f"{k.removesuffix('_s')} {v:.2f}" for k, v in st.items() if k != "drain_s")
        + (f"; devices missing a `conversation` frame: {out['missing_conversation_frames']}." if not out.get("group_first")
           else "; the group was built before its members connected (`--group-first`), so no `conversation` "
                "frame was awaited.")
        + (f" Warm-up before measuring: {out['warm']['messages']} messages at {out['warm']['rate']:g} msg/s"
           " (the broker's JIT), not measured." if out.get("warm") else ""),
        "",
    ]


def _notes(out: dict[str, Any]) -> list[str]:
    """run_local's findings per step; the processes that died and the logs' warnings with the last."""
    notes = []
    for i, r in enumerate(out["steps"]):
        last = i == len(out["steps"]) - 1
        step = f"at {r['target_rate']:g} msg/s: " if len(out["steps"]) > 1 else ""
        notes += [f"{step}{n}" for n in notes_for({**r, "died": out["died"], "logs": out["logs"]} if last else r)]
    return ["", "Observed:", ""] + [f"- {n}" for n in notes] if notes else []


def section_a(out: dict[str, Any], args: argparse.Namespace, command: str) -> list[str]:
    r = out["steps"][0]
    lines = _header(out, args, command) + ["| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in loadgen.summary_rows(r)]
    return (lines + [""] + cpu_lines(_with_loadgen(r), r["measured_wall_s"], os.cpu_count())
            + [""] + timeline_lines(r["timeline"]) + _notes(out))


def _with_loadgen(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The system's processes' CPU and the load generator's (all its processes together)."""
    lg = {"cpu_s": r["loadgen_cpu_s"], "pct_core": r["loadgen_cpu_s"] / r["measured_wall_s"] * 100,
          "peak_pct_core": None, "rss_mib": None}
    return {**r["process_cpu"], f"load generator ({r['procs']} processes)": lg}


def section_b(out: dict[str, Any], args: argparse.Namespace, command: str, plot: str | None) -> list[str]:
    lines = _header(out, args, command)
    lines += [f"Steps of {args.step_duration:g} s each on one running system and one set of "
              f"{args.users} connections (not restarted between steps; each step drained before the next).", "",
              "| target msg/s | offered | accepted | send→deliver p50 / p95 / p99 / max ms | send→ack p99 ms "
              "| deliveries received / expected | lost / dup / out of order | errors | loadgen loop lag p99 ms "
              "| worker / gateway / broker / Redis % of a core |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["steps"]:
        d, cpu = r["deliveries"], r["process_cpu"]
        share = " / ".join(f"{cpu.get(n, {}).get('pct_core', 0):.0f}" for n in ("worker", "gateway", "kafka", "redis"))
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items()) or "none"
        lines.append(
            f"| {r['target_rate']:g} | {_f(r['offered_msg_s'])} | {_f(r['throughput_msg_s'])} | "
            f"{loadgen._lat(r['deliver_ms'])} | {_f(r['ack_ms']['p99'])} | {d['received']} / {d['expected']} | "
            f"{d['lost']} / {d['duplicates']} / {d['out_of_order']} | {errors} | {_f(r['loop_lag_ms']['p99'])} | "
            f"{share} |")
    ok = [r for r in out["steps"] if sustained(r, args.threshold_ms)]
    if ok:
        best = max(ok, key=lambda r: r["target_rate"])
        verdict = (f"**Maximum sustained rate with p99 send→deliver ≤ {args.threshold_ms:g} ms: {best['target_rate']:g} "
                   f"msg/s offered ({_f(best['throughput_msg_s'])} accepted), p99 {_f(best['deliver_ms']['p99'])} ms** "
                   "(the highest step with everything acked and delivered, accepted ≥ 95% of offered).")
    else:
        verdict = (f"**Maximum sustained rate with p99 send→deliver ≤ {args.threshold_ms:g} ms: none** — "
                   "not even the lowest step stayed within it.")
    lines += ["", verdict]
    if out["stopped_because"]:
        lines.append(f"The sweep stopped after {out['steps'][-1]['target_rate']:g} msg/s: {out['stopped_because']}.")
    lines += ["", f"![send→deliver latency against load]({plot})" if plot else
              "Plot not written: matplotlib is missing (`pip install -e '.[bench]'`)."]
    return lines + _notes(out)


def section_d(out: dict[str, Any], args: argparse.Namespace, command: str) -> list[str]:
    lines = _header(out, args, command)
    names = [n for n in out["steps"][0]["process_cpu"]] if out["steps"] else []
    lines += [f"One sender (the group's creator) at each rate for {args.fanout_duration:g} s; every message goes to "
              f"{args.members - 1} other members, each on its own connection.", "",
              "| msg/s | sent / acked | deliveries received / expected | send→deliver p50 / p95 / p99 / max ms "
              "| send→last member p50 / p95 / p99 / max ms | deliveries/s | lost / dup / out of order "
              f"| {' / '.join(names)} / load generator % of a core | loadgen loop lag p99 ms |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in out["steps"]:
        d = r["deliveries"]
        cpu = _with_loadgen(r)
        lines.append(
            f"| {r['target_rate']:g} | {r['sent']} / {r['acked']} | {d['received']} / {d['expected']} | "
            f"{loadgen._lat(r['deliver_ms'])} | {loadgen._lat(r['last_delivery_ms'])} | {_f(r['deliveries_per_s'])} | "
            f"{d['lost']} / {d['duplicates']} / {d['out_of_order']} | "
            + " / ".join(f"{v.get('pct_core', 0):.0f}" for v in cpu.values())
            + f" | {_f(r['loop_lag_ms']['p99'])} |")
    return lines + _notes(out)


def plot_b(steps: list[dict[str, Any]], path: Path, threshold_ms: float, title: str) -> bool:
    """p50/p95/p99 send->deliver against offered and accepted msg/s; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, key, label in ((axes[0], "offered_msg_s", "offered msg/s"), (axes[1], "throughput_msg_s", "accepted msg/s")):
        x = [r[key] or 0 for r in steps]
        for q, style in (("p50", "o-"), ("p95", "s-"), ("p99", "^-")):
            ax.plot(x, [r["deliver_ms"][q] for r in steps], style, label=f"{q} send→deliver")
        ax.axhline(threshold_ms, color="grey", ls="--", lw=1, label=f"{threshold_ms:g} ms")
        ax.set_xlabel(label)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------- main

def _rates(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.scenarios", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("scenario", choices=["a", "b", "d", "all"])
    p.add_argument("--procs", type=int, default=2, help="load generator processes")
    p.add_argument("--users", type=int, default=1000, help="a, b: users (1 device each)")
    p.add_argument("--group-size", type=int, default=10, help="a, b")
    p.add_argument("--shape", choices=["turns", "random"], default="random",
                   help="a, b: random: each message from a user drawn at random (every user sends); "
                        "turns: round robin over groups and members")
    p.add_argument("--rate", type=float, default=1000, help="a: msg/s in total")
    p.add_argument("--duration", type=float, default=30, help="a: seconds of load")
    p.add_argument("--rates", type=_rates, default=_rates("100,200,400,600,800,1000,1500,2000,3000"),
                   help="b: offered msg/s of the steps, in order")
    p.add_argument("--step-duration", type=float, default=15, help="b: seconds per step")
    p.add_argument("--threshold-ms", type=float, default=100, help="b: p99 send->deliver bound")
    p.add_argument("--members", type=int, default=1000, help="d: members of the one group")
    p.add_argument("--fanout-rates", type=_rates, default=_rates("1,10"), help="d: msg/s of the steps")
    p.add_argument("--fanout-duration", type=float, default=20, help="d: seconds per step")
    p.add_argument("--client", choices=["auto", "aiohttp", "raw"], default="auto",
                   help="the load generator's WebSocket client (auto: raw for d, aiohttp otherwise); "
                        "raw is bench.wsclient, a frame handled as it arrives")
    p.add_argument("--group-first", choices=["auto", "on", "off"], default="auto",
                   help="d: build the group before its members connect (auto: past 1,000 members)")
    p.add_argument("--body-bytes", type=int, default=64)
    p.add_argument("--pause", type=float, default=2.0, help="seconds between steps")
    p.add_argument("--warm-s", type=float, default=None,
                   help="seconds of unmeasured load first (default: 20 for a and b, 0 for d; 0: none)")
    p.add_argument("--warm-rate", type=float, default=300.0, help="msg/s of the warm-up")
    p.add_argument("--settle", type=float, default=0.0,
                   help="seconds between the set-up (connections, warm-up) and the first step")
    p.add_argument("--setup-timeout", type=float, default=180)
    p.add_argument("--drain-timeout", type=float, default=30)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--workers", type=int, default=1, help="stream worker processes (default: 1)")
    p.add_argument("--gateways", type=int, default=1, help="gateway processes sharing one port (SO_REUSEPORT)")
    p.add_argument("--full-sweep", action="store_true",
                   help="b: go on past the latency threshold until the system saturates (the whole plot)")
    p.add_argument("--env", action="append", default=[], metavar="CHAT_X=VALUE",
                   help="extra environment for the worker and gateway (repeatable)")
    p.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md", help="markdown file to append to")
    p.add_argument("--plot", type=Path, help="b's PNG; default: latency_vs_load.png beside --results")
    p.add_argument("--label", default="", help="added to each section's title, e.g. 'trial run, busy machine'")
    p.add_argument("--keep", action="store_true", help="keep the system's temporary directory (logs)")
    p.add_argument("--no-uvloop", action="store_true")
    return p


def _report(name: str, out: dict[str, Any], args: argparse.Namespace, command: str) -> list[str]:
    if name == "a":
        return section_a(out, args, command)
    if name == "d":
        return section_d(out, args, command)
    plot = args.plot or args.results.parent / "latency_vs_load.png"
    title = (f"bench.scenarios b, {out['date']}: {out['title']}\n1 worker, 1 gateway, {out['procs']} load generator "
             f"processes. {machine_line()} Load average before: {out['load_average_before'][0]:.2f}")
    drawn = plot_b(out["steps"], plot, args.threshold_ms, title) if out["steps"] else False
    rel = os.path.relpath(plot, args.results.parent) if drawn else None
    return section_b(out, args, command, rel)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the system


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if not args.no_uvloop:
        loadgen._install_uvloop()
    command = "python -m bench.scenarios " + shlex.join(argv)
    failed = []
    for name in (["a", "b", "d"] if args.scenario == "all" else [args.scenario]):
        date = time.strftime("%Y-%m-%d %H:%M:%S %z")
        try:
            out = run_scenario(name, args)
        except KeyboardInterrupt:
            print(f"[{name}] interrupted; the system and the load generator processes are stopped", file=sys.stderr)
            return 130
        except Exception:
            failed.append(name)
            print(f"[{name}] failed:\n{traceback.format_exc()}", file=sys.stderr)
            append_results([f"\n## Scenario ({name}): {SCENARIOS[name]['title'](args)}, {date}"
                            + (f" ({args.label})" if args.label else "") + ": FAILED\n",
                            f"Command: `{command}`", "", "```", traceback.format_exc(limit=3).strip(), "```"],
                           args.results)
            continue
        out.update(date=date, command=command, machine=machine(), code=code_version())
        lines = _report(name, out, args, command)
        print("\n".join(lines))
        append_results(lines, args.results)
        json_dir = args.results.parent / "results"
        json_dir.mkdir(exist_ok=True)
        (json_dir / f"scenario-{name}-{time.strftime('%Y%m%d-%H%M%S')}.json").write_bytes(
            orjson.dumps(out, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        print(f"[{name}] appended to {args.results}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
