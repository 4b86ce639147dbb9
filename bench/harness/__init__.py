"""Side-by-side build benchmarks: Dockyard (embedded and daemon) against docker's BuildKit
and buildah on the same contexts, builders interleaved run by run, with the machine's
floors measured in the same run. Run it with ``bench/run`` (see ``bench/README.md``).
"""
