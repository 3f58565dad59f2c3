"""Planning: which hosts go down in which wave and where every VM goes.

Depends on planner's core only."""
