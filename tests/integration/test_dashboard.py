"""
The dashboard served by the admin API (<loc>dashboard/), as an operator
sees it: headless Chromium (Debian's chromium, chromium-driver and
python3-selenium) against the real nginx with the module.  What the page
shows is checked against the state file the test wrote and against the
admin API's own answers; what it changes is checked through the API.

The HTTP-level tests (redirects, headers, the files) run everywhere;
the browser tests are skipped under valgrind (a browser next to memcheck
on 2 cores measures nothing useful; the serving paths they use are the
HTTP-level tests' paths).  TCE_SCREENSHOTS=<dir> saves screenshots of
the main views there (docs/ holds the ones README shows).
"""

import json
import os
import re
import subprocess
import sys
import urllib.parse

import pytest

from admin_helpers import TOKEN, admin_location, call, start_admin
from conftest import SERVICE, SLOW, VALGRIND, instance, wait_for
from redis_helpers import redis  # noqa: F401 (fixture)


TOP = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
CHROMEDRIVER = '/usr/bin/chromedriver'
SHOTS = os.environ.get('TCE_SCREENSHOTS')
# counting is on only when some location has tce_metrics
METRICS = '        location = /metrics { tce_metrics; }\n'

browser_only = pytest.mark.skipif(
    VALGRIND, reason='browser tests: not under memcheck (see the module '
    'docstring)')


def canary(nginx):
    r = call(nginx, 'GET', '/api/v1/services/%s/clusters/default/canary'
             % SERVICE, token=TOKEN)
    assert r.status == 200, r
    return r.json['canary']


# ------------------------------------------------------------ over HTTP

