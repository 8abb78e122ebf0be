"""
Canary routing as a user sees it: which backend answers, the X-TCE-Env
response header, and $pid/$tce_env in the access log, with 2 workers in
front of a real backend nginx.  Prod instances and the canary instance
listen on different backend ports, so the body (the backend's port)
tells which env served.

The sticky bucket is recomputed here from its definition
(ngx_tce_canary.h), so these tests also check that another node, in
another language, would route a key the same way.
"""

import collections
import http.client
import json

import pytest

from conftest import SERVICE, SLOW, file_size, instance


ALLOWED_SRC = '127.0.0.2'       # the override source of these tests
M64 = (1 << 64) - 1


def bucket(key, epoch):
    """The sticky bucket, as ngx_tce_canary.h defines it."""
    m, r = 0xc6a4a7935bd1e995, 47
    data = key.encode()
    h = (epoch ^ (len(data) * m)) & M64
    for i in range(0, len(data), 8):
        k = int.from_bytes(data[i:i + 8], 'little')
        k = (k * m) & M64
        k ^= k >> r
        k = (k * m) & M64
        h = ((h ^ k) * m) & M64
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & M64
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & M64
    h ^= h >> 33
    return h % 10000


def predicted(key, weight_bp, epoch=0):
    return 'canary' if bucket(key, epoch) < weight_bp else 'prod'


def upstream(canary='', service_params=''):
    lines = ['        tce_service %s%s;' % (SERVICE, service_params)]
    if canary is not None:
        lines.append('        tce_canary %s;' % canary)
    return '    upstream api {\n%s\n    }\n' % '\n'.join(lines)


LOCATION = """\
            add_header X-Pid $pid always;
            add_header X-Remote-Addr $remote_addr always;
"""


class Setup:
    """Two prod instances, one canary instance (by default)."""

    def __init__(self, backend, nginx, canary_inst=True, prod_inst=True):
        self.backend = backend
        self.nginx = nginx
        self.prod_ports = set(backend.ok4[:2]) if prod_inst else set()
        self.canary_ports = {backend.ok4[2]} if canary_inst else set()
        insts = [instance('p-%d' % p, backend.addr(p), weight=1 + i)
                 for i, p in enumerate(sorted(self.prod_ports))]
        insts += [instance('c-%d' % p, backend.addr(p), env='canary')
                  for p in sorted(self.canary_ports)]
        self.instances = insts

    def state(self, canary=None):
        doc = {'version': 1, 'services': {SERVICE: {'clusters': {
            'default': {'instances': self.instances}}}}}
        if canary is not None:
            doc['services'][SERVICE]['clusters']['default']['canary'] = \
                canary
        self.nginx.write_state(raw=json.dumps(doc))

    def start(self, canary='', state_canary=None, http_extra='',
              location=''):
        self.state(state_canary)
        self.configure(canary, http_extra, location)
        self.nginx.start()

    def configure(self, canary='', http_extra='', location=''):
        self.nginx.configure(
            upstreams=upstream(canary),
            http_extra='    tce_canary_header on;\n' + http_extra,
            location=LOCATION + location)

    def env_of(self, r):
        """The env that served a response, checked three ways."""
        assert r.status == 200, r
        port = int(r.body)
        env = 'canary' if port in self.canary_ports else 'prod'
        assert port in self.canary_ports | self.prod_ports, r
        assert r.headers.get('X-TCE-Env') == env, (r.headers, port)
        return env


