"""Layer 6: the worker — the services build steps run on, bundled without logic.

Nothing lives here yet, on purpose: the bundle the ops need is
:class:`dockyard.llbsolver.Worker` (refs, executor, sources by scheme, platform), the
exporters' is :class:`dockyard.exporter.ExportServices`, and the engine
(:mod:`dockyard.engine`) assembles both from one state directory. A second kind of worker
(another platform, a remote executor) would give this package its first value.
"""

__all__: list[str] = []
