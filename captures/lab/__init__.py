"""netdiag capture lab (issue 3): real peers in network namespaces, injected faults, ground truth.

Entry point: ``python -m captures.lab.run --scenario NAME | --all``; see README.md beside this file.
"""
