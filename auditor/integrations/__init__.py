"""Hooks that apply the auditor's scorer inside training frameworks (optional extras)."""
