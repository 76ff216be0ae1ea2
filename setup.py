"""Kept for Beam: ``--setup_file`` stages the package to workers by running ``python setup.py sdist``.

All metadata lives in pyproject.toml (PEP 621).
"""
from setuptools import setup

setup()
