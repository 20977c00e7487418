#!/usr/bin/env python3
"""Helpers of e2e/bench/compare.sh (see there): config templates, /proc sampling, the
load generators' output, the idle-connection holder, and the final table.

  compare.py render TEMPLATE KEY=VALUE...   the template with every @KEY@ replaced (KEY=@FILE: FILE's text)
  compare.py routes N                       N [[route]] tables that never match the benchmark's requests
  compare.py sample PID...                  "cpu_ticks peak_rss_kib rss_kib", summed over the processes
  compare.py record RESULTS --scenario S --proxy P --round R --tool wrk|h2load|s_time
                    --out FILE... --cpu T0 T1 --pids PID... [--mib-per-request X]
                                            parses one run, appends a JSON line to RESULTS
  compare.py idle RESULTS --proxy P --round R --port N --conns N --pids PID...
                                            opens N TLS keep-alive connections (one request each),
                                            holds them, records the proxy's RSS growth
  compare.py table RESULTS                  prints the Markdown table
"""

import argparse
import asyncio
import json
import os
import re
import ssl
import statistics
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- templates ---------------------------------------------------------------------


def render(template, pairs):
    text = open(template).read()
    for pair in pairs:
        key, _, value = pair.partition("=")
        if value.startswith("@"):
            value = open(value[1:]).read()
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        sys.exit(f"compare.py: {template}: no value for {', '.join(sorted(set(left)))}")
    sys.stdout.write(text)


def routes(n):
    """Routes of every match kind, a sixth each: exact hosts with prefixes, `*.` suffixes
    with exact paths, host-less prefixes, host-less regexes, host-less prefixes with a
    header match, host-less exact paths with a method. None matches a request for
    127.0.0.1 or localhost at `/`, and each kind makes the table work: every host-less
    regex is searched (one automaton pass) and the prefixes are looked up before `/`."""
    out = []
    for i in range(n):
        kind = i % 6
        out.append("[[route]]")
        if kind == 0:
            out.append(f'host = "app{i}.bench.test"')
            out.append(f'path_prefix = "/api/v{i % 7}/"')
        elif kind == 1:
            out.append(f'host = "*.tenant{i}.bench.test"')
            out.append(f'path = {{ exact = "/login{i}" }}')
        elif kind == 2:
            out.append(f'path_prefix = "/svc{i}/"')
        elif kind == 3:
            out.append(f"path = {{ regex = '^/r{i}/[0-9]+$' }}")
        elif kind == 4:
            out.append(f'path_prefix = "/svc{i}/"')
            out.append(f'headers = [{{ name = "x-canary", value = "v{i}" }}]')
        else:
            out.append(f'path = {{ exact = "/health{i}" }}')
            out.append('method = "POST"')
        out.append('upstream = "hello"\n')
    print("\n".join(out))


# --- /proc ---------------------------------------------------------------------------


def proc(pids):
    """(utime+stime ticks, VmHWM KiB, VmRSS KiB) summed over `pids` (gone ones count 0)."""
    ticks = hwm = rss = 0
    for pid in pids:
        try:
            stat = open(f"/proc/{pid}/stat").read()
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return ticks, hwm, rss


# --- load generators' output ---------------------------------------------------------


def ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(text):
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    if not m:
        raise ValueError("no 'N requests in' line")
    requests, seconds = int(m[1]), ms(m[2], m[3]) / 1000
    pct = {p: ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    errors = 0
    if e := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        errors += int(e[1])
    if e := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        errors += sum(int(x) for x in e.groups())
    return requests, seconds, pct.get("50"), pct.get("99"), errors


def parse_h2load(text, log_files):
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    f = re.search(r"finished in ([\d.]+)(us|ms|s|m),", text)
    if not m or not f:
        raise ValueError("no 'requests:' or 'finished in' line")
    durations = []
    for path in log_files:
        for line in open(path):
            cols = line.split("\t")
            if len(cols) >= 3:
                durations.append(int(cols[2]) / 1000)
    durations.sort()
    pick = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))] if durations else None
    errors = int(m[2]) + int(m[3]) + int(m[4])
    return int(m[1]), ms(f[1], f[2]) / 1000, pick(0.50), pick(0.99), errors


def parse_s_time(texts):
    """Several `openssl s_time -new` clients in parallel: their connections add up."""
    total, rate = 0, 0.0
    for text in texts:
        m = re.search(r"(\d+) connections in ([\d.]+) real seconds", text)
        if not m:
            raise ValueError("no 'connections in ... real seconds' line")
        total += int(m[1])
        rate += int(m[1]) / float(m[2])
    return total, total / rate if rate else 0.0, None, None, 0


