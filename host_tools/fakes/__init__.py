"""Explicit host fakes of MicroPython-only modules (no MagicMock): see rp2.py."""
