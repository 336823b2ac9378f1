"""Importable logic of the BERT question-answering application.

The top-level scripts (builder.py, inference.py, perf.py) are thin command
lines over these modules.
"""
