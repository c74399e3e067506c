//! CMAF fMP4 writer: init segments and fragment chunks for LL-HLS parts.