def test_embedded_files_are_current():
    """admin/ngx_http_tce_admin_dashboard_assets.c is made from
    admin/dashboard/ by embed.py: a stale copy fails here."""
    p = subprocess.run([sys.executable, os.path.join(
        TOP, 'admin', 'dashboard', 'embed.py'), '--check'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    assert p.returncode == 0, p.stdout.decode()


def test_served_with_redirects_and_strict_headers(nginx, backend):
    start_admin(nginx, backend)
    # a browser asking for the API's root goes to the dashboard; an API
    # client keeps the versions list
    r = call(nginx, 'GET', '/api/', validate=False, headers={
        'Accept': 'text/html,application/xhtml+xml,*/*;q=0.8'})
    assert r.status == 302, r
    assert urllib.parse.urlparse(r.headers['Location']).path \
        == '/api/dashboard/', r.headers
    r = call(nginx, 'GET', '/api/')
    assert r.status == 200 and r.json['versions'] == ['v1'], r
    r = call(nginx, 'GET', '/api/dashboard', validate=False)
    assert r.status == 301, r
    assert r.headers['Location'].endswith('/api/dashboard/'), r.headers

    files = {'': ('text/html', b'<script src="dashboard.js">'),
             'dashboard.js': ('text/javascript', b"'use strict';"),
             'dashboard.css': ('text/css', b'body {')}
    for name, (ctype, marker) in files.items():
        r = call(nginx, 'GET', '/api/dashboard/' + name,
                 validate=False)
        assert r.status == 200, (name, r)
        assert r.headers['Content-Type'].startswith(ctype), r.headers
        assert marker in r.body, name
        with open(os.path.join(TOP, 'admin', 'dashboard',
                               name or 'index.html'), 'rb') as f:
            assert r.body == f.read(), name
        csp = r.headers['Content-Security-Policy']
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "connect-src 'self'" in csp, csp
        assert r.headers['X-Content-Type-Options'] == 'nosniff'
    # no external asset: every src/href of the page is relative
    page = call(nginx, 'GET', '/api/dashboard/',
                validate=False).body.decode()
    assert 'http:' not in page and 'https:' not in page and '//' not in \
        page.replace('<!doctype', '')

    assert call(nginx, 'GET', '/api/dashboard/nope.js',
                validate=False).status == 404
    assert call(nginx, 'HEAD', '/api/dashboard/', validate=False).status == 200
    r = call(nginx, 'POST', '/api/dashboard/', body={}, validate=False)
    assert r.status == 405 and r.headers['Allow'] == 'GET, HEAD', r


def test_traffic_counters_match_the_requests_sent(nginx, backend):
    """The per-env "traffic" the charts are drawn from counts exactly the
    requests the test sent (oracle: the client's own count)."""
    start_admin(nginx, backend, canary='weight=0', server_extra=METRICS)
    for _ in range(25):
        assert nginx.get('/').status == 200

    def counted():
        r = call(nginx, 'GET', '/api/v1/services/' + SERVICE)
        t = r.json['clusters']['default']['envs']['prod'].get('traffic')
        return t if t and t['requests'] == 25 else None

    t = wait_for(counted, 10, what='25 prod requests in "traffic"')
    assert t['by_class']['2xx'] == 25 and t['answered_by_nginx'] == 0, t
    d = t['request_duration']
    assert len(d['counts']) == len(d['le_seconds']) + 1 == 14, d
    assert sum(d['counts']) == 25, d
    assert d['le_seconds'] == sorted(d['le_seconds']), d


# ------------------------------------------------------------ in a browser

@pytest.fixture(scope='module')
def browser():
    if VALGRIND:
        pytest.skip('browser tests: not under memcheck')
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for a in ('--headless=new', '--no-sandbox', '--disable-gpu',
              '--disable-dev-shm-usage', '--window-size=1280,900',
              '--disable-extensions', '--no-first-run'):
        opts.add_argument(a)
    opts.set_capability('goog:loggingPrefs',
                        {'browser': 'ALL', 'performance': 'ALL'})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(30 * SLOW)
    yield d
    d.quit()


def text(d, css):
    from selenium.webdriver.common.by import By
    try:
        return d.find_element(By.CSS_SELECTOR, css).text
    except Exception:
        return ''


def click(d, css):
    """Clicks the element; the page re-renders an open service at each
    poll, so an element found just before a poll may be replaced:
    find it again and retry."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def once():
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
            return True
        except StaleElementReferenceException:
            return False
    wait_for(once, 5, what='a click on ' + css)


def open_page(d, nginx):
    d.get('about:blank')            # the last test's page stops polling
    d.get_log('browser')            # drop what earlier tests left
    d.get_log('performance')
    d.get('http://127.0.0.1:%d/api/' % nginx.port)
    assert d.current_url.endswith('/api/dashboard/'), d.current_url
    d.execute_script('sessionStorage.clear()')


def expand(d, psm):
    row = '.svc[data-psm="%s"]' % psm
    wait_for(lambda: text(d, row + ' .head'), 10, what=psm + ' listed')
    click(d, row + ' .head')
    wait_for(lambda: 'cluster default' in text(d, row + ' .body'), 10,
             what=psm + ' expanded')
    return row


def requested_urls(d):
    out = []
    for entry in d.get_log('performance'):
        m = json.loads(entry['message'])['message']
        if m.get('method') == 'Network.requestWillBeSent':
            out.append(m['params']['request']['url'])
    return out


def shot(d, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        d.save_screenshot(os.path.join(SHOTS, name))


def use_token(d, token):
    from selenium.webdriver.common.by import By
    d.find_element(By.ID, 'token').send_keys(token)
    click(d, '#use-token')
    wait_for(lambda: text(d, '#auth-state') == 'token set', 5,
             what='the token taken')


@browser_only
def test_page_shows_the_instances_and_follows_the_api(nginx, backend,
                                                      browser):
    d = browser
    start_admin(nginx, backend, canary='weight=20 key=$arg_u',
                server_extra=METRICS)
    open_page(d, nginx)
    row = expand(d, SERVICE)
    body = lambda: text(d, row + ' .body')   # noqa: E731

    # every instance of the state file, in its env, with its address
    doc = json.load(open(nginx.state_path))
    for i in doc['services'][SERVICE]['clusters']['default']['instances']:
        wait_for(lambda: i['id'] in body() and i['address'] in body(), 10,
                 what='instance %s shown' % i['id'])

    # a change made through the API appears without a reload
    r = call(nginx, 'PUT', '/api/v1/services/%s/clusters/default/canary'
             % SERVICE, body={'weight': 37.5}, token=TOKEN)
    assert r.status == 200, r
    wait_for(lambda: 'canary 37.50%' in body(), 10 * SLOW,
             what='the new weight shown')

    # traffic on both envs: the charts (rates from two polls' counters)
    # show a rate for each
    def charted():
        for u in range(20):
            assert nginx.get('/?u=%d' % u).status == 200
        m = re.search(r'req/s: prod (\d+\.\d), canary (\d+\.\d)', body())
        return m and float(m.group(1)) > 0 and float(m.group(2)) > 0
    wait_for(charted, 20 * SLOW, what='both envs charted')
    shot(d, 'dashboard-service.png')

    # nothing logged as an error, nothing fetched from elsewhere
    errors = [e for e in d.get_log('browser') if e['level'] == 'SEVERE']
    assert not errors, errors
    origin = 'http://127.0.0.1:%d/' % nginx.port
    urls = requested_urls(d)
    assert urls and all(u.startswith(origin) for u in urls), urls


@browser_only
def test_rollback_click_needs_the_token(nginx, backend, browser):
    d = browser
    start_admin(nginx, backend, canary='weight=30 key=$arg_u')
    before = canary(nginx)
    open_page(d, nginx)
    row = expand(d, SERVICE)

    # without a token: the page asks for it, nothing changes
    click(d, row + ' .rollback')
    wait_for(lambda: 'needs the admin token' in text(d, '#message'), 5,
             what='the token asked for')
    assert canary(nginx) == before

    # a wrong token: the API's refusal is shown, nothing changes
    use_token(d, 'not-a-token')
    click(d, row + ' .rollback')
    wait_for(lambda: 'refused: 401' in text(d, '#message')
             or 'refused: 403' in text(d, '#message'), 10 * SLOW,
             what='the refusal shown')
    assert canary(nginx) == before
    shot(d, 'dashboard-refused.png')

    # the right token: weight 0 and a new epoch, as the API reports
    click(d, '#forget-token')
    use_token(d, TOKEN)
    click(d, row + ' .rollback')
    wait_for(lambda: (canary(nginx) or {}).get('weight_bp') == 0,
             10 * SLOW, what='the rollback applied')
    after = canary(nginx)
    # before: nginx.conf's policy (epoch 0 unless set there)
    assert after['epoch'] == (before or {}).get('epoch', 0) + 1, (before,
                                                                  after)
    wait_for(lambda: 'canary 0.00%' in text(d, row + ' .body'), 10 * SLOW,
             what='the rollback shown')


@browser_only
def test_500_services_and_search(nginx, backend, browser):
    from selenium.webdriver.common.by import By
    d = browser
    services = {}
    for s in range(500):
        services['shop.svc%03d.api' % s] = {'default': [
            instance('i%d' % k, '127.0.0.1:%d' % (20000 + k), weight=1 + k)
            for k in range(20)]}
    start_admin(nginx, backend, services=services,
                zone='tce_zone tce 64m;')
    open_page(d, nginx)
    # the 500, and the upstream's own service (not in the state file)
    wait_for(lambda: text(d, '#count') == '501 of 501 services', 30 * SLOW,
             what='501 services listed')
    # User Timing marks set by the page: ms since the navigation began
    answer, rendered = d.execute_script(
        "return ['tce-services-answer', 'tce-services-rendered'].map("
        "function (n) { return performance.getEntriesByName(n)[0]"
        ".startTime; })")
    print('500 services, 10,000 instances: list answer at %.0f ms, '
          'rendered at %.0f ms after the navigation began (render %.0f ms)'
          % (answer, rendered, rendered - answer))
    assert rendered - answer < 1000 * SLOW, (answer, rendered)
    shot(d, 'dashboard-overview.png')

    d.find_element(By.ID, 'search').send_keys('svc12')
    # svc120 .. svc129: the filter keeps exactly the matching names
    wait_for(lambda: text(d, '#count').startswith('10 of 501'), 5,
             what='the search applied')
    visible = [e.get_attribute('data-psm') for e in
               d.find_elements(By.CSS_SELECTOR, '.svc:not(.hidden)')]
    assert sorted(visible) == ['shop.svc12%d.api' % i for i in range(10)]

    # an open service: a poll updates its rows in place, it does not
    # make the page again
    psm = 'shop.svc123.api'
    row = expand(d, psm)
    tr = row + ' tr[data-id="i3"]'
    wait_for(lambda: '127.0.0.1:20003' in text(d, tr), 10,
             what='i3 shown')
    kept = [d.find_element(By.CSS_SELECTOR, css) for css in
            (tr, row, row + ' .cluster', row + ' details.env')]
    d.execute_script(
        "window.tceAdded = 0; new MutationObserver(function (ms) {"
        " ms.forEach(function (m) { [].forEach.call(m.addedNodes,"
        " function (n) { if (n.nodeType === 1) { window.tceAdded++; }"
        " }); [].forEach.call(m.removedNodes, function (n) {"
        " if (n.nodeType === 1) { window.tceAdded++; } }); });"
        " }).observe(document.getElementById('services'),"
        " { childList: true, subtree: true });")
    wait_polls(d, 2)
    assert d.execute_script('return window.tceAdded') == 0
    assert all(d.execute_script('return arguments[0].isConnected', e)
               for e in kept)

    # a change through the API lands in the same row
    r = call(nginx, 'PATCH', '/api/v1/services/%s/clusters/default/'
             'instances/i3' % psm, body={'drain': True}, token=TOKEN)
    assert r.status == 200, r
    wait_for(lambda: 'draining' in kept[0].text
             and 'Restore' in kept[0].text, 10 * SLOW,
             what='the drain shown in the same row')
    assert d.execute_script('return arguments[0].isConnected', kept[0])
    assert d.execute_script('return window.tceAdded') == 0


# ------------------------------------------------------- a running deploy

DEPLOYS = '/api/v1/services/%s/clusters/default/deploys' % SERVICE
DIFF = '/api/v1/services/%s/clusters/default/diff' % SERVICE


def deploy_call(nginx, method, path, body=None, token=None):
    return call(nginx, method, path, body=body, token=token)


def current_deploy(nginx):
    r = deploy_call(nginx, 'GET', DEPLOYS + '/current')
    assert r.status == 200, r
    return r.json


def start_with_diff(nginx, b):
    """The admin API with tokens, prod on two backends and a canary on a
    third that answers some paths differently, every prod answer
    mirrored by tce_diff (test_diff.py's backends)."""
    token_file = os.path.join(nginx.dir, 'admin.tokens')
    with open(token_file, 'w') as f:
        f.write('%s  deployer\n' % TOKEN)
    nginx.write_state({SERVICE: {'default': [
        instance('p1', b.addr('prod1')), instance('p2', b.addr('prod2')),
        instance('c1', b.addr('canary'), env='canary')]}})
    nginx.configure(location='            tce_diff sample=100 name=orders;\n',
                    server_extra=METRICS + admin_location(token_file))
    nginx.start()


@browser_only
def test_running_deploy_shown_paused_by_a_click(nginx, browser):
    from selenium.webdriver.common.by import By
    from test_diff import Backends, differing
    d = browser
    b = Backends(('prod1', 'prod2', 'canary'), differing)
    try:
        start_with_diff(nginx, b)
        # long steps: the deploy stays on its first step during the test;
        # the diff gate off, or the mismatches below would roll it back
        r = deploy_call(nginx, 'POST', DEPLOYS, token=TOKEN, body={
            'steps': [10, 100], 'step_seconds': 600,
            'gates': {'min_diff_match_ratio': 0}})
        assert r.status == 201, r
        for p in ('/same/1', '/same/2'):
            assert nginx.get(p).status == 200

        # only prod's answers are mirrored: at a 10% step a request may
        # go to the canary itself, so ask again until one was compared
        def mismatch_counted():
            assert nginx.get('/v2/a').status == 200
            j = call(nginx, 'GET', DIFF).json
            return j['mismatch'] >= 1 and j
        diff = wait_for(mismatch_counted, 10, interval=0.1,
                        what='the mismatch counted')
        open_page(d, nginx)
        row = expand(d, SERVICE)
        dep = row + ' .cluster[data-cluster="default"] .deploy'

        # state, step, its weight, the gates, the diff's mismatch: as
        # the API answers them
        wait_for(lambda: text(d, dep + ' .deploy-state') == 'running', 10,
                 what='the running deploy shown')
        assert 'step 1 of 2 (10.00%)' in text(d, dep + ' .deploy-what')
        gates = text(d, dep + ' .deploy-gates')
        for g in ('error_ratio', 'error_ratio_vs_prod', 'p99_vs_prod',
                  'diff_match_ratio', 'min_requests'):
            assert g in gates, gates
        m = diff['last_mismatches'][0]
        wait_for(lambda: m['request'] in text(d, dep + ' .diff-mismatches'),
                 10, what='the mismatch shown')
        shown = text(d, dep + ' .diff-mismatches')
        assert m['what'] in shown and '200 / 200' in shown, shown

        def totals_agree():
            j = call(nginx, 'GET', DIFF).json
            return ('API diff: %d match, %d mismatch, %d not compared'
                    % (j['match'], j['mismatch'], j['error'])) in \
                text(d, dep + ' .diff-totals')
        wait_for(totals_agree, 10, what='the diff totals shown')

        # pause without a token: asked for, nothing changes
        click(d, dep + ' .deploy-pause')
        wait_for(lambda: 'needs the admin token' in text(d, '#message'), 5,
                 what='the token asked for')
        assert current_deploy(nginx)['state'] == 'running'

        # a wrong token: the API's own refusal text, nothing changes
        refusal = deploy_call(nginx, 'POST', DEPLOYS + '/current/pause',
                              body={}, token='not-a-token')
        assert refusal.status in (401, 403), refusal
        use_token(d, 'not-a-token')
        click(d, dep + ' .deploy-pause')
        wait_for(lambda: refusal.json['error']['text'] in
                 text(d, '#message'), 10 * SLOW, what='the refusal shown')
        assert 'refused: %d' % refusal.status in text(d, '#message')
        assert current_deploy(nginx)['state'] == 'running'

        # the right token: paused, as the API reports
        click(d, '#forget-token')
        use_token(d, TOKEN)
        click(d, dep + ' .deploy-pause')
        wait_for(lambda: current_deploy(nginx)['state'] == 'paused',
                 10 * SLOW, what='the deploy paused')
        wait_for(lambda: text(d, dep + ' .deploy-state') == 'paused', 10,
                 what='the pause shown')
        assert d.find_element(By.CSS_SELECTOR,
                              dep + ' .deploy-resume').is_displayed()
        assert not d.find_element(By.CSS_SELECTOR,
                                  dep + ' .deploy-pause').is_displayed()

        # paused, the step's figures stand still: the page's are the API's
        f = current_deploy(nginx)['steps'][0]['figures']
        cells = lambda: [c.text for c in d.find_elements(   # noqa: E731
            By.CSS_SELECTOR, dep + ' .deploy-steps tbody tr:first-child td')]
        if f:
            wait_for(lambda: cells()[3] == str(f['canary_requests'])
                     and cells()[5] == str(f['prod_requests']), 10,
                     what='the step figures shown')
        else:
            assert cells()[3] == '\u2014', cells()
        shot(d, 'dashboard-deploy.png')
    finally:
        b.stop()


def polls(d):
    return int(d.execute_script('return document.body.dataset.polls || 0'))


def wait_polls(d, n):
    """Waits for n more whole polls of the page."""
    start = polls(d)
    wait_for(lambda: polls(d) >= start + n, 10 * n * SLOW,
             what='%d polls' % n)


# ------------------------------------------------- discovery and fleet

@pytest.fixture
def consul():
    sys.path.insert(0, os.path.join(TOP, 'tests', 'doubles'))
    from consul_double import ConsulDouble
    d = ConsulDouble(jitter=False).start()
    yield d
    d.stop()


def api_json(nginx, path):
    r = call(nginx, 'GET', '/api/v1/' + path)
    assert r.status == 200, r
    return r.json


def shows(d, css, expected):
    """The element's text equals expected(), read again at each try:
    the API's figures move (seconds, pages) while the page polls."""
    last = {}

    def same():
        last['page'], last['api'] = text(d, css), expected()
        return last['page'] == last['api']
    try:
        wait_for(same, 10 * SLOW, what=css)
    except BaseException:
        print('page %r, API %r' % (last.get('page'), last.get('api')))
        raise


@browser_only
def test_status_panel_shows_what_the_api_returns(nginx, backend, browser,
                                                 redis, consul):
    d = browser
    token_file = os.path.join(nginx.dir, 'admin.tokens')
    with open(token_file, 'w') as f:
        f.write('%s  deployer\n' % TOKEN)
    redis.start()
    nginx.write_state({})
    nginx.configure(
        state=True, server_extra=admin_location(token_file) + METRICS,
        http_extra='    tce_consul %s wait=1s;\n    tce_redis 127.0.0.1:%d '
        'timeout=%dms resync=1s;\n' % (consul.url, redis.port, 2000 * SLOW))
    nginx.start()
    consul.register(SERVICE, 'api-1', '127.0.0.1', backend.ok4[0])
    wait_for(lambda: api_json(nginx, 'status')['discovery']
             ['consul_reachable'] and (api_json(nginx, 'status').get(
                 'fleet') or {}).get('state') == 'up', 10 * SLOW,
             what='Consul answered and the fleet up')
    open_page(d, nginx)

    def zone():
        z = api_json(nginx, 'status')['zone']
        return '%d of %d pages used (%.1f%%)' % (
            z['pages_used'], z['pages'], z['pages_used'] * 100 / z['pages'])
    shows(d, '[data-card="zone"] b', zone)
    shows(d, '[data-card="consul"] b', lambda: {
        True: 'reachable', False: 'unreachable'}[
            api_json(nginx, 'status')['discovery']['consul_reachable']])

    def watched():
        x = api_json(nginx, 'status')['discovery']
        return ('%d services watched, %d in sync, %d failing, stalest %d s'
                % (x['services_watched'], x['in_sync'], x['failing'],
                   x['max_staleness_seconds']))
    shows(d, '[data-card="consul"] small', watched)
    assert text(d, '[data-card="consul"] small').startswith(
        '1 services watched, 1 in sync, 0 failing')
    shows(d, '[data-card="fleet"] b',
          lambda: api_json(nginx, 'status')['fleet']['state'])
    fleet = api_json(nginx, 'status')['fleet']
    assert 'fleet version %d' % fleet['fleet_version'] in \
        text(d, '[data-card="fleet"] small')

    # staleness per service: the list's own figure
    row = '.svc[data-psm="%s"] .disc' % SERVICE

    def listed():
        s = [x for x in api_json(nginx, 'services')['services']
             if x['name'] == SERVICE][0]['discovery']
        return '%s, staleness %d s' % (
            'in sync' if s['in_sync'] else 'not in sync',
            s['staleness_seconds'])
    shows(d, row, listed)
    shot(d, 'dashboard-status.png')

    # Consul answering 500: unreachable and not in sync, as the API says
    consul.add_fault('status', count=100000, status=500)
    wait_for(lambda: api_json(nginx, 'status')['discovery']
             ['consul_reachable'] is False, 10 * SLOW,
             what='Consul unreachable in the API')
    shows(d, '[data-card="consul"] b', lambda: {
        True: 'reachable', False: 'unreachable'}[
            api_json(nginx, 'status')['discovery']['consul_reachable']])
    shows(d, row, listed)
    assert text(d, row).startswith('not in sync')
    errors = [e for e in d.get_log('browser') if e['level'] == 'SEVERE']
    assert not errors, errors
