"""Tests of the route modules."""
