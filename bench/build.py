"""The ``build`` group: ``docker build`` (the legacy builder on both engines: the CLI here has
no buildx) of a 10-instruction Dockerfile with a ~50 MB context (random files), 3 RUNs and
COPY/ADD, built cold (``--no-cache``) and then fully cached; and the context transfer alone
(a one-line Dockerfile with the same context), in MB/s."""

from __future__ import annotations

import io
import os
import tarfile
from typing import Any

from bench.client import Client
from bench.figures import Ctx, FigureSpec, Interleaved, Params, Samples, _require_containers

CONTEXT_MB = 50
DOCKERFILE = """\
FROM busybox:latest
ARG LEVEL=1
ENV APP=/app
WORKDIR $APP
COPY data/ ./data/
RUN cat data/* | md5sum > sum
ADD small.tar ./small/
RUN ls -R small > listing
RUN echo "level $LEVEL" > level
CMD ["cat", "sum"]
"""


def _make_context(root: str) -> tuple[str, str]:
    """The context directory (the 10-step Dockerfile) and a copy whose Dockerfile only
    names the base image (context transfer alone)."""
    full = os.path.join(root, "build-ctx")
    if not os.path.isdir(full):
        os.makedirs(os.path.join(full, "data"))
        for i in range(CONTEXT_MB):
            with open(os.path.join(full, "data", f"f{i:03d}"), "wb") as f:
                f.write(os.urandom(1 << 20))
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for i in range(20):
                data = f"file {i}\n".encode()
                info = tarfile.TarInfo(f"dir/f{i}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        with open(os.path.join(full, "small.tar"), "wb") as f:
            f.write(buf.getvalue())
        with open(os.path.join(full, "Dockerfile"), "w") as f:
            f.write(DOCKERFILE)
        with open(os.path.join(full, "Transfer.Dockerfile"), "w") as f:
            f.write("FROM busybox:latest\n")
    return full, os.path.join(full, "Transfer.Dockerfile")


class Build(Interleaved):
    name = "build"
    help = (
        f"docker build of a 10-instruction Dockerfile (~{CONTEXT_MB} MB context, 3 RUNs, "
        "COPY/ADD): cold (--no-cache), then cached; context transfer (FROM only), MB/s"
    )

    def figures(self, p: Params) -> list[FigureSpec]:
        return [
            FigureSpec("cold", "docker build --no-cache (10 steps)", "ms", "lower"),
            FigureSpec("cached", "the same build, every step cached", "ms", "lower"),
            FigureSpec("context", f"context transfer (~{CONTEXT_MB} MB, FROM only)", "MB/s",
                       "higher"),
        ]  # fmt: skip

    def rounds(self, p: Params) -> int:
        return max(3, p.samples // 4)

    def setup(self, ctx: Ctx, target: str) -> dict[str, Any]:
        client = _require_containers(ctx, target)
        full, transfer = _make_context(ctx.workdir)
        return {"client": client, "ctx": full, "transfer": transfer, "n": 0}

    def sample(self, ctx: Ctx, target: str, state: dict[str, Any]) -> dict[str, float | Samples]:
        client: Client = state["client"]
        state["n"] += 1
        tag = f"wb-build:{state['n']}"
        cold = client.timed_cli("build", "--no-cache", "-q", "-t", tag, state["ctx"])
        cached = client.timed_cli("build", "-q", "-t", tag, state["ctx"])
        transfer_ms = client.timed_cli("build", "-q", "-f", state["transfer"], state["ctx"])
        client.cli("rmi", "-f", tag, check=False)
        return {"cold": cold, "cached": cached, "context": CONTEXT_MB / (transfer_ms / 1000.0)}

    def teardown(self, ctx: Ctx, target: str, state: dict[str, Any]) -> None:
        client: Client = state["client"]
        client.cli("image", "prune", "-f", check=False)
