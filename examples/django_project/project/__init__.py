"""The example project: settings, URLconf and WSGI entry point."""
