#!/usr/bin/env python3
"""Interoperability checks: Python's smtplib and swaks against the real daemon.

Starts `ironpost serve` with a test policy on 127.0.0.1 (port 0), runs each
check, prints one line per check and `N passed, M failed`, and exits non-zero
if anything failed. No pytest needed.

The binary is $IRONPOST_BIN, else target/debug/ironpost (built with cargo if
missing). Everything stays on loopback.
"""

import json
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from email.message import EmailMessage
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOST = "mx.test"
MAX_SIZE = 100_000
ID_RE = re.compile(r"2\.0\.0 OK id=([0-9a-f]{32})$")

POLICY = f"""
local kumo = require 'kumo'
kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}
  kumo.configure_local_logs {{ log_dir = './ironpost-data/logs' }}
  kumo.start_esmtp_listener {{
    listen = '127.0.0.1:0',
    hostname = '{HOST}',
    relay_hosts = {{ '127.0.0.1' }},
    max_message_size = {MAX_SIZE},
  }}
end)
-- Keep accepted mail in the spool: route to a prohibited loopback target so
-- delivery defers instead of sending anywhere.
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    retry_interval = '1h',
    protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:9' }} }} }},
  }}
end)
"""


def find_binary():
    env = os.environ.get("IRONPOST_BIN")
    if env:
        return Path(env)
    for profile in ("debug", "release"):
        candidate = REPO / "target" / profile / "ironpost"
        if candidate.exists():
            return candidate
    subprocess.run(
        ["cargo", "build", "-p", "ironpost"], cwd=REPO, check=True
    )
    return REPO / "target" / "debug" / "ironpost"


class Daemon:
    """The real daemon in a private temporary directory."""

    def __init__(self, binary):
        self.dir = Path(tempfile.mkdtemp(prefix="ironpost-py-"))
        os.chmod(self.dir, 0o700)
        (self.dir / "policy.lua").write_text(POLICY)
        self.stderr_path = self.dir / "stderr.txt"
        self.stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--policy", str(self.dir / "policy.lua")],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
            text=True,
        )
        self.port = None
        lines = []
        timer = threading.Timer(30, self.proc.kill)
        timer.start()
        try:
            for line in self.proc.stdout:
                line = line.strip()
                lines.append(line)
                if line.startswith("smtp listener: "):
                    addr = line.split()[2]
                    self.port = int(addr.rsplit(":", 1)[1])
                if line == "ready":
                    break
        finally:
            timer.cancel()
        if self.port is None or lines[-1:] != ["ready"]:
            self.stop()
            raise RuntimeError(
                "daemon did not start:\n" + "\n".join(lines) + "\n" + self.stderr()
            )
        # Keep draining stdout so the daemon never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def records(self, kind):
        out = []
        logs = self.dir / "ironpost-data" / "logs"
        for path in sorted(p for p in logs.rglob("*") if p.is_file()):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("type") == kind:
                    out.append(rec)
        return out

    def wait_for(self, kind, pred, timeout=5.0):
        """The first record of `kind` matching `pred`, polling the logs."""
        deadline = time.time() + timeout
        while True:
            for rec in self.records(kind):
                if pred(rec):
                    return rec
            if time.time() > deadline:
                raise AssertionError(f"no matching {kind} record in {self.records(kind)}")
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr_file.close()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def insecure_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def smtp(d):
    s = smtplib.SMTP("127.0.0.1", d.port, local_hostname="pytest.client", timeout=10)
    return s


def expect(reply, code, enhanced=None):
    got_code, text = reply
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    assert got_code == code, f"expected {code}, got {got_code} {text!r}"
    if enhanced is not None:
        assert text.startswith(enhanced), f"expected {enhanced} in {text!r}"
    return text


def transaction(s, sender, rcpts, body):
    """MAIL/RCPT/DATA by hand; returns the spool id from the 250."""
    expect(s.mail(sender), 250, "2.1.0")
    for r in rcpts:
        expect(s.rcpt(r), 250, "2.1.5")
    text = expect(s.data(body), 250, "2.0.0")
    m = ID_RE.search(text)
    assert m, f"no spool id in {text!r}"
    return m.group(1)


# --- checks -----------------------------------------------------------------

ACCEPTED = []  # (id, tls) of every message a check got a 250 for


