"""The conformance suite: fixtures and the runner behind ``mlloss conform``."""
