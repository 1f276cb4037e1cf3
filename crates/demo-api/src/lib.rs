//! The demo API (to be written).
