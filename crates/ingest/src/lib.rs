//! SRT ingest: streamid parsing, publisher sessions, TS demux onto the bus.
