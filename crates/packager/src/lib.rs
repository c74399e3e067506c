//! Packager and origin: bus → CMAF parts → LL-HLS window, served over HTTP.
