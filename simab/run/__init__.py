"""One campaign run: the plan of users, shards and assignments, the pre-period, each arm's
policy, the shard executor, the truth, and the run folder it all lands in."""
