"""Writes the certificates the dane_tlsa target builds chains from:
a root CA, an intermediate and a leaf for mx.example.com under it, and a
self-signed Ed25519 leaf for mx2.example.net (as a DANE-EE server has).
Valid 2020-2120, so any fuzzed "now" in that span finds them current.
Run once with Python's `cryptography`; the DER files are committed."""

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HERE = Path(__file__).parent
START = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
END = datetime.datetime(2120, 1, 1, tzinfo=datetime.timezone.utc)


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def cert(subject, key, issuer, issuer_key, serial, ca, san=None):
    b = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(START)
        .not_valid_after(END)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    algo = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(issuer_key, algo).public_bytes(serialization.Encoding.DER)


root_key = ec.generate_private_key(ec.SECP256R1())
inter_key = ec.generate_private_key(ec.SECP256R1())
leaf_key = ec.generate_private_key(ec.SECP256R1())
ed_key = ed25519.Ed25519PrivateKey.generate()

files = {
    "root.der": cert("Fuzz Root", root_key, "Fuzz Root", root_key, 1, True),
    "intermediate.der": cert("Fuzz Intermediate", inter_key, "Fuzz Root", root_key, 2, True),
    "leaf.der": cert("mx.example.com", leaf_key, "Fuzz Intermediate", inter_key, 3, False, "mx.example.com"),
    "self_signed.der": cert("mx2.example.net", ed_key, "mx2.example.net", ed_key, 4, False, "mx2.example.net"),
}
for f, der in files.items():
    (HERE / f).write_bytes(der)