class Client:
    """Keepalive connections from one source address; every worker gets
    at least `per_worker` of them (reuseport spreads fresh ones)."""

    def __init__(self, nginx, source='127.0.0.1', per_worker=2):
        self.nginx = nginx
        self.source = source
        self.conns = []
        by_pid = collections.Counter()
        workers = nginx.workers()
        for _ in range(64):
            c = self._connect()
            r = self._get(c, '/ready')
            by_pid[int(r.headers['X-Pid'])] += 1
            self.conns.append(c)
            if (set(by_pid) == workers
                    and min(by_pid.values()) >= per_worker):
                break
        assert set(by_pid) == workers, by_pid
        self.next = 0

    def _connect(self):
        return http.client.HTTPConnection(
            '127.0.0.1', self.nginx.port, timeout=10 * SLOW,
            source_address=(self.source, 0))

    def _get(self, conn, path, headers=None):
        conn.request('GET', path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()

        class R:
            pass
        r = R()
        r.status, r.headers, r.body = resp.status, dict(resp.getheaders()), \
            body
        return r

    def get(self, path, headers=None):
        c = self.conns[self.next % len(self.conns)]
        self.next += 1
        return self._get(c, path, headers)

    def close(self):
        for c in self.conns:
            c.close()


def fresh_get(nginx, path, headers=None, source='127.0.0.1'):
    """One request on a fresh connection (lands on either worker)."""
    c = http.client.HTTPConnection('127.0.0.1', nginx.port,
                                   timeout=10 * SLOW,
                                   source_address=(source, 0))
    try:
        c.request('GET', path, headers=dict(headers or {},
                                            Connection='close'))
        resp = c.getresponse()
        body = resp.read()

        class R:
            pass
        r = R()
        r.status, r.headers, r.body = resp.status, dict(resp.getheaders()), \
            body
        return r
    finally:
        c.close()


def envs_of_keys(s, client, keys, prefix):
    return {k: s.env_of(client.get('%s/%s' % (prefix, k),
                                   {'Cookie': 'uid=' + k}))
            for k in keys}


# ---------------------------------------------------------- exact split

def test_exact_split_per_worker_and_overall(backend, nginx):
    s = Setup(backend, nginx)
    s.start('weight=33.33')
    w = 3333
    client = Client(nginx, per_worker=3)

    n = 3000
    envs = [s.env_of(client.get('/split/%d' % i)) for i in range(n)]
    client.close()

    # the log's order across workers is not the clients' (each worker
    # logs after it answered): compare by URI
    entries = nginx.wait_entries('/split/', n)
    assert {e['uri']: e['tce_env'] for e in entries} == {
        '/split/%d' % i: env for i, env in enumerate(envs)}

    seqs = collections.defaultdict(list)
    for e in entries:
        seqs[e['pid']].append(1 if e['tce_env'] == 'canary' else 0)
    assert set(seqs) == nginx.workers()

    # per worker: any window of k consecutive requests holds within 1 of
    # k * weight canary requests (what "exact over 10,000" means, seen
    # through windows this test can afford)
    for pid, seq in seqs.items():
        assert len(seq) >= 500, {p: len(q) for p, q in seqs.items()}
        for k in (3, 10, 97, 300, len(seq)):
            for i in range(0, len(seq) - k + 1):
                c = sum(seq[i:i + k])
                assert abs(c - k * w / 10000) < 1, (pid, k, i, c)

    # overall, both workers together: within 1% of the weight
    share = envs.count('canary') / n
    assert abs(share - w / 10000) < 0.01, share


# ---------------------------------------------------------- sticky

def test_sticky_across_workers_and_reload(backend, nginx):
    s = Setup(backend, nginx)
    s.start('weight=30 key=$cookie_uid')
    keys = ['user-%d' % i for i in range(150)]

    def round_(prefix):
        out = {}
        for k in keys:
            r = fresh_get(nginx, '%s/%s' % (prefix, k),
                          {'Cookie': 'uid=%s; other=1' % k})
            out[k] = s.env_of(r)
        return out

    first = round_('/st1')
    second = round_('/st2')
    assert first == second
    assert first == {k: predicted(k, 3000) for k in keys}
    assert 0.2 < list(first.values()).count('canary') / len(keys) < 0.4

    # the same keys were served by both workers, the same way
    by_key = collections.defaultdict(set)
    for e in nginx.wait_entries('/st', 2 * len(keys)):
        by_key[e['uri'].split('/')[-1]].add(e['pid'])
    assert sum(1 for pids in by_key.values() if len(pids) == 2) >= 10

    nginx.reload()
    assert round_('/st3') == first

    # no key: the split decides (the key is the sticky part only)
    client = Client(nginx)
    envs = [s.env_of(client.get('/nokey/%d' % i)) for i in range(200)]
    client.close()
    assert envs.count('canary') in range(55, 66)


def test_monotonic_as_weight_rises(backend, nginx):
    s = Setup(backend, nginx)
    keys = ['u%d' % i for i in range(300)]
    s.start('weight=5 key=$cookie_uid')

    previous = set()
    for pct in (5, 20, 20.5, 50, 90):
        if pct != 5:
            s.configure('weight=%s key=$cookie_uid' % pct)
            nginx.reload()
        client = Client(nginx, per_worker=1)
        envs = envs_of_keys(s, client, keys, '/mono%s' % pct)
        client.close()
        canary = {k for k, e in envs.items() if e == 'canary'}
        assert canary == {k for k in keys
                          if predicted(k, int(pct * 100)) == 'canary'}
        assert previous <= canary, ('users moved back to prod when the '
                                    'weight rose to %s%%' % pct,
                                    previous - canary)
        previous = canary
    assert 0.8 * len(keys) < len(previous) < len(keys)


# ---------------------------------------------------------- overrides

OVERRIDE = ('weight=%s header=X-Canary cookie=tce_env '
            'override_from=' + ALLOWED_SRC + '/32 override_from=10.1.0.0/16')
REALIP = """\
    set_real_ip_from 127.0.0.0/8;
    real_ip_header X-Forwarded-For;
"""


@pytest.mark.parametrize('weight,value,forced', [
    ('0', {'X-Canary': 'canary'}, 'canary'),
    ('0', {'X-Canary': 'Always'}, 'canary'),
    ('0', {'Cookie': 'a=b; tce_env=canary'}, 'canary'),
    ('100', {'X-Canary': 'prod'}, 'prod'),
    ('100', {'Cookie': 'tce_env=never'}, 'prod'),
])
def test_override_honoured_only_from_allowed_peers(backend, nginx, weight,
                                                   value, forced):
    s = Setup(backend, nginx)
    s.start(OVERRIDE % weight, http_extra=REALIP)
    default = 'prod' if weight == '0' else 'canary'

    allowed = Client(nginx, source=ALLOWED_SRC, per_worker=1)
    other = Client(nginx, source='127.0.0.1', per_worker=1)

    for i in range(8):
        # from the allowed peer: honoured, even when realip rewrites the
        # client address to one that is not allowed
        assert s.env_of(allowed.get('/o/a%d' % i, value)) == forced
        r = allowed.get('/o/b%d' % i,
                        dict(value, **{'X-Forwarded-For': '192.0.2.7'}))
        assert r.headers['X-Remote-Addr'] == '192.0.2.7'
        assert s.env_of(r) == forced

        # from any other peer: ignored, also when X-Forwarded-For (which
        # realip trusts here) claims an allowed address
        assert s.env_of(other.get('/o/c%d' % i, value)) == default
        for xff in (ALLOWED_SRC, '10.1.2.3'):
            r = other.get('/o/d%d' % i,
                          dict(value, **{'X-Forwarded-For': xff}))
            assert r.headers['X-Remote-Addr'] == xff
            assert s.env_of(r) == default

        # values other than canary|prod|always|never are no override
        for junk in ('yes', 'canary2', ''):
            assert s.env_of(allowed.get('/o/e%d' % i,
                                        {'X-Canary': junk})) == default

    allowed.close()
    other.close()

    entries = nginx.wait_entries('/o/', 8 * 7)
    assert {e['tce_env'] for e in entries
            if e['uri'].startswith(('/o/a', '/o/b'))} == {forced}
    assert {e['tce_env'] for e in entries
            if e['uri'].startswith(('/o/c', '/o/d', '/o/e'))} == {default}


# ---------------------------------------------------------- ends, fallback

@pytest.mark.parametrize('weight,env', [('0', 'prod'), ('100', 'canary'),
                                        ('0.00', 'prod'),
                                        ('100.00', 'canary')])
def test_weights_0_and_100(backend, nginx, weight, env):
    s = Setup(backend, nginx)
    s.start('weight=%s key=$cookie_uid' % weight)
    client = Client(nginx, per_worker=1)
    got = [s.env_of(client.get('/end/%d' % i,
                               {'Cookie': 'uid=k%d' % i} if i % 2 else {}))
           for i in range(100)]
    client.close()
    assert set(got) == {env}
    entries = nginx.wait_entries('/end/', 100)
    assert {e['tce_env'] for e in entries} == {env}
    assert len({e['pid'] for e in entries}) == 2


@pytest.mark.parametrize('weight,missing,serves', [
    ('100', 'canary', 'prod'),      # 100% canary, no canary instance
    ('0', 'prod', 'canary'),        # prod empty, canary there
    ('50', 'canary', 'prod'),
])
def test_fallback_on_serves_the_other_env(backend, nginx, weight, missing,
                                          serves):
    s = Setup(backend, nginx, canary_inst=(missing != 'canary'),
              prod_inst=(missing != 'prod'))
    s.start('weight=%s' % weight)
    client = Client(nginx, per_worker=1)
    got = [s.env_of(client.get('/fb/%d' % i)) for i in range(40)]
    client.close()
    assert set(got) == {serves}
    entries = nginx.wait_entries('/fb/', 40)
    assert {e['tce_env'] for e in entries} == {serves}


@pytest.mark.parametrize('weight,missing', [('100', 'canary'),
                                            ('0', 'prod')])
def test_fallback_off_answers_503(backend, nginx, weight, missing):
    s = Setup(backend, nginx, canary_inst=(missing != 'canary'),
              prod_inst=(missing != 'prod'))
    s.start('weight=%s fallback=off' % weight)
    since = file_size(nginx.error_log)
    rs = [nginx.get('/off/%d' % i) for i in range(6)]
    assert [r.status for r in rs] == [503] * 6
    assert {r.headers.get('X-TCE-Env') for r in rs} == {missing}
    nginx.wait_error_line(
        lambda l: 'no instance available' in l and SERVICE in l
        and ('env ' + missing) in l, since)
    assert not backend.entries(), 'a backend got a request'


def test_retries_stay_in_env_then_fall_back(backend, nginx):
    """Canary instances that refuse connections: the request tries every
    canary instance, then prod serves (fallback on); off: 502."""
    dead = [backend.dead, backend.p502]
    s = Setup(backend, nginx, canary_inst=False)
    s.instances += [instance('c-dead-%d' % i, backend.addr(p),
                             env='canary') for i, p in enumerate(dead)]
    s.start('weight=100', location='            proxy_next_upstream '
            'error timeout http_502;\n')
    for i in range(6):
        r = nginx.get('/rt/%d' % i)
        assert s.env_of(r) == 'prod'
    # by URI: the workers write their lines in no set order
    entries = sorted(nginx.wait_entries('/rt/', 6), key=lambda e: e['uri'])
    dead_addrs = {backend.addr(p) for p in dead}
    prod_addrs = {backend.addr(p) for p in s.prod_ports}
    # the first request tries every canary instance, then prod; later
    # ones skip the failed canary instances (fail_timeout) and go to
    # prod at once; never a prod instance before a canary one
    assert set(entries[0]['addrs'][:-1]) == dead_addrs, entries[0]
    for e in entries:
        assert set(e['addrs'][:-1]) <= dead_addrs, e
        assert e['addrs'][-1] in prod_addrs, e
        assert e['tce_env'] == 'prod'


# ---------------------------------------------------------- runtime policy

def test_state_file_policy_and_epoch_bump(backend, nginx):
    s = Setup(backend, nginx)
    keys = ['id-%d' % i for i in range(300)]
    # nginx.conf says 90%; the zone's policy (state file) wins
    s.start('weight=90 key=$cookie_uid',
            state_canary={'weight_bp': 5000, 'epoch': 1})

    def sample(prefix):
        client = Client(nginx, per_worker=1)
        envs = envs_of_keys(s, client, keys, prefix)
        client.close()
        return {k for k, e in envs.items() if e == 'canary'}

    e1 = sample('/ep1')
    assert e1 == {k for k in keys if bucket(k, 1) < 5000}

    # epoch bump: the keys are dealt out again
    s.state({'weight_bp': 5000, 'epoch': 2})
    nginx.reload()
    e2 = sample('/ep2')
    assert e2 == {k for k in keys if bucket(k, 2) < 5000}
    moved = len(e1 ^ e2) / len(keys)
    assert 0.35 < moved < 0.65, moved

    # rollback: weight 0 and a new epoch send every sticky user to prod
    s.state({'weight_bp': 0, 'epoch': 3})
    nginx.reload()
    assert sample('/ep3') == set()

    # the canary object leaves the file: nginx.conf's 90% again
    s.state(None)
    nginx.reload()
    assert sample('/ep4') == {k for k in keys if bucket(k, 0) < 9000}


# ---------------------------------------------------------- config errors

BAD_CANARY = {
    'weight over 100': ('tce_canary weight=100.01;', ['weight=100.01',
                                                      '0..100']),
    'weight 3 decimals': ('tce_canary weight=1.234;', ['weight=1.234']),
    'weight not a number': ('tce_canary weight=ten;', ['weight=ten']),
    'weight negative': ('tce_canary weight=-1;', ['weight=-1']),
    'fallback': ('tce_canary fallback=maybe;', ['fallback=maybe']),
    'override_from': ('tce_canary header=X-C override_from=example.com;',
                      ['override_from', 'example.com']),
    'header alone': ('tce_canary header=X-C;', ['header', 'override_from']),
    'override_from alone': ('tce_canary override_from=127.0.0.1;',
                            ['override_from', 'header']),
    'bad header name': ('tce_canary header=X:C override_from=127.0.0.1;',
                        ['header=X:C']),
    'empty key': ('tce_canary key=;', ['key=']),
    'unknown': ('tce_canary weigth=5;', ['weigth=5', 'tce_canary']),
    'duplicate': ('tce_canary; tce_canary;', ['tce_canary', 'duplicate']),
}


@pytest.mark.parametrize('case', list(BAD_CANARY))
def test_bad_tce_canary_fails_nginx_t(nginx, case):
    line, words = BAD_CANARY[case]
    nginx.write_state({SERVICE: {'default': []}})
    nginx.configure(upstreams='    upstream api {\n        tce_service %s;'
                    '\n        %s\n    }\n' % (SERVICE, line))
    rc, out = nginx.check()
    assert rc != 0, out
    emerg = [l for l in out.splitlines() if '[emerg]' in l]
    assert emerg and all(w in emerg[0] for w in words), out


def test_tce_canary_before_tce_service_fails(nginx):
    nginx.write_state({SERVICE: {'default': []}})
    nginx.configure(upstreams='    upstream api {\n        tce_canary;\n'
                    '        tce_service %s;\n    }\n' % SERVICE)
    rc, out = nginx.check()
    assert rc != 0
    assert 'must come after "tce_service"' in out, out


def test_bad_canary_header_flag_fails(nginx):
    nginx.write_state({SERVICE: {'default': []}})
    nginx.configure(upstreams=upstream(''),
                    http_extra='    tce_canary_header yes;\n')
    rc, out = nginx.check()
    assert rc != 0 and 'tce_canary_header' in out, out


@pytest.mark.parametrize('canary,words', [
    ({'weight_bp': 10001}, ['canary.weight_bp', '0..10000']),
    ({'weight_bp': 50, 'epoch': -1}, ['canary.epoch']),
    ({'weight_bp': 50, 'fallback': 'yes'}, ['canary.fallback']),
    ({'weight': 50}, ['canary.weight', 'unknown']),
    ({}, ['canary.weight_bp', 'missing']),
])
def test_bad_state_canary_fails_nginx_t(backend, nginx, canary, words):
    s = Setup(backend, nginx)
    s.state(canary)
    s.configure('weight=5')
    rc, out = nginx.check()
    assert rc != 0, out
    out = nginx.masked(out)
    assert '<state-file>' in out and all(w in out for w in words), out
    assert 'services.%s.clusters.default.canary' % SERVICE in out, out


def test_no_tce_canary_is_prod_only(backend, nginx):
    """Without tce_canary (and no policy) the foundation's routing is
    unchanged: prod only, no X-TCE-Env unless asked."""
    s = Setup(backend, nginx)
    s.state()
    nginx.configure(upstreams=upstream(None), location=LOCATION)
    nginx.start()
    rs = [nginx.get('/plain/%d' % i) for i in range(20)]
    assert all(r.status == 200 and int(r.body) in s.prod_ports for r in rs)
    assert all('X-TCE-Env' not in r.headers for r in rs)
    entries = nginx.wait_entries('/plain/', 20)
    assert {e['tce_env'] for e in entries} == {'prod'}

