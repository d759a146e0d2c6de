#!/usr/bin/env python3
"""Memory under a flood of unfinished large messages (the attack of issue 12).

N clients each open a transaction and send SIZE bytes of content without
the final dot; the daemon's RSS is sampled meanwhile. Then every client
sends its dot at once and the replies are counted; then the clients leave
and RSS is read again after SETTLE seconds.

    IRONPOST_BIN=target/release/ironpost python3 bench/hostile_memory.py

Environment (optional): N=300, SIZE=19000000, BUDGET=512MiB (passed to
--max-inflight-memory; "none" to omit), SETTLE=10, TIME_LIMIT=600.
Loopback only; the daemon's spool and logs live in a temporary directory.
"""

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time

N = int(os.environ.get("N", 300))
SIZE = int(os.environ.get("SIZE", 19_000_000))
BUDGET = os.environ.get("BUDGET", "512MiB")
SETTLE = float(os.environ.get("SETTLE", 10))
TIME_LIMIT = float(os.environ.get("TIME_LIMIT", 600))
BIN = os.environ.get("IRONPOST_BIN", "target/release/ironpost")

POLICY = """
kumo.on('init', function()
  kumo.define_spool { name = 'data', path = './data/spool' }
  kumo.start_esmtp_listener {
    listen = '127.0.0.1:0', relay_hosts = { '127.0.0.1' },
    max_message_size = 25000000, max_connections = 2000,
    data_processing_timeout = '10m',
  }
end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config { protocol = { smtp = { mx_list = { '127.0.0.1:9' } } }, retry_interval = '1h' }
end)
"""


def rss_kib(pid, field="VmRSS:"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


async def reply(reader):
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        lines.append(line.decode(errors="replace").rstrip())
        if line[3:4] != b"-":
            return lines[-1]


async def open_transaction(port, content):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reply(reader)
    for cmd in (b"EHLO flood.test", b"MAIL FROM:<a@example.test>", b"RCPT TO:<b@example.test>", b"DATA"):
        writer.write(cmd + b"\r\n")
        await writer.drain()
        r = await reply(reader)
        if not r[:3] in ("250", "354"):
            return reader, writer, r
    for i in range(0, len(content), 1 << 16):
        writer.write(content[i:i + (1 << 16)])
        await writer.drain()
    return reader, writer, None


async def finish(reader, writer):
    writer.write(b"\r\n.\r\n")
    await writer.drain()
    return await reply(reader)


async def main():
    work = tempfile.mkdtemp(prefix="ironpost-hostile-")
    with open(os.path.join(work, "policy.lua"), "w") as f:
        f.write(POLICY)
    args = [BIN, "serve", "--policy", "policy.lua"]
    if BUDGET != "none":
        args += ["--max-inflight-memory", BUDGET]
    daemon = subprocess.Popen(args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    port = None
    for line in daemon.stdout:
        m = re.search(r"smtp listener: .*127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        if line.startswith("ready"):
            break
    assert port, "no listener"
    pid = daemon.pid
    time.sleep(0.5)
    idle = rss_kib(pid)

    line = b"x" * 998 + b"\r\n"
    content = b"Subject: flood\r\n\r\n" + line * (SIZE // len(line) + 1)
    peak_sampled = 0
    done = asyncio.Event()

    async def sample():
        nonlocal peak_sampled
        while not done.is_set():
            peak_sampled = max(peak_sampled, rss_kib(pid))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    t0 = time.monotonic()
    sessions = await asyncio.gather(*(open_transaction(port, content) for _ in range(N)), return_exceptions=True)
    sent = time.monotonic() - t0
    during = rss_kib(pid)
    refused_early = sum(1 for s in sessions if not isinstance(s, Exception) and s[2] is not None)
    errors = sum(1 for s in sessions if isinstance(s, Exception))
    live = [s for s in sessions if not isinstance(s, Exception) and s[2] is None]
    replies = await asyncio.gather(*(finish(r, w) for r, w, _ in live), return_exceptions=True)
    codes = {}
    for r in replies:
        k = "error" if isinstance(r, Exception) else r[:9]
        codes[k] = codes.get(k, 0) + 1
    for s in sessions:
        if not isinstance(s, Exception):
            s[1].close()
    done.set()
    await sampler
    await asyncio.sleep(SETTLE)
    after = rss_kib(pid)
    hwm = rss_kib(pid, "VmHWM:")
    daemon.terminate()
    daemon.wait(timeout=30)
    subprocess.run(["rm", "-rf", work])
    mib = lambda k: f"{k / 1024:.0f} MiB"
    print(f"clients {N} x {SIZE} bytes, budget {BUDGET}")
    print(f"idle {mib(idle)}; all content sent after {sent:.1f} s, RSS then {mib(during)}")
    print(f"peak (VmHWM) {mib(hwm)}, sampled peak {mib(peak_sampled)}; after {SETTLE:.0f} s {mib(after)}")
    print(f"refused at MAIL/RCPT/DATA: {refused_early}; connection errors: {errors}; replies to the dot: {codes}")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(), TIME_LIMIT))
