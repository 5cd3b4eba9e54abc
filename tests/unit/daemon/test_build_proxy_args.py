"""The predefined proxy build args (pure part of the builder)."""

from __future__ import annotations

from whaled.daemon.builder import proxy_env


def test_undeclared_proxy_args_reach_run_and_others_do_not() -> None:
    """Regression: ``--build-arg HTTP_PROXY=…`` was ignored unless the Dockerfile declared
    ``ARG HTTP_PROXY`` (dockerd gives the predefined ones to every RUN)."""
    args = {
        "HTTP_PROXY": "http://u:pw@proxy:3128",
        "no_proxy": "localhost",
        "GREETING": "hi",  # not predefined: needs its ARG
        "https_proxy": None,  # named without a value: nothing to pass
    }
    assert proxy_env(args, declared={}) == [
        "HTTP_PROXY=http://u:pw@proxy:3128",
        "no_proxy=localhost",
    ]
    # declared by an ARG: an ordinary build arg (in the history like any other)
    assert proxy_env(args, declared={"HTTP_PROXY": "x"}) == ["no_proxy=localhost"]
