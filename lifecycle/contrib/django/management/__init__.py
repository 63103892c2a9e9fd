"""Management commands of the lifecycle Django app."""
