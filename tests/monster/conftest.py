"""Every monster test runs in its own working directory: `mergesmith monster` and `map`
write their logs to ./logs, as MergeMonster does."""

import pytest


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
