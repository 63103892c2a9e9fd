"""`manage.py lifecycle_status`."""