def record(a):
    texts = [open(p, errors="replace").read() for p in a.out]
    try:
        if a.tool == "wrk":
            units, seconds, p50, p99, errors = parse_wrk(texts[0])
        elif a.tool == "h2load":
            units, seconds, p50, p99, errors = parse_h2load(texts[0], a.out[1:])
        else:
            units, seconds, p50, p99, errors = parse_s_time(texts)
    except ValueError as e:
        sys.exit(f"compare.py: {a.scenario}/{a.proxy}: cannot read {a.tool} output ({e}):\n{texts[0][-2000:]}")
    if a.mib_per_request:
        units = units * a.mib_per_request
    cpu_s = (a.cpu[1] - a.cpu[0]) / CLK_TCK
    _, hwm, _ = proc(a.pids)
    row = {
        "scenario": a.scenario,
        "proxy": a.proxy,
        "round": a.round,
        "units": units,
        "rate": units / seconds if seconds else 0.0,
        "p50": p50,
        "p99": p99,
        "cpu_us": cpu_s * 1e6 / units if units else None,
        "hwm_kib": hwm,
        "errors": errors,
    }
    with open(a.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    cpu = f"{row['cpu_us']:.1f}" if row["cpu_us"] is not None else "-"
    print(f"  {a.scenario:>4} {a.proxy:<14} round {a.round}: {row['rate']:,.0f}/s, {cpu} CPU µs each, "
          f"peak RSS {hwm / 1024:.1f} MiB" + (f", {errors} errors" if errors else ""), file=sys.stderr)


# --- idle connections ----------------------------------------------------------------


async def hold(a):
    """Opens the connections (a request each), waits, samples the proxy, closes them."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    gate = asyncio.Semaphore(128)  # handshakes in flight
    deadline = time.monotonic() + a.timeout
    held = []

    async def one():
        async with gate:
            if time.monotonic() > deadline:
                raise TimeoutError("deadline")
            r, w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", a.port, ssl=ctx, server_hostname="localhost"), 10)
            held.append(w)
            w.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            await asyncio.wait_for(r.readexactly(int(length[1]) if length else 0), 10)
            return r

    start = time.monotonic()
    t0, _, rss0 = proc(a.pids)
    results = await asyncio.gather(*(one() for _ in range(a.conns)), return_exceptions=True)
    opened = time.monotonic() - start
    await asyncio.sleep(2)  # let the proxy settle; connections it closed meanwhile do not count
    t1, hwm, rss1 = proc(a.pids)
    readers = [x for x in results if not isinstance(x, BaseException)]
    failures = [x for x in results if isinstance(x, BaseException)]
    alive = sum(1 for r in readers if not r.at_eof())
    for w in held:
        w.transport.abort()
    await asyncio.sleep(0.1)
    return {
        "scenario": "s5",
        "proxy": a.proxy,
        "round": a.round,
        "units": alive,
        "rss0_kib": rss0,
        "rss1_kib": rss1,
        "kib_per_conn": (rss1 - rss0) / alive if alive else None,
        "cpu_us": (t1 - t0) / CLK_TCK * 1e6 / len(readers) if readers else None,
        "open_s": opened,
        "hwm_kib": hwm,
        "errors": a.conns - alive,
        "error": repr(failures[0]) if failures else None,
    }


def idle(a):
    row = asyncio.run(hold(a))
    with open(a.results, "a") as f:
        f.write(json.dumps(row) + "\n")
    per = f"{row['kib_per_conn']:.1f}" if row["kib_per_conn"] is not None else "-"
    print(f"    s5 {a.proxy:<14} round {a.round}: {row['units']} held (opened in {row['open_s']:.1f}s), "
          f"RSS {row['rss0_kib'] / 1024:.1f} -> {row['rss1_kib'] / 1024:.1f} MiB, {per} KiB each"
          + (f"; {row['errors']} not held, e.g. {row['error']}" if row["errors"] else ""), file=sys.stderr)


# --- the table -----------------------------------------------------------------------

PROXIES = ["gateway", "nginx", "haproxy"]
SCENARIOS = [
    ("s1", "1. HTTPS HTTP/1.1 keep-alive, 64 conns", "req"),
    ("s2", "2. HTTPS HTTP/2, 16 conns × 10 streams", "req"),
    ("s3e", "3a. TLS handshake per request, ECDSA P-256", "handshake"),
    ("s3r", "3b. TLS handshake per request, RSA-2048", "handshake"),
    ("s4", "4. plain HTTP/1.1 keep-alive, 64 conns", "req"),
    ("s5", "5. idle TLS keep-alive connections", None),
    ("s6", "6. 1 MiB responses, HTTPS/1.1, 16 conns", "MiB"),
    ("s9", "9. two workers each, scenario 1's load (report only)", "req"),
    ("s10", "10. gzip of a 64 KiB JSON response, 16 conns", "MiB"),
    ("s13", "13. unary gRPC calls, HTTPS HTTP/2, 16 conns × 10 streams", "call"),
]
# (row label, scenario, base proxy, [(variant proxy, what it is)]): gateway variants, each
# against the base proxy's run of the same scenario.
VARIANTS = [
    ("7. growth (scenario 1 load)", "s1", "gateway",
     [("gw-routes1000", "1,000 routes"), ("gw-servers100", "100-server upstream")]),
    ("8. production features (scenario 1 load)", "s1", "gateway", [
        ("gw-prod", "all on: access log + admin/metrics + health checks"),
        ("gw-accesslog", "access log only (RUST_LOG=info, JSON, to a file)"),
        ("gw-accesslog-text", "access log only, text format"),
        ("gw-admin", "admin listener + /metrics scraped every 1 s only"),
        ("gw-health", "active health checks (1 s) only"),
        ("gw-trace", "OpenTelemetry tracing, sample_ratio 1.0, OTLP/HTTP to a receiver on loopback"),
        ("gw-trace-1pct", "OpenTelemetry tracing, sample_ratio 0.01"),
    ]),
    ("10. br and zstd (scenario 10 load, the gateway's defaults)", "s10", "gateway", [
        ("gw-br", "br"),
        ("gw-zstd", "zstd"),
    ]),
    ("11. route filters (scenario 1 load)", "s1", "gateway", [
        ("gw-headers", "request_headers (set, add, remove) + response_headers (set, remove)"),
    ]),
    ("", "s1", "gw-origin", [
        ("gw-origin", "requests with an Origin header, route without CORS"),
        ("gw-cors", "the same requests on a CORS route allowing that Origin"),
    ]),
    ("12. rate limits that never trip (scenario 1 load)", "s1", "gateway", [
        ("gw-ratelimit", "rate_limit per replica (client_ip)"),
        ("gw-ratelimit-shared", "rate_limit shared through Redis on loopback"),
    ]),
    ("14. route auth (scenario 1 load)", "s1", "gateway", [
        ("gw-basic", "basic auth, a cached credential"),
        ("gw-forward", "forward auth to a service on loopback answering at once"),
        ("gw-jwt", "JWT auth (ES256), one token (verified once, then kept)"),
        ("gw-jwt-new", "JWT auth (ES256), a token not verified before on every request"),
    ]),
]


def table(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    by = {}
    for r in runs:
        by.setdefault((r["scenario"], r["proxy"]), []).append(r)

    def mean(key, scenario, proxy):
        vals = [r[key] for r in by.get((scenario, proxy), []) if r.get(key) is not None]
        return statistics.mean(vals) if vals else None

    def spread(key, scenario, proxy):
        vals = [r[key] for r in by.get((scenario, proxy), []) if r.get(key) is not None]
        if len(vals) < 2 or not statistics.mean(vals):
            return ""
        return f" ±{(max(vals) - min(vals)) / 2 / statistics.mean(vals) * 100:.0f}%"

    def cell(value, base, fmt, extra=""):
        if value is None:
            return "–"
        text = fmt(value) + extra
        if base:
            text += f" ({value / base:.2f}×)"
        return text

    def row(label, metric, key, fmt, scenario, with_spread=False, scale=1.0):
        vals = {p: mean(key, scenario, p) for p in PROXIES}
        vals = {p: (v * scale if v is not None else None) for p, v in vals.items()}
        base = vals["nginx"]
        cells = []
        for p in PROXIES:
            extra = spread(key, scenario, p) if with_spread else ""
            cells.append(cell(vals[p], base if p != "nginx" else None, fmt, extra))
        print(f"| {label} | {metric} | " + " | ".join(cells) + " |")

    n0 = lambda v: f"{v:,.0f}"
    f1 = lambda v: f"{v:,.1f}"
    f2 = lambda v: f"{v:.2f}"
    print("| scenario | metric | gateway (× nginx) | nginx | haproxy (× nginx) |")
    print("|---|---|---|---|---|")
    for scenario, label, unit in SCENARIOS:
        if not any(s == scenario for s, _ in by):
            continue
        if scenario == "s5":
            held = {p: mean("units", "s5", p) for p in PROXIES}
            label = f"5. {max((v or 0) for v in held.values()):,.0f} idle TLS keep-alive conns"
            row(label, "connections held", "units", n0, scenario)
            row("", "RSS before, MiB", "rss0_kib", f1, scenario, scale=1 / 1024)
            row("", "RSS with them open, MiB", "rss1_kib", f1, scenario, scale=1 / 1024)
            row("", "**RSS per connection, KiB**", "kib_per_conn", f1, scenario, with_spread=True)
            row("", "CPU µs per connection (handshake + 1 request)", "cpu_us", f1, scenario)
            continue
        rate = {"req": "requests/s", "handshake": "handshakes/s", "MiB": "MiB/s", "call": "calls/s"}[unit]
        row(label, rate, "rate", n0, scenario)
        if unit != "handshake":
            row("", "p50 latency, ms", "p50", f2, scenario)
            row("", "p99 latency, ms", "p99", f2, scenario)
        row("", f"**CPU µs per {unit}**", "cpu_us", f1, scenario, with_spread=True)
        row("", "peak RSS, MiB", "hwm_kib", f1, scenario, scale=1 / 1024)

    for label, scenario, base_proxy, variants in VARIANTS:
        base = mean("cpu_us", scenario, base_proxy)
        unit = "MiB" if scenario == "s10" else "req"
        for i, (proxy, name) in enumerate(variants):
            cpu = mean("cpu_us", scenario, proxy)
            if cpu is None:
                continue
            rate = mean("rate", scenario, proxy)
            hwm = mean("hwm_kib", scenario, proxy)
            p99 = mean("p99", scenario, proxy)
            delta = ""
            if base and proxy != base_proxy:
                of = "the row above's"
                if base_proxy == "gateway":
                    of = "gzip's" if scenario == "s10" else f"scenario {scenario[1:]}'s"
                delta = f" ({(cpu / base - 1) * 100:+.1f}% vs {of} {base:,.1f})"
            print(f"| {label if i == 0 else ''} | {name}: CPU µs/{unit} | {cpu:,.1f}{spread('cpu_us', scenario, proxy)}"
                  f"{delta}; {rate:,.0f} {unit}/s; p99 {p99:.2f} ms; peak RSS {hwm / 1024:.1f} MiB | | |")

    bad = [r for r in runs if r.get("errors")]
    if bad:
        print()
    for r in bad:
        what = "connections not held" if r["scenario"] == "s5" else "failed or non-2xx requests"
        print(f"note: {r['scenario']} {r['proxy']} round {r['round']}: {r['errors']} {what}"
              + (f", e.g. {r['error']}" if r.get("error") else ""))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("render")
    s.add_argument("template")
    s.add_argument("pairs", nargs="*")
    s = sub.add_parser("routes")
    s.add_argument("n", type=int)
    s = sub.add_parser("sample")
    s.add_argument("pids", nargs="+", type=int)
    s = sub.add_parser("record")
    s.add_argument("results")
    s.add_argument("--scenario", required=True)
    s.add_argument("--proxy", required=True)
    s.add_argument("--round", type=int, required=True)
    s.add_argument("--tool", choices=["wrk", "h2load", "s_time"], required=True)
    s.add_argument("--out", nargs="+", required=True)
    s.add_argument("--cpu", nargs=2, type=int, required=True)
    s.add_argument("--pids", nargs="+", type=int, required=True)
    s.add_argument("--mib-per-request", type=float)
    s = sub.add_parser("idle")
    s.add_argument("results")
    s.add_argument("--proxy", required=True)
    s.add_argument("--round", type=int, required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--conns", type=int, required=True)
    s.add_argument("--timeout", type=float, default=50.0)
    s.add_argument("--pids", nargs="+", type=int, required=True)
    s = sub.add_parser("table")
    s.add_argument("results")
    a = p.parse_args()
    if a.cmd == "render":
        render(a.template, a.pairs)
    elif a.cmd == "routes":
        routes(a.n)
    elif a.cmd == "sample":
        print(*proc(a.pids))
    elif a.cmd == "record":
        record(a)
    elif a.cmd == "idle":
        idle(a)
    else:
        table(a.results)


if __name__ == "__main__":
    main()
