"""The example's extension services: declared in settings (`SERVICES`), their events logged (`apps.py`)."""
