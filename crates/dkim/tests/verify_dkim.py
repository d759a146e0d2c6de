#!/usr/bin/env python3
"""Independent DKIM verification with dkimpy.

Usage: verify_dkim.py RECORDS.json MESSAGE.eml [MESSAGE.eml ...]

RECORDS.json maps DNS names ("sel._domainkey.example.com") to TXT record
values ("v=DKIM1; k=rsa; p=..."); they are served to dkimpy through its
dnsfunc hook, so no DNS query leaves the process.

Every DKIM-Signature header of every message is verified. One JSON line is
printed per message: {"file": ..., "signatures": N, "results": [true, ...],
"errors": [...]}. The exit status is 0 when every signature of every message
verified, 1 otherwise, 2 on a usage error, 3 if the script itself crashed.
"""

import json
import logging
import sys

import dkim


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(self.format(record))


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        records = {
            k.lower().rstrip("."): v.encode("ascii") for k, v in json.load(f).items()
        }

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        return records.get(name.lower().rstrip("."))

    all_ok = True
    for path in argv[2:]:
        with open(path, "rb") as f:
            message = f.read()
        handler = ListHandler()
        logger = logging.getLogger("dkim-" + path)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        d = dkim.DKIM(message, logger=logger, minkey=1024)
        count = sum(
            1 for name, _ in d.headers if name.lower() == b"dkim-signature"
        )
        results = []
        for idx in range(count):
            try:
                results.append(bool(d.verify(idx=idx, dnsfunc=dnsfunc)))
            except Exception as e:  # any failure to verify is a "no"
                logger.error("signature %d: %s: %s", idx, type(e).__name__, e)
                results.append(False)
        ok = count > 0 and all(results)
        all_ok = all_ok and ok
        out = {"file": path, "signatures": count, "results": results}
        if not ok:
            out["log"] = handler.records[-10:]
        print(json.dumps(out))
    return 0 if all_ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except SystemExit:
        raise
    except BaseException as e:  # a crash is not a verdict
        print("verify_dkim.py crashed: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(3)
