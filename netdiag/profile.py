"""The site profile: which servers are the EPJ, what their ports do, how a logon starts and ends.

A TOML file (TOML 1.0, read with the standard library's `tomllib`) describes one site:

- `[[servers]]`: addresses or subnets of the EPJ servers and the role of each port
  (bootstrap, orb, lsd, iiop_tls, http, https, dns, other). Roles follow WebSphere's port
  names (docs/domain.md §1.1: BOOTSTRAP_ADDRESS 2809, ORB_LISTENER_ADDRESS 9100, the node agent's
  LSD 9900, CSIv2 SSL 9402/9403, WC_defaulthost 9080 / _secure 9443).
- `[logon]`: the start rule (a client's connection to a bootstrap port starts a logon; DNS and
  JNLP/jar HTTP just before it belong to it; inside a long-lived client process a request whose
  GIOP operation matches `start_operation` starts the next logon) and the end rule (the reply to
  an operation that matches a regex, or an HTTP URL regex, or the last reply before a quiet
  period).
- `[[client_groups]]` (subnet -> ward/site) and an optional CSV of the same.
- `[thresholds]`: when a cause is worth a warning.

With no profile at all the defaults work on a plain capture: GIOP servers are recognised by the
`GIOP` magic on any port (the transactions table says which connections carry GIOP), WebSphere's
default ports are known, and 2809 (and 2810/9809) are bootstrap ports.

Bad input is rejected with `ConfigError` naming the file, the line and the reason (unknown key,
bad regex, invalid address, wrong type), never a traceback.
"""

from __future__ import annotations

import csv
import hashlib
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from netdiag.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PORT_ROLES = ("bootstrap", "orb", "lsd", "iiop_tls", "http", "https", "dns", "other")

# WebSphere's default ports (docs/domain.md §1.1) and the usual web/DNS ports. Used when the profile
# names no servers, and for ports a profile's server leaves unnamed.
DEFAULT_PORT_ROLES: dict[int, str] = {
    2809: "bootstrap",   # BOOTSTRAP_ADDRESS (application server)
    2810: "bootstrap",   # node agent bootstrap in some layouts
    9809: "bootstrap",   # deployment manager bootstrap
    9100: "orb",         # ORB_LISTENER_ADDRESS
    9900: "lsd",         # node agent ORB listener = Location Service Daemon
    9401: "iiop_tls",    # SAS_SSL_SERVERAUTH_LISTENER_ADDRESS (legacy)
    9402: "iiop_tls",    # CSIV2_SSL_MUTUALAUTH_LISTENER_ADDRESS
    9403: "iiop_tls",    # CSIV2_SSL_SERVERAUTH_LISTENER_ADDRESS
    9080: "http",        # WC_defaulthost (JNLP, jars, web services)
    9443: "https",       # WC_defaulthost_secure
    80: "http",
    8080: "http",
    443: "https",
    53: "dns",
}

CAPTURE_POINTS = ("auto", "client", "server", "middle")
START_RULES = ("bootstrap", "any")


@dataclass(frozen=True)
class Thresholds:
    """When a cause becomes a warning (seconds unless the name says otherwise)."""

    slow_logon_s: float = 10.0           # a logon longer than this is slow
    server_think_s: float = 0.5          # one operation's server time worth a warning
    client_think_s: float = 5.0          # client time per logon worth a warning
    dns_s: float = 0.5                   # one DNS answer slower than this
    tls_handshake_s: float = 0.5         # one TLS handshake longer than this
    connect_s: float = 0.5               # a TCP connect longer than this
    request_timeout_s: float = 5.0       # a request unanswered this long counts as a timeout
    loss_recovery_s: float = 0.2         # retransmission waits per logon worth a warning
    flow_control_s: float = 0.2          # zero-window/window-full waits per logon worth a warning
    nagle_s: float = 0.1                 # Nagle/delayed-ACK stalls per logon worth a warning
    network_share: float = 0.25          # network round trips above this share of a logon
    idle_before_reuse_s: float = 30.0    # idle time that makes a pooled connection "old"
    jar_download_s: float = 0.5          # repeated jar downloads per logon worth a warning
    info_share: float = 0.02             # an info finding is listed only from this share of logon time


