#!/usr/bin/env python3
"""Consul HTTP API double (Python 3 standard library only).

Behaves like a single Consul dev agent (server mode, datacenter "dc1",
node "node1" at 127.0.0.1) for the endpoints the front door uses, with
the response shapes and headers a real agent sends, plus a control API
that lets a test inject faults.

Run it standalone:

    /usr/bin/python3 tests/doubles/consul_double.py --port 8500 \
        [--host 127.0.0.1] [--token SECRET] [--no-jitter] \
        [--max-conns-per-client 200] \
        [--tls-cert server.pem --tls-key server.key]

or from pytest:

    from consul_double import ConsulDouble
    d = ConsulDouble(token=None).start()      # ephemeral port
    d.url                                     # "http://127.0.0.1:PORT"
    d.register("a.b.c", "a.b.c-1", "10.0.0.1", 8080, meta={...})
    d.stop()

TLS mode (HTTPS, as an agent with an https port): give a PEM
certificate chain and its key,

    d = ConsulDouble(certfile="server.pem", keyfile="server.key").start()
    d.url                                     # "https://127.0.0.1:PORT"

and the listening socket is wrapped with
ssl.SSLContext(PROTOCOL_TLS_SERVER) (TLS 1.2+, no client certificate
asked).  The handshake runs in the connection's own thread, so a client
that refuses the certificate (or never speaks TLS) costs only its
connection; such failures are not printed.  Everything else (API,
control API, faults, counts) is identical, over HTTPS.

Consul API implemented (docs/consul.md)
---------------------------------------
GET  /v1/health/service/<name>   ?passing[=1] ?tag=T (repeatable, AND)
                                 ?dc= ?index= ?wait= ?token=
GET  /v1/catalog/services        ?dc= ?index= ?wait=
GET  /v1/catalog/service/<name>  ?tag= ?dc= ?index= ?wait=
GET  /v1/health/state/<state>    any|passing|warning|critical: the
                                 checks in that state (node checks
                                 included), ?dc= ?index= ?wait=
PUT  /v1/agent/service/register  (Name, ID, Tags, Address, Port, Meta,
                                  Weights, Check, Checks, ...)
PUT  /v1/agent/service/deregister/<id>
PUT  /v1/agent/check/pass|warn|fail/<checkid>  ?note=
PUT  /v1/agent/check/update/<checkid>          {"Status", "Output"}
PUT  /v1/catalog/register        (Node, Address, Service, Check, Checks)
PUT  /v1/catalog/deregister      (Node [, ServiceID] [, CheckID])
GET  /v1/status/leader

What real agents send, reproduced here (docs/consul.md): the shapes
of open-source Consul (no Namespace/Partition fields, PeerName ""), a
nil Tags/Meta as null, a Port of 0 left out, Go's JSON escapes (<, >,
& as \u003c..., a NUL as \u0000, other text raw UTF-8; invalid UTF-8
given as bytes becomes U+FFFD); Service.ID unique per node only (no ID:
the service name; register(..., node=N) puts an instance on node N
with an agent's passing serfHealth check, which counts in its health);
check Output free text (bytes allowed); ?tag= compared ignoring case;
gzip when the client sends Accept-Encoding: gzip (counted, see
state()["gzipped"]); X-Consul-Knownleader false after
known_leader(False); with a token configured, no token (the anonymous
token) gets ACL-filtered reads (200 [] or {}, X-Consul-Results-
Filtered-By-Acls: true) and 403 "Permission denied" on writes, an
unknown token 403 "ACL not found".

Index semantics: one global raft index, bumped by every write that
changes something; each service name has a modify index (the raft index
of the last write that touched one of its instances or their checks,
node checks included); /v1/catalog/services watches the index of the
last write that changed the set of services or their tags.  Every read
answers X-Consul-Index (never below 1), X-Consul-Knownleader: true,
X-Consul-Lastcontact: 0, Content-Type: application/json.

/v1/health/state watches the checks' index: the highest ModifyIndex of
a check, or of a service's last write (a deregistration removes its
checks), so it wakes on any check change, addition or removal.

Consistency: every read accepts ?stale or ?consistent (both: 400 like
Consul) and answers X-Consul-Effective-Consistency: stale, consistent
or leader; the answer is the same (one agent, no followers).

Connections: like Consul's limits.http_max_conns_per_client (default
200, 0 = no limit), a client address holding that many open
connections gets its next one answered "429 Too Many Requests" and
closed before any request is read (TLS mode: closed without a word).
The peak of open connections per client address and the count of
refused ones are in /_double/state ("peak_conns", "refused").

Blocking: with ?index=I (I > 0) the request waits until the watched
index exceeds I or until wait (+ up to wait/16 of random jitter,
disabled by --no-jitter) elapses, then answers the current state.
wait is a Go duration ("250ms", "10s", "5m", "1m30s"); default 5m,
capped at 10m; a bad wait or index answers 400 like Consul.  As in
Consul, a restore (index reset, restart) wakes every blocked query.

ACL: when a token is configured, every /v1/ request except
/v1/status/* needs it in X-Consul-Token (or ?token=, or
"Authorization: Bearer"): without a token, reads are ACL-filtered
(200 and nothing in them) and writes get 403 "Permission denied"; a
token that is not the configured one gets 403 "ACL not found".  A dc other
than "dc1" answers 500 "No path to datacenter".

Control API (not Consul; JSON bodies, JSON answers)
---------------------------------------------------
Faults apply to /v1/ requests only, in the order they were added; each
takes optional "count" (default 1; -1 = until cleared) and "path"
(a prefix of the request path, e.g. "/v1/health/service/a.b.c").

POST /_double/fault      {"kind": K, ...} with K one of
    "status"     {"status": 503, "body": "..."}   answer that status
    "delay"      {"seconds": 0.5}   wait, then answer normally
    "hang"       never answer until POST /_double/release (then answer)
    "malformed"  answer 200 with a body that is not JSON
    "truncated"  announce the full Content-Length, send half, close
    "drop"       close the connection without any answer
    "no_leader"  answer 500 "No cluster leader" (an election)
POST /_double/release    release every hung request
POST /_double/clear      remove every fault
POST /_double/index      {"index": N}  raft index goes back to N (every
                         watched index is clamped to N; wakes waiters)
POST /_double/restart    state lost: registry empty, index back to 1,
                         blocked requests dropped without answer
POST /_double/leader     {"known": false}  X-Consul-Knownleader: false
POST /_double/reset_counts
POST /_double/register_many  {"entries": [[name, id, address, port,
                         [tag...]], ...]}  register_many() (setups)
GET  /_double/state      {"index", "counts": {path: n},
                          "open": {service: n}, "last_token",
                          "faults": n, "hung": n,
                          "peak_conns": {ip: n}, "refused": n,
                          "gzipped": n}

The same operations exist as methods of ConsulDouble (add_fault,
release, clear_faults, set_index, restart, counts, open_requests,
last_token, wait_for(...)); requests(prefix) lists the /v1/ requests
received (time, path, index, consistency, client port), oldest first.

Not implemented: TTL expiry (a TTL check keeps its status until
updated), followers (consistency modes change only the header),
filter=, near=, namespaces, anti-entropy.
"""

