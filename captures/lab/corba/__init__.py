"""Real CORBA peers for the netdiag capture lab (issue 3): an omniORB EPJ-like server and logon client.

See README.md beside this file for command lines, config keys and log formats.
"""