@dataclass(frozen=True)
class ServerSpec:
    """One EPJ server or cluster: its addresses and what each port does."""

    name: str
    networks: tuple[IPNetwork, ...]
    ports: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientGroup:
    """A client subnet and the ward/site it belongs to."""

    network: IPNetwork
    group: str


@dataclass(frozen=True)
class Profile:
    """A validated site profile (see module docstring). `Profile()` is the built-in default."""

    servers: tuple[ServerSpec, ...] = ()
    capture_point: str = "auto"
    start_rule: str = "bootstrap"
    start_quiet_s: float = 30.0
    lead_in_s: float = 30.0
    end_operation: re.Pattern[str] | None = None
    end_url: re.Pattern[str] | None = None
    end_quiet_s: float = 5.0
    start_operation: re.Pattern[str] | None = None
    client_groups: tuple[ClientGroup, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    source: str | None = None
    tls_keylog: str | None = None        # [tls] keylog: NSS key log to decrypt TLS (docs/tls.md)

    def is_server(self, ip: str) -> bool | None:
        """True/False when the profile names servers, None when it names none (auto-detect)."""
        if not self.servers:
            return None
        addr = _parse_ip(ip)
        return addr is not None and any(addr in n for s in self.servers for n in s.networks)

    def port_role(self, ip: str, port: int) -> str | None:
        """The role of `ip:port` from the profile, else WebSphere's defaults; None when unknown."""
        addr = _parse_ip(ip)
        for s in self.servers:
            if addr is not None and any(addr in n for n in s.networks) and port in s.ports:
                return s.ports[port]
        return DEFAULT_PORT_ROLES.get(port)

    def client_group(self, ip: str) -> str | None:
        """The ward/site of a client address (most specific subnet wins), None when none matches."""
        addr = _parse_ip(ip)
        if addr is None:
            return None
        best: ClientGroup | None = None
        for g in self.client_groups:
            if addr in g.network and (best is None or g.network.prefixlen > best.network.prefixlen):
                best = g
        return best.group if best else None


def _parse_ip(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(ip)
    except (ValueError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------
# Loading and validation
# ---------------------------------------------------------------------------------------------

_KEY_RE = re.compile(r'^\s*(?:"([^"]+)"|\'([^\']+)\'|([A-Za-z0-9_\-]+))\s*=')
_INLINE_KEY_RE = re.compile(r'(?:[{,]\s*)(?:"([^"]+)"|([A-Za-z0-9_\-]+))\s*=')
_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_\-.]+)\s*\]\]?")

_TOP_KEYS = {"capture", "servers", "logon", "client_groups", "client_groups_csv", "thresholds", "tls"}
_CAPTURE_KEYS = {"point"}
_SERVER_KEYS = {"name", "addresses", "ports"}
_LOGON_KEYS = {"start", "start_quiet_s", "lead_in_s", "start_operation", "end_operation", "end_url", "end_quiet_s"}
_GROUP_KEYS = {"subnet", "group"}
_THRESHOLD_KEYS = {f.name for f in fields(Thresholds)}


class _Lines:
    """Maps key paths to the line that defines them, so errors can name the line.

    tomllib gives values without positions; this light scan of the text recovers them for the
    shapes a profile uses (tables, arrays of tables, keys, one-line inline tables).
    """

    def __init__(self, text: str) -> None:
        self.where: dict[tuple[Any, ...], int] = {}
        header: tuple[Any, ...] = ()
        counts: dict[str, int] = {}
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0] if '"' not in raw and "'" not in raw else raw
            h = _HEADER_RE.match(line)
            if h:
                name = h.group(2)
                if h.group(1) == "[[":
                    idx = counts.get(name, 0)
                    counts[name] = idx + 1
                    header = (*name.split("."), idx)
                else:
                    header = tuple(name.split("."))
                self.where.setdefault(header, n)
                continue
            k = _KEY_RE.match(line)
            if not k:
                continue
            key = next(g for g in k.groups() if g is not None)
            self.where.setdefault((*header, key), n)
            rest = line[k.end():]
            if "{" in rest:
                for m in _INLINE_KEY_RE.finditer(rest):
                    inner = m.group(1) or m.group(2)
                    self.where.setdefault((*header, key, inner), n)

    def line(self, *path: Any) -> int | None:
        p = tuple(path)
        while p:
            if p in self.where:
                return self.where[p]
            p = p[:-1]
        return None