import argparse
import collections
import copy
import gzip
import json
import os
import random
import re
import socket
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


DATACENTER = "dc1"
NODE_NAME = "node1"
NODE_ADDR = "127.0.0.1"
DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0

_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "ms": 1e-3,
    "s": 1.0, "m": 60.0, "h": 3600.0,
}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|ms|s|m|h)")


class ApiError(Exception):
    """An HTTP error answer with Consul's text/plain body."""

    def __init__(self, status, text):
        Exception.__init__(self, text)
        self.status = status
        self.text = text


class Encoded(list):
    """A JSON array whose elements are already encoded (bytes each)."""


class Prebuilt(bytes):
    """An answer's JSON computed in advance, with its gzip (zipped)."""
    zipped = None


def go_json(obj):
    """JSON as Go's encoding/json (Consul) writes it: compact, non-ASCII
    raw UTF-8, <, > and & escaped for HTML, U+2028/2029 escaped."""
    if isinstance(obj, Encoded):
        return b"[" + b",".join(obj) + b"]"
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for c, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                   ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(c, esc)
    return text.encode("utf-8")


def go_text(value):
    """Free text as Consul stores it: bytes that are not UTF-8 become
    U+FFFD, as Go's encoder writes them."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def parse_duration(text):
    """Go's time.ParseDuration, as Consul uses it for ?wait=."""
    if text in ("0",):
        return 0.0
    pos, total = 0, 0.0
    if not text:
        raise ValueError("empty duration")
    while pos < len(text):
        m = _DURATION_RE.match(text, pos)
        if m is None:
            raise ValueError("invalid duration %r" % text)
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total


