//! AAC ADTS header parsing. STUB.
