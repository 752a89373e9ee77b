"""Pure projections folded over a patient's facts (tracker.facts)."""
