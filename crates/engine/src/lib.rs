//! carve: the engine that applies a plan across all tiers
