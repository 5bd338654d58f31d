#!/usr/bin/env python3
"""Benchmark the agent: CPU time per collection cycle, steady RSS, and node_exporter beside it.

Three parts, each in processes of their own, all stopped by PID before the script ends:
1. the check machinery alone (the shipped system checks, `CheckRunner.run_once()` back to back)
   in a subprocess that measures itself with getrusage and /proc/self/status;
2. a real `runwatch agent` (interval 1s) reporting to a real collector on loopback;
3. `prometheus-node-exporter` scraped 200 times (installed with apt-get when missing, as root).

Run from the repo root:  python bench/agent.py [--cycles 500] [--agent-seconds 60] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

# `python bench/agent.py` puts bench/ first on sys.path, and this file would then shadow the
# `agent` package. Drop bench/ before anything imports the project.
BENCH_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != BENCH_DIR]
if str(BENCH_DIR.parent) not in sys.path:
    sys.path.append(str(BENCH_DIR.parent))  # for bench.common
from bench.common import (  # noqa: E402
    load_ingest_module,
    log,
    positive_float,
    positive_int,
    run_and_show,
)

AGENT_HOST = "bench-agent"
DUMMY_COLLECTOR_URL = "http://127.0.0.1:9"  # never contacted: part 1 only runs checks
NODE_EXPORTER_NAMES = ("prometheus-node-exporter", "node_exporter")
STARTUP_TIMEOUT_SECONDS = 20.0
# The check worker gets this long, plus this much per cycle (a cycle takes ~25 ms here).
WORKER_TIMEOUT_SECONDS = 60.0
WORKER_SECONDS_PER_CYCLE = 0.1
MIB = 1024 * 1024


def shipped_agent_config() -> dict[str, Any]:
    """The shipped config/agent.yaml as data."""
    import yaml

    from runwatch.shipped import shipped_file

    text = shipped_file("agent.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def self_rss_bytes() -> int:
    """This process's resident set size, from VmRSS in /proc/self/status."""
    return self_status_bytes("VmRSS")


