"""The conformance suite: golden fixtures at 60 digits, and the runner behind ``mlloss conform``.

``check_backend(ops)`` runs the whole suite against a third-party backend (see
``docs/conformance.md``). Importing this package needs mpmath only to regenerate fixtures.
"""

from mlloss.conformance.runner import Report, check_backend, run

__all__ = ["Report", "check_backend", "run"]
