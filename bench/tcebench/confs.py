"""nginx.conf files and the tce state file of a bench run.

The templates live in bench/conf/*.conf.in with @name placeholders
('$' belongs to nginx).  The stock and the tce proxy share one template
and differ only in the balancer lines, so both do the same job: equal
weights, the same backends, the same proxy and keepalive settings.
"""

import grp
import json
import os
import pwd
import string


CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "conf")

SERVICE = "bench.svc.api"
ZONE_SIZE = "64m"
UPSTREAM_KEEPALIVE = 64


class ConfTemplate(string.Template):
    delimiter = "@"


STOCK_BALANCER = ("ngx_http_upstream_init_round_robin_peer",
                  "ngx_http_upstream_get_round_robin_peer",
                  "ngx_http_upstream_free_round_robin_peer")
# peer.init, get and free, and the pool cleanup init_peer registers to
# release the request's view of the registry
TCE_BALANCER = ("ngx_http_tce_upstream_init_peer",
                "ngx_http_tce_upstream_get_peer",
                "ngx_http_tce_upstream_free_peer",
                "ngx_http_tce_upstream_cleanup")

CANARY_INSTANCES = 2
CANARY_LINE = "tce_canary weight=10 key=$cookie_uid;"
METRICS_LOCATION = ("        location = /metrics {\n"
                    "            allow 127.0.0.1;\n"
                    "            deny all;\n"
                    "            tce_metrics;\n"
                    "        }")


class Side:
    """One proxy under test: stock round robin, tce, a stock control
    ("random": O(log N) pick, shows what the rest of the request path
    adds as N grows), or a variant of tce (canary, metrics) or of
    either (upstream keepalive sized to N).

    balancer: the functions whose inclusive cost is the balancer's own
    work per request (None: not measurable, e.g. static functions of
    the stripped stock binary).
    canary_instances: that many instances of the state file (the last
    ones) are in env "canary"; canary: the tce_canary line, or None.
    canary_share: the share of requests the canary instances should
    get (checked from the backend's log); None: no canary env.
    cookie: requests carry "Cookie: uid=<distinct per request>".
    metrics: a location with tce_metrics (counting on).
    keepalive: upstream keepalive, default UPSTREAM_KEEPALIVE.
    tce_keepalive: the module's per-instance cache ("tce_keepalive
    <keepalive>") instead of nginx's "keepalive <keepalive>".
    """

    def __init__(self, name, module=None, directive=None, label=None,
                 canary_instances=0, canary=None, canary_share=None,
                 cookie=False, metrics=False, keepalive=None,
                 tce_keepalive=False):
        self.name = name
        self.module = module
        self.directive = directive
        self.label = label or name
        self.canary_instances = canary_instances
        self.canary = canary
        self.canary_share = canary_share
        self.cookie = cookie
        self.metrics = metrics
        self.keepalive = keepalive or UPSTREAM_KEEPALIVE
        self.tce_keepalive = tce_keepalive
        if module is not None:
            self.balancer = TCE_BALANCER
        elif directive is None:
            self.balancer = STOCK_BALANCER
        else:
            self.balancer = None

    def variant(self, name, **kw):
        """The same balancer with other settings."""
        return Side(name, self.module, self.directive, **kw)

    @property
    def upstream(self):
        return "%s_up" % self.name

    @property
    def spreads_evenly(self):
        """Equal weights, one env: each instance gets its share, +-1."""
        return self.directive is None and self.canary_instances == 0

    def load_module_line(self):
        if self.module is None:
            return ""
        return "load_module %s;" % self.module

    def http_lines(self, state_path):
        if self.module is None:
            return ""
        return ("    tce_zone tce %s;\n    tce_state %s;\n"
                % (ZONE_SIZE, state_path))

    def balancer_lines(self, backend_ports):
        if self.module is not None:
            lines = ["        tce_service %s;" % SERVICE]
            if self.canary:
                lines.append("        %s" % self.canary)
            return "\n".join(lines)
        lines = ["        server 127.0.0.1:%d;" % port
                 for port in backend_ports]
        if self.directive is not None:
            lines.insert(0, "        %s;" % self.directive)
        return "\n".join(lines)

    def keepalive_lines(self):
        """The upstream's connection cache: same size, same limits."""
        if self.tce_keepalive:
            return ("        tce_keepalive %d timeout=600s "
                    "requests=10000000;" % self.keepalive)
        return ("        keepalive %d;\n"
                "        keepalive_requests 10000000;\n"
                "        keepalive_timeout 600s;" % self.keepalive)

    def server_lines(self):
        return METRICS_LOCATION if self.metrics else ""

    def canary_ports(self, backend_ports):
        if not self.canary_instances:
            return []
        return backend_ports[-self.canary_instances:]


