/*
 * The front door's dashboard: reads the admin API next to it (the
 * location this page is served under, minus "dashboard/") and shows
 * only what the API returned.  No library, no external request.
 *
 * Every 2 s: GET v1/status and v1/services; for each expanded service,
 * GET v1/services/<psm>.  Rows are made once and updated in place.
 * Charts of canary against prod come from the cumulative "traffic"
 * counters of each env, differenced between polls (as Prometheus'
 * rate() and histogram_quantile() do).
 */
'use strict';

(function () {
  var POLL_MS = 2000;
  var HISTORY = 300;                  /* points per chart: 10 minutes */
  var TOKEN_KEY = 'tce_admin_token';

  var base = location.pathname.replace(/dashboard\/.*$/, '');
  var api = base + 'v1/';
  var expanded = {};                  /* psm -> true */
  var rows = {};                      /* psm -> row elements */
  var details = {};                   /* psm -> last detail answer */
  var etags = {};                     /* psm -> ETag */
  var history = {};                   /* psm|cluster|env -> samples */
  var filter = '';

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

  /* a write: asks for the token first, shows the API's refusal */
  function write(method, path, body, psm, what) {
    if (!token()) {
      show('"' + what + '" needs the admin token: enter it above.');
      $('token').focus();
      return Promise.resolve(null);
    }
    return call(method, path, body, etags[psm]).then(function (r) {
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
    if (v === null || v === undefined || isNaN(v)) { return '\u2014'; }
    return typeof v === 'number' ? v.toFixed(digits || 0) : String(v);
  }

  function pct(v) {
    return (v === null || v === undefined || isNaN(v))
      ? '\u2014' : (v * 100).toFixed(2) + '%';
  }

  /* ------------------------------------------------------- overview */

  function card(label, value) {
    var c = el('div', 'card');
    c.appendChild(el('span', null, label));
    c.appendChild(el('b', null, value));
    return c;
  }

  function renderStatus(s) {
    var o = $('overview');
    var cards = [];
    if (s.zone) {
      cards.push(card('Zone "' + s.zone.name + '"',
        fmt(s.zone.pages_used * 100 / Math.max(1, s.zone.pages), 1)
        + '% used, ' + s.zone.services + ' services'));
    }
    if (s.consul_watch) {
      cards.push(card('Consul watch', s.consul_watch.owner_pid
        ? 'worker ' + s.consul_watch.owner_pid + ', heartbeat '
          + fmt(s.consul_watch.heartbeat_age_ms) + ' ms ago'
        : 'not watching'));
    }
    if (s.redis) {
      cards.push(card('Redis', (s.redis.state || '?')
        + (s.redis.fleet_version !== undefined
           ? ', fleet version ' + s.redis.fleet_version : '')));
    }
    if (s.pid) { cards.push(card('Answered by worker', String(s.pid))); }
    o.replaceChildren.apply(o, cards);
  }

  /* ------------------------------------------------------ services */

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
    var body = el('div', 'body hidden');
    head.appendChild(name);
    head.appendChild(meta);
    d.appendChild(head);
    d.appendChild(body);
    d.dataset.psm = psm;
    head.addEventListener('click', function () {
      expanded[psm] = !expanded[psm];
      body.classList.toggle('hidden', !expanded[psm]);
      if (expanded[psm]) { refreshService(psm); }
    });
    return { root: d, meta: meta, body: body };
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
      var m = serviceMeta(s);
      if (r.meta.textContent !== m) { r.meta.textContent = m; }
      var hide = filter && s.name.indexOf(filter) < 0;
      r.root.classList.toggle('hidden', hide);
      if (!hide) { shown++; }
    });
    Object.keys(rows).forEach(function (name) {
      if (!seen[name]) {
        rows[name].root.remove();
        delete rows[name];
        delete expanded[name];
      }
    });
    $('count').textContent = shown + ' of ' + list.length + ' services';
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
        if (!isNaN(p[field])) { max = Math.max(max, p[field]); }
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
        if (isNaN(p[field])) { started = false; return; }
        var x = (p.t - tmin) / (tmax - tmin) * (w - 2) + 1;
        var y = hgt - 1 - p[field] / max * (hgt - 2);
        if (started) { ctx.lineTo(x, y); } else { ctx.moveTo(x, y); }
        started = true;
      });
      ctx.stroke();
    });
  }

  function chartBox(title, series, field, format) {
    var box = el('div', 'chart');
    var lasts = series.map(function (s) {
      var p = s.points[s.points.length - 1];
      return s.env + ' ' + (p ? format(p[field]) : '\u2014');
    });
    box.appendChild(el('span', null, title + ': ' + lasts.join(', ')));
    var c = el('canvas');
    c.width = 260;
    c.height = 70;
    box.appendChild(c);
    drawChart(c, series, field);
    return box;
  }

  /* ------------------------------------------------- one service */

  function instanceRow(psm, cluster, env, i) {
    var tr = el('tr');
    var ov = i.overrides || {};
    tr.appendChild(el('td', null, i.id));
    tr.appendChild(el('td', null, i.address));
    tr.appendChild(el('td', 'state-' + i.state, i.state));
    tr.appendChild(el('td', 'num', fmt(i.weight)));
    tr.appendChild(el('td', 'num', fmt(i.effective_weight)));
    tr.appendChild(el('td', 'num', fmt(i.in_flight)));
    tr.appendChild(el('td', 'num', i.request_rate === undefined
                      ? '\u2014' : fmt(i.request_rate, 1)));
    tr.appendChild(el('td', 'num', pct(i.error_ratio)));
    tr.appendChild(el('td', null, i.version || ''));
    var act = el('td');
    var drain = ov.drain === true;
    var b = el('button', drain ? '' : 'danger', drain ? 'Restore' : 'Drain');
    b.addEventListener('click', function () {
      write('PATCH', 'services/' + encodeURIComponent(psm) + '/clusters/'
            + encodeURIComponent(cluster) + '/instances/'
            + encodeURIComponent(i.id), { drain: drain ? null : true },
            psm, (drain ? 'restore ' : 'drain ') + i.id);
    });
    act.appendChild(b);
    tr.appendChild(act);
    return tr;
  }

  function instanceTable(psm, cluster, env, list) {
    var t = el('table');
    var head = el('tr');
    ['id', 'address', 'state', 'weight', 'effective', 'in flight',
     'req/s', 'errors', 'version', ''].forEach(function (h) {
      head.appendChild(el('th', null, h));
    });
    t.appendChild(head);
    list.forEach(function (i) {
      t.appendChild(instanceRow(psm, cluster, env, i));
    });
    return t;
  }

  function canaryControls(psm, cluster, pol) {
    var d = el('div', 'canary');
    var path = 'services/' + encodeURIComponent(psm) + '/clusters/'
               + encodeURIComponent(cluster) + '/canary';
    var text = pol ? 'canary ' + fmt(pol.weight_bp / 100, 2) + '%, epoch '
               + fmt(pol.epoch) + (pol.fallback ? ', fallback on' : '')
               : 'canary: nginx.conf values (not reported by the API)';
    d.appendChild(el('b', null, text));
    var input = el('input');
    input.type = 'number';
    input.min = '0';
    input.max = '100';
    input.step = '0.01';
    input.setAttribute('aria-label', 'canary weight (%)');
    if (pol) { input.value = String(pol.weight_bp / 100); }
    var set = el('button', null, 'Set weight');
    set.addEventListener('click', function () {
      write('PUT', path, { weight: Number(input.value) }, psm,
            'canary weight ' + input.value + '% on ' + cluster);
    });
    var rb = el('button', 'danger rollback', 'Roll back');
    rb.addEventListener('click', function () {
      write('PUT', path, { rollback: true }, psm, 'rollback of ' + cluster);
    });
    var reset = el('button', null, 'nginx.conf values');
    reset.addEventListener('click', function () {
      write('DELETE', path, undefined, psm,
            'back to nginx.conf values on ' + cluster);
    });
    [input, set, rb, reset].forEach(function (x) { d.appendChild(x); });
    return d;
  }

  function renderDetail(psm, s, now) {
    var r = rows[psm];
    if (!r) { return; }
    var busy = r.body.contains(document.activeElement)
               && document.activeElement.tagName === 'INPUT';
    var parts = [];
    var disc = s.discovery || {};
    parts.push(el('p', null, 'discovery: ' + (disc.watched
      ? (disc.in_sync ? 'in sync' : 'not in sync')
        + ', staleness ' + fmt(disc.staleness_seconds) + ' s'
        + (disc.last_error ? ', last error: ' + disc.last_error : '')
      : 'not watched (source ' + s.source + ')')));
    Object.keys(s.clusters || {}).sort().forEach(function (c) {
      var cj = s.clusters[c];
      var box = el('div', 'cluster');
      box.appendChild(el('h3', null, 'cluster ' + c));
      box.appendChild(canaryControls(psm, c, cj.canary));
      var series = [];
      ['prod', 'canary'].forEach(function (env) {
        var ej = (cj.envs || {})[env] || {};
        var h = record(psm, c, env, ej.traffic, now);
        series.push({ env: env, color: env === 'prod' ? '#2563eb'
                                                       : '#d97706',
                      points: h.points });
      });
      var charts = el('div', 'charts');
      charts.appendChild(chartBox('req/s', series, 'rate',
        function (v) { return fmt(v, 1); }));
      charts.appendChild(chartBox('5xx ratio', series, 'err', pct));
      charts.appendChild(chartBox('p99 (s)', series, 'p99',
        function (v) { return fmt(v, 3); }));
      box.appendChild(charts);
      ['prod', 'canary'].forEach(function (env) {
        var list = ((cj.envs || {})[env] || {}).instances || [];
        box.appendChild(el('h4', null, env + ' (' + list.length + ')'));
        box.appendChild(instanceTable(psm, c, env, list));
      });
      parts.push(box);
    });
    /* not while the user types in it: the next poll renders it */
    if (!busy) { r.body.replaceChildren.apply(r.body, parts); }
  }

  function refreshService(psm) {
    return call('GET', 'services/' + encodeURIComponent(psm))
      .then(function (r) {
        if (r.status === 200 && r.body) {
          details[psm] = r.body;
          etags[psm] = r.etag;
          if (expanded[psm]) { renderDetail(psm, r.body, Date.now()); }
        } else if (expanded[psm] && rows[psm]) {
          rows[psm].body.replaceChildren(el('p', null, errorText(r)));
        }
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
      .then(function () { setTimeout(poll, POLL_MS); },
            function () { setTimeout(poll, POLL_MS); });
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
