"""Tests of the Consul API double itself (fast; no fixed sleeps)."""

import gzip
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from consul_double import ConsulDouble, parse_duration  # noqa: E402


SVC = "shop.cart.api"


@pytest.fixture
def consul():
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def req(d, path, method="GET", body=None, headers=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(d.url + path, data=data, method=method,
                               headers=headers or {})
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, dict(resp.headers), raw
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def get_json(d, path, **kw):
    status, headers, raw = req(d, path, **kw)
    assert status == 200, raw
    return headers, json.loads(raw)


def in_thread(fn, *args, **kw):
    out = {}

    def run():
        try:
            out["result"] = fn(*args, **kw)
        except Exception as e:   # noqa: BLE001 - reported to the test
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_parse_duration():
    assert parse_duration("250ms") == pytest.approx(0.25)
    assert parse_duration("10s") == 10
    assert parse_duration("5m") == 300
    assert parse_duration("1m30s") == 90
    assert parse_duration("1.5s") == 1.5
    for bad in ("", "10", "s", "10x", "-1s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_register_and_health_shape(consul):
    status, _, raw = req(consul, "/v1/agent/service/register", "PUT", {
        "Name": SVC, "ID": SVC + "-1", "Tags": ["v2"],
        "Address": "10.0.0.5", "Port": 8080,
        "Meta": {"cluster": "east", "env": "canary", "version": "2.1"},
        "Weights": {"Passing": 7, "Warning": 1},
        "Check": {"TTL": "10s", "Status": "passing"}})
    assert status == 200 and raw == b""
    headers, body = get_json(consul, "/v1/health/service/%s?passing=1"
                             % SVC)
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Consul-Knownleader"] == "true"
    assert headers["X-Consul-Lastcontact"] == "0"
    assert int(headers["X-Consul-Index"]) == consul.service_index(SVC)
    assert len(body) == 1
    e = body[0]
    assert set(e) == {"Node", "Service", "Checks"}
    assert e["Node"]["Address"] == "127.0.0.1"
    assert e["Node"]["Datacenter"] == "dc1"
    assert {"ID", "Node", "TaggedAddresses", "Meta"} <= set(e["Node"])
    s = e["Service"]
    assert s["ID"] == SVC + "-1" and s["Service"] == SVC
    assert s["Address"] == "10.0.0.5" and s["Port"] == 8080
    assert s["Weights"] == {"Passing": 7, "Warning": 1}
    assert s["Meta"]["cluster"] == "east"
    assert s["TaggedAddresses"]["lan_ipv4"] == {"Address": "10.0.0.5",
                                                "Port": 8080}
    ids = sorted(c["CheckID"] for c in e["Checks"])
    assert ids == ["serfHealth", "service:" + SVC + "-1"]
    svc_check = [c for c in e["Checks"] if c["ServiceID"]][0]
    assert svc_check["Type"] == "ttl"
    assert svc_check["ServiceName"] == SVC
    assert svc_check["ServiceTags"] == ["v2"]


def test_ttl_check_starts_critical_and_passing_filter(consul):
    req(consul, "/v1/agent/service/register", "PUT", {
        "Name": SVC, "ID": "a", "Port": 1, "Check": {"TTL": "10s"}})
    req(consul, "/v1/agent/service/register", "PUT", {
        "Name": SVC, "ID": "b", "Port": 2, "Weights": {"Passing": 3}})
    _, all_ = get_json(consul, "/v1/health/service/" + SVC)
    assert [e["Service"]["ID"] for e in all_] == ["a", "b"]
    _, ok = get_json(consul, "/v1/health/service/%s?passing" % SVC)
    assert [e["Service"]["ID"] for e in ok] == ["b"]
    assert req(consul, "/v1/agent/check/pass/service:a", "PUT")[0] == 200
    _, ok = get_json(consul, "/v1/health/service/%s?passing=1" % SVC)
    assert [e["Service"]["ID"] for e in ok] == ["a", "b"]
    assert req(consul, "/v1/agent/check/warn/service:a", "PUT")[0] == 200
    _, ok = get_json(consul, "/v1/health/service/%s?passing=1" % SVC)
    assert [e["Service"]["ID"] for e in ok] == ["b"]
    status, _, raw = req(consul, "/v1/agent/check/fail/nope", "PUT")
    assert status == 404 and b"Unknown check ID" in raw


def test_tag_filter_and_catalog(consul):
    consul.register(SVC, "x1", "10.0.0.1", 80, tags=["blue", "v1"])
    consul.register(SVC, "x2", "10.0.0.2", 80, tags=["green"])
    consul.register("other.svc.one", "o1", "10.0.0.3", 80, tags=["v1"])
    _, body = get_json(consul, "/v1/health/service/%s?tag=blue" % SVC)
    assert [e["Service"]["ID"] for e in body] == ["x1"]
    _, body = get_json(consul, "/v1/catalog/services")
    assert body == {"consul": [], SVC: ["blue", "green", "v1"],
                    "other.svc.one": ["v1"]}
    _, body = get_json(consul, "/v1/catalog/service/%s?tag=green" % SVC)
    assert [e["ServiceID"] for e in body] == ["x2"]
    assert body[0]["ServiceAddress"] == "10.0.0.2"
    assert body[0]["ServiceWeights"] == {"Passing": 1, "Warning": 1}


def test_catalog_register_external_node(consul):
    status, _, raw = req(consul, "/v1/catalog/register", "PUT", {
        "Node": "ext1", "Address": "192.168.1.9",
        "Service": {"ID": "e1", "Service": SVC, "Port": 9000},
        "Check": {"CheckID": "service:e1", "Name": "ext", "ServiceID":
                  "e1", "Status": "passing"}})
    assert status == 200 and raw == b"true"
    _, body = get_json(consul, "/v1/health/service/%s?passing=1" % SVC)
    assert body[0]["Service"]["Address"] == ""
    assert body[0]["Node"]["Address"] == "192.168.1.9"
    status, _, _ = req(consul, "/v1/catalog/deregister", "PUT",
                       {"Node": "ext1"})
    assert status == 200
    assert get_json(consul, "/v1/health/service/" + SVC)[1] == []


def test_blocking_returns_on_change(consul):
    consul.register(SVC, "a", "10.0.0.1", 80)
    h, _ = get_json(consul, "/v1/health/service/%s?passing=1" % SVC)
    idx = int(h["X-Consul-Index"])
    t, out = in_thread(get_json, consul,
                       "/v1/health/service/%s?passing=1&index=%d&wait=10s"
                       % (SVC, idx))
    assert consul.wait_for(lambda d: d.open_requests(SVC) == 1)
    start = time.monotonic()
    consul.register(SVC, "b", "10.0.0.2", 80)
    t.join(5)
    assert time.monotonic() - start < 2
    h2, body = out["result"]
    assert int(h2["X-Consul-Index"]) > idx
    assert len(body) == 2
    assert consul.open_requests(SVC) == 0


def test_blocking_ignores_other_services(consul):
    consul.register(SVC, "a", "10.0.0.1", 80)
    idx = consul.service_index(SVC)
    start = time.monotonic()
    t, out = in_thread(get_json, consul, "/v1/health/service/%s?index=%d"
                       "&wait=300ms" % (SVC, idx))
    assert consul.wait_for(lambda d: d.open_requests(SVC) == 1)
    consul.register("other.svc.one", "o", "10.0.0.9", 80)
    t.join(5)
    assert time.monotonic() - start >= 0.3
    assert int(out["result"][0]["X-Consul-Index"]) == idx


def test_blocking_times_out_with_jitter_bound():
    d = ConsulDouble(jitter=True).start()
    try:
        h, _ = get_json(d, "/v1/catalog/services")
        start = time.monotonic()
        h2, _ = get_json(d, "/v1/catalog/services?index=%s&wait=200ms"
                         % h["X-Consul-Index"])
        took = time.monotonic() - start
        assert 0.2 <= took < 0.2 * 17 / 16 + 0.2
        assert h2["X-Consul-Index"] == h["X-Consul-Index"]
    finally:
        d.stop()


def test_bad_wait_and_index(consul):
    assert req(consul, "/v1/catalog/services?index=1&wait=10")[0] == 400
    assert req(consul, "/v1/catalog/services?index=x")[0] == 400
    assert req(consul, "/v1/health/service/a?passing=maybe")[0] == 400
    assert req(consul, "/v1/health/service/a?dc=dc9")[0] == 500


def test_index_semantics(consul):
    i0 = consul.index
    consul.register(SVC, "a", "10.0.0.1", 80)
    assert consul.index > i0
    assert consul.service_index(SVC) == consul.index
    i1 = consul.index
    # an unchanged check update is not a write
    consul.set_check("service:a", "passing")
    assert consul.index == i1
    consul.set_check("service:a", "critical")
    assert consul.service_index(SVC) == consul.index > i1
    status, _, _ = req(consul, "/v1/agent/service/deregister/a", "PUT")
    assert status == 200
    assert req(consul, "/v1/agent/service/deregister/a", "PUT")[0] == 404


def test_acl(consul):
    consul.token = "s3cret"
    # no token: the anonymous token, whose reads are filtered to nothing
    consul.register(SVC, "a", "10.0.0.1", 80)
    status, headers, raw = req(consul, "/v1/catalog/services")
    assert status == 200 and json.loads(raw) == {}, raw
    assert headers["X-Consul-Results-Filtered-By-Acls"] == "true"
    assert int(headers["X-Consul-Index"]) >= 1
    status, _, raw = req(consul, "/v1/health/service/" + SVC)
    assert status == 200 and json.loads(raw) == [], raw
    status, _, raw = req(consul, "/v1/agent/service/deregister/a", "PUT")
    assert status == 403 and raw == b"Permission denied\n"
    # an unknown token: 403
    status, _, raw = req(consul, "/v1/catalog/services",
                         headers={"X-Consul-Token": "wrong"})
    assert status == 403 and raw == b"ACL not found\n"
    assert consul.last_token == "wrong"
    status, headers, raw = req(consul, "/v1/health/service/" + SVC,
                               headers={"X-Consul-Token": "s3cret"})
    assert status == 200 and len(json.loads(raw)) == 1
    assert "X-Consul-Results-Filtered-By-Acls" not in headers
    assert req(consul, "/v1/catalog/services?token=s3cret")[0] == 200
    assert req(consul, "/v1/status/leader")[0] == 200


def test_service_id_is_per_node(consul):
    # two agents, each registering the service without an ID
    consul.register(SVC, None, "10.0.0.1", 80, node="node-a")
    consul.register(SVC, None, "10.0.0.2", 80, node="node-b")
    consul.register(SVC, None, "10.0.0.3", 80)          # node1's agent
    _, body = get_json(consul, "/v1/health/service/" + SVC)
    got = sorted((e["Node"]["Node"], e["Service"]["ID"],
                  e["Node"]["Address"]) for e in body)
    assert got == [("node-a", SVC, "10.0.0.1"), ("node-b", SVC, "10.0.0.2"),
                   ("node1", SVC, "127.0.0.1")]
    for e in body:
        # each node's agent check counts in the entry
        assert [c["CheckID"] for c in e["Checks"]] in (
            ["serfHealth", "service:" + SVC], ["service:" + SVC,
                                               "serfHealth"])
    # a node going away makes its instances critical, only them
    consul.set_node_health("node-b", "critical")
    _, body = get_json(consul, "/v1/health/service/%s?passing=1" % SVC)
    assert sorted(e["Node"]["Node"] for e in body) == ["node-a", "node1"]


def test_real_agent_shapes(consul):
    """nulls, Go's escapes, arbitrary output bytes, large weights, no
    Namespace/Partition, a Port of 0 left out, as open-source Consul."""
    consul.register(SVC, "x", "10.0.0.1", 80, weight=30000,
                    warning_weight=5000,
                    output=b"\x00\xff\xfe<html>&amp;\x00")
    consul.register(SVC, "p0", "10.0.0.2", 0, node="node-z")
    status, _, raw = req(consul, "/v1/health/service/" + SVC)
    assert status == 200
    assert b"\\u0000" in raw and b"\\u003chtml\\u003e\\u0026amp;" in raw
    assert "\ufffd".encode() in raw          # invalid UTF-8: U+FFFD
    assert b"Namespace" not in raw and b"Partition" not in raw
    body = {e["Service"]["ID"]: e for e in json.loads(raw)}
    svc = body["x"]["Service"]
    assert svc["Tags"] is None and svc["Meta"] is None
    assert svc["Weights"] == {"Passing": 30000, "Warning": 5000}
    assert svc["PeerName"] == ""
    out = [c["Output"] for c in body["x"]["Checks"]
           if c["CheckID"] == "service:x"]
    assert out == ["\x00\ufffd\ufffd<html>&amp;\x00"]
    assert "Port" not in body["p0"]["Service"]
    # warning and critical are served without passing=1
    consul.set_check("service:x", "warning", "slow\x00")
    _, body = get_json(consul, "/v1/health/service/" + SVC)
    st = {e["Service"]["ID"]: [c["Status"] for c in e["Checks"]]
          for e in body}
    assert "warning" in st["x"]


def test_tag_filter_ignores_case(consul):
    consul.register(SVC, "a", "10.0.0.1", 80, tags=["Edge", "v1"])
    consul.register(SVC, "b", "10.0.0.2", 80, tags=["v1"])
    consul.register(SVC, "c", "10.0.0.3", 80)          # Tags null
    for q in ("?tag=edge", "?tag=EDGE", "?tag=edge&tag=V1"):
        _, body = get_json(consul, "/v1/health/service/" + SVC + q)
        assert [e["Service"]["ID"] for e in body] == ["a"], q
    _, body = get_json(consul, "/v1/health/service/%s?tag=v1" % SVC)
    assert sorted(e["Service"]["ID"] for e in body) == ["a", "b"]
    _, cat = get_json(consul, "/v1/catalog/services")
    assert cat[SVC] == ["Edge", "v1"]


def test_leader_faults(consul):
    headers, _ = get_json(consul, "/v1/health/service/" + SVC)
    assert headers["X-Consul-Knownleader"] == "true"
    consul.known_leader(False)
    headers, _ = get_json(consul, "/v1/health/service/" + SVC)
    assert headers["X-Consul-Knownleader"] == "false"
    consul.add_fault("no_leader", count=1)
    status, _, raw = req(consul, "/v1/health/service/" + SVC)
    assert status == 500 and raw == b"No cluster leader\n"
    assert req(consul, "/v1/health/service/" + SVC)[0] == 200


def test_gzip_when_asked(consul):
    consul.register(SVC, "a", "10.0.0.1", 80, output="x" * 2000)
    conn = http.client.HTTPConnection("127.0.0.1", consul.port, timeout=5)
    conn.request("GET", "/v1/health/service/" + SVC,
                 headers={"Accept-Encoding": "gzip"})
    r = conn.getresponse()
    raw = r.read()
    assert r.status == 200 and r.getheader("Content-Encoding") == "gzip"
    assert len(raw) < 1000
    assert json.loads(gzip.decompress(raw))[0]["Service"]["ID"] == "a"
    conn.request("GET", "/v1/health/service/" + SVC)
    r = conn.getresponse()
    assert r.getheader("Content-Encoding") is None
    assert json.loads(r.read())[0]["Service"]["ID"] == "a"
    conn.close()
    assert consul.state()["gzipped"] == 1


def test_fault_status_and_counts(consul):
    consul.add_fault("status", status=503, count=2)
    path = "/v1/health/service/" + SVC
    assert req(consul, path)[0] == 503
    assert req(consul, path)[0] == 503
    assert req(consul, path)[0] == 200
    assert consul.count(path) == 3


def test_fault_path_prefix(consul):
    consul.add_fault("status", status=500, path="/v1/catalog/")
    assert req(consul, "/v1/health/service/" + SVC)[0] == 200
    assert req(consul, "/v1/catalog/services")[0] == 500


def test_fault_malformed_truncated_drop(consul):
    consul.register(SVC, "a", "10.0.0.1", 80)
    path = "/v1/health/service/" + SVC
    consul.add_fault("malformed")
    status, _, raw = req(consul, path)
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(raw)

    consul.add_fault("truncated")
    c = http.client.HTTPConnection("127.0.0.1", consul.port, timeout=5)
    c.request("GET", path)
    r = c.getresponse()
    with pytest.raises(http.client.IncompleteRead):
        r.read()
    c.close()

    consul.add_fault("drop")
    c = http.client.HTTPConnection("127.0.0.1", consul.port, timeout=5)
    c.request("GET", path)
    with pytest.raises((http.client.RemoteDisconnected,
                        ConnectionResetError)):
        c.getresponse()
    c.close()
    assert req(consul, path)[0] == 200


def test_fault_hang_and_release(consul):
    consul.add_fault("hang")
    t, out = in_thread(req, consul, "/v1/status/leader")
    assert consul.wait_for(lambda d: d.state()["hung"] == 1)
    assert t.is_alive()
    consul.release()
    t.join(5)
    assert out["result"][0] == 200
    assert out["result"][2] == b'"127.0.0.1:8300"'


def test_fault_delay(consul):
    consul.add_fault("delay", seconds=0.2)
    start = time.monotonic()
    assert req(consul, "/v1/status/leader")[0] == 200
    assert time.monotonic() - start >= 0.2


def test_index_backwards_wakes_waiters(consul):
    consul.register(SVC, "a", "10.0.0.1", 80)
    consul.register(SVC, "b", "10.0.0.2", 80)
    idx = consul.service_index(SVC)
    t, out = in_thread(get_json, consul, "/v1/health/service/%s?index=%d"
                       "&wait=10s" % (SVC, idx))
    assert consul.wait_for(lambda d: d.open_requests(SVC) == 1)
    consul.set_index(2)
    t.join(5)
    h, body = out["result"]
    assert int(h["X-Consul-Index"]) <= 2 < idx
    assert len(body) == 2


def test_restart_loses_state_and_drops_waiters(consul):
    consul.register(SVC, "a", "10.0.0.1", 80)
    idx = consul.service_index(SVC)
    t, out = in_thread(req, consul, "/v1/health/service/%s?index=%d"
                       "&wait=10s" % (SVC, idx))
    assert consul.wait_for(lambda d: d.open_requests(SVC) == 1)
    consul.restart()
    t.join(5)
    assert "error" in out
    assert consul.index == 1
    h, body = get_json(consul, "/v1/health/service/" + SVC)
    assert body == [] and h["X-Consul-Index"] == "1"


def test_control_api_over_http(consul):
    status, _, raw = req(consul, "/_double/fault", "POST",
                         {"kind": "status", "status": 429, "count": 1})
    assert status == 200 and json.loads(raw)["faults"] == 1
    assert req(consul, "/v1/catalog/services")[0] == 429
    consul.register(SVC, "a", "10.0.0.1", 80)
    req(consul, "/_double/index", "POST", {"index": 1})
    _, state = get_json(consul, "/_double/state")
    assert state["index"] == 1
    assert state["counts"]["/v1/catalog/services"] == 1
    req(consul, "/_double/restart", "POST", {})
    _, body = get_json(consul, "/v1/catalog/services")
    assert body == {"consul": []}
    req(consul, "/_double/reset_counts", "POST", {})
    assert get_json(consul, "/_double/state")[1]["counts"] == {}


# ------------------------------------------------------------ TLS mode

@pytest.fixture
def tls(tmp_path):
    """A test CA, a server certificate for IP 127.0.0.1 signed by it,
    and another CA that signed nothing of ours."""
    from tls_certs import make_ca, make_server_cert
    ca = make_ca(str(tmp_path), "ca")
    cert, key = make_server_cert(str(tmp_path), ca, "server")
    other = make_ca(str(tmp_path), "other-ca")
    return {"ca": ca.cert, "cert": cert, "key": key, "other": other.cert}


def tls_req(d, path, cafile, method="GET", body=None, timeout=5):
    ctx = ssl.create_default_context(cafile=cafile)   # verifies host too
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(d.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(r, timeout=timeout, context=ctx) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_tls_mode_serves_the_same_api(tls):
    d = ConsulDouble(jitter=False, certfile=tls["cert"],
                     keyfile=tls["key"]).start()
    try:
        assert d.url == "https://127.0.0.1:%d" % d.port
        status, _, raw = tls_req(d, "/v1/agent/service/register", tls["ca"],
                                 "PUT", {"Name": SVC, "ID": "a",
                                         "Address": "10.0.0.1",
                                         "Port": 80})
        assert status == 200 and raw == b""
        status, h, raw = tls_req(d, "/v1/health/service/%s?passing=1"
                                 % SVC, tls["ca"])
        assert status == 200 and h["Content-Type"] == "application/json"
        assert [e["Service"]["ID"] for e in json.loads(raw)] == ["a"]
        idx = int(h["X-Consul-Index"])

        # a blocking query over TLS wakes on a change
        t, out = in_thread(tls_req, d, "/v1/health/service/%s?index=%d"
                           "&wait=10s" % (SVC, idx), tls["ca"])
        assert d.wait_for(lambda x: x.open_requests(SVC) == 1)
        d.register(SVC, "b", "10.0.0.2", 80)
        t.join(5)
        status, h, raw = out["result"]
        assert int(h["X-Consul-Index"]) > idx and len(json.loads(raw)) == 2

        # faults and the control API work the same
        d.add_fault("status", status=503, path="/v1/catalog/services")
        assert tls_req(d, "/v1/catalog/services", tls["ca"])[0] == 503
        status, _, raw = tls_req(d, "/_double/state", tls["ca"])
        assert json.loads(raw)["counts"]["/v1/catalog/services"] == 1

        # a client that connects and never speaks holds up nobody
        idle = socket.create_connection(("127.0.0.1", d.port), timeout=5)
        try:
            assert tls_req(d, "/v1/status/leader", tls["ca"])[0] == 200
        finally:
            idle.close()

        # a client trusting another CA refuses the certificate; plain
        # HTTP to the TLS port gets no HTTP answer; the double goes on
        with pytest.raises(urllib.error.URLError) as e:
            tls_req(d, "/v1/status/leader", tls["other"])
        assert isinstance(e.value.reason, ssl.SSLCertVerificationError)
        plain = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
        try:
            with pytest.raises((OSError, http.client.HTTPException)):
                plain.request("GET", "/v1/status/leader")
                r = plain.getresponse()
                r.read()
                raise OSError("answered %d" % r.status)
        finally:
            plain.close()
        assert tls_req(d, "/v1/status/leader", tls["ca"])[0] == 200
    finally:
        d.stop()


def test_tls_mode_from_the_command_line(tls):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          "consul_double.py")
    p = subprocess.Popen([sys.executable, script, "--port", "0",
                          "--no-jitter", "--tls-cert", tls["cert"],
                          "--tls-key", tls["key"]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stdout.readline().decode()      # printed once listening
        assert line.startswith("consul double listening on https://"), (
            line, p.stderr.read() if p.poll() is not None else b"")
        url = line.split()[-1]
        ctx = ssl.create_default_context(cafile=tls["ca"])
        with urllib.request.urlopen(url + "/v1/status/leader", timeout=5,
                                    context=ctx) as resp:
            assert json.loads(resp.read()) == "127.0.0.1:8300"
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()

    bad = subprocess.run([sys.executable, script, "--tls-key", tls["key"]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=10)
    assert bad.returncode != 0 and b"--tls-cert" in bad.stderr


# ------------------------------------- health state, consistency, limits

def test_health_state_lists_checks_and_blocks(consul):
    consul.register(SVC, "a", "10.0.0.1", 80)
    consul.register("shop.user.api", "u", "10.0.0.2", 80,
                    status="critical")
    h, body = get_json(consul, "/v1/health/state/any")
    names = sorted((c["ServiceName"], c["Status"]) for c in body)
    # the agent's own serfHealth node check has no service
    assert names == [("", "passing"), (SVC, "passing"),
                     ("shop.user.api", "critical")], names
    assert all(c["ModifyIndex"] >= 1 and c["Node"] for c in body)
    idx = int(h["X-Consul-Index"])
    _, crit = get_json(consul, "/v1/health/state/critical")
    assert [c["ServiceName"] for c in crit] == ["shop.user.api"]
    assert req(consul, "/v1/health/state/sad")[0] == 400

    # blocks until a check changes, is added or is removed
    for change in (lambda: consul.set_check("service:a", "critical"),
                   lambda: consul.register("x.y.z", "x", "10.0.0.3", 80),
                   lambda: consul.deregister("x")):
        t, out = in_thread(get_json, consul, "/v1/health/state/any?"
                           "index=%d&wait=10s" % idx)
        assert consul.wait_for(lambda d: d.open_requests("health/state"))
        change()
        t.join(5)
        h2, _ = out["result"]
        assert int(h2["X-Consul-Index"]) > idx
        idx = int(h2["X-Consul-Index"])


def test_consistency_modes(consul):
    for q, mode in (("", "leader"), ("?stale", "stale"),
                    ("?consistent", "consistent")):
        h, _ = get_json(consul, "/v1/catalog/services" + q)
        assert h["X-Consul-Effective-Consistency"] == mode
    status, _, raw = req(consul, "/v1/catalog/services?stale&consistent")
    assert status == 400 and b"conflicting" in raw
    log = consul.requests("/v1/catalog/services")
    assert [(r["stale"], r["consistent"]) for r in log][:3] == \
        [(False, False), (True, False), (False, True)]


def test_connection_limit_per_client():
    d = ConsulDouble(jitter=False, max_conns_per_client=3).start()
    socks = []
    try:
        for _ in range(3):
            socks.append(socket.create_connection(("127.0.0.1", d.port)))
        assert d.wait_for(lambda x: x.peak_connections() == 3)
        extra = socket.create_connection(("127.0.0.1", d.port))
        extra.settimeout(5)
        data = b""
        while True:
            chunk = extra.recv(4096)
            if not chunk:
                break
            data += chunk
        extra.close()
        assert data.startswith(b"HTTP/1.1 429 "), data
        assert d.state()["refused"] == 1
        # a connection closed frees its place
        socks.pop().close()
        assert d.wait_for(lambda x: len(x.clients) and
                          x.clients["127.0.0.1"] == 2)
        h, _ = get_json(d, "/v1/catalog/services")
        assert h["X-Consul-Index"]
        assert d.peak_connections() == 3 and d.state()["refused"] == 1
    finally:
        for s in socks:
            s.close()
        d.stop()


def test_request_log(consul):
    get_json(consul, "/v1/health/service/%s?index=0" % SVC)
    get_json(consul, "/v1/health/service/%s?index=1&wait=10ms" % SVC)
    log = consul.requests("/v1/health/service/")
    assert [r["index"] for r in log] == [0, 1]
    assert log[0]["t"] <= log[1]["t"] and log[0]["port"] > 0
    consul.reset_counts()
    assert consul.requests() == []
