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

from admin_helpers import TOKEN, call, start_admin
from conftest import SERVICE, SLOW, VALGRIND, instance, wait_for


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

    from selenium.webdriver.common.by import By
    d.find_element(By.ID, 'search').send_keys('svc12')
    # svc120 .. svc129: the filter keeps exactly the matching names
    wait_for(lambda: text(d, '#count').startswith('10 of 501'), 5,
             what='the search applied')
    visible = [e.get_attribute('data-psm') for e in
               d.find_elements(By.CSS_SELECTOR, '.svc:not(.hidden)')]
    assert sorted(visible) == ['shop.svc12%d.api' % i for i in range(10)]