class _Checker:
    def __init__(self, path: str, lines: _Lines) -> None:
        self.path = path
        self.lines = lines

    def fail(self, path: tuple[Any, ...], reason: str) -> ConfigError:
        line = self.lines.line(*path)
        where = f"line {line}: " if line else ""
        return ConfigError(f"{where}{reason}", path=self.path)

    def keys(self, table: dict[str, Any], allowed: set[str], path: tuple[Any, ...], what: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key '{key}' in {what} (known: {', '.join(sorted(allowed))})")

    def number(self, value: Any, path: tuple[Any, ...], *, minimum: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"'{path[-1]}' must be a number, not {value!r}")
        if value < minimum:
            raise self.fail(path, f"'{path[-1]}' must be >= {minimum}, not {value!r}")
        return float(value)

    def string(self, value: Any, path: tuple[Any, ...]) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"'{path[-1]}' must be a string, not {value!r}")
        return value

    def choice(self, value: Any, path: tuple[Any, ...], options: tuple[str, ...]) -> str:
        s = self.string(value, path)
        if s not in options:
            raise self.fail(path, f"'{path[-1]}' must be one of {', '.join(options)}, not {s!r}")
        return s

    def regex(self, value: Any, path: tuple[Any, ...]) -> re.Pattern[str] | None:
        s = self.string(value, path)
        if not s:
            return None
        try:
            return re.compile(s)
        except re.error as exc:
            raise self.fail(path, f"bad regex in '{path[-1]}' {s!r}: {exc}") from None

    def network(self, value: Any, path: tuple[Any, ...]) -> IPNetwork:
        s = self.string(value, path)
        try:
            return ipaddress.ip_network(s, strict=False)
        except ValueError as exc:
            raise self.fail(path, f"invalid address or subnet {s!r}: {exc}") from None


def profile_record(profile: Profile) -> dict[str, Any]:
    """What an analysis directory records about its profile: source file, fingerprint, capture point.

    The fingerprint hashes every setting (servers, port roles, logon rules, client groups,
    thresholds) but not the file's path, so the same profile copied elsewhere matches; compare
    and trend refuse sides whose fingerprints differ.
    """
    text = repr(replace(profile, source=None, tls_keylog=None))   # a key log is input, not a site setting
    return {"source": Path(profile.source).name if profile.source else None,
            "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16],
            "capture_point": profile.capture_point}


