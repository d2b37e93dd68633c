"""Regression tests of the security issue (12): one module per hardening item."""
