/*
 * The front door's dashboard: reads the admin API next to it (the
 * location this page is served under, minus "dashboard/") and shows
 * only what the API returned.  No library, no external request.
 *
 * Every 2 s: GET v1/status and v1/services; for each expanded service,
 * GET v1/services/<psm> and, per cluster, GET .../deploys (and the API
 * diff of a cluster with a deploy).  Every element is made once and
 * updated in place (keyed by service, cluster, env, instance id): a
 * poll changes only the texts that changed, so 500 services and 10,000
 * instances stay usable and what the operator points at stays put.
 * Charts of canary against prod come from the cumulative "traffic"
 * counters of each env, differenced between polls (as Prometheus'
 * rate() and histogram_quantile() do).
 */
'use strict';

(function () {
  var POLL_MS = 2000;
  var HISTORY = 300;                  /* points per chart: 10 minutes */
  var DIFF_RETRY_MS = 60000;          /* a cluster without tce_diff */
  var MISMATCHES_SHOWN = 10;
  var ENV_OPEN_MAX = 50;              /* larger envs start collapsed */
  var TOKEN_KEY = 'tce_admin_token';

  var base = location.pathname.replace(/dashboard\/.*$/, '');
  var api = base + 'v1/';
  var expanded = {};                  /* psm -> true */
  var rows = {};                      /* psm -> row view */
  var etags = {};                     /* psm -> ETag */
  var history = {};                   /* psm|cluster|env -> samples */
  var nodiff = {};                    /* psm|cluster -> retry time */
  var filter = '';
  var polls = 0;

  function $(id) { return document.getElementById(id); }

  /* User Timing marks of the first list render (the tests read them) */
  function mark(name) {
    if (window.performance && performance.mark
        && !performance.getEntriesByName(name).length) {
      performance.mark(name);
    }
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }

  function add(parent) {
    for (var i = 1; i < arguments.length; i++) {
      parent.appendChild(arguments[i]);
    }
    return parent;
  }

  /* changes the DOM only when the text differs */
  function setText(node, text) {
    if (node.textContent !== text) { node.textContent = text; }
  }

  function setClass(node, cls) {
    if (node.className !== cls) { node.className = cls; }
  }

  function setHidden(node, hidden) {
    if (node.hidden !== hidden) { node.hidden = hidden; }
  }

  /*
   * The children of parent, one per item, keyed by key(item): made once
   * by make(item) (a view whose root is the element), updated by
   * update(view, item) at every call, removed once their item is gone,
   * moved only when the order changed.  parent holds nothing else.
   */
  function keyed(parent, items, key, make, update) {
    var views = parent.tceViews || (parent.tceViews = new Map());
    var seen = new Set();
    var next = parent.firstChild;
    items.forEach(function (it) {
      var k = key(it), v = views.get(k);
      if (!v) {
        v = make(it);
        views.set(k, v);
      }
      seen.add(k);
      update(v, it);
      if (v.root !== next) {
        parent.insertBefore(v.root, next);
      } else {
        next = next.nextSibling;
      }
    });
    views.forEach(function (v, k) {
      if (!seen.has(k)) {
        v.root.remove();
        views.delete(k);
      }
    });
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; }
    catch (e) { return ''; }
  }

  function show(text, ok) {
    var m = $('message');
    m.textContent = text;
    m.className = ok ? 'ok' : '';
    m.hidden = !text;
  }

  /* one API call: resolves {status, body, etag}; never rejects */
  function call(method, path, body, etag) {
    var h = { 'Accept': 'application/json' };
    var t = token();
    if (t) { h['Authorization'] = 'Bearer ' + t; }
    if (body !== undefined) { h['Content-Type'] = 'application/json'; }
    if (etag) { h['If-Match'] = etag; }
    return fetch(api + path, {
      method: method, headers: h, cache: 'no-store',
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (r) {
      return r.text().then(function (text) {
        var j = null;
        try { j = text ? JSON.parse(text) : null; } catch (e) { j = null; }
        return { status: r.status, body: j, etag: r.headers.get('ETag') };
      });
    }, function (err) {
      return { status: 0, body: null, etag: null, error: String(err) };
    });
  }

  function errorText(r) {
    if (r.body && r.body.error && r.body.error.text) {
      return r.status + ' ' + r.body.error.text;
    }
    return r.error ? 'no answer: ' + r.error : 'HTTP ' + r.status;
  }

  /*
   * A write: asks for the token first, shows the API's refusal.  etag:
   * the service's ETag (If-Match), or none for routes without one.
   */
  function write(method, path, body, psm, what, etag) {
    if (!token()) {
      show('"' + what + '" needs the admin token: enter it above.');
      $('token').focus();
      return Promise.resolve(null);
    }
    return call(method, path, body, etag).then(function (r) {
      if (r.status >= 200 && r.status < 300) {
        show(what + ': done.', true);
      } else {
        show(what + ' refused: ' + errorText(r));
      }
      refreshService(psm);
      return r;
    });
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) {
      return '\u2014';
    }
    return typeof v === 'number' ? v.toFixed(digits || 0) : String(v);
  }

  function pct(v) {
    return (v === null || v === undefined || Number.isNaN(v))
      ? '\u2014' : (v * 100).toFixed(2) + '%';
  }

  function clusterPath(psm, cluster) {
    return 'services/' + encodeURIComponent(psm) + '/clusters/'
           + encodeURIComponent(cluster) + '/';
  }

  /* ------------------------------------------------------- overview */

  /*
   * The cards of the front door's status, keyed: made once, their texts
   * updated in place.  Each shows the figures of GET v1/status as they
   * are (zone pages, counts, seconds), a share computed from two of them
   * at most; a part the answer lacks is not shown.
   */
  function makeCard(c) {
    var d = el('div', 'card');
    var b = el('b');
    var small = el('small');
    d.dataset.card = c.key;
    add(d, el('span', null, c.label), b, small);
    return { root: d, value: b, more: small };
  }

  function updateCard(v, c) {
    setText(v.value, c.value);
    setText(v.more, c.more || '');
    setClass(v.root, 'card' + (c.bad ? ' bad' : ''));
  }

  function reachable(d) {
    if (d.consul_reachable === null) {
      return d.services_watched ? 'no answer yet' : 'no service watched';
    }
    return d.consul_reachable ? 'reachable' : 'unreachable';
  }

  function statusCards(s) {
    var cards = [];
    var z = s.zone, w = s.consul_watch, d = s.discovery, f = s.fleet;
    if (z) {
      cards.push({ key: 'zone', label: 'Zone "' + z.name + '"',
        value: z.pages_used + ' of ' + z.pages + ' pages used ('
               + fmt(z.pages_used * 100 / Math.max(1, z.pages), 1) + '%)',
        more: z.services + ' services, ' + z.size + ' bytes' });
    }
    if (d) {
      cards.push({ key: 'consul', label: 'Consul', value: reachable(d),
        bad: d.consul_reachable === false || d.failing > 0,
        more: d.services_watched + ' services watched, ' + d.in_sync
              + ' in sync, ' + d.failing + ' failing, stalest '
              + fmt(d.max_staleness_seconds) + ' s' });
    }
    if (w) {
      cards.push({ key: 'watcher', label: 'Consul watcher',
        value: w.owner_pid ? 'worker ' + w.owner_pid : 'none',
        more: w.owner_pid ? 'heartbeat ' + fmt(w.heartbeat_age_ms)
                            + ' ms ago' : '' });
    }
    cards.push(f ? { key: 'fleet', label: 'Redis fleet', value: f.state,
                     bad: f.state !== 'up',
                     more: 'fleet version ' + fmt(f.fleet_version)
                           + ', last sync ' + fmt(f.last_sync_age_s)
                           + ' s ago'
                           + (f.sentinel && f.sentinel.master
                              ? ', master ' + f.sentinel.master : '')
                           + (f.last_error ? ', last error: '
                              + f.last_error : '') }
                 : { key: 'fleet', label: 'Redis fleet',
                     value: 'none (no tce_redis)' });
    if (s.pid) {
      cards.push({ key: 'pid', label: 'Answered by worker',
                   value: String(s.pid) });
    }
    return cards;
  }

  function renderStatus(s) {
    keyed($('overview'), statusCards(s), function (c) { return c.key; },
          makeCard, updateCard);
  }

  /* ------------------------------------------------------ services */

  /* a watched service's discovery, as the list answers it */
  function staleness(s) {
    var d = s.discovery;
    if (!d || !d.watched) { return ''; }
    return (d.in_sync ? 'in sync' : 'not in sync') + ', staleness '
           + fmt(d.staleness_seconds) + ' s';
  }

  function serviceMeta(s) {
    var parts = [s.instances + ' instances', 'source ' + s.source,
                 'generation ' + s.generation];
    Object.keys(s.clusters || {}).forEach(function (c) {
      var envs = s.clusters[c].envs || {};
      var txt = Object.keys(envs).map(function (e) {
        return e + ' ' + envs[e].routable + '/' + envs[e].count;
      }).join(', ');
      parts.push(c + ': ' + txt);
    });
    return parts.join(' \u00b7 ');
  }

  function makeRow(psm) {
    var d = el('div', 'svc');
    var head = el('div', 'head');
    var name = el('span', 'name', psm);
    var meta = el('span', 'meta');
    var disc = el('span', 'disc');
    var body = el('div', 'body hidden');
    add(head, name, meta, disc);
    add(d, head, body);
    d.dataset.psm = psm;
    var row = { root: d, meta: meta, disc: disc, body: body,
                detail: null };
    head.addEventListener('click', function () {
      expanded[psm] = !expanded[psm];
      body.classList.toggle('hidden', !expanded[psm]);
      if (expanded[psm]) { refreshService(psm); }
    });
    return row;
  }

  function renderServices(list) {
    var main = $('services');
    var seen = {};
    var shown = 0;
    list.forEach(function (s) {
      var r = rows[s.name];
      if (!r) {
        r = rows[s.name] = makeRow(s.name);
        main.appendChild(r.root);
      }
      seen[s.name] = true;
      setText(r.meta, serviceMeta(s));
      setText(r.disc, staleness(s));
      var stale = !!s.discovery && s.discovery.watched
                  && !s.discovery.in_sync;
      if (r.disc.classList.contains('stale') !== stale) {
        r.disc.classList.toggle('stale', stale);
      }
      var hide = !!filter && s.name.indexOf(filter) < 0;
      if (r.root.classList.contains('hidden') !== hide) {
        r.root.classList.toggle('hidden', hide);
      }
      if (!hide) { shown++; }
    });
    Object.keys(rows).forEach(function (name) {
      if (!seen[name]) {
        rows[name].root.remove();
        delete rows[name];
        delete expanded[name];
      }
    });
    setText($('count'), shown + ' of ' + list.length + ' services');
  }

  /* --------------------------------------------------------- traffic */

  /* quantile q of the requests between two histogram readings */
  function quantile(q, le, counts) {
    var total = counts.reduce(function (a, b) { return a + b; }, 0);
    if (total <= 0) { return NaN; }
    var rank = q * total, cum = 0;
    for (var i = 0; i < counts.length; i++) {
      if (cum + counts[i] >= rank) {
        if (i >= le.length) { return le[le.length - 1]; }
        var lo = i === 0 ? 0 : le[i - 1];
        return lo + (le[i] - lo) * ((rank - cum) / counts[i]);
      }
      cum += counts[i];
    }
    return le[le.length - 1];
  }

  function record(psm, cluster, env, traffic, now) {
    var key = psm + '|' + cluster + '|' + env;
    var h = history[key] || (history[key] = { last: null, points: [] });
    if (!traffic) { return h; }
    var last = h.last;
    h.last = { t: now, tr: traffic };
    if (last && now > last.t && traffic.requests >= last.tr.requests) {
      var dt = (now - last.t) / 1000;
      var dn = traffic.requests - last.tr.requests;
      var d5 = traffic.by_class['5xx'] - last.tr.by_class['5xx'];
      var dc = traffic.request_duration.counts.map(function (c, i) {
        return c - last.tr.request_duration.counts[i];
      });
      h.points.push({
        t: now, rate: dn / dt, err: dn > 0 ? d5 / dn : NaN,
        p99: quantile(0.99, traffic.request_duration.le_seconds, dc)
      });
      if (h.points.length > HISTORY) { h.points.shift(); }
    }
    return h;
  }

  function drawChart(canvas, series, field) {
    var ctx = canvas.getContext('2d');
    var w = canvas.width, hgt = canvas.height;
    ctx.clearRect(0, 0, w, hgt);
    var max = 0, tmin = Infinity, tmax = -Infinity;
    series.forEach(function (s) {
      s.points.forEach(function (p) {
        if (!Number.isNaN(p[field])) { max = Math.max(max, p[field]); }
        tmin = Math.min(tmin, p.t);
        tmax = Math.max(tmax, p.t);
      });
    });
    if (!(tmax > tmin)) { return; }
    max = max > 0 ? max * 1.1 : 1;
    series.forEach(function (s) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      var started = false;
      s.points.forEach(function (p) {
        if (Number.isNaN(p[field])) { started = false; return; }
        var x = (p.t - tmin) / (tmax - tmin) * (w - 2) + 1;
        var y = hgt - 1 - p[field] / max * (hgt - 2);
        if (started) { ctx.lineTo(x, y); } else { ctx.moveTo(x, y); }
        started = true;
      });
      ctx.stroke();
    });
  }

  function makeChart(title, field, format) {
    var box = el('div', 'chart');
    var cap = el('span');
    var c = el('canvas');
    c.width = 260;
    c.height = 70;
    add(box, cap, c);
    return { root: box, cap: cap, canvas: c, title: title, field: field,
             format: format, drawn: -1 };
  }

  function updateChart(v, series) {
    var lasts = series.map(function (s) {
      var p = s.points[s.points.length - 1];
      return s.env + ' ' + (p ? v.format(p[v.field]) : '\u2014');
    });
    setText(v.cap, v.title + ': ' + lasts.join(', '));
    /* redrawn only when a point was added */
    var stamp = series.reduce(function (a, s) {
      var p = s.points[s.points.length - 1];
      return Math.max(a, p ? p.t : 0);
    }, 0);
    if (stamp !== v.drawn) {
      v.drawn = stamp;
      drawChart(v.canvas, series, v.field);
    }
  }

  /* ------------------------------------------------------ instances */

  var INSTANCE_COLUMNS = ['id', 'address', 'state', 'weight', 'effective',
                          'in flight', 'req/s', 'errors', 'version', ''];

  function makeInstance(psm, cluster) {
    return function (i) {
      var tr = el('tr');
      var cells = INSTANCE_COLUMNS.map(function (h, n) {
        return el('td', n >= 3 && n <= 7 ? 'num' : null);
      });
      var v = { root: tr, cells: cells, inst: i, btn: el('button') };
      tr.dataset.id = i.id;
      cells[9].appendChild(v.btn);
      cells.forEach(function (c) { tr.appendChild(c); });
      v.btn.addEventListener('click', function () {
        var drain = (v.inst.overrides || {}).drain === true;
        write('PATCH', clusterPath(psm, cluster) + 'instances/'
              + encodeURIComponent(v.inst.id),
              { drain: drain ? null : true }, psm,
              (drain ? 'restore ' : 'drain ') + v.inst.id, etags[psm]);
      });
      return v;
    };
  }

  function updateInstance(v, i) {
    var drain = (i.overrides || {}).drain === true;
    var texts = [i.id, i.address, i.state, fmt(i.weight),
                 fmt(i.effective_weight), fmt(i.in_flight),
                 fmt(i.requests_per_second, 1), pct(i.error_ratio),
                 i.version || ''];
    v.inst = i;
    texts.forEach(function (t, n) { setText(v.cells[n], t); });
    setClass(v.cells[2], 'state-' + i.state);
    setText(v.btn, drain ? 'Restore' : 'Drain');
    setClass(v.btn, drain ? 'restore' : 'danger drain');
  }

  function makeEnv(psm, cluster) {
    return function (e) {
      var d = el('details', 'env');
      var sum = el('summary');
      var t = el('table');
      var head = el('tr');
      var tbody = el('tbody');
      INSTANCE_COLUMNS.forEach(function (h) {
        head.appendChild(el('th', null, h));
      });
      add(t, add(el('thead'), head), tbody);
      add(d, sum, t);
      d.dataset.env = e.env;
      d.open = e.list.length <= ENV_OPEN_MAX;
      return { root: d, sum: sum, tbody: tbody,
               make: makeInstance(psm, cluster) };
    };
  }

  function updateEnv(v, e) {
    setText(v.sum, e.env + ' (' + e.list.length + ')');
    keyed(v.tbody, e.list, function (i) { return i.id; }, v.make,
          updateInstance);
  }

  /* --------------------------------------------------------- canary */

  function makeCanary(psm, cluster) {
    var d = el('div', 'canary');
    var path = clusterPath(psm, cluster) + 'canary';
    var text = el('b');
    var input = el('input');
    input.type = 'number';
    input.min = '0';
    input.max = '100';
    input.step = '0.01';
    input.setAttribute('aria-label', 'canary weight (%)');
    var set = el('button', null, 'Set weight');
    set.addEventListener('click', function () {
      write('PUT', path, { weight: Number(input.value) }, psm,
            'canary weight ' + input.value + '% on ' + cluster,
            etags[psm]);
    });
    var rb = el('button', 'danger rollback', 'Roll back');
    rb.addEventListener('click', function () {
      write('PUT', path, { rollback: true }, psm, 'rollback of ' + cluster,
            etags[psm]);
    });
    var reset = el('button', null, 'nginx.conf values');
    reset.addEventListener('click', function () {
      write('DELETE', path, undefined, psm,
            'back to nginx.conf values on ' + cluster, etags[psm]);
    });
    add(d, text, input, set, rb, reset);
    return { root: d, text: text, input: input, value: null };
  }

  function updateCanary(v, pol) {
    setText(v.text, pol ? 'canary ' + fmt(pol.weight_bp / 100, 2)
            + '%, epoch ' + fmt(pol.epoch)
            + (pol.fallback ? ', fallback on' : '')
            : 'canary: nginx.conf values (not reported by the API)');
    var value = pol ? String(pol.weight_bp / 100) : '';
    /* not while the user types in it, nor over what they typed */
    if (value !== v.value && document.activeElement !== v.input) {
      v.input.value = value;
      v.value = value;
    }
  }

  /* --------------------------------------------------------- deploy */

  var DEPLOY_ACTIONS = ['promote', 'rollback', 'pause', 'resume'];
  var STEP_COLUMNS = ['step', 'weight', 'verdict', 'canary requests',
                      'canary 5xx', 'prod requests', 'prod 5xx',
                      'canary p99 ms', 'prod p99 ms', 'diff match'];
  /* gate name (the API's) -> its limit in the deploy's config */
  var GATES = [
    ['error_ratio', function (c) {
      return '\u2264 ' + pct(c.gates.max_error_ratio); }],
    ['error_ratio_vs_prod', function (c) {
      return '\u2264 prod + ' + pct(c.gates.max_error_increase); }],
    ['p99', function (c) {
      return c.gates.max_p99_ms ? '\u2264 ' + c.gates.max_p99_ms + ' ms'
                                : 'off'; }],
    ['p99_vs_prod', function (c) {
      return '\u2264 ' + fmt(c.gates.max_p99_ratio, 2) + ' \u00d7 prod'; }],
    ['diff_match_ratio', function (c) {
      return '\u2265 ' + pct(c.gates.min_diff_match_ratio); }],
    ['min_requests', function (c) {
      return '\u2265 ' + c.min_requests + ' canary requests'; }]
  ];

  function table(columns, cls) {
    var t = el('table', cls);
    var head = el('tr');
    var tbody = el('tbody');
    columns.forEach(function (h) { head.appendChild(el('th', null, h)); });
    add(t, add(el('thead'), head), tbody);
    return { root: t, tbody: tbody };
  }

  function makeCells(n, numeric) {
    return function () {
      var tr = el('tr');
      var cells = [];
      for (var k = 0; k < n; k++) {
        cells.push(tr.appendChild(el('td', numeric(k) ? 'num' : null)));
      }
      return { root: tr, cells: cells };
    };
  }

  function updateCells(v, texts) {
    texts.forEach(function (t, n) { setText(v.cells[n], t); });
  }

  function makeDeploy(psm, cluster) {
    var d = el('div', 'deploy');
    var head = el('p', 'deploy-head');
    var state = el('b', 'deploy-state');
    var what = el('span', 'deploy-what');
    var buttons = el('span', 'deploy-actions');
    var v = { root: d, state: state, what: what, buttons: {},
              reason: el('p', 'deploy-reason'),
              steps: table(STEP_COLUMNS, 'deploy-steps'),
              gates: table(['gate', 'limit', 'p-value (this step)',
                            'verdict'], 'deploy-gates'),
              diff: el('p', 'diff-totals'),
              mismatches: table(['time', 'location', 'request', 'statuses',
                                 'what differs', 'prod', 'canary'],
                                'diff-mismatches') };
    DEPLOY_ACTIONS.forEach(function (a) {
      var b = el('button', 'deploy-' + a + (a === 'rollback' ? ' danger'
                                                              : ''),
                 a.charAt(0).toUpperCase() + a.slice(1));
      b.addEventListener('click', function () {
        write('POST', clusterPath(psm, cluster) + 'deploys/current/' + a,
              {}, psm, a + ' of the deploy on ' + cluster);
      });
      v.buttons[a] = b;
      buttons.appendChild(b);
    });
    add(head, el('span', null, 'deploy '), state, what, buttons);
    add(d, head, v.reason, v.steps.root, v.gates.root, v.diff,
        v.mismatches.root);
    d.hidden = true;
    return v;
  }

  function stepTexts(s, n, total) {
    var f = s.figures || {};
    var has = !!s.figures;
    return [(n + 1) + ' of ' + total, fmt(s.weight, 2) + '%', s.verdict,
            has ? fmt(f.canary_requests) : '\u2014',
            has ? fmt(f.canary_errors) + ' (' + pct(f.canary_error_ratio)
                  + ')' : '\u2014',
            has ? fmt(f.prod_requests) : '\u2014',
            has ? fmt(f.prod_errors) + ' (' + pct(f.prod_error_ratio)
                  + ')' : '\u2014',
            has ? fmt(f.canary_p99_ms, 1) : '\u2014',
            has ? fmt(f.prod_p99_ms, 1) : '\u2014',
            has ? pct(f.diff_match_ratio) : '\u2014'];
  }

  /*
   * A gate's verdict in the current step, as the API tells it: the
   * failed gate it names, else the step's own verdict (a step passes
   * when every gate does); a failed step's other gates: not told.
   */
  function gateVerdict(d, step, gate) {
    if (d.failed_gate === gate) { return 'failed'; }
    if (!step) { return '\u2014'; }
    if (step.verdict === 'failed' || step.verdict === 'stopped') {
      return '\u2014';
    }
    return step.verdict;
  }

  function updateDeploy(v, d, diff) {
    setHidden(v.root, !d);
    if (!d) { return; }
    var active = d.state === 'running' || d.state === 'paused';
    var step = d.steps[d.step];
    setText(v.state, d.state);
    setClass(v.state, 'deploy-state state-' + d.state);
    setText(v.what, ' #' + d.id + ', step ' + (d.step + 1) + ' of '
            + d.steps.length + ' (' + fmt(step ? step.weight : NaN, 2)
            + '%), canary ' + fmt(d.canary.weight_bp / 100, 2)
            + '%, started by ' + d.principal + ' ');
    setHidden(v.buttons.promote, !active);
    setHidden(v.buttons.rollback, !active);
    setHidden(v.buttons.pause, d.state !== 'running');
    setHidden(v.buttons.resume, d.state !== 'paused');
    setText(v.reason, d.reason ? 'reason: ' + d.reason : '');
    setHidden(v.reason, !d.reason);
    keyed(v.steps.tbody, d.steps.map(function (s, n) {
      return { n: n, s: s };
    }), function (x) { return x.n; },
    makeCells(STEP_COLUMNS.length, function (k) { return k >= 3; }),
    function (cv, x) {
      updateCells(cv, stepTexts(x.s, x.n, d.steps.length));
      setClass(cv.root, x.n === d.step ? 'current' : '');
    });
    var p = (step && step.figures && step.figures.p_values) || {};
    keyed(v.gates.tbody, GATES, function (g) { return g[0]; },
          makeCells(4, function (k) { return k === 2; }),
          function (cv, g) {
            var verdict = gateVerdict(d, step, g[0]);
            updateCells(cv, [g[0], g[1](d.config),
                             p[g[0]] === undefined ? '\u2014'
                                                   : fmt(p[g[0]], 4),
                             verdict]);
            setClass(cv.cells[3], 'verdict-' + verdict);
          });
    updateDiff(v, diff);
  }

  function updateDiff(v, diff) {
    var ms = diff && diff.body ? diff.body.last_mismatches || [] : [];
    if (!diff) {
      setText(v.diff, 'API diff: \u2014');
    } else if (diff.status !== 200 || !diff.body) {
      setText(v.diff, 'API diff: ' + errorText(diff));
    } else {
      setText(v.diff, 'API diff: ' + diff.body.match + ' match, '
              + diff.body.mismatch + ' mismatch, ' + diff.body.error
              + ' not compared (match ratio '
              + pct(diff.body.match_ratio) + ')'
              + (ms.length ? '; last mismatches:' : ''));
    }
    setHidden(v.mismatches.root, !ms.length);
    keyed(v.mismatches.tbody, ms.slice(0, MISMATCHES_SHOWN).map(
      function (m, n) { return { n: n, m: m }; }),
    function (x) { return x.n; },
    makeCells(7, function () { return false; }),
    function (cv, x) {
      var m = x.m;
      updateCells(cv, [new Date(m.time_ms).toLocaleTimeString(),
                       m.location, m.request,
                       m.prod_status + ' / ' + m.canary_status, m.what,
                       m.prod, m.canary]);
    });
  }

  /* ------------------------------------------------- one service */

  function makeCluster(psm) {
    return function (c) {
      var box = el('div', 'cluster');
      var charts = el('div', 'charts');
      var v = {
        root: box, canary: makeCanary(psm, c.name),
        deploy: makeDeploy(psm, c.name),
        charts: [makeChart('req/s', 'rate', function (x) {
                   return fmt(x, 1); }),
                 makeChart('5xx ratio', 'err', pct),
                 makeChart('p99 (s)', 'p99', function (x) {
                   return fmt(x, 3); })],
        envs: el('div', 'envs'), makeEnv: makeEnv(psm, c.name)
      };
      box.dataset.cluster = c.name;
      v.charts.forEach(function (ch) { charts.appendChild(ch.root); });
      add(box, el('h3', null, 'cluster ' + c.name), v.canary.root,
          v.deploy.root, charts, v.envs);
      return v;
    };
  }

  function updateCluster(psm, now, extra) {
    return function (v, c) {
      var cj = c.cj, envs = cj.envs || {};
      var names = ['prod', 'canary'].concat(Object.keys(envs).filter(
        function (e) { return e !== 'prod' && e !== 'canary'; }).sort());
      var x = extra[c.name] || {};
      updateCanary(v.canary, cj.canary);
      updateDeploy(v.deploy, x.deploy || null, x.diff || null);
      var series = ['prod', 'canary'].map(function (env) {
        var h = record(psm, c.name, env, (envs[env] || {}).traffic, now);
        return { env: env, color: env === 'prod' ? '#2563eb' : '#d97706',
                 points: h.points };
      });
      v.charts.forEach(function (ch) { updateChart(ch, series); });
      keyed(v.envs, names.map(function (e) {
        return { env: e, list: (envs[e] || {}).instances || [] };
      }), function (e) { return e.env; }, v.makeEnv, updateEnv);
    };
  }

  function discoveryText(s) {
    var disc = s.discovery || {};
    return 'discovery: ' + (disc.watched
      ? (disc.in_sync ? 'in sync' : 'not in sync')
        + ', staleness ' + fmt(disc.staleness_seconds) + ' s'
        + (disc.last_error ? ', last error: ' + disc.last_error : '')
      : 'not watched (source ' + s.source + ')');
  }

  function renderDetail(psm, s, extra, now) {
    var r = rows[psm];
    if (!r) { return; }
    if (!r.detail) {
      r.detail = { error: el('p', 'error'), disc: el('p', 'discovery'),
                   clusters: el('div', 'clusters'),
                   makeCluster: makeCluster(psm) };
      r.body.replaceChildren(r.detail.error, r.detail.disc,
                             r.detail.clusters);
    }
    var v = r.detail;
    setHidden(v.error, true);
    setText(v.disc, discoveryText(s));
    keyed(v.clusters, Object.keys(s.clusters || {}).sort().map(
      function (c) { return { name: c, cj: s.clusters[c] }; }),
    function (c) { return c.name; }, v.makeCluster,
    updateCluster(psm, now, extra));
  }

  function renderError(psm, text) {
    var r = rows[psm];
    if (!r) { return; }
    if (!r.detail) {
      r.body.replaceChildren(el('p', 'error', text));
      return;
    }
    setText(r.detail.error, text);
    setHidden(r.detail.error, false);
  }

  /* the newest deploy of the list (ids grow), or null */
  function newest(list) {
    return (list || []).reduce(function (a, d) {
      return !a || d.id > a.id ? d : a;
    }, null);
  }

  /*
   * Per cluster: its newest deploy and, when it has one, its API diff
   * (a cluster without tce_diff answers 404: asked again a minute
   * later, not at every poll).
   */
  function clusterExtras(psm, s) {
    var out = {};
    return Promise.all(Object.keys(s.clusters || {}).map(function (c) {
      return call('GET', clusterPath(psm, c) + 'deploys').then(function (r) {
        var d = r.status === 200 && r.body ? newest(r.body.deploys) : null;
        var key = psm + '|' + c;
        out[c] = { deploy: d };
        if (!d) { return null; }
        if (nodiff[key] && nodiff[key].until > Date.now()) {
          out[c].diff = nodiff[key].answer;
          return null;
        }
        return call('GET', clusterPath(psm, c) + 'diff').then(function (x) {
          out[c].diff = x;
          if (x.status === 404) {
            nodiff[key] = { until: Date.now() + DIFF_RETRY_MS, answer: x };
          }
        });
      });
    })).then(function () { return out; });
  }

  function refreshService(psm) {
    return call('GET', 'services/' + encodeURIComponent(psm))
      .then(function (r) {
        if (r.status !== 200 || !r.body) {
          if (expanded[psm]) { renderError(psm, errorText(r)); }
          return null;
        }
        etags[psm] = r.etag;
        return clusterExtras(psm, r.body).then(function (extra) {
          if (expanded[psm]) {
            renderDetail(psm, r.body, extra, Date.now());
          }
        });
      });
  }

  /* ------------------------------------------------------------ poll */

  function poll() {
    Promise.all([call('GET', 'status'), call('GET', 'services')])
      .then(function (rs) {
        var st = rs[0], sv = rs[1];
        if (st.status === 200 && st.body) { renderStatus(st.body); }
        if (sv.status === 200 && sv.body) {
          mark('tce-services-answer');
          renderServices(sv.body.services || []);
          mark('tce-services-rendered');
          if ($('message').textContent.indexOf('reads') === 0) {
            show('');
          }
        } else {
          show('reads refused: ' + errorText(sv)
               + (sv.status === 401 || sv.status === 403
                  ? ' (reads need the admin token here)' : ''));
        }
        return Promise.all(Object.keys(expanded).filter(function (p) {
          return expanded[p];
        }).map(refreshService));
      })
      .then(function () {
        /* the tests wait for whole polls with it */
        document.body.dataset.polls = String(++polls);
        setTimeout(poll, POLL_MS);
      }, function () { setTimeout(poll, POLL_MS); });
  }

  function authState() {
    $('auth-state').textContent = token() ? 'token set' : 'read-only';
  }

  $('api-base').textContent = api;
  $('search').addEventListener('input', function (e) {
    filter = e.target.value.trim();
    var names = Object.keys(rows), shown = 0;
    names.forEach(function (name) {
      var hide = !!filter && name.indexOf(filter) < 0;
      rows[name].root.classList.toggle('hidden', hide);
      if (!hide) { shown++; }
    });
    $('count').textContent = shown + ' of ' + names.length + ' services';
  });
  $('auth').addEventListener('submit', function (e) {
    e.preventDefault();
    try { sessionStorage.setItem(TOKEN_KEY, $('token').value.trim()); }
    catch (err) { show('cannot keep the token: ' + err); }
    $('token').value = '';
    authState();
    show('');
  });
  $('forget-token').addEventListener('click', function () {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (err) { /* none */ }
    authState();
  });
  authState();
  poll();
})();
