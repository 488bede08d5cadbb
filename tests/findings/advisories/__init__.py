"""Tests of advisory import and matching."""
