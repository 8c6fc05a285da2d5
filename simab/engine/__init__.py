"""The shard engines: one shard's simulation (``shard``), the wave and reference engines
(``wave``, ``reference``, chosen by ``engines.make_simulation``), the ranking service and its
latency model (``serving``) and candidate retrieval (``retrieval``)."""