def load_profile(path: str | Path) -> Profile:
    """Read and validate a TOML profile; `ConfigError` names the line and the reason."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read profile: {exc.strerror or exc}", path=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"profile is not UTF-8 text (byte offset {exc.start})", path=str(p)) from None
    return parse_profile(text, source=str(p))


def parse_profile(text: str, *, source: str = "<profile>") -> Profile:
    """Validate profile TOML text (pure: no I/O except an optional client-groups CSV)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        if m:
            reason = msg[: m.start()].strip()
            raise ConfigError(f"line {m.group(1)}: not valid TOML: {reason} (column {m.group(2)})",
                              path=source) from None
        raise ConfigError(f"not valid TOML: {msg}", path=source) from None
    ck = _Checker(source, _Lines(text))
    ck.keys(data, _TOP_KEYS, (), "the profile")

    capture = data.get("capture", {})
    if not isinstance(capture, dict):
        raise ck.fail(("capture",), "'capture' must be a table")
    ck.keys(capture, _CAPTURE_KEYS, ("capture",), "[capture]")
    point = ck.choice(capture.get("point", "auto"), ("capture", "point"), CAPTURE_POINTS)

    servers: list[ServerSpec] = []
    raw_servers = data.get("servers", [])
    if not isinstance(raw_servers, list):
        raise ck.fail(("servers",), "'servers' must be an array of tables: [[servers]]")
    for i, s in enumerate(raw_servers):
        base = ("servers", i)
        if not isinstance(s, dict):
            raise ck.fail(base, "each [[servers]] entry must be a table")
        ck.keys(s, _SERVER_KEYS, base, "[[servers]]")
        name = ck.string(s.get("name", f"server {i + 1}"), (*base, "name"))
        addrs = s.get("addresses")
        if addrs is None:
            raise ck.fail(base, "[[servers]] needs 'addresses' (addresses or subnets)")
        if isinstance(addrs, str):
            addrs = [addrs]
        if not isinstance(addrs, list) or not addrs:
            raise ck.fail((*base, "addresses"), "'addresses' must be a non-empty list of addresses or subnets")
        nets = tuple(ck.network(a, (*base, "addresses")) for a in addrs)
        ports: dict[int, str] = {}
        raw_ports = s.get("ports", {})
        if not isinstance(raw_ports, dict):
            raise ck.fail((*base, "ports"), "'ports' must be a table of port = \"role\"")
        for key, role in raw_ports.items():
            ppath = (*base, "ports", key)
            if not str(key).isdigit() or not 0 < int(key) < 65536:
                raise ck.fail(ppath, f"invalid port {key!r}: must be 1..65535")
            ports[int(key)] = ck.choice(role, ppath, PORT_ROLES)
        servers.append(ServerSpec(name=name, networks=nets, ports=ports))

    logon = data.get("logon", {})
    if not isinstance(logon, dict):
        raise ck.fail(("logon",), "'logon' must be a table")
    ck.keys(logon, _LOGON_KEYS, ("logon",), "[logon]")
    start = ck.choice(logon.get("start", "bootstrap"), ("logon", "start"), START_RULES)
    start_quiet = ck.number(logon.get("start_quiet_s", 30.0), ("logon", "start_quiet_s"))
    lead_in = ck.number(logon.get("lead_in_s", 30.0), ("logon", "lead_in_s"))
    end_op = ck.regex(logon.get("end_operation", ""), ("logon", "end_operation"))
    start_op = ck.regex(logon.get("start_operation", ""), ("logon", "start_operation"))
    end_url = ck.regex(logon.get("end_url", ""), ("logon", "end_url"))
    end_quiet = ck.number(logon.get("end_quiet_s", 5.0), ("logon", "end_quiet_s"), minimum=0.001)

    groups: list[ClientGroup] = []
    raw_groups = data.get("client_groups", [])
    if not isinstance(raw_groups, list):
        raise ck.fail(("client_groups",), "'client_groups' must be an array of tables: [[client_groups]]")
    for i, g in enumerate(raw_groups):
        base = ("client_groups", i)
        if not isinstance(g, dict):
            raise ck.fail(base, "each [[client_groups]] entry must be a table")
        ck.keys(g, _GROUP_KEYS, base, "[[client_groups]]")
        if "subnet" not in g or "group" not in g:
            raise ck.fail(base, "[[client_groups]] needs 'subnet' and 'group'")
        groups.append(ClientGroup(ck.network(g["subnet"], (*base, "subnet")), ck.string(g["group"], (*base, "group"))))
    if "client_groups_csv" in data:
        csv_name = ck.string(data["client_groups_csv"], ("client_groups_csv",))
        csv_path = Path(csv_name)
        if not csv_path.is_absolute() and source and not source.startswith("<"):
            csv_path = Path(source).parent / csv_path
        groups.extend(load_client_groups_csv(csv_path))

    raw_thr = data.get("thresholds", {})
    if not isinstance(raw_thr, dict):
        raise ck.fail(("thresholds",), "'thresholds' must be a table")
    ck.keys(raw_thr, _THRESHOLD_KEYS, ("thresholds",), "[thresholds]")
    thr = Thresholds(**{k: ck.number(v, ("thresholds", k)) for k, v in raw_thr.items()})

    raw_tls = data.get("tls", {})
    if not isinstance(raw_tls, dict):
        raise ck.fail(("tls",), "'tls' must be a table")
    ck.keys(raw_tls, {"keylog"}, ("tls",), "[tls]")
    keylog = None
    if raw_tls.get("keylog"):
        kp = Path(ck.string(raw_tls["keylog"], ("tls", "keylog")))
        if not kp.is_absolute() and source and not source.startswith("<"):
            kp = Path(source).parent / kp   # relative to the profile, like client_groups_csv
        keylog = str(kp)

    return Profile(servers=tuple(servers), capture_point=point, start_rule=start, start_quiet_s=start_quiet,
                   lead_in_s=lead_in, end_operation=end_op, end_url=end_url, end_quiet_s=end_quiet,
                   start_operation=start_op,
                   client_groups=tuple(groups), thresholds=thr, source=source, tls_keylog=keylog)


