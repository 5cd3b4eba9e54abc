"""Container names: validation and generated names (pure)."""

from __future__ import annotations

import random
import re

from whaled.errors import InvalidParameter

_VALID = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")

# Our own word lists: calm adjectives and marine animals.
_ADJECTIVES = (
    "agile bold brave bright calm clever cosmic crisp daring eager fancy fast gentle glad "
    "happy jolly keen kind lively lucky merry mighty nimble noble patient proud quick quiet "
    "rapid serene sharp shiny smart snappy steady sunny swift tender tidy vivid warm wise "
    "witty zealous"
).split()
_NOUNS = (
    "albatross anchovy barracuda beluga blenny cachalot clownfish cod coral crab cuttlefish "
    "dolphin dugong eel flounder grouper haddock halibut herring jellyfish kelp krill limpet "
    "lobster mackerel manatee marlin minke narwhal nautilus octopus orca otter oyster pelican "
    "penguin plankton porpoise puffin ray sardine seahorse seal shark shrimp snapper squid "
    "starfish sturgeon tuna turtle urchin walrus whale wrasse"
).split()


def validate_name(name: str) -> str:
    """Return the canonical name (without the leading '/') or raise dockerd's 400."""
    if not _VALID.match(name):
        raise InvalidParameter(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name.removeprefix("/")


def generate_name(rng: random.Random, retry: int = 0) -> str:
    name = f"{rng.choice(_ADJECTIVES)}_{rng.choice(_NOUNS)}"
    if retry:
        name += str(rng.randint(0, 9))
    return name
