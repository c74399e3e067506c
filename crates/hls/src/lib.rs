//! Low-Latency HLS live window and playlist rendering (sans-IO).
