"""`make bench-peers`: dedupe beside Faust's ceiling and a quix-streams peer, in one run."""
