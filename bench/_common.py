"""Helpers shared by the benchmarks: processes, ports, wrk."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def start(cmd: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wrk(url: str, connections: int, seconds: int, body: str, headers: dict[str, str]) -> dict:
    """Run wrk with a POST body; return req/s and latency percentiles in ms."""
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install -y wrk")
    lines = ['wrk.method = "POST"', f"wrk.body = [[{body}]]"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lines.append("done = function(summary, latency, requests)")
    for p in (50, 90, 99):
        lines.append(f'  io.write(string.format("p{p} %f\\n", latency:percentile({p}) / 1000))')
    lines.append('  io.write(string.format("errors %d\\n", summary.errors.status + '
                 'summary.errors.connect + summary.errors.read + summary.errors.write + '
                 'summary.errors.timeout))')
    lines.append("end")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines))
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "-s", script.name,
         url], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for key in ("p50", "p90", "p99", "errors"):
        result[key] = float(re.search(rf"^{key} ([\d.]+)", out, re.M).group(1))
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used by a process and everything in its session (the
    servers are started as session leaders, so worker processes count too)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[3]) == pid:  # fields[3]: the session id
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")
