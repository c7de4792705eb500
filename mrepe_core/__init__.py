"""MRepE Explorer engine: steering vectors, injection, metrics, bound fits and sweeps.

The engine never imports gradio; the dashboard (``app.py`` and ``mrepe_ui``) is a thin layer on top.
"""

__version__ = "0.1.0"