class Registry:
    """The catalog: nodes, services, checks and their indexes.

    Every method runs with the double's lock held."""

    def __init__(self, encode_cache=False):
        # health answers' entries encoded once per version (benches: an
        # agent's encoding cost is not the measured machine's); entries
        # must then change only through the methods, which move indexes
        self.encode_cache = {} if encode_cache else None
        self.index = 1
        self.nodes = {}
        self.services = {}          # (node, service id) -> dict
        self.checks = {}            # (node, check id) -> dict
        self.service_index = {}     # service name -> modify index
        self.services_index = 1     # /v1/catalog/services
        self.add_node(NODE_NAME, NODE_ADDR, node_id=str(uuid.uuid4()),
                      bump=False)
        self.checks[(NODE_NAME, "serfHealth")] = self._check(
            NODE_NAME, "serfHealth", "Serf Health Status", "passing",
            "Agent alive and reachable", None, "", 1)
        self.services[(NODE_NAME, "consul")] = self._service(
            {"ID": "consul", "Name": "consul", "Port": 8300}, 1)
        self.service_index["consul"] = 1

    # building blocks

    def bump(self):
        self.index += 1
        self.writes = getattr(self, "writes", 0) + 1
        return self.index

    def add_node(self, name, address, node_id=None, meta=None,
                 tagged=None, bump=True):
        node = self.nodes.get(name)
        idx = self.bump() if bump else self.index
        if node is None:
            node = {
                "ID": node_id or str(uuid.uuid4()),
                "Node": name,
                "Address": address,
                "Datacenter": DATACENTER,
                "TaggedAddresses": tagged or {
                    "lan": address, "lan_ipv4": address,
                    "wan": address, "wan_ipv4": address,
                },
                "Meta": meta if meta is not None else {
                    "consul-network-segment": ""},
                "CreateIndex": idx,
                "ModifyIndex": idx,
            }
            self.nodes[name] = node
        elif node["Address"] != address or (meta is not None
                                            and node["Meta"] != meta):
            node["Address"] = address
            if meta is not None:
                node["Meta"] = meta
            node["ModifyIndex"] = idx
            for (n, _), svc in self.services.items():
                if n == name:
                    self.service_index[svc["Service"]] = idx
        return node

    @staticmethod
    def _service(body, idx):
        address = body.get("Address") or ""
        port = body.get("Port") or 0
        weights = body.get("Weights")
        if weights is None:
            weights = {"Passing": 1, "Warning": 1}
        tagged = body.get("TaggedAddresses")
        if tagged is None:
            tagged = {}
            if address:
                fam = "ipv6" if ":" in address else "ipv4"
                tagged = {
                    "lan_" + fam: {"Address": address, "Port": port},
                    "wan_" + fam: {"Address": address, "Port": port},
                }
        return {
            "ID": body.get("ID") or body["Name"],
            "Service": body["Name"],
            # a nil slice or map is null, as Go writes it
            "Tags": (list(body["Tags"]) if body.get("Tags") is not None
                     else None),
            "Address": address,
            "TaggedAddresses": tagged,
            "Meta": (dict(body["Meta"]) if body.get("Meta") is not None
                     else None),
            "Port": port,
            "Weights": {"Passing": weights.get("Passing", 1),
                        "Warning": weights.get("Warning", 1)},
            "EnableTagOverride": bool(body.get("EnableTagOverride")),
            "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
            "Connect": {},
            "PeerName": "",
            "Kind": body.get("Kind", ""),
            "Datacenter": DATACENTER,
            "CreateIndex": idx,
            "ModifyIndex": idx,
        }

    def _check(self, node, check_id, name, status, output, svc, ctype, idx,
               extra=None):
        c = {
            "Node": node,
            "CheckID": check_id,
            "Name": name,
            "Status": status,
            "Notes": (extra or {}).get("Notes", ""),
            "Output": go_text(output),
            "ServiceID": svc["ID"] if svc else "",
            "ServiceName": svc["Service"] if svc else "",
            "ServiceTags": (svc["Tags"] and list(svc["Tags"])) if svc
            else [],
            "Type": ctype,
            "Interval": (extra or {}).get("Interval", ""),
            "Timeout": (extra or {}).get("Timeout", ""),
            "ExposedPort": 0,
            "Definition": {},
            "CreateIndex": idx,
            "ModifyIndex": idx,
        }
        return c

    @staticmethod
    def _check_type(defn):
        for key, ctype in (("TTL", "ttl"), ("HTTP", "http"),
                           ("TCP", "tcp"), ("GRPC", "grpc"),
                           ("Args", "script"), ("AliasService", "alias")):
            if defn.get(key):
                return ctype
        return ""

    def _service_checks(self, node, svc, body, idx):
        defs = []
        if body.get("Check"):
            defs.append(body["Check"])
        defs.extend(body.get("Checks") or [])
        for i, d in enumerate(defs):
            if not isinstance(d, dict):
                raise ApiError(400, "Request decode failed: bad check")
            if d.get("CheckID") or d.get("ID"):
                cid = d.get("CheckID") or d.get("ID")
            elif len(defs) == 1:
                cid = "service:" + svc["ID"]
            else:
                cid = "service:%s:%d" % (svc["ID"], i + 1)
            name = d.get("Name") or "Service '%s' check" % svc["Service"]
            status = d.get("Status") or "critical"
            if status not in ("passing", "warning", "critical"):
                raise ApiError(400, "Invalid check status: %r" % status)
            self.checks[(node, cid)] = self._check(
                node, cid, name, status, d.get("Output", ""), svc,
                self._check_type(d), idx, d)

    # writes

    def register_service(self, node, body):
        if not isinstance(body, dict) or not isinstance(
                body.get("Name"), str) or not body["Name"]:
            raise ApiError(400, "Missing service name")
        port = body.get("Port", 0)
        if not isinstance(port, int) or port < 0 or port > 65535:
            raise ApiError(400, "Request decode failed: invalid Port")
        weights = body.get("Weights")
        if weights is not None and (not isinstance(weights, dict)
                                    or not isinstance(
                                        weights.get("Passing", 1), int)):
            raise ApiError(400, "Request decode failed: invalid Weights")
        idx = self.bump()
        svc = self._service(body, idx)
        old = self.services.get((node, svc["ID"]))
        if old is not None:
            svc["CreateIndex"] = old["CreateIndex"]
            if old["Service"] != svc["Service"]:
                self.service_index[old["Service"]] = idx
        old_tags = self._all_tags()
        self.services[(node, svc["ID"])] = svc
        for key in [k for k, c in self.checks.items()
                    if k[0] == node and c["ServiceID"] == svc["ID"]]:
            del self.checks[key]
        self._service_checks(node, svc, body, idx)
        self.service_index[svc["Service"]] = idx
        if self._all_tags() != old_tags:
            self.services_index = idx
        return svc

    def deregister_service(self, node, service_id):
        svc = self.services.get((node, service_id))
        if svc is None:
            return False
        old_tags = self._all_tags()
        idx = self.bump()
        del self.services[(node, service_id)]
        for key in [k for k, c in self.checks.items()
                    if k[0] == node and c["ServiceID"] == service_id]:
            del self.checks[key]
        self.service_index[svc["Service"]] = idx
        if self._all_tags() != old_tags:
            self.services_index = idx
        return True

    def deregister_node(self, node):
        if node not in self.nodes:
            return False
        for (n, sid) in [k for k in self.services if k[0] == node]:
            self.deregister_service(n, sid)
        idx = self.bump()
        for key in [k for k in self.checks if k[0] == node]:
            del self.checks[key]
        del self.nodes[node]
        return idx

    def deregister_check(self, node, check_id):
        c = self.checks.pop((node, check_id), None)
        if c is None:
            return False
        self._touch_check(node, c, self.bump())
        return True

    def _touch_check(self, node, c, idx):
        if c["ServiceName"]:
            self.service_index[c["ServiceName"]] = idx
            return
        for (n, _), svc in self.services.items():
            if n == node:
                self.service_index[svc["Service"]] = idx

    def update_check(self, check_id, status, output, node=NODE_NAME):
        c = self.checks.get((node, check_id))
        if c is None:
            return False
        if c["Status"] == status and c["Output"] == go_text(output):
            return True
        idx = self.bump()
        c["Status"] = status
        c["Output"] = go_text(output)
        c["ModifyIndex"] = idx
        self._touch_check(node, c, idx)
        return True

    def add_agent_node(self, name, address):
        """A node running an agent: its serfHealth check is passing."""
        if name in self.nodes:
            return
        self.add_node(name, address)
        self.checks[(name, "serfHealth")] = self._check(
            name, "serfHealth", "Serf Health Status", "passing",
            "Agent alive and reachable", None, "", self.index)

    def catalog_register(self, body):
        if not isinstance(body, dict) or not body.get("Node") or not \
                body.get("Address"):
            raise ApiError(400, "Must provide node and address")
        node = body["Node"]
        self.add_node(node, body["Address"], node_id=body.get("ID"),
                      meta=body.get("NodeMeta"),
                      tagged=body.get("TaggedAddresses"))
        svc = None
        if body.get("Service"):
            sbody = dict(body["Service"])
            sbody.setdefault("Name", sbody.get("Service"))
            sbody.pop("Check", None)
            sbody.pop("Checks", None)
            svc = self.register_service(node, sbody)
        defs = []
        if body.get("Check"):
            defs.append(body["Check"])
        defs.extend(body.get("Checks") or [])
        for d in defs:
            if not isinstance(d, dict) or not (d.get("CheckID")
                                               or d.get("Name")):
                raise ApiError(400, "Missing check ID")
            idx = self.bump()
            owner = None
            if d.get("ServiceID"):
                owner = self.services.get((node, d["ServiceID"]))
                if owner is None:
                    raise ApiError(500, "Unknown service ID %r"
                                   % d["ServiceID"])
            cid = d.get("CheckID") or d.get("Name")
            status = d.get("Status") or "critical"
            c = self._check(node, cid, d.get("Name") or cid, status,
                            d.get("Output", ""), owner,
                            self._check_type(d.get("Definition") or {}),
                            idx, d)
            self.checks[(node, cid)] = c
            self._touch_check(node, c, idx)
        return svc

    # reads

    def _all_tags(self):
        out = {}
        for svc in self.services.values():
            tags = out.setdefault(svc["Service"], [])
            for t in svc["Tags"] or []:
                if t not in tags:
                    tags.append(t)
        return {k: sorted(v) for k, v in out.items()}

    def catalog_services(self):
        return self._all_tags()

    def instances(self, name, tags):
        out = []
        for (node, sid), svc in self._sorted(self.services):
            if svc["Service"] != name:
                continue
            # Consul's tag filter ignores case
            have = [t.lower() for t in svc["Tags"] or []]
            if any(t.lower() not in have for t in tags):
                continue
            out.append((node, svc))
        return out

    def health_service(self, name, tags, passing):
        out = []
        # the checks of a (node, service id), the node's own under id "",
        # in the sorted order: one pass, not one per instance
        by_owner = {}
        for (n, _), c in self._sorted(self.checks):
            by_owner.setdefault((n, c["ServiceID"]), []).append(c)
        for node, svc in self.instances(name, tags):
            # the order of the (node, CheckID) keys, as before
            checks = sorted(by_owner.get((node, ""), []) +
                            by_owner.get((node, svc["ID"]), []),
                            key=lambda c: c["CheckID"])
            if passing and any(c["Status"] != "passing" for c in checks):
                continue
            if self.encode_cache is not None:
                out.append(self._encoded_entry(node, svc, checks))
                continue
            # Go leaves a Port of 0 out (omitempty)
            service = {k: v for k, v in svc.items()
                       if k != "Datacenter" and (k != "Port" or v)}
            out.append({"Node": dict(self.nodes[node]),
                        "Service": service, "Checks": checks})
        if self.encode_cache is not None:
            return Encoded(out)
        return out

    def _encoded_entry(self, node, svc, checks):
        key = (node, svc["ID"], self.nodes[node]["ModifyIndex"],
               svc["ModifyIndex"],
               tuple((c["CheckID"], c["ModifyIndex"]) for c in checks))
        body = self.encode_cache.get(key)
        if body is None:
            service = {k: v for k, v in svc.items()
                       if k != "Datacenter" and (k != "Port" or v)}
            body = go_json({"Node": dict(self.nodes[node]),
                            "Service": service, "Checks": checks})
            self.encode_cache[key] = body
        return body

    def catalog_service(self, name, tags):
        out = []
        for node, svc in self.instances(name, tags):
            n = self.nodes[node]
            out.append({
                "ID": n["ID"], "Node": node, "Address": n["Address"],
                "Datacenter": DATACENTER,
                "TaggedAddresses": n["TaggedAddresses"],
                "NodeMeta": n["Meta"],
                "ServiceKind": svc["Kind"],
                "ServiceID": svc["ID"],
                "ServiceName": svc["Service"],
                "ServiceTags": svc["Tags"],
                "ServiceAddress": svc["Address"],
                "ServiceTaggedAddresses": svc["TaggedAddresses"],
                "ServiceWeights": svc["Weights"],
                "ServiceMeta": svc["Meta"],
                "ServicePort": svc["Port"],
                "ServiceEnableTagOverride": svc["EnableTagOverride"],
                "ServiceProxy": svc["Proxy"],
                "ServiceConnect": svc["Connect"],
                "CreateIndex": svc["CreateIndex"],
                "ModifyIndex": svc["ModifyIndex"],
            })
        return out

    def _sorted(self, table):
        """sorted(table.items()), kept while nothing is added or removed
        (every write goes through bump()): a read of one service among
        thousands does not sort them all again."""
        key = (id(table), getattr(self, "writes", 0), len(table))
        cache = self.__dict__.setdefault("_sorted_cache", {})
        if cache.get(id(table), (None,))[0] != key:
            cache[id(table)] = (key, sorted(table.items()))
        return cache[id(table)][1]

    def checks_index(self):
        """The index /v1/health/state blocks on."""
        idx = 1
        for c in self.checks.values():
            idx = max(idx, c["ModifyIndex"])
        for v in self.service_index.values():
            idx = max(idx, v)
        return idx

    def health_state(self, state):
        return [dict(c) for _, c in self._sorted(self.checks)
                if state == "any" or c["Status"] == state]

    def clamp(self, index):
        self.index = index
        for k in self.service_index:
            self.service_index[k] = min(self.service_index[k], index)
        self.services_index = min(self.services_index, index)


