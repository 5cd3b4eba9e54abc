"""Build use case (``POST /build``): dockerd's legacy builder. The context tar is unpacked
into a temp directory (``.dockerignore`` applied), the Dockerfile parsed
(``whaled.builder``), and each step carried out with the daemon's own services:

- config-only instructions (ENV, LABEL, CMD, WORKDIR, ...) make an image with the parent's
  layers and a new config (``ImageService.derive``);
- RUN creates and starts a container of the current image (the build's network mode, the
  image's SHELL), streams its output, and commits it when it exits 0;
- COPY/ADD put the files (from the context, another stage or an image) into a created
  container and commit it.

The build cache: a step is reused when a child image of the current one has the same
``created_by`` (the instruction after substitution; RUN with the build args it sees; COPY
and ADD with a checksum of the files' names, modes, types and content) and the same config.
Intermediate containers are always removed; a failed build tags nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import fnmatch
import hashlib
import logging
import os
import posixpath
import re
import stat
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from whaled.archive.files import exact_chunks
from whaled.archive.tarsafe import (
    BLOCK,
    Readable,
    TarInput,
    TarParser,
    looks_like_tar,
    open_stream,
    space_budget,
)
from whaled.archive.tarstream import TarEntry, stream_tar
from whaled.builder import dockerignore, steps
from whaled.builder.contextcache import Context, ContextCache, ContextWriter
from whaled.builder.dockerfile import Dockerfile, Instruction, Stage, parse
from whaled.builder.gitsource import GitSource, is_git_url, parse_git_url
from whaled.builder.words import process_word, process_words
from whaled.config.model import Config
from whaled.container import archive as cp
from whaled.daemon.bundle import read_in_root
from whaled.daemon.container_io import ContainerIO
from whaled.daemon.containers import ContainerService
from whaled.daemon.distribution import DistributionService, PullRequest
from whaled.daemon.images import ImageService, IterReader, ProgressSink
from whaled.distribution.auth import Credentials
from whaled.distribution.platforms import host_platform, parse_platform
from whaled.errors import InvalidParameter, NotFound, SystemFailure, WhaledError
from whaled.image.reference import parse_normalized_named
from whaled.image.stores import ImageStores
from whaled.osutil.tree import open_under, readlink_under, remove_tree, walk_fd
from whaled.runtime.usermap import resolve_user

log = logging.getLogger(__name__)

Emit = Callable[[Mapping[str, Any]], Awaitable[None]]
#: threads that hash a COPY's files (the work is in hashlib and reads, off the GIL)
_HASH_THREADS = min(4, os.cpu_count() or 1)
#: build args every Dockerfile may use without declaring them (dockerd's)
PREDEFINED_ARGS = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
)  # fmt: skip


def proxy_env(build_args: Mapping[str, str | None], *, declared: Mapping[str, str]) -> list[str]:
    """``KEY=value`` for each predefined proxy arg given to the build and not declared by an
    ARG (a declared one is an ordinary build arg, in the history like any other)."""
    return [
        f"{key}={value}"
        for key, value in sorted(build_args.items())
        if key in PREDEFINED_ARGS and key not in declared and value is not None
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: tuple[str, ...] = ()
    build_args: Mapping[str, str | None] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = ""
    extra_hosts: tuple[str, ...] = ()
    shm_size: int = 0
    memory: int = 0
    quiet: bool = False
    pull: bool = False
    remote: str = ""  # a context (tar) or Dockerfile at an HTTP(S) URL, instead of the body
    platform: str = ""  # only this host's: the legacy builder runs RUN steps here
    #: X-Registry-Config: credentials by registry, for FROM images that must be pulled
    registry_auth: Mapping[str, Credentials] = field(default_factory=dict, repr=False)


class BuildFailed(SystemFailure):
    """A build step failed (dockerd's wording; sent in the stream as errorDetail)."""


@dataclass(slots=True)
class _State:
    """Where a stage's build is: its image (None for ``scratch`` before a layer), the
    config, the ARGs it declared and their values."""

    image_id: str | None
    config: dict[str, Any]
    args: dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False


class BuildService:
    def __init__(
        self,
        *,
        stores: ImageStores,
        images: ImageService,
        containers: ContainerService,
        container_io: ContainerIO,
        distribution: DistributionService,
        tmp_root: str,
    ) -> None:
        self.distribution = distribution
        self.stores = stores
        self.images = images
        self.containers = containers
        self.io = container_io
        self.tmp_root = tmp_root
        os.makedirs(tmp_root, 0o700, exist_ok=True)
        self.contexts = ContextCache(tmp_root)

    async def build(
        self,
        cfg: Config,
        body: Readable,
        opts: BuildOptions,
        emit: Emit,
        pull_progress: ProgressSink,
    ) -> str:
        """Build from the context tar ``body``; the image ID (tagged as ``opts.tags``).
        ``pull_progress`` shows the pull of a ``FROM`` image that is not here."""
        if opts.platform:
            wanted, host = parse_platform(opts.platform), host_platform()
            if (wanted.os, wanted.architecture) != (host.os, host.architecture):
                raise InvalidParameter(
                    f"platform {opts.platform} cannot be built here: whaled's builder runs "
                    f"RUN steps on this host ({host.os}/{host.architecture})"
                )
        context, writer = self.contexts.open()  # no I/O: the directory is made by receive
        ctx = context.root
        unpacked = False

        def receive() -> str:
            """The context, unpacked from ``body`` or fetched, then its Dockerfile (one
            trip to a thread: a cached rebuild is a few milliseconds of such trips). The
            writer is closed here, by the thread that used it."""
            nonlocal unpacked
            try:
                context.make_dir()
                if opts.remote:
                    _remote_context(ctx, opts.remote, opts.dockerfile)
                else:
                    _unpack_context(ctx, body, writer)
                    unpacked = True
            finally:
                writer.close()
            return _prepare_context(ctx, opts.dockerfile)

        keep = False  # a context unpacked whole is kept for the next build (contextcache)
        try:
            try:
                text = await asyncio.to_thread(receive)
            finally:
                # copied now: a cancelled wait leaves the thread running, and what it sets
                # later must not undo the ``keep = False`` below
                keep = unpacked
            df = parse(text)
            run = _Run(self, cfg, df, context, opts, emit, pull_progress)
            try:
                image_id = await run.all()
            finally:
                if run.download_dir is not None:
                    await asyncio.to_thread(remove_tree, run.download_dir, ignore_errors=True)
        except (asyncio.CancelledError, ConnectionError):
            keep = False  # the client went away: its build leaves nothing behind
            raise
        finally:
            if keep:
                await asyncio.to_thread(self.contexts.keep, context)
            else:
                await asyncio.to_thread(remove_tree, ctx, ignore_errors=True)
        for tag in opts.tags:
            ref = parse_normalized_named(tag)
            await asyncio.to_thread(self.stores.images.add_reference, ref, image_id, force=True)
        await emit({"aux": {"ID": image_id}})
        if opts.quiet:  # -q: the ID is all the client prints
            await emit({"stream": image_id + "\n"})
        else:
            await emit({"stream": f"Successfully built {image_id[7:19]}\n"})
            for tag in opts.tags:
                await emit({"stream": f"Successfully tagged {tag}\n"})
        return image_id

    async def prune(self) -> tuple[list[str], int]:
        """``docker builder prune``: the kept contexts go (the legacy builder's other cache,
        intermediate images, goes with ``docker image prune``); their names and bytes."""
        gone = await asyncio.to_thread(self.contexts.prune)
        return [os.path.basename(c.root) for c in gone], sum(c.size for c in gone)

    def cache_records(self) -> list[Context]:
        """The kept contexts (``docker system df``'s build cache)."""
        return self.contexts.kept()

    # -- collaborators' use, for _Run -------------------------------------------------------

    def cached(self, parent: str | None, created_by: str, config: Mapping[str, Any]) -> str | None:
        """A child of ``parent`` made by the same step with the same config."""
        if parent is None:
            return None
        images = self.stores.images
        for child in images.children(parent):
            image = images.get(child)
            history = image.history
            if (
                history
                and history[-1].get("created_by") == created_by
                and (image.config.get("config") or {}) == dict(config)
            ):
                return image.id
        return None


class _Run:
    """One build."""

    def __init__(
        self,
        svc: BuildService,
        cfg: Config,
        df: Dockerfile,
        context: Context,
        opts: BuildOptions,
        emit: Emit,
        pull_progress: ProgressSink,
    ) -> None:
        self.pull_progress = pull_progress
        self.svc = svc
        self.cfg = cfg
        self.df = df
        self.context = context
        self.ctx = context.root
        self.opts = opts
        self.emit = emit
        self.step = 0
        self.stage_images: dict[int, str | None] = {}
        self.meta_args: dict[str, str] = {}
        self.used_args: set[str] = set()
        self.download_dir: str | None = None

    async def say(self, text: str) -> None:
        if not self.opts.quiet:
            await self.emit({"stream": text})

    async def announce(self, inst: Instruction) -> None:
        self.step += 1
        await self.say(f"Step {self.step}/{self.df.steps} : {inst.original}\n")

    async def all(self) -> str:
        for inst in self.df.meta_args:
            await self.announce(inst)
            for key, value in steps.key_values(inst, {}, self.df.escape):
                given = self.opts.build_args.get(key)
                self.meta_args[key] = given if given is not None else value
                if key in self.opts.build_args:
                    self.used_args.add(key)
        last = self.df.stages[-1]
        if self.opts.target:
            target = self.df.stage(self.opts.target)
            if target is None:
                raise InvalidParameter(
                    f"failed to reach build target {self.opts.target} in Dockerfile"
                )
            last = target
        image_id: str | None = None
        for stage in self.df.stages[: last.index + 1]:
            image_id = await self.stage(stage, last=stage is last)
        if image_id is None:
            raise BuildFailed("No image was generated. Is your Dockerfile empty?")
        unused = sorted(set(self.opts.build_args) - self.used_args - set(PREDEFINED_ARGS))
        if unused:
            await self.say(
                f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n"
            )
        return image_id

    async def stage(self, stage: Stage, *, last: bool) -> str | None:
        await self.announce(stage.from_instruction)
        base = process_word(stage.base, self.meta_args, self.df.escape)
        state = await self.base(base)
        if state.image_id:
            await self.say(f" ---> {state.image_id[7:19]}\n")
        triggers = list(state.config.get("OnBuild") or [])
        if triggers:
            state.config["OnBuild"] = None
            for trigger in triggers:
                await self.say(f"# Executing {len(triggers)} build trigger\n")
                (inst,) = parse(f"FROM scratch\n{trigger}\n").stages[0].instructions
                await self.instruction(inst, state)
        for inst in stage.instructions:
            await self.announce(inst)
            await self.instruction(inst, state)
            if state.image_id:
                await self.say(f" ---> {state.image_id[7:19]}\n")
        if last and self.opts.labels:
            config = dict(state.config)
            config["Labels"] = {**(config.get("Labels") or {}), **self.opts.labels}
            labels = " ".join(f"{k}={v}" for k, v in sorted(self.opts.labels.items()))
            await self.commit_config(state, config, steps.NOP + " LABEL " + labels)
        self.stage_images[stage.index] = state.image_id
        return state.image_id

    async def base(self, ref: str) -> _State:
        if ref == "scratch":
            return _State(image_id=None, config={})
        stage = self.df.stage(ref)
        if stage is not None and stage.index in self.stage_images:
            image_id = self.stage_images[stage.index]
        else:
            image_id = await self.image(ref)
        if image_id is None:
            return _State(image_id=None, config={})
        image = self.svc.stores.images.get(image_id)
        return _State(image_id=image_id, config=dict(image.config.get("config") or {}))

    async def image(self, ref: str) -> str:
        """A FROM (or ``COPY --from``) image: the local one, pulled when it is not here
        (or always with ``pull``), as dockerd's builder does."""
        images = self.svc.stores.images
        if not self.opts.pull:
            with contextlib.suppress(NotFound):
                return (await asyncio.to_thread(images.resolve, ref)).id
        named = parse_normalized_named(ref)
        if named.tag is None and named.digest is None:
            named = named.with_tag("latest")
        auth = self.opts.registry_auth
        credentials = auth.get(named.domain) or auth.get(f"https://{named.domain}") or Credentials()
        if named.domain == "docker.io" and not credentials.username:
            credentials = auth.get("https://index.docker.io/v1/") or credentials
        await self.svc.distribution.pull(
            PullRequest(reference=named, platform=None, credentials=credentials),
            self.pull_progress,
        )
        return (await asyncio.to_thread(images.resolve, str(named))).id

    def env(self, state: _State) -> dict[str, str]:
        """What substitution sees: the declared ARGs, then the config's Env over them."""
        return {**state.args, **steps.env_map(state.config.get("Env") or [])}

    async def instruction(self, inst: Instruction, state: _State) -> None:
        cmd = inst.cmd
        if cmd == "ARG":
            for key, default in steps.key_values(inst, self.env(state), self.df.escape):
                given = self.opts.build_args.get(key)
                if key in self.opts.build_args:
                    self.used_args.add(key)
                value = given if given is not None else self.meta_args.get(key, default)
                state.args[key] = value
            text = steps.NOP + " ARG " + inst.rest
            await self.commit_config(state, dict(state.config), text)
        elif cmd == "RUN":
            await self.run(inst, state)
        elif cmd in ("COPY", "ADD"):
            await self.copy(inst, state)
        else:
            config, created_by = steps.apply(
                inst, state.config, self.env(state), self.df.escape, cmd_set=state.cmd_set
            )
            if cmd == "CMD":
                state.cmd_set = True
            await self.commit_config(state, config, created_by)

    async def from_cache(self, state: _State, created_by: str, config: dict[str, Any]) -> bool:
        """The step's image from the cache, if there is one (not with ``--no-cache``)."""
        if self.opts.no_cache:
            return False
        hit = self.svc.cached(state.image_id, created_by, config)
        if hit is None:
            return False
        await self.say(" ---> Using cache\n")
        state.image_id, state.config = hit, config
        return True

    async def commit_config(self, state: _State, config: dict[str, Any], created_by: str) -> None:
        if await self.from_cache(state, created_by, config):
            return
        state.image_id = await self.svc.images.derive(
            state.image_id,
            config=config,
            container_config={
                **config,
                "Cmd": ["/bin/sh", "-c", created_by.removeprefix("/bin/sh -c ")],
            },
            created_by=created_by,
        )
        state.config = config

    # -- RUN --------------------------------------------------------------------------------

    async def run(self, inst: Instruction, state: _State) -> None:
        if state.image_id is None:
            raise BuildFailed("no such image: a RUN needs a FROM image with a shell")
        shell = state.config.get("Shell") or steps.DEFAULT_SHELL
        argv = steps.exec_form(inst, shell)
        build_env = [f"{k}={v}" for k, v in sorted(state.args.items())]
        prefix = f"|{len(build_env)} {' '.join(build_env)} " if build_env else ""
        created_by = prefix + " ".join(argv)
        if await self.from_cache(state, created_by, state.config):
            return
        env = list(state.config.get("Env") or [])
        # The predefined proxy args reach RUN without an ARG, but stay out of created_by
        # (the history and the cache key), as in dockerd: they often carry credentials.
        build_env += proxy_env(self.opts.build_args, declared=state.args)
        for entry in build_env:
            key = entry.partition("=")[0]
            if not any(e.partition("=")[0] == key for e in env):
                env.append(entry)
        host_config: dict[str, Any] = {"NetworkMode": self.opts.network_mode or "default"}
        if self.opts.extra_hosts:
            host_config["ExtraHosts"] = list(self.opts.extra_hosts)
        if self.opts.shm_size:
            host_config["ShmSize"] = self.opts.shm_size
        if self.opts.memory:
            host_config["Memory"] = self.opts.memory
        body = {
            **{k: v for k, v in state.config.items() if k not in ("Healthcheck", "OnBuild")},
            "Image": state.image_id,
            "Cmd": argv,
            "Entrypoint": None,
            "Env": env,
            "Healthcheck": {"Test": ["NONE"]},
            "HostConfig": host_config,
        }
        created = await self.svc.containers.create(self.cfg, body, name=None, platform=None)
        cid = created.id
        try:
            await self.say(f" ---> Running in {cid[:12]}\n")
            await self.svc.containers.start(self.cfg, cid)
            async for batch in self.svc.io.logs(cid, stdout=True, stderr=True, follow=True):
                for line in batch:
                    await self.say(line.data.decode(errors="replace"))
            result = await self.svc.containers.wait(cid, "not-running")
            if result.status_code != 0:
                raise BuildFailed(
                    f"The command '{' '.join(argv)}' returned a non-zero code: {result.status_code}"
                )
            state.image_id = await self.svc.images.commit(
                cid,
                parent_image=state.image_id,
                container_config={**state.config, "Cmd": argv},
                image_config=state.config,
                created_by=created_by,
            )
        finally:
            await self.remove(cid)

    async def remove(self, cid: str) -> None:
        with contextlib.suppress(WhaledError):
            await self.svc.containers.remove(cid, force=True, volumes=True)
        with contextlib.suppress(ConnectionError):  # the client may be gone already
            await self.say(f"Removing intermediate container {cid[:12]}\n")

    # -- COPY / ADD -------------------------------------------------------------------------

    async def copy(self, inst: Instruction, state: _State) -> None:
        env = self.env(state)
        words = (
            inst.json if inst.json is not None else process_words(inst.rest, env, self.df.escape)
        )
        if len(words) < 2:
            raise InvalidParameter(f"{inst.cmd} requires at least two arguments")
        sources, dest = words[:-1], words[-1]
        urls = [src for src in sources if src.startswith(("http://", "https://"))]
        if urls and inst.cmd == "COPY":
            raise InvalidParameter("source can't be a URL for COPY")
        sources = [src for src in sources if src not in urls]
        workdir = state.config.get("WorkingDir") or "/"
        dest_abs = posixpath.join(workdir, dest) if not dest.startswith("/") else dest
        dest_is_dir = dest.endswith("/") or dest.endswith("/.") or len(sources) > 1
        chown = process_word(inst.flags.get("chown", ""), env, self.df.escape)
        src_from = inst.flags.get("from", "")
        downloads = [
            await asyncio.to_thread(_download, url, self.downloads(), dest_abs, dest_is_dir)
            for url in urls
        ]
        async with self.source_root(src_from) as root:
            plan, digest = await asyncio.to_thread(
                _planned, inst.cmd, downloads, root, sources, dest_abs, dest_is_dir, self.context
            )
            kind = "dir" if len(plan) > 1 or plan[0].is_dir else "file"
            created_by = f"{steps.NOP}{inst.cmd} {kind}:{digest} in {dest_abs} "
            if await self.from_cache(state, created_by, state.config):
                return
            body = {
                "Image": state.image_id or "",
                "Cmd": ["/bin/sh", "-c", f"#(nop) {inst.cmd} {kind}:{digest} in {dest_abs} "],
                "HostConfig": {"NetworkMode": "none"},
            }
            if state.image_id is None:  # scratch: the files are the first layer
                owner = await self.owner(chown, None)
                state.image_id = await self.svc.images.add_layer(
                    None,
                    IterReader(stream_tar(_with_parents(_entries(plan, owner)))),
                    config=state.config,
                    container_config={**state.config, "Cmd": body["Cmd"]},
                    created_by=created_by,
                )
                return
            created = await self.svc.containers.create(self.cfg, body, name=None, platform=None)
            cid = created.id
            try:
                owner = await self.owner(chown, cid)
                reader = IterReader(stream_tar(_entries(plan, owner)))
                await self.svc.io.extract(
                    cid, "/", reader, no_overwrite_dir_non_dir=False, copy_uid_gid=False
                )
                state.image_id = await self.svc.images.commit(
                    cid,
                    parent_image=state.image_id,
                    container_config={**state.config, "Cmd": body["Cmd"]},
                    image_config=state.config,
                    created_by=created_by,
                )
            finally:
                with contextlib.suppress(WhaledError):
                    await self.svc.containers.remove(cid, force=True, volumes=True)

    def downloads(self) -> str:
        """A directory for ADD's downloads (outside the context: a later COPY . must not
        see them), removed with the build."""
        if self.download_dir is None:
            self.download_dir = tempfile.mkdtemp(prefix="add-", dir=self.svc.tmp_root)
        return self.download_dir

    async def owner(self, chown: str, cid: str | None) -> tuple[int, int]:
        """``--chown=user[:group]``: numeric ids as they are, names looked up in the
        image's /etc/passwd and /etc/group (through container ``cid``'s file system)."""
        if not chown:
            return 0, 0
        user, _, group = chown.partition(":")
        if user.isdigit() and (not group or group.isdigit()):
            return int(user), int(group or user)
        if cid is None:
            raise InvalidParameter(
                f"unable to convert uid/gid chown string to host mapping: {chown}"
            )
        layers = self.svc.stores.layers
        root = await asyncio.to_thread(layers.rw.mount, cid)
        try:
            passwd = await asyncio.to_thread(read_in_root, root, "/etc/passwd")
            groups = await asyncio.to_thread(read_in_root, root, "/etc/group")
        finally:
            await asyncio.to_thread(layers.rw.unmount, cid)
        try:
            resolved = resolve_user(chown, passwd=passwd, group=groups)
        except WhaledError as e:
            raise InvalidParameter(
                f"unable to convert uid/gid chown string to host mapping: {e}"
            ) from None
        # a user without a group: the uid as the gid too (dockerd's documented rule)
        return resolved.uid, resolved.gid if group else resolved.uid

    @contextlib.asynccontextmanager
    async def source_root(self, ref: str) -> AsyncIterator[str]:
        """The directory COPY reads from: the context, or the root of a stage's (or an
        image's) file system, mounted through a created container."""
        if not ref:
            yield self.ctx
            return
        stage = self.df.stage(ref)
        if stage is not None:
            if stage.index not in self.stage_images:
                raise InvalidParameter(f"invalid from flag value {ref}: refers to a later stage")
            image_id = self.stage_images[stage.index]
        else:
            image_id = await self.image(ref)
        if image_id is None:
            raise InvalidParameter(f"invalid from flag value {ref}: the stage has no files")
        created = await self.svc.containers.create(
            self.cfg,
            {"Image": image_id, "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}},
            name=None,
            platform=None,
        )
        layers = self.svc.stores.layers
        try:
            root = await asyncio.to_thread(layers.rw.mount, created.id)
            try:
                yield root
            finally:
                await asyncio.to_thread(layers.rw.unmount, created.id)
        finally:
            with contextlib.suppress(WhaledError):
                await self.svc.containers.remove(created.id, force=True, volumes=True)


# -- context --------------------------------------------------------------------------------


def _unpack_context(ctx: str, body: Readable, files: ContextWriter | None = None) -> None:
    cp.extract_to(
        ctx,
        {},
        "/",
        body,
        container="build context",
        no_overwrite_dir_non_dir=False,
        copy_uid_gid=False,
        files=files,
    )


def _remote_context(ctx: str, url: str, dockerfile: str) -> None:
    """``remote=URL``: a git repository is cloned and checked out (``#ref:subdir``); a tar
    archive (plain or compressed) becomes the context, anything else is the Dockerfile of
    an empty context (dockerd's rules)."""
    if is_git_url(url):
        _git_context(ctx, parse_git_url(url))
        return
    if not url.startswith(("http://", "https://")):
        raise InvalidParameter(f"remote context: unsupported URL {url} (http or https)")
    with tempfile.TemporaryDirectory(dir=os.path.dirname(ctx)) as tmp:
        path = os.path.join(tmp, "remote")
        _fetch(url, path)
        with open(path, "rb") as f:
            head = f.read(BLOCK)
            f.seek(0)
            if looks_like_tar(head):
                _unpack_context(ctx, f)
                return
        os.rename(path, os.path.join(ctx, os.path.basename(dockerfile) or "Dockerfile"))


_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",  # never ask for credentials
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_PROTOCOL_FROM_USER": "0",  # submodules: no file:// or ext:: transports
}


class _GitFailed(Exception):
    pass


def _git(directory: str, *args: str) -> None:
    env = {**os.environ, **_GIT_ENV, "HOME": directory}
    try:
        subprocess.run(
            ["git", "-C", directory, *args],
            check=True,
            capture_output=True,
            env=env,
            timeout=GIT_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise InvalidParameter("git build contexts need git, which is not installed") from None
    except subprocess.CalledProcessError as e:
        detail = e.stderr.decode(errors="replace").strip()
        raise _GitFailed(f"{detail}: exit status {e.returncode}") from None
    except subprocess.TimeoutExpired:
        raise _GitFailed(f"git {args[0]} took more than {GIT_TIMEOUT} s") from None


def _git_context(ctx: str, src: GitSource) -> None:
    """The checkout of ``src`` becomes ``ctx`` (dockerd: ``git fetch --depth 1`` of the ref,
    again without ``--depth`` where the server cannot do shallow fetches, checkout of
    ``FETCH_HEAD``, submodules; the ``.git`` directory is not part of the context)."""
    checkout = ctx + ".git-checkout"
    os.makedirs(checkout)
    try:
        try:
            _git(checkout, "init", "-q")
            _git(checkout, "remote", "add", "origin", src.remote)
            ref = src.ref or "HEAD"
            try:
                _git(checkout, "fetch", "-q", "--depth", "1", "origin", ref)
            except _GitFailed:  # a dumb HTTP server, or a commit a shallow fetch cannot name
                _git(checkout, "fetch", "-q", "origin", ref)
            _git(checkout, "checkout", "-q", "FETCH_HEAD")
            _git(checkout, "submodule", "update", "-q", "--init", "--recursive")
        except _GitFailed as e:
            raise SystemFailure(
                f"unable to prepare context: unable to 'git clone' to temporary context "
                f"directory: error fetching: {e}"
            ) from None
        remove_tree(os.path.join(checkout, ".git"), ignore_errors=True)
        top = os.path.realpath(checkout)
        chosen = os.path.realpath(os.path.join(top, src.subdir))
        if chosen != top and not chosen.startswith(top + os.sep):
            raise InvalidParameter(f"git context directory {src.subdir!r} leaves the repository")
        if not os.path.isdir(chosen):
            raise InvalidParameter(
                f"unable to prepare context: path {src.subdir!r} not found in the repository"
            )
        os.rmdir(ctx)
        os.rename(chosen, ctx)
    finally:
        remove_tree(checkout, ignore_errors=True)


def _read_in_context(ctx: str, name: str) -> str | None:
    """The text of the regular file ``name`` of the context, None if there is none. Links
    are followed inside the context, as dockerd does (an absolute target starts again at
    the context's root): never onto the daemon's host."""
    path = cp.resolve(ctx, {}, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    with open(fd, encoding="utf-8", errors="replace") as f:
        return f.read()


def _prepare_context(ctx: str, dockerfile: str) -> str:
    """The unpacked context's Dockerfile, once ``.dockerignore`` took out what it excludes."""
    text = _read_dockerfile(ctx, dockerfile)
    _apply_dockerignore(ctx, dockerfile)
    return text


def _read_dockerfile(ctx: str, name: str) -> str:
    text = _read_in_context(ctx, name)
    if text is None:
        raise InvalidParameter(f"Cannot locate specified Dockerfile: {name}")
    return text


def _apply_dockerignore(ctx: str, dockerfile: str) -> None:
    """Remove what ``.dockerignore`` excludes (the Dockerfile and .dockerignore stay). An
    excluded directory goes whole, unless an exception (``!pattern``) may re-include
    something in it: then its content is judged entry by entry and it is removed if it ends
    up empty. One walk without recursion, whatever the depth."""
    text = _read_in_context(ctx, ".dockerignore")
    if text is None:
        return
    patterns = dockerignore.parse(text)
    keep = {os.path.normpath(dockerfile.lstrip("/")), ".dockerignore"}
    exceptions = any(p.exception for p in patterns)
    emptied: list[str] = []  # excluded directories walked for what is re-included
    dir_matches: dict[str, dockerignore.Matches] = {}  # the walk's directories' answers
    for w in walk_fd(ctx):
        rel = w.path
        up = rel.rpartition("/")[0]
        found = dockerignore.matches(rel, patterns, dir_matches.get(up) if up else None)
        if stat.S_ISDIR(w.st.st_mode):
            dir_matches[rel] = found
        if rel in keep or not dockerignore.verdict(found, patterns):
            continue
        if any(k.startswith(rel + "/") for k in keep):
            continue
        if stat.S_ISDIR(w.st.st_mode):
            if exceptions:
                emptied.append(rel)
                continue
            remove_tree(w.name, dir_fd=w.parent_fd, ignore_errors=True)  # not entered then
        else:
            os.unlink(w.name, dir_fd=w.parent_fd)
    for rel in reversed(emptied):  # deepest first (pre-order, reversed)
        parent, _, name = rel.rpartition("/")
        with contextlib.suppress(OSError):
            fd = open_under(ctx, parent, os.O_RDONLY | os.O_DIRECTORY) if parent else None
            try:
                os.rmdir(name if fd is not None else os.path.join(ctx, name), dir_fd=fd)
            finally:
                if fd is not None:
                    os.close(fd)


# -- COPY plans -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    source: str  # host path
    target: str  # path in the image (absolute)
    is_dir: bool
    archive: bool = False  # ADD of a local tar: its members go into ``target``


#: the most ADD fetches from one URL (a remote context too)
MAX_DOWNLOAD = 4 << 30
GIT_TIMEOUT = 600  # seconds a git command of a git context may take


def _download(url: str, directory: str, dest: str, dest_is_dir: bool) -> _Item:
    """ADD of a URL: the file fetched (0600, its Last-Modified time, as dockerd does), named
    by the URL's last path element when ``dest`` is a directory."""
    name = posixpath.basename(urllib.parse.urlsplit(url).path) or "download"
    if not dest_is_dir and not dest.endswith("/"):
        target = dest
    else:
        target = posixpath.join(dest, name)
    path = os.path.join(tempfile.mkdtemp(dir=directory), name)
    mtime = _fetch(url, path)
    os.chmod(path, 0o600)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return _Item(path, target, False)


def _fetch(url: str, path: str) -> float | None:
    """GET ``url`` into ``path`` (bounded); its Last-Modified time, if any."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            if resp.status != 200:
                raise InvalidParameter(f"failed to GET {url} with status {resp.status}")
            total = 0
            with open(path, "wb") as f:
                while chunk := resp.read(1 << 20):
                    total += len(chunk)
                    if total > MAX_DOWNLOAD:
                        raise InvalidParameter(f"{url}: larger than {MAX_DOWNLOAD} bytes")
                    f.write(chunk)
            modified = resp.headers.get("Last-Modified")
    except urllib.error.HTTPError as e:
        raise InvalidParameter(f"failed to GET {url} with status {e.code}: {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        raise InvalidParameter(f"error downloading {url}: {e}") from None
    if not modified:
        return None
    try:
        return email.utils.parsedate_to_datetime(modified).timestamp()
    except (TypeError, ValueError):
        return None


def _inside(root: str, path: str) -> str:
    """``path`` (relative to the source root) as a host path that stays inside it."""
    full = os.path.normpath(os.path.join(root, path.lstrip("/")))
    if full != root and not full.startswith(root.rstrip("/") + "/"):
        raise InvalidParameter(f"forbidden path outside the build context: {path}")
    return full


def _planned(
    cmd: str,
    downloads: list[_Item],
    root: str,
    sources: Sequence[str],
    dest: str,
    dest_is_dir: bool,
    context: Context,
) -> tuple[list[_Item], str]:
    """A COPY/ADD's plan (``downloads`` first) and its cache key, in one trip to a thread."""
    plan = downloads + _copy_plan(root, sources, dest, dest_is_dir, extract=cmd == "ADD")
    if not plan:
        raise InvalidParameter(f"{cmd} failed: no source files were specified")
    return plan, _plan_digest(plan, context)


def _copy_plan(
    root: str, sources: Sequence[str], dest: str, dest_is_dir: bool, *, extract: bool
) -> list[_Item]:
    items: list[_Item] = []
    for source in sources:
        pattern = _inside(root, source)
        matches = _glob_in(root, pattern[len(root.rstrip("/")) :])
        if not matches:
            raise InvalidParameter(
                f"COPY failed: file not found in build context or excluded by .dockerignore: "
                f"stat {source}: file does not exist"
            )
        for inner in matches:
            # a source that is a link is followed inside its root (the context or a stage's
            # file system), as dockerd's FollowSymlinkInScope: an absolute target is read
            # from that root, never from the host
            name = posixpath.basename(inner)  # the source's own name, even when it is a link
            match = cp.resolve(root, {}, inner)
            if not os.path.lexists(match):
                raise InvalidParameter(
                    f"COPY failed: file not found in build context or excluded by "
                    f".dockerignore: stat {source}: file does not exist"
                )
            st = os.stat(match)
            if stat.S_ISDIR(st.st_mode):
                items.append(_Item(match, dest, True))  # its content goes into dest
            elif extract and tarfile.is_tarfile(match):
                items.append(_Item(match, dest, False, archive=True))
            else:
                target = posixpath.join(dest, name) if dest_is_dir or dest.endswith("/") else dest
                items.append(_Item(match, target, False))
    return items


_GLOB_MAGIC = re.compile(r"[*?[]")


def _glob_in(root: str, pattern: str) -> list[str]:
    """The paths of ``root`` (``/a/b``, in the root's own terms) that the glob ``pattern``
    (relative to it) matches, with glob's rules (``*`` does not match a leading ``.``).
    Each directory is listed where it is *in the root*: a link on the way is followed
    inside it, never on the host (``glob.glob`` over host paths followed ``link -> /etc``
    to the host's /etc, and missed what the root itself has there)."""
    found = ["/"]
    for comp in (c for c in pattern.split("/") if c):
        matched: list[str] = []
        for base in found:
            if not _GLOB_MAGIC.search(comp):
                matched.append(posixpath.join(base, comp))
                continue
            try:
                names = os.listdir(cp.resolve(root, {}, base))
            except OSError:
                continue
            hidden = comp.startswith(".")
            matched.extend(
                posixpath.join(base, n)
                for n in sorted(names)
                if (hidden or not n.startswith(".")) and fnmatch.fnmatchcase(n, comp)
            )
        found = matched
    return [p for p in found if os.path.lexists(cp.resolve(root, {}, p, follow_final=False))]


@dataclass(frozen=True, slots=True)
class _Found:
    """One thing an item copies: ``rel`` below the item's ``top`` ("" for the top itself),
    its path in the image and its lstat. Opened fd-relative, so trees of any depth (paths
    beyond PATH_MAX) are read; a symlink is never followed."""

    top: str
    rel: str
    target: str
    st: os.stat_result

    def open(self) -> int:
        if not self.rel:
            return os.open(self.top, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        return open_under(self.top, self.rel)

    def readlink(self) -> str:
        return readlink_under(self.top, self.rel) if self.rel else os.readlink(self.top)


def _walk(item: _Item) -> Iterator[_Found]:
    """Everything an item copies, the item first, then (a directory) its tree in pre-order
    and name order; no recursion, whatever the depth."""
    yield _Found(item.source, "", item.target, os.lstat(item.source))
    if not item.is_dir:
        return
    for w in walk_fd(item.source):
        yield _Found(item.source, w.path, posixpath.join(item.target, w.path), w.st)


def _plan_digest(plan: Sequence[_Item], context: Context) -> str:
    """The cache key of a COPY: names, types, modes and content (not times or owners).
    The files' contents are hashed on a few threads (hashlib and reads release the GIL),
    but for the context's files whose digest is known (reused from a kept context)."""
    h = hashlib.sha256()
    files: list[str | _Found] = []
    parts: list[bytes | int] = []  # ints: the index of a file whose digest goes there
    for item in plan:
        if item.archive:
            parts.append(f"tar:{item.target}\0".encode())
            parts.append(len(files))
            files.append(item.source)
            continue
        for found in _walk(item):
            st = found.st
            kind, mode = stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)
            parts.append(f"{found.target}\0{kind}\0{mode}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                parts.append(found.readlink().encode())
            elif stat.S_ISREG(st.st_mode):
                parts.append(len(files))
                files.append(found)
    digests = _digests(files, context)
    for part in parts:
        h.update(digests[part] if isinstance(part, int) else part)
    return h.hexdigest()


def _digests(files: Sequence[str | _Found], context: Context) -> list[bytes]:
    """The files' SHA-256s: the context's record where a kept context had the file, the
    rest hashed (on a few threads when there are several: a pool costs a few hundred µs
    of thread starts, more than a cached rebuild's whole COPY step)."""
    paths = [_host_path(file) for file in files]
    known = [context.known_digest(path) for path in paths]
    missing = [i for i, digest in enumerate(known) if digest is None]
    if len(missing) > 1:
        with ThreadPoolExecutor(_HASH_THREADS, thread_name_prefix="copy-digest") as pool:
            hashed = list(pool.map(lambda i: _file_digest(files[i]), missing))
    else:
        hashed = [_file_digest(files[i]) for i in missing]
    fresh = dict(zip(missing, hashed, strict=True))
    for i, digest in fresh.items():
        context.remember_digest(paths[i], digest)
    return [fresh[i] if digest is None else digest for i, digest in enumerate(known)]


def _host_path(file: str | _Found) -> str:
    if isinstance(file, str):
        return file
    return os.path.join(file.top, file.rel) if file.rel else file.top


def _file_digest(file: str | _Found) -> bytes:
    fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC) if isinstance(file, str) else file.open()
    with open(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def _entries(plan: Sequence[_Item], owner: tuple[int, int]) -> Iterator[TarEntry]:
    uid, gid = owner
    for item in plan:
        if item.archive:
            yield from _tar_entries(item.source, item.target)
            continue
        for found in _walk(item):
            st, target = found.st, found.target
            info = tarfile.TarInfo(target.lstrip("/") or ".")
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = int(st.st_mtime)
            info.uid, info.gid = uid, gid
            if stat.S_ISDIR(st.st_mode):
                if target.rstrip("/") in ("", "/"):
                    continue
                info.type = tarfile.DIRTYPE
                yield TarEntry(info, None)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = found.readlink()
                yield TarEntry(info, None)
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                yield TarEntry(info, exact_chunks(found.open, st.st_size))


def _with_parents(entries: Iterator[TarEntry]) -> Iterator[TarEntry]:
    """``entries`` with a directory entry (root's, 0755) for each parent not listed before
    it: a first layer has no directories to put files in. A parent seen means all of its
    parents were (so an entry whose parent was listed costs one lookup, at any depth)."""
    seen: set[str] = set()
    for entry in entries:
        name = entry.info.name.rstrip("/")
        missing: list[str] = []
        parent = name.rpartition("/")[0]
        while parent and parent not in seen:
            missing.append(parent)
            parent = parent.rpartition("/")[0]
        for parent in reversed(missing):
            seen.add(parent)
            info = tarfile.TarInfo(parent)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            yield TarEntry(info, None)
        seen.add(name)
        yield entry


def _tar_entries(path: str, dest: str) -> Iterator[TarEntry]:
    """ADD of a local tar archive (plain or compressed): its members under ``dest``, as
    dockerd unpacks it there: a member (or a hard link's target, an archive path) that
    climbs out of ``dest`` is refused (``"../x" is outside of "/dest"``), an absolute name
    is taken below ``dest``. Streamed, one member at a time, through the reader and bounds
    of every tar that enters (a decompression bomb stops with ArchiveLimit)."""
    with open(path, "rb") as f:
        src, _ = open_stream(f, limit=space_budget(os.path.dirname(path)))
        parser = TarParser(TarInput(src))
        for member in parser:
            info = member.replace(name=_below(dest, member.name), deep=False)
            # PAX path/linkpath records would override the new names when written
            info.pax_headers = {
                k: v for k, v in member.pax_headers.items() if k not in ("path", "linkpath")
            }
            if member.islnk():
                info.linkname = _below(dest, member.linkname)
            if member.isreg():
                yield TarEntry(info, _member_chunks(parser))
            else:
                yield TarEntry(info, None)


def _below(dest: str, name: str) -> str:
    parts = cp.entry_parts(name, dest)
    return "/".join((*cp.entry_parts(dest, "/"), *parts)) or "."


def _member_chunks(parser: TarParser) -> Callable[[], Iterator[bytes]]:
    """The current member's data (stream_tar reads it before asking for the next entry)."""

    def chunks() -> Iterator[bytes]:
        while data := parser.read_data():
            yield bytes(data)

    return chunks


def clear_tmp(tmp_root: str) -> None:
    """Daemon start: contexts a killed daemon left behind."""
    if os.path.isdir(tmp_root):
        for name in os.listdir(tmp_root):
            remove_tree(os.path.join(tmp_root, name), ignore_errors=True)
