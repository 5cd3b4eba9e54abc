"""The Dockerfile builder's pure parts (dockerd 20.10's legacy builder is the reference):

| module | concept |
| --- | --- |
| ``words.py`` | variable substitution and word splitting (dockerd's shell lexer) |
| ``dockerfile.py`` | the Dockerfile as stages of instructions, with their flags |
| ``dockerignore.py`` | ``.dockerignore`` patterns |
| ``steps.py`` | what each instruction does to the image config, and its cache key |

The use case (``whaled.daemon.builder``) runs the steps with real containers.
"""