class Fault:
    def __init__(self, kind, count=1, path="", status=500, body=None,
                 seconds=0.0):
        if kind not in ("status", "delay", "hang", "malformed",
                        "truncated", "drop", "no_leader"):
            raise ValueError("unknown fault kind %r" % kind)
        self.kind = kind
        self.count = int(count)
        self.path = path or ""
        self.status = int(status)
        self.body = body
        self.seconds = float(seconds)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    double = None

    def verify_request(self, request, client_address):
        """Consul's per-client connection limit, at accept time."""
        d = self.double
        ip = client_address[0]
        with d.cond:
            n = d.clients.get(ip, 0)
            refuse = d.max_conns_per_client > 0 and \
                n >= d.max_conns_per_client
            if refuse:
                d.refused += 1
            else:
                d.clients[ip] = n + 1
                d.peak_conns[ip] = max(d.peak_conns.get(ip, 0), n + 1)
                d.accepted[request] = ip
        if refuse and not d.certfile:
            try:
                request.sendall(b"HTTP/1.1 429 Too Many Requests\r\n"
                                b"Content-Length: 0\r\n"
                                b"Connection: close\r\n\r\n")
            except OSError:
                pass
        return not refuse

    def shutdown_request(self, request):
        d = self.double
        with d.cond:
            ip = d.accepted.pop(request, None)
            if ip is not None:
                d.clients[ip] -= 1
        ThreadingHTTPServer.shutdown_request(self, request)

    def handle_error(self, request, client_address):
        # TLS mode: a client refusing our certificate, or not speaking
        # TLS, is a test's business, not a traceback on stderr
        if isinstance(request, ssl.SSLSocket):
            if isinstance(sys.exc_info()[1], (ssl.SSLError, OSError)):
                return
        ThreadingHTTPServer.handle_error(self, request, client_address)