def check_ehlo_features(d):
    with smtp(d) as s:
        code, banner = s.ehlo()
        assert code == 250
        assert banner.decode().startswith(f"{HOST} Hello"), banner
        for ext in ("pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes", "starttls"):
            assert s.has_extn(ext), f"{ext} not advertised: {s.esmtp_features}"
        assert s.esmtp_features["size"] == str(MAX_SIZE), s.esmtp_features


def check_greeting(d):
    s = smtplib.SMTP(timeout=10)
    code, msg = s.connect("127.0.0.1", d.port)
    assert code == 220 and msg.decode() == f"{HOST} ESMTP Ironpost", (code, msg)
    s.quit()


def check_sendmail_plain(d):
    with smtp(d) as s:
        s.ehlo()
        msg_id = transaction(
            s,
            "sender@example.test",
            ["a@example.test", "b@example.test"],
            "Subject: smtplib plain\r\n\r\nHello.\r\n..leading dot\r\n",
        )
        ACCEPTED.append((msg_id, False))
        # The high-level API works too.
        refused = s.sendmail("sender@example.test", ["c@example.test"], "Subject: x\r\n\r\ny\r\n")
        assert refused == {}, refused


def check_send_message_utf8(d):
    msg = EmailMessage()
    msg["From"] = "Jörg <jörg@exämple.test>"
    msg["To"] = "δοκιμή@example.test"
    msg["Subject"] = "Grüße"
    msg.set_content("Unicode body: ✓\n")
    with smtp(d) as s:
        s.ehlo()
        refused = s.send_message(msg)  # chooses SMTPUTF8 by itself
        assert refused == {}, refused
    rec = d.wait_for("Reception", lambda r: r.get("sender") == "jörg@exämple.test")
    assert rec.get("recipients") == ["δοκιμή@example.test"], rec


def check_starttls(d):
    with smtp(d) as s:
        s.ehlo()
        code, _ = s.starttls(context=insecure_tls())
        assert code == 220
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS offered again under TLS"
        version = s.sock.version()
        msg_id = transaction(s, "tls@example.test", ["a@example.test"], "Subject: tls\r\n\r\nsecret\r\n")
        ACCEPTED.append((msg_id, True))
    rec = d.wait_for("Reception", lambda r: r.get("id") == msg_id)
    assert rec.get("reception_protocol") == "ESMTPS", rec
    assert rec.get("tls_cipher"), rec
    assert rec.get("tls_protocol_version", "").replace("_", ".").endswith(version[-3:]), (
        rec,
        version,
    )


def check_command_replies(d):
    with smtp(d) as s:
        expect(s.docmd("MAIL FROM:<a@example.test>"), 503, "5.5.1")
        s.ehlo()
        expect(s.noop(), 250, "2.0.0")
        expect(s.verify("postmaster"), 252, "2.5.0")
        expect(s.docmd("HELP"), 214, "2.0.0")
        expect(s.docmd("EXPN staff"), 502, "5.5.1")
        expect(s.docmd("FROB"), 500, "5.5.1")
        expect(s.docmd("MAIL FROM:a@example.test"), 501, "5.1.7")
        expect(s.docmd("AUTH PLAIN"), 530, "5.7.0")
        expect(s.docmd("RCPT TO:<a@example.test>"), 503, "5.5.1")
        expect(s.mail("a@example.test"), 250, "2.1.0")
        expect(s.rcpt("<bad address>"), 501, "5.1.3")
        expect(s.docmd("DATA"), 554, "5.5.1")
        expect(s.rset(), 250, "2.0.0")
        code, _ = s.quit()
        assert code == 221


def check_size_limits(d):
    with smtp(d) as s:
        s.ehlo()
        expect(s.mail("a@example.test", [f"SIZE={MAX_SIZE + 1}"]), 552, "5.3.4")
        big = "Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * (MAX_SIZE // 72 + 10)
        # sendmail declares SIZE= itself, so the refusal comes at MAIL.
        try:
            s.sendmail("a@example.test", ["b@example.test"], big)
        except smtplib.SMTPSenderRefused as e:
            assert e.smtp_code == 552 and e.smtp_error.startswith(b"5.3.4"), e
        else:
            raise AssertionError("oversized message accepted")
        expect(s.rset(), 250)
        # Without SIZE=, the actual bytes are counted.
        expect(s.mail("a@example.test"), 250)
        expect(s.rcpt("b@example.test"), 250)
        expect(s.data(big), 552, "5.3.4")
        expect(s.noop(), 250)