def load_client_groups_csv(path: Path) -> list[ClientGroup]:
    """A CSV with header `subnet,group` (one subnet per row); errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read client groups CSV: {exc.strerror or exc}", path=str(path)) from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["subnet", "group"]:
        raise ConfigError("line 1: client groups CSV must start with the header 'subnet,group'", path=str(path))
    out: list[ClientGroup] = []
    for n, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise ConfigError(f"line {n}: expected 'subnet,group', got {','.join(row)!r}", path=str(path))
        try:
            net = ipaddress.ip_network(row[0].strip(), strict=False)
        except ValueError as exc:
            raise ConfigError(f"line {n}: invalid subnet {row[0].strip()!r}: {exc}", path=str(path)) from None
        out.append(ClientGroup(net, row[1].strip()))
    return out


def profile_toml(profile: Profile) -> str:
    """The profile as TOML that parses back to it: every setting written out, defaults included.

    Why: a case bundle says exactly which profile its analysis used, also when none was given.
    The TLS key log is not written (its session keys decrypt the capture); a comment says one was used.
    """
    import json

    def s(v: str) -> str:
        return json.dumps(v, ensure_ascii=False)   # a TOML basic string

    def num(v: float) -> str:
        return repr(float(v))

    lines = ["# netdiag site profile (TOML) as used by the analysis: every setting, defaults written out.", "",
             "[capture]", f"point = {s(profile.capture_point)}", ""]
    if not profile.servers:
        roles = ", ".join(f"{p} {r}" for p, r in sorted(DEFAULT_PORT_ROLES.items()))
        lines += ["# No [[servers]]: GIOP servers are found by the GIOP magic on any port; port roles are",
                  f"# WebSphere's defaults ({roles}).", ""]
    for sv in profile.servers:
        ports = ", ".join(f"{p} = {s(r)}" for p, r in sorted(sv.ports.items()))
        lines += ["[[servers]]", f"name = {s(sv.name)}",
                  f"addresses = [{', '.join(s(str(n)) for n in sv.networks)}]", f"ports = {{ {ports} }}", ""]
    pat = lambda r: s(r.pattern if r is not None else "")   # noqa: E731
    lines += ["[logon]", f"start = {s(profile.start_rule)}", f"start_quiet_s = {num(profile.start_quiet_s)}",
              f"lead_in_s = {num(profile.lead_in_s)}", f"start_operation = {pat(profile.start_operation)}",
              f"end_operation = {pat(profile.end_operation)}", f"end_url = {pat(profile.end_url)}",
              f"end_quiet_s = {num(profile.end_quiet_s)}", ""]
    for g in profile.client_groups:
        lines += ["[[client_groups]]", f"subnet = {s(str(g.network))}", f"group = {s(g.group)}", ""]
    if profile.tls_keylog:
        lines += ["# [tls] keylog: a TLS key log was used; it is not written here (its keys decrypt the capture)", ""]
    lines += ["[thresholds]"] + [f"{f.name} = {num(getattr(profile.thresholds, f.name))}"
                                 for f in fields(profile.thresholds)]
    return "\n".join(lines) + "\n"


STARTER_PROFILE = '''\
# netdiag site profile (TOML). Every key is optional; delete what you do not need.
# Without a profile netdiag finds GIOP servers by the "GIOP" magic and knows WebSphere's
# default ports (2809 bootstrap, 9100 ORB, 9900 LSD, 9402/9403 IIOP over TLS, 9080/9443 HTTP(S)).

[capture]
# Where the switch mirror sits: auto, client, server or middle. netdiag measures the
# round trip on each side of the capture point from the TCP handshakes, so this is a note
# for the report; the budget is right wherever the capture was taken.
point = "auto"

# The EPJ servers: addresses or subnets, and what each port does.
# Roles: bootstrap (naming, 2809), orb (9100), lsd (node agent 9900), iiop_tls (9402/9403),
#        http (JNLP/jars, 9080), https (9443), dns, other.
[[servers]]
name = "EPJ WebSphere cluster"
addresses = ["10.0.0.0/24"]
ports = { 2809 = "bootstrap", 9100 = "orb", 9900 = "lsd", 9403 = "iiop_tls", 9080 = "http", 9443 = "https" }

[logon]
# A logon starts at a client's connection to a bootstrap port ("bootstrap"), or at its first
# connection to any server port after start_quiet_s of quiet ("any"). DNS queries and
# JNLP/jar HTTP traffic up to lead_in_s before it belong to the logon.
start = "bootstrap"
start_quiet_s = 30
lead_in_s = 30
# A client process that stays up (a shared ward PC: "switch user") logs on again and again over
# the connections it keeps. Each request whose GIOP operation matches this regex starts the next
# logon of that process (a retry after a failed or forwarded answer does not) ...
start_operation = ""        # e.g. "^authenticate$"
# ... and without it, the process's first application operations (e.g. authenticate,
# getUserContext) sent again, in the same order, while nothing is outstanding, after a pause
# longer than twice its usual ones, start the next logon (the naming lookups right before them
# belong to it). Time between logons is in none.
# The logon ends at the reply to the first GIOP operation matching this regex (each logon of a
# long-lived process at its own match, e.g. "^logout$") ...
end_operation = ""          # e.g. "authenticate|getUserContext"
# ... or at the response to the first HTTP request (method + path) matching this regex ...
end_url = ""                # e.g. "GET /epj/start"
# ... else at the last reply before this many seconds of quiet.
end_quiet_s = 5

# Client subnets and the ward or site they belong to (the most specific subnet wins).
[[client_groups]]
subnet = "10.20.4.0/24"
group = "Ward 4"

# Or a CSV file with the header "subnet,group" (relative to this file):
# client_groups_csv = "client-groups.csv"

# [tls]
# A TLS key log (NSS SSLKEYLOGFILE format, relative to this file) to decrypt IIOP/HTTP inside TLS.
# keylog = "sslkeys.log"

[thresholds]
# When a cause becomes a warning (seconds).
slow_logon_s = 10
server_think_s = 0.5        # one operation's server time
client_think_s = 5          # client time per logon
dns_s = 0.5                 # one DNS answer
tls_handshake_s = 0.5       # one TLS handshake
connect_s = 0.5             # one TCP connect
request_timeout_s = 5       # a request unanswered this long, then repeated, is a timeout + retry
loss_recovery_s = 0.2       # retransmission waits per logon
flow_control_s = 0.2        # zero-window / window-full waits per logon
nagle_s = 0.1               # Nagle x delayed-ACK stalls per logon
network_share = 0.25        # share of a logon spent on network round trips
idle_before_reuse_s = 30    # idle time after which a pooled connection counts as old
jar_download_s = 0.5        # jars downloaded again (200 where 304 was expected) per logon
info_share = 0.02           # list an info finding only when it takes this share of logon time (2 %)
'''


def as_profile(profile: Profile | str | os.PathLike[str] | None) -> Profile:
    """A Profile from a Profile, a TOML path, or None (the built-in defaults)."""
    if profile is None:
        return Profile()
    if isinstance(profile, Profile):
        return profile
    return load_profile(profile)