class ConsulDouble:
    """The double: state, faults, and an HTTP server on a thread."""

    def __init__(self, host="127.0.0.1", port=0, token=None, jitter=True,
                 certfile=None, keyfile=None, max_conns_per_client=200,
                 nice=0, idle=False, encode_cache=False):
        self.host = host
        # the server's threads at this nice value, and in the SCHED_IDLE
        # class if idle (benches: a remote agent's CPU is not the
        # measured machine's)
        self.nice = nice
        self.idle = idle
        self.port = port
        self.token = token
        self.jitter = jitter
        self.certfile = certfile    # TLS mode when set
        self.keyfile = keyfile
        self.cond = threading.Condition()
        self.encode_cache = encode_cache
        # with encode_cache, gzip answers too are kept, by their bytes
        # (benches: a server's compression is not the measured machine's)
        self.gzip_cache = {} if encode_cache else None
        # with encode_cache: whole answers computed by prewarm(), by
        # (service, index), served as they are
        self.answer_cache = {} if encode_cache else None
        self.reg = Registry(encode_cache)
        self.faults = []
        self.counts = {}
        self.open = {}
        self.last_token_seen = None
        self.generation = 0         # bumped by restore/restart
        self.restarts = 0           # bumped by restart only
        self.hung = 0
        self.gzipped = 0
        self.leader_known = True
        self.release_gen = 0
        self.stopping = False
        self.conns = set()
        self.max_conns_per_client = int(max_conns_per_client)
        self.clients = {}           # client address -> open connections
        self.peak_conns = {}        # client address -> highest count
        self.accepted = {}          # socket -> client address
        self.refused = 0
        self.log = collections.deque(maxlen=100000)
        self.httpd = None
        self.thread = None

    # lifecycle

    def start(self):
        handler = type("Handler", (_Handler,), {"double": self})
        self.httpd = _Server((self.host, self.port), handler)
        self.httpd.double = self
        if self.certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.certfile, self.keyfile)
            # handshake on first read, in the connection's thread: a
            # stuck or refusing client cannot hold up accept()
            self.httpd.socket = ctx.wrap_socket(
                self.httpd.socket, server_side=True,
                do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self):
        if self.nice:
            # this thread only; the connections' threads inherit it
            os.setpriority(os.PRIO_PROCESS, 0, self.nice)
        if self.idle:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        self.httpd.serve_forever(poll_interval=0.05)

    def stop(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self._drop_all()
            self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "%s://%s:%d" % ("https" if self.certfile else "http",
                               self.host, self.port)

    def _drop_all(self):
        with self.cond:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # test helpers (Python side of the control API)

    def register(self, name, service_id, address, port, tags=None,
                 meta=None, weight=None, status="passing", node=None,
                 warning_weight=None, output=""):
        """Registers an instance with one check in `status` (its Output:
        `output`, str or bytes).  service_id None: registered without
        an ID, so Consul uses the name (unique per node only).  node:
        the instance's node, an agent of its own (a passing serfHealth
        check) at `address`; default the double's agent node1.  tags
        and meta None are null, as Consul sends a nil slice or map.
        weight/warning_weight: Weights.Passing/Warning (default 1)."""
        body = {"Name": name, "Address": address, "Port": port,
                "Check": {"TTL": "30s", "Status": status,
                          "Output": output}}
        if service_id is not None:
            body["ID"] = service_id
        if tags is not None:
            body["Tags"] = tags
        if meta is not None:
            body["Meta"] = meta
        if weight is not None or warning_weight is not None:
            body["Weights"] = {
                "Passing": 1 if weight is None else weight,
                "Warning": 1 if warning_weight is None else warning_weight}
        sid = service_id or name
        with self.cond:
            if node is None:
                svc = self.reg.register_service(NODE_NAME, body)
            else:
                check = body.pop("Check")
                self.reg.add_agent_node(node, address)
                self.reg.catalog_register({
                    "Node": node, "Address": address, "Service": body,
                    "Check": {"CheckID": "service:" + sid,
                              "Name": "Service '%s' check" % name,
                              "ServiceID": sid, "Status": status,
                              "Output": check["Output"]}})
                svc = self.reg.services[(node, sid)]
            self.cond.notify_all()
            return svc

    def register_many(self, entries):
        """register() for each (name, service_id, address, port, tags)
        at once, for a test's setup: the catalog's tag union is computed
        once at the end instead of twice per entry."""
        with self.cond:
            self.reg._all_tags = lambda: None
            try:
                for name, sid, address, port, tags in entries:
                    self.reg.register_service(NODE_NAME, {
                        "Name": name, "ID": sid, "Address": address,
                        "Port": port, "Tags": list(tags),
                        "Check": {"TTL": "30s", "Status": "passing"}})
            finally:
                del self.reg._all_tags
            self.reg.services_index = self.reg.index
            self.cond.notify_all()

    def deregister(self, service_id, node=NODE_NAME):
        with self.cond:
            ok = self.reg.deregister_service(node, service_id)
            self.cond.notify_all()
            return ok

    def set_check(self, check_id, status, output="", node=NODE_NAME):
        with self.cond:
            ok = self.reg.update_check(check_id, status, output, node)
            self.cond.notify_all()
            return ok

    def set_checks(self, updates, node=NODE_NAME):
        """Several checks' (check_id, status) at once, seen together
        by every query (as a /v1/txn of check updates applies them):
        one change of the answers, not one per check."""
        with self.cond:
            ok = all([self.reg.update_check(check_id, status, "", node)
                      for check_id, status in updates])
            self.cond.notify_all()
            return ok

    def prewarm(self, name, changes, node=NODE_NAME):
        """With encode_cache: the gzip answers of service name after
        each of changes (lists of (check_id, status), as set_checks
        will apply them from the current state), computed now on a
        copy of the catalog, so that serving them later costs a lookup:
        a bench measures the front door, not the server's encoding."""
        with self.cond:
            if self.gzip_cache is None:
                return
            shared, self.reg.encode_cache = self.reg.encode_cache, None
            try:
                reg = copy.deepcopy(self.reg)
            finally:
                self.reg.encode_cache = shared
            reg.encode_cache = shared
        for updates in changes:
            for check_id, status in updates:
                reg.update_check(check_id, status, "", node)
            body = go_json(reg.health_service(name, [], False))
            zipped = gzip.compress(body, compresslevel=6)
            whole = Prebuilt(body)
            whole.zipped = zipped
            with self.cond:
                self._keep_gzip(body, zipped)
                if len(self.answer_cache) >= 4096:
                    self.answer_cache.clear()
                # the index the registry will have after the same
                # updates (bump() counts them the same way)
                self.answer_cache[(name, reg.service_index.get(name, 1))] \
                    = whole

    def _keep_gzip(self, body, zipped):
        if len(self.gzip_cache) >= 4096:
            self.gzip_cache.clear()
        self.gzip_cache[hash(body)] = (len(body), zipped)

    def gzip_answer(self, body):
        """body gzip (Go's level 6), from the cache when kept."""
        if self.gzip_cache is None:
            return gzip.compress(body, compresslevel=6)
        key = hash(body)
        with self.cond:
            kept = self.gzip_cache.get(key)
        if kept is not None and kept[0] == len(body):
            return kept[1]
        zipped = gzip.compress(body, compresslevel=6)
        with self.cond:
            self._keep_gzip(body, zipped)
        return zipped

    def set_node_health(self, node, status, output=""):
        """The node's serfHealth check (an agent gone: critical)."""
        return self.set_check("serfHealth", status, output, node)

    def known_leader(self, known=True):
        """X-Consul-Knownleader of the answers (false: an election)."""
        with self.cond:
            self.leader_known = bool(known)

    def add_fault(self, kind, **kw):
        f = Fault(kind, **kw)
        with self.cond:
            self.faults.append(f)
        return f

    def clear_faults(self):
        with self.cond:
            self.faults = []
            self.release_gen += 1
            self.cond.notify_all()

    def release(self):
        with self.cond:
            self.release_gen += 1
            self.cond.notify_all()

    def set_index(self, index):
        """The raft index goes back to `index` (a snapshot restore)."""
        with self.cond:
            self.reg.clamp(max(1, int(index)))
            self.generation += 1
            self.cond.notify_all()

    def restart(self):
        """State lost: empty registry, index 1, blocked requests dropped."""
        with self.cond:
            self.reg = Registry(self.encode_cache)
            self.generation += 1
            self.restarts += 1
            self.release_gen += 1
            self.cond.notify_all()

    def reset_counts(self):
        with self.cond:
            self.counts = {}
            self.peak_conns = dict(self.clients)
            self.refused = 0
            self.log.clear()

    def requests(self, prefix=""):
        """The /v1/ requests received whose path starts with prefix,
        oldest first: dicts with t (time.monotonic()), path, index (int,
        0 when absent), stale, consistent (bools) and port (the
        client's)."""
        with self.cond:
            return [r for r in self.log if r["path"].startswith(prefix)]

    def peak_connections(self, ip="127.0.0.1"):
        with self.cond:
            return self.peak_conns.get(ip, 0)

    def count(self, path):
        with self.cond:
            return self.counts.get(path, 0)

    def open_requests(self, service):
        with self.cond:
            return self.open.get(service, 0)

    @property
    def index(self):
        with self.cond:
            return self.reg.index

    def service_index(self, name):
        with self.cond:
            return max(1, self.reg.service_index.get(name, 1))

    @property
    def last_token(self):
        with self.cond:
            return self.last_token_seen

    def state(self):
        with self.cond:
            return {"index": self.reg.index, "counts": dict(self.counts),
                    "open": {k: v for k, v in self.open.items() if v},
                    "last_token": self.last_token_seen,
                    "faults": len(self.faults), "hung": self.hung,
                    "peak_conns": dict(self.peak_conns),
                    "refused": self.refused, "gzipped": self.gzipped}

    def wait_for(self, predicate, timeout=5.0):
        """Polls predicate(self) until true or the deadline; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value or time.monotonic() >= deadline:
                return value
            with self.cond:
                self.cond.wait(0.01)

    # used by the handler

    def take_fault(self, path):
        with self.cond:
            for f in self.faults:
                if f.count != 0 and path.startswith(f.path):
                    if f.count > 0:
                        f.count -= 1
                    if f.count == 0:
                        self.faults.remove(f)
                    return f
        return None


class _Handler(BaseHTTPRequestHandler):
    double = None
    consistency = "leader"
    protocol_version = "HTTP/1.1"
    server_version = "Consul-double"
    sys_version = ""

    acl_filtered = False

    def log_message(self, fmt, *args):
        pass

    def send_response(self, code, message=None):
        # like Consul (Go net/http): a Date header, no Server header
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def setup(self):
        BaseHTTPRequestHandler.setup(self)
        # like Go's net/http (Consul): no Nagle delay on small writes
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.double.cond:
            self.double.conns.add(self.connection)

    def finish(self):
        try:
            BaseHTTPRequestHandler.finish(self)
        except OSError:
            pass
        with self.double.cond:
            self.double.conns.discard(self.connection)

    def do_GET(self):
        self._dispatch("GET")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # plumbing

    def _read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _json_body(self, raw):
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ApiError(400, "Request decode failed: %s" % e)

    def _send(self, status, body, ctype="application/json", index=None,
              fault=None):
        d = self.double
        if isinstance(body, (dict, list, bool)) or body is None and \
                ctype == "application/json":
            body = go_json(body)
        elif isinstance(body, str):
            body = body.encode()
        if fault is not None and fault.kind == "malformed":
            body = b'[{"Node": {"ID": "x", "Address": "10.0.0.1"}, '\
                   b'"Service": <!-- not json -->'
        # Consul wraps its API in a gzip handler (no minimum size)
        gzipped = "gzip" in (self.headers.get("Accept-Encoding") or "")
        if gzipped and getattr(body, "zipped", None) is not None:
            body = body.zipped
            with d.cond:
                d.gzipped += 1
        elif gzipped:
            # Go's gzip.DefaultCompression (level 6), not Python's 9
            body = d.gzip_answer(body)
            with d.cond:
                d.gzipped += 1
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Vary", "Accept-Encoding")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        if index is not None:
            self.send_header("X-Consul-Default-Acl-Policy",
                             "deny" if self.double.token else "allow")
            self.send_header("X-Consul-Effective-Consistency",
                             self.consistency)
            self.send_header("X-Consul-Index", str(max(1, index)))
            self.send_header("X-Consul-Knownleader",
                             "true" if d.leader_known else "false")
            if self.acl_filtered:
                self.send_header("X-Consul-Results-Filtered-By-Acls",
                                 "true")
            self.send_header("X-Consul-Lastcontact", "0")
            self.send_header("X-Consul-Query-Backend", "blocking-query")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault is not None and fault.kind == "truncated":
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self._drop()
            return
        self.wfile.write(body)

    def _drop(self):
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _dispatch(self, method):
        d = self.double
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        try:
            raw = self._read_body()
        except OSError:
            return
        if path.startswith("/_double/"):
            try:
                self._control(method, path, raw)
            except (ApiError, ValueError, KeyError, TypeError) as e:
                status = getattr(e, "status", 400)
                self._send(status, str(e) + "\n", "text/plain")
            return

        self.consistency = "leader"
        if "stale" in query:
            self.consistency = "stale"
        elif "consistent" in query:
            self.consistency = "consistent"
        with d.cond:
            d.counts[path] = d.counts.get(path, 0) + 1
            if path.startswith("/v1/"):
                try:
                    index = int(query.get("index", ["0"])[-1] or "0")
                except ValueError:
                    index = -1
                d.log.append({"t": time.monotonic(), "path": path,
                              "index": index, "stale": "stale" in query,
                              "consistent": "consistent" in query,
                              "port": self.client_address[1]})
        fault = d.take_fault(path) if path.startswith("/v1/") else None
        if fault is not None:
            if fault.kind == "drop":
                self._drop()
                return
            if fault.kind == "status":
                self._send(fault.status,
                           fault.body if fault.body is not None
                           else "injected failure\n", "text/plain")
                return
            if fault.kind == "no_leader":
                self._send(500, "No cluster leader\n", "text/plain")
                return
            if fault.kind == "delay":
                with d.cond:
                    d.cond.wait_for(lambda: d.stopping, fault.seconds)
            if fault.kind == "hang":
                with d.cond:
                    gen, rgen = d.restarts, d.release_gen
                    d.hung += 1
                    d.cond.wait_for(lambda: d.stopping
                                    or d.release_gen != rgen)
                    d.hung -= 1
                    if d.stopping or d.restarts != gen:
                        self._drop()
                        return
        try:
            self._api(method, path, query, raw, fault)
        except ApiError as e:
            self._send(e.status, e.text + "\n", "text/plain")
        except OSError:
            pass

    def _token(self, query):
        tok = self.headers.get("X-Consul-Token")
        if tok is None and "token" in query:
            tok = query["token"][-1]
        auth = self.headers.get("Authorization") or ""
        if tok is None and auth.startswith("Bearer "):
            tok = auth[7:]
        return tok

    def _api(self, method, path, query, raw, fault):
        d = self.double
        tok = self._token(query)
        if tok is not None:
            with d.cond:
                d.last_token_seen = tok
        self.acl_filtered = False
        if d.token is not None and not path.startswith("/v1/status/") \
                and tok != d.token:
            if tok not in (None, ""):
                raise ApiError(403, "ACL not found")
            # the anonymous token: reads filtered to nothing, no write
            if method not in ("GET", "HEAD"):
                raise ApiError(403, "Permission denied")
            self.acl_filtered = True
        if query.get("dc", [DATACENTER])[-1] not in ("", DATACENTER):
            raise ApiError(500, "No path to datacenter")
        if "stale" in query and "consistent" in query:
            raise ApiError(400, "Cannot specify ?stale with ?consistent, "
                           "conflicting semantics.")

        m = re.match(r"^/v1/health/service/(.+)$", path)
        if m and method == "GET":
            return self._health(m.group(1), query, fault)
        m = re.match(r"^/v1/health/state/(.+)$", path)
        if m and method == "GET":
            state = m.group(1)
            if state not in ("any", "passing", "warning", "critical"):
                raise ApiError(400, "Invalid state: %s" % state)
            return self._blocking(
                query, fault, "health/state",
                lambda r: r.checks_index(),
                lambda r: r.health_state(state))
        m = re.match(r"^/v1/catalog/service/(.+)$", path)
        if m and method == "GET":
            return self._catalog_service(m.group(1), query, fault)
        if path == "/v1/catalog/services" and method == "GET":
            return self._blocking(
                query, fault, "catalog/services",
                lambda r: r.services_index,
                lambda r: r.catalog_services())
        if path == "/v1/status/leader" and method == "GET":
            return self._send(200, json.dumps("127.0.0.1:8300"),
                              fault=fault)
        if path == "/v1/status/peers" and method == "GET":
            return self._send(200, ["127.0.0.1:8300"], fault=fault)
        if method not in ("PUT", "POST"):
            if re.match(r"^/v1/(agent|catalog)/", path):
                raise ApiError(405, "method %s not allowed" % method)
            raise ApiError(404, "404 page not found")
        return self._write(path, query, self._json_body(raw), fault)

    def _write(self, path, query, body, fault):
        d = self.double
        m = re.match(r"^/v1/agent/check/(pass|warn|fail|update)/(.+)$",
                     path)
        with d.cond:
            if path == "/v1/agent/service/register":
                d.reg.register_service(NODE_NAME, body)
                d.cond.notify_all()
                return self._send(200, b"", fault=fault)
            if path.startswith("/v1/agent/service/deregister/"):
                sid = path[len("/v1/agent/service/deregister/"):]
                if not d.reg.deregister_service(NODE_NAME, sid):
                    raise ApiError(404, 'Unknown service ID "%s". Ensure '
                                   'that the service ID is passed, not '
                                   'the service name.' % sid)
                d.cond.notify_all()
                return self._send(200, b"", fault=fault)
            if m:
                status = {"pass": "passing", "warn": "warning",
                          "fail": "critical"}.get(m.group(1))
                output = query.get("note", [""])[-1]
                if status is None:
                    status = body.get("Status", "")
                    output = body.get("Output", "")
                    if status not in ("passing", "warning", "critical"):
                        raise ApiError(400, "Invalid check status: %r"
                                       % status)
                if not d.reg.update_check(m.group(2), status, output):
                    raise ApiError(404, 'Unknown check ID "%s". Ensure '
                                   'that the check ID is passed, not the '
                                   'check name.' % m.group(2))
                d.cond.notify_all()
                return self._send(200, b"", fault=fault)
            if path == "/v1/catalog/register":
                d.reg.catalog_register(body)
                d.cond.notify_all()
                return self._send(200, True, fault=fault)
            if path == "/v1/catalog/deregister":
                node = body.get("Node") if isinstance(body, dict) else None
                if not node:
                    raise ApiError(400, "Must provide node")
                if body.get("ServiceID"):
                    d.reg.deregister_service(node, body["ServiceID"])
                elif body.get("CheckID"):
                    d.reg.deregister_check(node, body["CheckID"])
                else:
                    d.reg.deregister_node(node)
                d.cond.notify_all()
                return self._send(200, True, fault=fault)
        raise ApiError(404, "404 page not found")

    def _wait_params(self, query):
        try:
            index = int(query.get("index", ["0"])[-1] or "0")
            if index < 0:
                raise ValueError
        except ValueError:
            raise ApiError(400, "Invalid index")
        wait = DEFAULT_WAIT
        if "wait" in query:
            try:
                wait = parse_duration(query["wait"][-1])
            except ValueError:
                raise ApiError(400, "Invalid wait time")
        wait = min(wait, MAX_WAIT)
        if wait <= 0:
            wait = DEFAULT_WAIT
        if self.double.jitter:
            wait += random.random() * wait / 16
        return index, wait

    def _blocking(self, query, fault, key, watched, answer):
        """Consul's blockingQuery: wait until watched > index or wait."""
        d = self.double
        index, wait = self._wait_params(query)
        deadline = time.monotonic() + wait
        with d.cond:
            gen, restarts = d.generation, d.restarts
            if index > 0:
                d.open[key] = d.open.get(key, 0) + 1
                try:
                    while (max(1, watched(d.reg)) <= index
                           and d.generation == gen and not d.stopping):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        d.cond.wait(left)
                finally:
                    d.open[key] -= 1
            if d.stopping or d.restarts != restarts:
                drop = True
            else:
                drop = False
                body = answer(d.reg)
                idx = watched(d.reg)
                if self.acl_filtered:
                    body = type(body)()
        if drop:
            self._drop()
            return
        self._send(200, body, index=idx, fault=fault)

    def _tags(self, query):
        return [t for t in query.get("tag", []) if t != ""]

    def _health(self, name, query, fault):
        p = query.get("passing")
        passing = False
        if p is not None:
            v = p[-1].lower()
            if v in ("", "1", "t", "true"):
                passing = True
            elif v not in ("0", "f", "false"):
                raise ApiError(400, "Invalid value for ?passing")
        tags = self._tags(query)
        d = self.double

        def answer(r):
            if d.answer_cache is not None and not tags and not passing:
                whole = d.answer_cache.get(
                    (name, r.service_index.get(name, 1)))
                if whole is not None:
                    return whole
            return r.health_service(name, tags, passing)

        return self._blocking(
            query, fault, name,
            lambda r: r.service_index.get(name, 1), answer)

    def _catalog_service(self, name, query, fault):
        tags = self._tags(query)
        return self._blocking(
            query, fault, name,
            lambda r: r.service_index.get(name, 1),
            lambda r: r.catalog_service(name, tags))

    def _control(self, method, path, raw):
        d = self.double
        body = json.loads(raw) if raw.strip() else {}
        op = path[len("/_double/"):]
        if op == "state" and method == "GET":
            return self._send(200, d.state())
        if method != "POST":
            raise ApiError(405, "use POST")
        if op == "fault":
            kw = dict(body)
            kind = kw.pop("kind")
            d.add_fault(kind, **kw)
        elif op == "release":
            d.release()
        elif op == "clear":
            d.clear_faults()
        elif op == "index":
            d.set_index(int(body["index"]))
        elif op == "restart":
            d.restart()
        elif op == "leader":
            d.known_leader(body.get("known", True))
        elif op == "reset_counts":
            d.reset_counts()
        elif op == "register_many":
            d.register_many([(n, i, a, int(p), t)
                             for n, i, a, p, t in body["entries"]])
        else:
            raise ApiError(404, "unknown control operation")
        return self._send(200, d.state())


def main():
    ap = argparse.ArgumentParser(description="Consul HTTP API double")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8500)
    ap.add_argument("--token", default=None,
                    help="require this ACL token")
    ap.add_argument("--no-jitter", action="store_true",
                    help="no wait/16 jitter on blocking queries")
    ap.add_argument("--max-conns-per-client", type=int, default=200,
                    help="open connections allowed per client address "
                    "(Consul's limits.http_max_conns_per_client; 0: none)")
    ap.add_argument("--tls-cert", default=None,
                    help="serve HTTPS with this PEM certificate (chain)")
    ap.add_argument("--tls-key", default=None,
                    help="the certificate's PEM key (default: in "
                    "--tls-cert)")
    args = ap.parse_args()
    if args.tls_key and not args.tls_cert:
        ap.error("--tls-key needs --tls-cert")
    d = ConsulDouble(args.host, args.port, args.token,
                     jitter=not args.no_jitter, certfile=args.tls_cert,
                     keyfile=args.tls_key,
                     max_conns_per_client=args.max_conns_per_client)
    d.start()
    print("consul double listening on %s" % d.url, flush=True)
    try:
        d.thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        d.stop()


if __name__ == "__main__":
    main()
