"""Helpers the test suite shares: servers it starts, builders of test data."""
