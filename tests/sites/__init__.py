"""Tests of organisations, sites and zones."""
