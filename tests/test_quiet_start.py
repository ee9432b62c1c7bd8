"""Quiet start: TensorFlow's INFO lines are off by default in vlae_tf and the launchers,
TF_CPP_MIN_LOG_LEVEL=0 brings them back (README "Quiet start")."""

import logging
import os

from absl import logging as absl_logging

import vlae_tf  # noqa: F401
from launch import common


def test_importing_launch_quiets_tensorflows_python_info_lines():
    # launch/__init__.py ran at `from launch import common` (TF_CPP_MIN_LOG_LEVEL is not
    # "0" here: conftest sets 2), before TensorFlow logged anything.
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] != "0"
    assert logging.getLogger("tensorflow").level == logging.WARNING


def test_launchers_quiet_absl_info_lines_unless_logs_are_asked_for(monkeypatch):
    before = absl_logging.get_verbosity()
    try:
        monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
        absl_logging.set_verbosity(absl_logging.INFO)
        common._quiet_absl_logging()
        assert absl_logging.get_verbosity() == absl_logging.WARNING
        assert logging.getLogger("absl").getEffectiveLevel() == logging.WARNING

        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")  # the switch: everything back
        absl_logging.set_verbosity(absl_logging.INFO)
        common._quiet_absl_logging()
        assert absl_logging.get_verbosity() == absl_logging.INFO
    finally:
        absl_logging.set_verbosity(before)
