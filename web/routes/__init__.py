"""The pages, one router per module."""
