"""Swarm routes (swarm, nodes, services, tasks, secrets, configs) and plugin routes.

whaled is never part of a swarm and has no plugin manager. Clients still call these
endpoints and branch on dockerd's exact answers for that state (``docker swarm leave`` in
teardown scripts, ``docker node ls``, tools probing for swarm or plugins), so they answer
as dockerd does on a node outside any swarm and without plugins: 503 with dockerd's wording
for the swarm, an empty list and "not found" for plugins. Request parts dockerd checks
before it gets to the swarm state (list filters) are checked first, as there.
"""

from __future__ import annotations

from aiohttp import web

from whaled.api.app import Routes, json_response
from whaled.api.filters import parse_filters
from whaled.errors import NoSuchPlugin, NotInSwarm, NotSwarmManager, Unsupported

#: Objects only a swarm manager serves, each with the usual list / inspect / remove routes.
_MANAGER_OBJECTS = ("nodes", "services", "tasks", "secrets", "configs")


async def manager_only(request: web.Request) -> web.StreamResponse:
    """Any request only a swarm manager can answer."""
    raise NotSwarmManager()


async def get_manager_list(request: web.Request) -> web.StreamResponse:
    parse_filters(request.query.get("filters"))  # a bad filter is a 400 first
    raise NotSwarmManager()


async def post_swarm_leave(request: web.Request) -> web.StreamResponse:
    raise NotInSwarm()


async def post_swarm_init_or_join(request: web.Request) -> web.StreamResponse:
    raise Unsupported("swarm mode is not supported by whaled")


async def get_plugins(request: web.Request) -> web.StreamResponse:
    parse_filters(request.query.get("filters"))
    return json_response([])


async def plugin_not_found(request: web.Request) -> web.StreamResponse:
    raise NoSuchPlugin(request.match_info["name"])


async def plugins_unsupported(request: web.Request) -> web.StreamResponse:
    raise Unsupported("plugins are not supported by whaled")


def register(routes: Routes) -> None:
    routes.add("GET", "/swarm", manager_only)
    routes.add("POST", "/swarm/init", post_swarm_init_or_join)
    routes.add("POST", "/swarm/join", post_swarm_init_or_join)
    routes.add("POST", "/swarm/leave", post_swarm_leave)
    routes.add("POST", "/swarm/update", manager_only)
    routes.add("GET", "/swarm/unlockkey", manager_only)
    routes.add("POST", "/swarm/unlock", manager_only)
    for kind in _MANAGER_OBJECTS:
        routes.add("GET", f"/{kind}", get_manager_list)
        if kind in ("services", "secrets", "configs"):
            routes.add("POST", f"/{kind}/create", manager_only)
        routes.add("GET", f"/{kind}/{{id}}", manager_only)
        if kind != "tasks":
            routes.add("DELETE", f"/{kind}/{{id}}", manager_only)
            routes.add("POST", f"/{kind}/{{id}}/update", manager_only)
    routes.add("GET", "/services/{id}/logs", manager_only)
    routes.add("GET", "/tasks/{id}/logs", manager_only)

    routes.add("GET", "/plugins", get_plugins)
    routes.add("GET", "/plugins/privileges", plugins_unsupported)
    routes.add("POST", "/plugins/pull", plugins_unsupported)
    routes.add("POST", "/plugins/create", plugins_unsupported)
    routes.add("GET", "/plugins/{name:.*}/json", plugin_not_found)
    for action in ("enable", "disable", "push", "set", "upgrade"):
        routes.add("POST", f"/plugins/{{name:.*}}/{action}", plugin_not_found)
    routes.add("DELETE", "/plugins/{name:.*}", plugin_not_found)