def check_bare_lf_rejected(d):
    # smtplib normalises line endings, so write the DATA bytes ourselves.
    with smtp(d) as s:
        s.ehlo()
        expect(s.mail("a@example.test"), 250)
        expect(s.rcpt("b@example.test"), 250)
        expect(s.docmd("DATA"), 354)
        s.sock.sendall(
            b"Subject: smuggle\r\n\r\nx\n.\nMAIL FROM:<evil@y.test>\r\nRCPT TO:<v@w.test>\r\n"
            b"DATA\r\nsmuggled\r\n.\r\n"
        )
        expect(s.getreply(), 552, "5.6.0")
        # The very next reply belongs to NOOP: nothing was smuggled.
        assert s.noop() == (250, b"2.0.0 OK")
    senders = [r.get("sender") for r in d.records("Reception")]
    assert "evil@y.test" not in senders, senders


def check_pipelining(d):
    with smtp(d) as s:
        s.ehlo()
        s.sock.sendall(
            b"MAIL FROM:<pipe@example.test>\r\nRCPT TO:<a@example.test>\r\n"
            b"RCPT TO:<b@example.test>\r\nDATA\r\n"
        )
        expect(s.getreply(), 250, "2.1.0")
        expect(s.getreply(), 250, "2.1.5")
        expect(s.getreply(), 250, "2.1.5")
        expect(s.getreply(), 354)
        s.sock.sendall(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nNOOP\r\n")
        text = expect(s.getreply(), 250, "2.0.0")
        ACCEPTED.append((ID_RE.search(text).group(1), False))
        expect(s.getreply(), 250, "2.0.0")


def swaks(d, *args):
    if shutil.which("swaks") is None:
        raise AssertionError("swaks is not installed (apt-get install swaks)")
    cmd = [
        "swaks",
        "--server", f"127.0.0.1:{d.port}",
        "--helo", "swaks.test",
        "--from", "swaks@example.test",
        "--to", "rcpt@example.test",
        "--timeout", "10",
        *args,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"swaks exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return p.stdout


def swaks_id(out, marker):
    m = re.search(re.escape(marker) + r"\s+250 2\.0\.0 OK id=([0-9a-f]{32})", out)
    assert m, f"no 250 with an id after {marker!r} in:\n{out}"
    return m.group(1)


def check_swaks_plain(d):
    out = swaks(d, "--header", "Subject: swaks plain")
    ACCEPTED.append((swaks_id(out, "<-"), False))


def check_swaks_starttls(d):
    out = swaks(d, "--tls", "--header", "Subject: swaks tls")
    assert "TLS started" in out, out
    # "<~" marks replies read over TLS.
    ACCEPTED.append((swaks_id(out, "<~"), True))


def check_swaks_pipelining(d):
    out = swaks(d, "--pipeline", "--header", "Subject: swaks pipeline")
    ACCEPTED.append((swaks_id(out, "<-"), False))


def check_logs_and_spool(d):
    for msg_id, tls in ACCEPTED:
        rec = d.wait_for("Reception", lambda r: r.get("id") == msg_id)
        assert bool(rec.get("tls_cipher")) == tls, rec
        assert rec.get("size", 0) > 0, rec
    rejections = d.records("Rejection")
    assert any("5.6.0" in json.dumps(r) for r in rejections), rejections
    spool = d.dir / "ironpost-data" / "spool"
    segments = [p for p in spool.iterdir() if p.is_file() and p.stat().st_size > 0]
    assert segments, "spool is empty"
    data = b"".join(p.read_bytes() for p in segments)
    for msg_id, _ in ACCEPTED:
        assert msg_id.encode() in data, f"{msg_id} not in the spool"


CHECKS = [
    check_greeting,
    check_ehlo_features,
    check_sendmail_plain,
    check_send_message_utf8,
    check_starttls,
    check_command_replies,
    check_size_limits,
    check_bare_lf_rejected,
    check_pipelining,
    check_swaks_plain,
    check_swaks_starttls,
    check_swaks_pipelining,
    check_logs_and_spool,  # last: looks at what the others left
]


def main():
    binary = find_binary()
    d = Daemon(binary)
    passed = failed = 0
    try:
        for check in CHECKS:
            name = check.__name__
            try:
                check(d)
            except Exception:  # report and go on with the next check
                failed += 1
                print(f"FAIL {name}")
                traceback.print_exc()
            else:
                passed += 1
                print(f"ok   {name}")
    finally:
        d.stop()
        if failed:
            print("--- ironpost stderr ---")
            print(d.stderr())
        d.cleanup()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
