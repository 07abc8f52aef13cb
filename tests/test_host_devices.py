"""The CPU split into devices (``inference.cli.split_host_cpu``): asked for before JAX starts,
never over the user's own device count, and never after JAX has started."""

import os

from modnet_jax.inference import cli


def test_a_count_in_xla_flags_wins(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--foo=1 --xla_force_host_platform_device_count=8")
    assert cli.split_host_cpu(2) == 8
    assert cli.split_host_cpu(None) == 8


def test_no_split_once_jax_has_started(monkeypatch):
    import jax

    jax.devices()  # this process's backends are up (conftest set them up already)
    monkeypatch.setenv("XLA_FLAGS", "--foo=1")
    assert cli.split_host_cpu(2) == 1
    assert cli.split_host_cpu(1) == 1
    assert os.environ["XLA_FLAGS"] == "--foo=1"  # untouched
    assert len(jax.devices()) == 8


def test_auto_count_on_one_core_is_no_split(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setattr(cli.os, "sched_getaffinity", lambda _: {0}, raising=False)
    assert cli.split_host_cpu(None) == 1


def test_default_video_batch_is_one_frame_per_cpu_device_and_8_on_accelerators():
    class Dev:
        def __init__(self, platform):
            self.platform = platform

    assert cli.default_video_batch([Dev("cpu"), Dev("cpu")]) == 2
    assert cli.default_video_batch([Dev("cpu")]) == 1
    assert cli.default_video_batch([Dev("gpu")]) == 8
