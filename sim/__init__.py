"""Discrete-event simulation of executing a plan. Depends on planner's core only."""
