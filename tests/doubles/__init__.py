"""Pytest fixtures that run the sandbox's provider doubles (sandbox/) for the tests."""
