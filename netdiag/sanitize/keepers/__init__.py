"""Per-protocol keepers: which bytes of each message of a protocol are kept (the rest stay zero).

One module per protocol (giop, http, tls, dns), each with a `keep` function of one signature and
a `framed` test, registered by protocol name in netdiag.sanitize.registry.
"""
