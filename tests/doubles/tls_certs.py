"""Test certificates made at test time with the `openssl` command line
(Debian package openssl): a CA (key + self-signed certificate) and
server certificates signed by it, for the Consul double's TLS mode.

    ca = make_ca(dir, "test-ca")                   # Ca(cert, key)
    cert, key = make_server_cert(dir, ca, "srv")   # SAN IP:127.0.0.1
    cert, key = make_server_cert(dir, ca, "x", san="DNS:example.com")

Keys are EC P-256 (fast to generate); certificates are valid for a
week from their creation.
"""

import collections
import os
import subprocess

Ca = collections.namedtuple("Ca", "cert key")


def _openssl(*args, cwd=None):
    p = subprocess.run(("openssl",) + args, cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    if p.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (
            " ".join(args), p.stderr.decode("utf-8", "replace")))
    return p.stdout


def _key(path):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
             "ec_paramgen_curve:P-256", "-out", path)


def make_ca(directory, name):
    """A CA: <name>.key and <name>.pem (CA:TRUE) in directory."""
    key = os.path.join(directory, name + ".key")
    cert = os.path.join(directory, name + ".pem")
    _key(key)
    _openssl("req", "-x509", "-new", "-key", key, "-out", cert,
             "-days", "7", "-subj", "/CN=%s" % name,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Ca(cert, key)


def make_server_cert(directory, ca, name, san="IP:127.0.0.1"):
    """Server key, CSR, and certificate signed by ca, with
    subjectAltName=san: returns (cert path, key path)."""
    key = os.path.join(directory, name + ".key")
    csr = os.path.join(directory, name + ".csr")
    cert = os.path.join(directory, name + ".pem")
    ext = os.path.join(directory, name + ".ext")
    _key(key)
    _openssl("req", "-new", "-key", key, "-out", csr,
             "-subj", "/CN=%s" % name)
    with open(ext, "w") as f:
        f.write("subjectAltName=%s\n"
                "basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n" % san)
    _openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
             "-CAcreateserial", "-out", cert, "-days", "7",
             "-extfile", ext)
    return cert, key
