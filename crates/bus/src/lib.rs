//! GOP-aware media bus: publishers, subscribers, bounded fan-out.
