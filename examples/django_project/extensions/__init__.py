"""The example's extension services, started by `project/wsgi.py` in the processes that serve requests."""
