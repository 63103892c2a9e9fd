"""A tiny app that starts the example extension service when Django is ready."""