def render(template_name, path, **values):
    with open(os.path.join(CONF_DIR, template_name)) as f:
        text = ConfTemplate(f.read()).substitute(values)
    with open(path, "w") as f:
        f.write(text)
    return path


def write_backend_conf(tmp, name, ports, access_log_path=None):
    """A backend listening on every port; logs the port and connection
    number of each request to access_log_path when given (to check the
    spread over instances, and the reuse of upstream connections)."""
    listen = "\n".join("        listen 127.0.0.1:%d;" % port
                       for port in ports)
    access_log = ("off" if access_log_path is None
                  else "%s port" % access_log_path)
    return render("backend.conf.in", os.path.join(tmp, name + ".conf"),
                  tmp=tmp, name=name, listen_lines=listen,
                  access_log=access_log)


def write_proxy_conf(tmp, name, side, port, backend_ports,
                     master_process):
    """The nginx under test for one side; writes the state file too."""
    state_path = os.path.join(tmp, name + "-state.json")
    if side.module is not None:
        write_state_file(state_path, backend_ports,
                         side.canary_ports(backend_ports))
    return render("proxy.conf.in", os.path.join(tmp, name + ".conf"),
                  tmp=tmp, name=name, port=port,
                  load_module=side.load_module_line(),
                  master_process="on" if master_process else "off",
                  user=user_line(master_process),
                  http_lines=side.http_lines(state_path),
                  upstream=side.upstream,
                  balancer_lines=side.balancer_lines(backend_ports),
                  server_lines=side.server_lines(),
                  keepalive_lines=side.keepalive_lines())


def write_node_conf(path, dir, module, port, service, zone_size="4m",
                    keepalive=None, reuseport=True, http=(), server=(),
                    proxy=(), admin=()):
    """The nginx.conf of a feature bench's node (conf/node.conf.in):
    the module, 2 workers, upstream "api" of one tce service (service:
    the tce_service arguments), the admin API under /api/, every file in
    dir (dir/state.json the state file).  keepalive: the upstream's
    connection cache ("keepalive 16", "tce_keepalive 16"), with HTTP/1.1
    to the backend; None: none.  http, server, proxy (location /) and
    admin (location /api/): the bench's own directives, one a line."""
    proxy = list(proxy)
    upstream = []
    if keepalive:
        upstream.append(keepalive + ";")
        proxy = ["proxy_http_version 1.1;",
                 'proxy_set_header Connection "";'] + proxy
    return render("node.conf.in", path, module=os.path.abspath(module),
                  user=user_line(True), dir=dir, zone_size=zone_size,
                  service=service, port=port,
                  listen_params=" reuseport" if reuseport else "",
                  http_lines=indent(http, 4),
                  upstream_lines=indent(upstream, 8),
                  server_lines=indent(server, 8),
                  proxy_lines=indent(proxy, 12),
                  admin_lines=indent(admin, 12))


def write_answers_conf(path, dir, servers):
    """A stock nginx backend of a feature bench (conf/answers.conf.in),
    its files in dir: servers is a list of (ports, text), every port of
    a server answering 200 with text (nginx's escapes and variables
    apply: "$server_port\\n")."""
    lines = []
    for ports, text in servers:
        lines.append("server {")
        lines += ["    listen 127.0.0.1:%d;" % p for p in ports]
        lines.append('    return 200 "%s";' % text)
        lines.append("}")
    return render("answers.conf.in", path, user=user_line(True), dir=dir,
                  server_lines=indent(lines, 4))


def indent(lines, spaces):
    return "\n".join(" " * spaces + line for line in lines)


def write_state_file(path, backend_ports, canary_ports=()):
    """One cluster of equal-weight instances, one per backend port;
    those on canary_ports in env "canary", the others in "prod"."""
    instances = [{"id": "i%d" % (i + 1),
                  "address": "127.0.0.1:%d" % port,
                  "weight": 1}
                 for i, port in enumerate(backend_ports)]
    if canary_ports:
        for inst, port in zip(instances, backend_ports):
            inst["env"] = "canary" if port in canary_ports else "prod"
    state = {"version": 1,
             "services": {SERVICE: {"clusters": {
                 "default": {"instances": instances}}}}}
    with open(path, "w") as f:
        json.dump(state, f, indent=1)


def user_line(master_process):
    """Workers of a root master keep our uid: the temp dir is 0700."""
    if not master_process or os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return "user %s %s;" % (user, group)