def self_status_bytes(name: str) -> int:
    """A size field (VmRSS, VmHWM) of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {name} in /proc/self/status")


# -- part 1: the check machinery alone (runs in a subprocess) ---------------------------------


def run_cycles_worker(cycles: int, warmup: int, state_dir: Path) -> dict[str, Any]:
    """Run the shipped checks `warmup + cycles` times; measure the last `cycles` from inside."""
    from agent.config import agent_config_from_dict
    from agent.service import build_runner

    checks = shipped_agent_config()["checks"]
    # Only the runner is built (no spool, no shipper); state_dir is where checks keep caches.
    config = agent_config_from_dict(
        {
            "collector": {"url": DUMMY_COLLECTOR_URL},
            "host": AGENT_HOST,
            "state_dir": str(state_dir),
            "checks": checks,
        }
    )
    runner = build_runner(config)
    for _ in range(warmup):
        runner.run_once()
    rss_after_warmup = self_rss_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    measurements = failed_runs = 0
    for _ in range(cycles):
        harvest = runner.run_once()
        measurements += len(harvest.measurements)
        failed_runs += sum(1 for run in harvest.runs if run.error is not None)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    rss_end = self_rss_bytes()
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    return {
        "checks": len(checks),
        "cycles": cycles,
        "warmup_cycles": warmup,
        "measurements_per_cycle": measurements / cycles,
        "failed_check_runs": failed_runs,
        "cpu_user_seconds": round(user, 4),
        "cpu_system_seconds": round(system, 4),
        "cpu_ms_per_cycle": round((user + system) * 1000 / cycles, 4),
        "wall_ms_per_cycle": round(wall * 1000 / cycles, 4),
        "rss_after_warmup_bytes": rss_after_warmup,
        "rss_end_bytes": rss_end,
        "rss_growth_bytes": rss_end - rss_after_warmup,
        "peak_rss_bytes": self_status_bytes("VmHWM"),
    }


def measure_check_machinery(cycles: int, warmup: int) -> dict[str, Any]:
    """Run part 1 in a fresh interpreter, so nothing of this script's state is counted."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="runwatch-bench-checks-") as state_dir:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            state_dir,
            "--cycles",
            str(cycles),
            "--warmup",
            str(warmup),
        ]
        limit = WORKER_TIMEOUT_SECONDS + WORKER_SECONDS_PER_CYCLE * (cycles + warmup)
        try:
            done = subprocess.run(command, capture_output=True, timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            # subprocess.run has already killed the worker (by its PID) before raising.
            raise RuntimeError(
                f"check worker did not finish {cycles} cycles within {limit:g}s; lower --cycles"
            ) from None
    if done.returncode != 0:
        raise RuntimeError(
            f"check worker exited with {done.returncode}:\n"
            f"{done.stderr.decode(errors='replace')[-2000:]}"
        )
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


# -- part 2: a real agent reporting to a real collector ---------------------------------------


def measure_real_agent(ingest: ModuleType, seconds: float, warmup_seconds: float) -> dict[str, Any]:
    """Run `runwatch agent` (interval 1s) against a real collector; measure it from /proc."""
    import subprocess
    import tempfile

    import yaml

    from collector.auth import add_token

    with tempfile.TemporaryDirectory(prefix="runwatch-bench-agent-") as tmp:
        workdir = Path(tmp)
        collector = ingest.prepare_collector(workdir, instant_rule=False)
        token_path = workdir / "agent.token"
        fd = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(add_token(collector.tokens_path, AGENT_HOST) + "\n")
        config = shipped_agent_config()
        config.update(
            {
                "collector": {"url": collector.url, "token_file": str(token_path)},
                "host": AGENT_HOST,
                "interval": "1s",
                "state_dir": str(workdir / "agent"),
            }
        )
        config_path = workdir / "agent.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        agent: subprocess.Popen[bytes] | None = None
        agent_log = workdir / "agent.log"
        try:
            collector.start()
            with agent_log.open("wb") as log_file:
                agent = subprocess.Popen(
                    [
                        ingest.runwatch_command(),
                        "--log-level",
                        "warning",
                        "agent",
                        "--config",
                        str(config_path),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                )
            log(
                f"agent pid {agent.pid} reporting every 1s to collector pid {collector.pid} "
                f"on {collector.url}, for {seconds:g}s"
            )
            started = time.monotonic()
            time.sleep(warmup_seconds)
            cpu_warm = ingest.cpu_seconds(agent.pid)
            reports_warm = last_seq(ingest, collector.port)
            rss_samples = []
            while time.monotonic() - started < seconds:
                if agent.poll() is not None:
                    raise RuntimeError(
                        f"agent exited with {agent.returncode}:\n"
                        f"{agent_log.read_text(errors='replace')[-2000:]}"
                    )
                rss_samples.append(ingest.rss_bytes(agent.pid))
                time.sleep(1.0)
            cpu_end = ingest.cpu_seconds(agent.pid)
            reports_end = last_seq(ingest, collector.port)
            rss_peak = ingest.peak_rss_bytes(agent.pid)
            agent_pid = agent.pid
            agent_exit = ingest.stop_process(agent)
            problems = [
                line for line in agent_log.read_text(errors="replace").splitlines() if line.strip()
            ]
        finally:
            if agent is not None:
                ingest.stop_process(agent)
            collector.stop()
    rss_samples.sort()
    steady_reports = reports_end - reports_warm
    return {
        "agent_pid": agent_pid,
        "seconds": seconds,
        "warmup_seconds": warmup_seconds,
        "reports_received": reports_end,
        "rss_steady_bytes": rss_samples[len(rss_samples) // 2] if rss_samples else None,
        "rss_min_bytes": rss_samples[0] if rss_samples else None,
        "rss_max_bytes": rss_samples[-1] if rss_samples else None,
        "rss_peak_bytes": rss_peak,
        "cpu_seconds_total": round(cpu_end, 3),
        "cpu_ms_per_report_total": (
            round(cpu_end * 1000 / reports_end, 3) if reports_end else None
        ),
        "cpu_ms_per_report_steady": (
            round((cpu_end - cpu_warm) * 1000 / steady_reports, 3) if steady_reports > 0 else None
        ),
        "steady_reports": steady_reports,
        "agent_exit": ingest.describe_exit(agent_exit),
        "agent_log_lines": len(problems),
        "agent_log_first_line": problems[0] if problems else "",
    }


def last_seq(ingest: ModuleType, port: int) -> int:
    """The last seq the collector has from the bench agent (its report count: seq starts at 1)."""
    status, body = ingest.http_get(port, f"/api/v1/hosts?host={AGENT_HOST}")
    if status != 200:
        raise RuntimeError(f"GET /api/v1/hosts: HTTP {status}: {body[:300]!r}")
    hosts = json.loads(body)
    return int(hosts[0]["last_seq"]) if hosts else 0


# -- part 3: node_exporter, the peer ----------------------------------------------------------


def find_node_exporter(explicit: str | None) -> str | None:
    import shutil

    if explicit:
        return explicit
    return next((path for name in NODE_EXPORTER_NAMES if (path := shutil.which(name))), None)


def install_node_exporter() -> str | None:
    """Install Debian's prometheus-node-exporter (as root, where apt-get exists); its path."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        log("node_exporter is missing, and apt-get cannot be run here to install it")
        return None
    log("installing prometheus-node-exporter with apt-get")
    done = subprocess.run(
        [
            "apt-get",
            "-o",
            "DPkg::Lock::Timeout=600",
            "install",
            "-y",
            "-q",
            "prometheus-node-exporter",
        ],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        log(f"apt-get install prometheus-node-exporter failed: {done.stderr.strip()[-300:]}")
        return None
    # The package starts a service where systemd runs; this bench starts its own copy.
    return find_node_exporter(None)


def measure_node_exporter(ingest: ModuleType, binary: str, scrapes: int) -> dict[str, Any]:
    """Start node_exporter on loopback, scrape /metrics `scrapes` times, and measure it."""
    import http.client
    import subprocess
    import tempfile

    port = ingest.free_port()
    with tempfile.TemporaryDirectory(prefix="runwatch-bench-node-exporter-") as tmp:
        log_path = Path(tmp) / "node_exporter.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [binary, f"--web.listen-address=127.0.0.1:{port}"],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        try:
            log(f"node_exporter pid {process.pid} on 127.0.0.1:{port}; {scrapes} scrapes")
            wait_for_metrics(ingest, process, port, log_path)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                body_bytes = scrape(conn)  # warm-up: first-scrape setup is not counted
                cpu_before = ingest.cpu_seconds(process.pid)
                began = time.perf_counter()
                for _ in range(scrapes):
                    body_bytes = scrape(conn)
                wall = time.perf_counter() - began
                cpu_after = ingest.cpu_seconds(process.pid)
            finally:
                conn.close()
            rss = ingest.rss_bytes(process.pid)
            rss_peak = ingest.peak_rss_bytes(process.pid)
            pid = process.pid
        finally:
            exit_code = ingest.stop_process(process)
    return {
        "binary": binary,
        "pid": pid,
        "scrapes": scrapes,
        "metrics_body_bytes": body_bytes,
        "rss_bytes": rss,
        "rss_peak_bytes": rss_peak,
        "cpu_seconds": round(cpu_after - cpu_before, 3),
        "cpu_ms_per_scrape": round((cpu_after - cpu_before) * 1000 / scrapes, 4),
        "wall_ms_per_scrape": round(wall * 1000 / scrapes, 4),
        "exit": ingest.describe_exit(exit_code),
    }


def wait_for_metrics(ingest: ModuleType, process: Any, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"node_exporter exited with {process.returncode}:\n"
                f"{log_path.read_text(errors='replace')[-2000:]}"
            )
        try:
            status, _ = ingest.http_get(port, "/metrics", timeout=2.0)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"node_exporter did not serve /metrics within {STARTUP_TIMEOUT_SECONDS:g}s")


def scrape(conn: Any) -> int:
    """GET /metrics on a keep-alive connection, as Prometheus does; return the body's size."""
    conn.request("GET", "/metrics", headers={"Accept": "text/plain"})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"node_exporter /metrics: HTTP {response.status}")
    return len(body)


# -- the run ----------------------------------------------------------------------------------


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    ingest = load_ingest_module()
    log(f"part 1: {args.warmup} + {args.cycles} cycles of the shipped checks in a subprocess")
    machinery = measure_check_machinery(args.cycles, args.warmup)
    log("part 2: a real agent and collector")
    real_agent = measure_real_agent(ingest, args.agent_seconds, args.agent_warmup_seconds)
    figures: dict[str, Any] = {"check_machinery": machinery, "real_agent": real_agent}
    binary = find_node_exporter(args.node_exporter)
    if binary is None and args.install:
        binary = install_node_exporter()
    if binary is None:
        figures["node_exporter"] = None
        figures["node_exporter_skipped"] = (
            "prometheus-node-exporter not found on PATH; skipped "
            "(`apt-get install prometheus-node-exporter` provides it)"
        )
        return figures
    log("part 3: node_exporter")
    exporter = measure_node_exporter(ingest, binary, args.scrapes)
    figures["node_exporter"] = exporter
    figures["ratios_agent_to_node_exporter"] = {
        "rss_real_agent": ratio(real_agent["rss_steady_bytes"], exporter["rss_bytes"]),
        "rss_check_machinery": ratio(machinery["rss_end_bytes"], exporter["rss_bytes"]),
        "cpu_per_cycle_vs_per_scrape": ratio(
            machinery["cpu_ms_per_cycle"], exporter["cpu_ms_per_scrape"]
        ),
        "cpu_per_report_vs_per_scrape": ratio(
            real_agent["cpu_ms_per_report_steady"], exporter["cpu_ms_per_scrape"]
        ),
    }
    return figures


def mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value / MIB:.1f} MiB"


def num(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def times(value: float | None) -> str:
    """A ratio as `1.23x`; n/a when the denominator was too small to measure (10 ms ticks)."""
    return "n/a" if value is None else f"{value:.2f}x"


def verdict(name: str, value: float | None, limit: float) -> str:
    """`name: met` or `name: NOT met`, for the issue's targets."""
    if value is None:
        return f"{name}: not measured"
    return f"{name}: {'met' if value <= limit else 'NOT met'} ({value:.2f})"


def print_figures(figures: dict[str, Any]) -> None:
    """Print the figures as a readable block."""
    machinery = figures["check_machinery"]
    real = figures["real_agent"]
    print("runwatch agent benchmark")
    print(
        f"  check machinery    {machinery['checks']} shipped checks, {machinery['cycles']} "
        f"cycles of run_once() after {machinery['warmup_cycles']} warm-up, "
        f"{machinery['measurements_per_cycle']:.1f} measurements/cycle, "
        f"{machinery['failed_check_runs']} failed check runs"
    )
    print(
        f"    CPU per cycle    {machinery['cpu_ms_per_cycle']:.3f} ms (user "
        f"{machinery['cpu_user_seconds']:.3f} s + sys {machinery['cpu_system_seconds']:.3f} s "
        f"in all); wall {machinery['wall_ms_per_cycle']:.3f} ms/cycle"
    )
    print(
        f"    RSS              {mib(machinery['rss_after_warmup_bytes'])} after warm-up, "
        f"{mib(machinery['rss_end_bytes'])} at the end (growth "
        f"{machinery['rss_growth_bytes'] / 1024:+.0f} KiB), peak "
        f"{mib(machinery['peak_rss_bytes'])}"
    )
    print(
        f"  real agent         `runwatch agent`, interval 1s, {real['seconds']:g} s: "
        f"{real['reports_received']} reports received by the collector"
    )
    print(
        f"    RSS              {mib(real['rss_steady_bytes'])} steady (median; min "
        f"{mib(real['rss_min_bytes'])}, max {mib(real['rss_max_bytes'])}, peak "
        f"{mib(real['rss_peak_bytes'])})"
    )
    print(
        f"    CPU per report   {num(real['cpu_ms_per_report_steady'])} ms steady (after "
        f"{real['warmup_seconds']:g} s, {real['steady_reports']} reports); "
        f"{num(real['cpu_ms_per_report_total'])} ms including start-up "
        f"({real['cpu_seconds_total']:.2f} s CPU in all)"
    )
    print(
        f"    exit             {real['agent_exit']} after SIGTERM; {real['agent_log_lines']} "
        "log lines at WARNING or above"
        + (f"; first: {real['agent_log_first_line']}" if real["agent_log_first_line"] else "")
    )
    exporter = figures["node_exporter"]
    if exporter is None:
        print(f"  node_exporter      {figures['node_exporter_skipped']}")
        return
    ratios = figures["ratios_agent_to_node_exporter"]
    print(
        f"  node_exporter      {exporter['binary']}, {exporter['scrapes']} scrapes of "
        f"{exporter['metrics_body_bytes']} bytes"
    )
    print(
        f"    RSS              {mib(exporter['rss_bytes'])} (peak "
        f"{mib(exporter['rss_peak_bytes'])})"
    )
    print(
        f"    CPU per scrape   {exporter['cpu_ms_per_scrape']:.3f} ms; wall "
        f"{exporter['wall_ms_per_scrape']:.3f} ms/scrape"
    )
    print(
        f"  agent/node_exporter RSS {times(ratios['rss_real_agent'])} (real agent), "
        f"{times(ratios['rss_check_machinery'])} (check machinery); CPU per cycle vs "
        f"per scrape {times(ratios['cpu_per_cycle_vs_per_scrape'])}, per report vs "
        f"per scrape {times(ratios['cpu_per_report_vs_per_scrape'])}"
    )
    growth = machinery["rss_growth_bytes"]
    print(
        "  targets            "
        + "; ".join(
            [
                verdict("RSS <= 1.1x", ratios["rss_real_agent"], 1.1),
                verdict("CPU per report <= 0.5x", ratios["cpu_per_report_vs_per_scrape"], 0.5),
                verdict("growth <= 1 MiB", growth / MIB, 1.0),
            ]
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Benchmark the agent: CPU time per collection cycle and RSS of the check "
        "machinery alone, RSS and CPU per report of a real `runwatch agent` "
        "reporting to a real collector, and node_exporter beside it when installed."
    )
    parser.add_argument(
        "--cycles",
        type=positive_int,
        default=500,
        help="measured run_once() cycles (default: %(default)s)",
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="cycles run before measuring (default: %(default)s)"
    )
    parser.add_argument(
        "--agent-seconds",
        type=positive_float,
        default=60.0,
        help="how long the real agent runs (default: %(default)s)",
    )
    parser.add_argument(
        "--agent-warmup-seconds",
        type=float,
        default=5.0,
        help="of those, seconds left out of the steady-state CPU figure (default: %(default)s)",
    )
    parser.add_argument(
        "--scrapes",
        type=positive_int,
        default=200,
        help="node_exporter scrapes (default: %(default)s)",
    )
    parser.add_argument(
        "--node-exporter",
        metavar="PATH",
        help="node_exporter binary (default: prometheus-node-exporter or node_exporter on PATH)",
    )
    parser.add_argument(
        "--no-install",
        dest="install",
        action="store_false",
        help="do not apt-get install prometheus-node-exporter when it is missing",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    # Internal: run part 1 in this process, with checks' state in the given directory.
    parser.add_argument("--worker", metavar="STATE_DIR", type=Path, help=argparse.SUPPRESS)
    return parser


def main() -> int:
    args = build_parser().parse_args()
    if args.agent_warmup_seconds >= args.agent_seconds:
        build_parser().error("--agent-warmup-seconds must be below --agent-seconds")
    if args.worker is not None:
        print(json.dumps(run_cycles_worker(args.cycles, args.warmup, args.worker)))
        return 0
    return 0 if run_and_show(run_bench, args, print_figures) is not None else 1


if __name__ == "__main__":
    sys.exit(main())
