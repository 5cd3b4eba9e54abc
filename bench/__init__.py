"""whaled's benchmark suite: ``bench/run`` measures whaled, dockerd (``--reference``) and the
physical floor side by side in one run. See bench/README.md."""
