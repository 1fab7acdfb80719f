"""Scenario models and their loading: what a user writes, validated."""
